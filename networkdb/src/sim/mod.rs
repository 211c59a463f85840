//! A deterministic cluster simulator for the sans-IO [`Core`].
//!
//! Virtual time, one event queue ordered by (time, sequence), N nodes each running a `Core`,
//! and one seeded RNG for everything the network decides (latency, loss). The same
//! [`SimConfig`] (seed included) and the same calls replay exactly.
//!
//! The simulated network:
//! - every frame takes a latency drawn uniformly from `[latency_min, latency_max]`;
//! - datagrams are lost with probability `loss`; stream messages are never lost;
//! - a partition drops every frame (datagram or stream) between nodes of different groups,
//!   checked when it is sent and again when it arrives;
//! - a crashed node sends nothing, and every frame and timer addressed to it is dropped (also
//!   those queued before the crash); frames it sent before crashing still arrive;
//! - a frame filter ([`Sim::set_filter`]) may drop or rewrite any frame.
//!
//! Durable tables ([`Config::durable_tables`]) are persisted as the runtime does: a crash
//! keeps the node's durable records as of the crash (the runtime answers a durable write only
//! once it is on disk), and a restart restores them ([`Core::restore`]) before joining.
//!
//! Frames travel unsealed: sealing is the runtime's business, not the core's. Traffic
//! statistics add a documented per-packet overhead for headers and sealing
//! ([`DATAGRAM_OVERHEAD`], [`STREAM_OVERHEAD`]).
//!
//! Node `i` (0-based index) has `NodeId(i + 1)` and the address `127.0.x.y:7946` where
//! `x.y` encodes `i + 1`; addresses are identifiers only, nothing touches a socket.

mod check;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::config::Config;
use crate::core::Core;
pub use crate::effects::Effects;
use crate::effects::{Notification, Timer, Transport};
use crate::error::Error;
use crate::types::{EntryRecord, NetworkId, NodeId, Peer};
use crate::wire;

pub use self::stats::{
    DATAGRAM_OVERHEAD, Dissemination, NodeStats, STREAM_OVERHEAD, Visibility, WriteId,
};

/// Parameters of a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Seed of the network's RNG; every core's seed is derived from it.
    pub seed: u64,
    /// Configuration of every core.
    pub core: Config,
    /// Per-frame latency, drawn uniformly from `[latency_min, latency_max]`.
    pub latency_min: Duration,
    pub latency_max: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// The first `seeds` nodes are the seeds every node joins through (at least 1).
    pub seeds: usize,
    /// Nodes call `join` at a uniformly random time in `[0, join_spread]` (all `start` at 0).
    pub join_spread: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            seed: 0,
            core: Config::default(),
            latency_min: Duration::from_micros(200),
            latency_max: Duration::from_millis(2),
            loss: 0.0,
            seeds: 3,
            join_spread: Duration::from_millis(500),
        }
    }
}

/// What a frame filter decides about one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameAction {
    Deliver,
    Drop,
    /// Deliver these bytes instead.
    Replace(Vec<u8>),
}

/// A frame as the filter sees it, when it is sent.
#[derive(Debug)]
pub struct FrameMeta<'a> {
    pub now: Duration,
    pub from: usize,
    pub to: usize,
    pub transport: Transport,
    pub frame: &'a [u8],
}

/// A frame filter: called for every frame that survived partitions and loss.
pub type Filter = Box<dyn FnMut(&FrameMeta<'_>) -> FrameAction>;

/// What a restarted node does before it joins: the state an agent restores from its state dir.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restart {
    /// Networks it joins again (before `entries` are put).
    pub networks: Vec<NetworkId>,
    /// Entries it puts again: (network, table, key, value).
    pub entries: Vec<(NetworkId, String, String, Vec<u8>)>,
}

/// An API call or fault scheduled with [`Sim::at`].
#[derive(Clone, Debug)]
pub enum Call {
    Put {
        network: NetworkId,
        table: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        network: NetworkId,
        table: String,
        key: String,
    },
    JoinNetwork(NetworkId),
    LeaveNetwork(NetworkId),
    /// Graceful leave of the cluster.
    Leave,
    Crash,
    Restart(Restart),
}

#[derive(Debug)]
enum Ev {
    Frame {
        to: usize,
        life: u32,
        from: usize,
        from_addr: SocketAddr,
        table: bool,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        life: u32,
        timer: Timer,
    },
    Call {
        node: usize,
        call: Call,
    },
    /// The initial join of a node's first life.
    Join {
        node: usize,
        life: u32,
    },
}

#[derive(Debug)]
struct SimNode {
    core: Option<Core>,
    /// Incremented on crash and restart; events of an older life are dropped.
    life: u32,
    /// Highest generation any life of this node used.
    generation: u64,
    stats: NodeStats,
    events: Vec<(Duration, Notification)>,
    /// Durable records on "disk", and when they were saved.
    disk: Vec<EntryRecord>,
    saved_at: Duration,
}

/// The simulated cluster. See the module docs.
pub struct Sim {
    cfg: SimConfig,
    now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Ev>,
    nodes: Vec<SimNode>,
    addrs: HashMap<SocketAddr, usize>,
    seeds: Vec<SocketAddr>,
    rng: StdRng,
    /// Partition group of each node; nodes talk only within a group.
    group: Vec<u32>,
    filter: Option<Filter>,
    record_events: bool,
    writes: BTreeMap<WriteId, Visibility>,
    /// Table frames (gossip, sync) in flight.
    table_in_flight: usize,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// The address of node `i`: `127.0.x.y:7946` with `x.y` the 16-bit big-endian `i + 1`.
pub fn addr_of(i: usize) -> SocketAddr {
    let n = (i + 1) as u32;
    SocketAddr::from((
        Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8),
        7946,
    ))
}

impl Sim {
    /// Build the cluster: every node starts at time 0 and joins through the seeds at a random
    /// time within `join_spread`. Nothing runs until a `run_*` call.
    pub fn new(cfg: SimConfig) -> Sim {
        assert!(cfg.nodes > 0, "a simulation needs at least one node");
        assert!(
            cfg.latency_min <= cfg.latency_max,
            "latency_min must not exceed latency_max"
        );
        let rng = StdRng::seed_from_u64(cfg.seed);
        let seeds = (0..cfg.seeds.clamp(1, cfg.nodes)).map(addr_of).collect();
        let mut sim = Sim {
            now: Duration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::with_capacity(cfg.nodes),
            addrs: HashMap::new(),
            seeds,
            rng,
            group: vec![0; cfg.nodes],
            filter: None,
            record_events: false,
            writes: BTreeMap::new(),
            table_in_flight: 0,
            cfg,
        };
        for i in 0..sim.cfg.nodes {
            sim.addrs.insert(addr_of(i), i);
            sim.nodes.push(SimNode {
                core: None,
                life: 0,
                generation: 0,
                stats: NodeStats::default(),
                events: Vec::new(),
                disk: Vec::new(),
                saved_at: Duration::ZERO,
            });
            sim.boot(i);
            let at = if sim.cfg.join_spread.is_zero() {
                Duration::ZERO
            } else {
                let max = sim.cfg.join_spread.as_micros() as u64;
                Duration::from_micros(sim.rng.random_range(0..=max))
            };
            sim.push(at, Ev::Join { node: i, life: 1 });
        }
        sim
    }

    /// Create a fresh core for node `i` (a new life) and start it. It joins later.
    fn boot(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.life += 1;
        // Generation: like the agent, a start time in ms, strictly above any earlier life.
        let generation = (self.now.as_millis() as u64 + 1).max(node.generation + 1);
        node.generation = generation;
        let peer = Peer {
            id: NodeId(i as u64 + 1),
            addr: addr_of(i),
            generation,
        };
        let seed = self.cfg.seed ^ ((i as u64 + 1) << 32) ^ u64::from(node.life);
        let seed = splitmix(seed);
        let core = Core::new(self.cfg.core.clone(), peer, seed).expect("valid core config");
        node.core = Some(core);
        self.call(i, |core, now, rt| core.start(now, rt));
    }

    // ------------------------------------------------------------ inspection

    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        NodeId(i as u64 + 1)
    }

    /// The index of the node with id `id`.
    pub fn index(&self, id: NodeId) -> Option<usize> {
        (id.0 as usize)
            .checked_sub(1)
            .filter(|i| *i < self.nodes.len())
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        addr_of(i)
    }

    /// The core of node `i`, None while it is crashed.
    pub fn core(&self, i: usize) -> Option<&Core> {
        self.nodes[i].core.as_ref()
    }

    pub fn is_live(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    /// Indices of the live nodes.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|i| self.is_live(*i)).collect()
    }

    /// Traffic of node `i` over all its lives.
    pub fn stats(&self, i: usize) -> &NodeStats {
        &self.nodes[i].stats
    }

    /// Traffic summed over all nodes.
    pub fn total_stats(&self) -> NodeStats {
        let mut t = NodeStats::default();
        for n in &self.nodes {
            t.add(&n.stats);
        }
        t
    }

    /// Events queued (frames in flight, timers, scheduled calls).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    // ------------------------------------------------------------ network model

    pub fn set_loss(&mut self, loss: f64) {
        self.cfg.loss = loss;
    }

    pub fn set_latency(&mut self, min: Duration, max: Duration) {
        assert!(min <= max, "min latency must not exceed max");
        self.cfg.latency_min = min;
        self.cfg.latency_max = max;
    }

    /// Split the cluster: nodes of `groups[k]` talk only among themselves; nodes in no group
    /// form one more group. Replaces any earlier partition.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.group = vec![0; self.nodes.len()];
        for (k, g) in groups.iter().enumerate() {
            for &i in g {
                self.group[i] = k as u32 + 1;
            }
        }
    }

    /// End every partition.
    pub fn heal(&mut self) {
        self.group = vec![0; self.nodes.len()];
    }

    /// True when `a` and `b` are on the same side of the current partition.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    /// Install a frame filter (replacing any other).
    pub fn set_filter(&mut self, filter: impl FnMut(&FrameMeta<'_>) -> FrameAction + 'static) {
        self.filter = Some(Box::new(filter));
    }

    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    // ------------------------------------------------------------ events and visibility

    /// Record every notification of every node (see [`Sim::events`]). Off by default.
    pub fn record_events(&mut self, on: bool) {
        self.record_events = on;
    }

    /// Notifications of node `i` recorded so far, with their time.
    pub fn events(&self, i: usize) -> &[(Duration, Notification)] {
        &self.nodes[i].events
    }

    /// Take the recorded notifications of node `i`.
    pub fn take_events(&mut self, i: usize) -> Vec<(Duration, Notification)> {
        std::mem::take(&mut self.nodes[i].events)
    }

    /// Visibility of a write made through [`Sim::put`].
    pub fn visibility(&self, w: &WriteId) -> Option<&Visibility> {
        self.writes.get(w)
    }

    /// Every write made through [`Sim::put`], with its visibility.
    pub fn writes(&self) -> impl Iterator<Item = (&WriteId, &Visibility)> {
        self.writes.iter()
    }

    /// Forget tracked writes (to bound memory in long runs).
    pub fn clear_writes(&mut self) {
        self.writes.clear();
    }

    /// How far a tracked write has spread among the live members of its network (the
    /// writer excluded), as of now.
    pub fn dissemination(&self, w: &WriteId) -> Option<Dissemination> {
        let v = self.writes.get(w)?;
        let targets: Vec<usize> = self
            .members_of(&w.network)
            .into_iter()
            .filter(|i| *i != v.writer)
            .collect();
        let mut delays: Vec<Duration> = targets
            .iter()
            .filter_map(|i| v.seen.get(i))
            .map(|t| t.saturating_sub(v.written_at))
            .collect();
        delays.sort();
        let n = targets.len();
        Some(Dissemination {
            targets: n,
            reached: delays.len(),
            p50: stats::quantile(&delays, n, 0.5),
            p99: stats::quantile(&delays, n, 0.99),
            all: stats::quantile(&delays, n, 1.0),
        })
    }

    /// Live nodes that are members of `network` (every live node for the cluster scope).
    pub fn members_of(&self, network: &str) -> Vec<usize> {
        self.live()
            .into_iter()
            .filter(|i| {
                self.core(*i)
                    .is_some_and(|c| c.networks().iter().any(|n| n == network))
            })
            .collect()
    }

    // ------------------------------------------------------------ API calls (now)

    /// Run `f` on node `i`'s core with the simulator's runtime and route its effects. None if
    /// the node is crashed.
    pub fn call<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Core, Duration, &mut Effects) -> R,
    ) -> Option<R> {
        let now = self.now;
        let mut fx = Effects::default();
        let r = f(self.nodes[i].core.as_mut()?, now, &mut fx);
        self.route(i, fx);
        Some(r)
    }

    /// Put on node `i` now. Returns the write's id, tracked for [`Sim::visibility`].
    pub fn put(
        &mut self,
        i: usize,
        network: &str,
        table: &str,
        key: &str,
        value: impl Into<Vec<u8>>,
    ) -> Result<WriteId, Error> {
        let now = self.now;
        let value = value.into();
        let core = self.nodes[i]
            .core
            .as_mut()
            .ok_or_else(|| Error::Membership(format!("node {i} is crashed")))?;
        let mut fx = Effects::default();
        core.put(now, network, table, key, value, &mut fx)?;
        let rec = core
            .record(now, network, table, key)
            .expect("a put stores the entry");
        let id = WriteId {
            network: network.to_owned(),
            table: table.to_owned(),
            key: key.to_owned(),
            owner: rec.owner,
            version: rec.version,
        };
        self.writes.insert(
            id.clone(),
            Visibility {
                writer: i,
                written_at: now,
                seen: BTreeMap::new(),
            },
        );
        self.route(i, fx);
        Ok(id)
    }

    /// Delete on node `i` now (see [`Core::delete`]).
    pub fn delete(
        &mut self,
        i: usize,
        network: &str,
        table: &str,
        key: &str,
    ) -> Result<bool, Error> {
        self.call(i, |c, now, rt| c.delete(now, network, table, key, rt))
            .unwrap_or_else(|| Err(Error::Membership(format!("node {i} is crashed"))))
    }

    pub fn join_network(&mut self, i: usize, network: &str) {
        self.call(i, |c, now, rt| c.join_network(now, network, rt));
    }

    pub fn leave_network(&mut self, i: usize, network: &str) {
        self.call(i, |c, now, rt| c.leave_network(now, network, rt));
    }

    /// Graceful leave of the cluster (the core keeps running).
    pub fn leave(&mut self, i: usize) {
        self.call(i, |c, now, rt| c.leave(now, rt));
    }

    /// Crash node `i` now: its core is dropped with everything queued for it.
    pub fn crash(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        if let Some(core) = node.core.take() {
            node.disk = core.durable_records(now);
            node.saved_at = now;
        }
        node.life += 1;
    }

    /// The durable records node `i` would restore from disk now (as of its last crash).
    pub fn disk(&self, i: usize) -> &[EntryRecord] {
        &self.nodes[i].disk
    }

    /// Forget what node `i` saved (a crashed node whose disk was replaced).
    pub fn lose_disk(&mut self, i: usize) {
        self.nodes[i].disk.clear();
    }

    /// Restart node `i` now with the same id and a higher generation: a fresh core that joins
    /// `plan.networks`, puts `plan.entries`, then joins the cluster through the seeds. A live
    /// node is crashed first.
    pub fn restart(&mut self, i: usize, plan: Restart) {
        if let Some(core) = self.nodes[i].core.take() {
            self.nodes[i].disk = core.durable_records(self.now);
            self.nodes[i].saved_at = self.now;
        }
        self.boot(i);
        let away = self.now.saturating_sub(self.nodes[i].saved_at).as_millis() as u64;
        let records: Vec<EntryRecord> = self.nodes[i]
            .disk
            .iter()
            .filter(|r| r.value.is_some() || r.ttl_ms > away)
            .map(|r| EntryRecord {
                ttl_ms: if r.value.is_none() {
                    r.ttl_ms - away
                } else {
                    0
                },
                ..r.clone()
            })
            .collect();
        self.call(i, |c, now, rt| c.restore(now, records, rt));
        self.rejoin(i, plan);
    }

    fn rejoin(&mut self, i: usize, plan: Restart) {
        for n in &plan.networks {
            self.join_network(i, n);
        }
        for (n, t, k, v) in plan.entries {
            if let Err(e) = self.put(i, &n, &t, &k, v) {
                tracing::warn!(node = i, error = %e, "restart: re-put failed");
            }
        }
        let seeds = self.seeds.clone();
        self.call(i, |c, now, rt| c.join(now, &seeds, rt));
    }

    /// Schedule `call` on node `i` at time `at` (not before now).
    pub fn at(&mut self, at: Duration, i: usize, call: Call) {
        let at = at.max(self.now);
        self.push(at, Ev::Call { node: i, call });
    }

    // ------------------------------------------------------------ running

    /// Process every event up to and including time `t`; then `now == t`.
    pub fn run_until(&mut self, t: Duration) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > t {
                break;
            }
            let ((at, _), ev) = entry.remove_entry();
            self.now = at;
            self.dispatch(ev);
        }
        self.now = self.now.max(t);
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Run until no live node has anything queued for gossip and no table frame is in flight,
    /// checking every `gossip_interval`; give up at `limit`. Returns the time it became quiet.
    /// (Membership probing and periodic anti-entropy never stop; they do not count.)
    pub fn run_until_quiet(&mut self, limit: Duration) -> Option<Duration> {
        let step = self.cfg.core.gossip_interval;
        loop {
            if self.is_quiet() {
                return Some(self.now);
            }
            if self.now >= limit {
                return None;
            }
            self.run_until((self.now + step).min(limit));
        }
    }

    fn is_quiet(&self) -> bool {
        self.table_in_flight == 0
            && self
                .nodes
                .iter()
                .all(|n| n.core.as_ref().is_none_or(|c| c.queue_depth() == 0))
    }

    /// Run until [`Sim::check_converged`] holds, checking every `step`; give up at `limit`
    /// with the last error. Returns the time it first held.
    pub fn run_until_converged(
        &mut self,
        limit: Duration,
        step: Duration,
    ) -> Result<Duration, String> {
        loop {
            let r = self.check_converged();
            if r.is_ok() {
                return Ok(self.now);
            }
            if self.now >= limit {
                return Err(r.unwrap_err());
            }
            self.run_until((self.now + step).min(limit));
        }
    }

    /// Run until every live node sees exactly the other live nodes up (see
    /// [`Sim::check_membership`]), checking every `step`; give up at `limit`.
    pub fn run_until_members_agree(
        &mut self,
        limit: Duration,
        step: Duration,
    ) -> Result<Duration, String> {
        loop {
            let r = self.check_membership();
            if r.is_ok() {
                return Ok(self.now);
            }
            if self.now >= limit {
                return Err(r.unwrap_err());
            }
            self.run_until((self.now + step).min(limit));
        }
    }

    fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Frame {
                to,
                life,
                from,
                from_addr,
                table,
                bytes,
            } => {
                if table {
                    self.table_in_flight -= 1;
                }
                if self.nodes[to].life != life || !self.connected(from, to) {
                    self.nodes[from].stats.blocked += 1;
                    return;
                }
                let st = &mut self.nodes[to].stats;
                st.msgs_received += 1;
                st.bytes_received += bytes.len() as u64;
                self.call(to, |c, now, rt| c.handle_frame(now, from_addr, &bytes, rt));
            }
            Ev::Timer { node, life, timer } => {
                if self.nodes[node].life == life {
                    self.call(node, |c, now, rt| c.handle_timer(now, timer, rt));
                }
            }
            Ev::Call { node, call } => self.run_call(node, call),
            Ev::Join { node, life } => {
                if self.nodes[node].life == life {
                    self.rejoin(node, Restart::default());
                }
            }
        }
    }

    fn run_call(&mut self, i: usize, call: Call) {
        match call {
            Call::Put {
                network,
                table,
                key,
                value,
            } => {
                if let Err(e) = self.put(i, &network, &table, &key, value) {
                    tracing::debug!(node = i, error = %e, "scheduled put failed");
                }
            }
            Call::Delete {
                network,
                table,
                key,
            } => {
                if let Err(e) = self.delete(i, &network, &table, &key) {
                    tracing::debug!(node = i, error = %e, "scheduled delete failed");
                }
            }
            Call::JoinNetwork(n) => self.join_network(i, &n),
            Call::LeaveNetwork(n) => self.leave_network(i, &n),
            Call::Leave => self.leave(i),
            Call::Crash => self.crash(i),
            Call::Restart(plan) => self.restart(i, plan),
        }
    }

    /// Route what a core call produced.
    fn route(&mut self, i: usize, fx: Effects) {
        let life = self.nodes[i].life;
        for (after, timer) in fx.timers {
            self.push(
                self.now + after,
                Ev::Timer {
                    node: i,
                    life,
                    timer,
                },
            );
        }
        for (to, transport, frame) in fx.sends {
            self.send(i, to, transport, frame);
        }
        for n in fx.notes {
            if let Notification::Entry(e) = &n
                && e.new.is_some()
                && let Some(rec) = self.nodes[i]
                    .core
                    .as_ref()
                    .and_then(|c| c.record(self.now, &e.network, &e.table, &e.key))
            {
                let id = WriteId {
                    network: rec.network,
                    table: rec.table,
                    key: rec.key,
                    owner: rec.owner,
                    version: rec.version,
                };
                if let Some(v) = self.writes.get_mut(&id) {
                    v.seen.entry(i).or_insert(self.now);
                }
            }
            if self.record_events {
                self.nodes[i].events.push((self.now, n));
            }
        }
    }

    fn send(&mut self, from: usize, to_addr: SocketAddr, transport: Transport, frame: Vec<u8>) {
        let is_table = frame.first() == Some(&wire::TAG_TABLE);
        let overhead = match transport {
            Transport::Datagram => DATAGRAM_OVERHEAD,
            Transport::Stream => STREAM_OVERHEAD,
        } as u64;
        let bytes = frame.len() as u64 + overhead;
        let st = &mut self.nodes[from].stats;
        st.msgs_sent += 1;
        st.bytes_sent += bytes;
        if is_table {
            st.table_msgs += 1;
            st.table_bytes += bytes;
        } else {
            st.foca_msgs += 1;
            st.foca_bytes += bytes;
        }
        if transport == Transport::Stream {
            st.stream_msgs += 1;
            st.stream_bytes += bytes;
        }
        let Some(&to) = self.addrs.get(&to_addr) else {
            self.nodes[from].stats.blocked += 1;
            return;
        };
        if !self.connected(from, to) || !self.is_live(to) {
            self.nodes[from].stats.blocked += 1;
            return;
        }
        if transport == Transport::Datagram
            && self.cfg.loss > 0.0
            && self.rng.random_bool(self.cfg.loss.min(1.0))
        {
            self.nodes[from].stats.lost += 1;
            return;
        }
        let mut frame = frame;
        if let Some(filter) = self.filter.as_mut() {
            let meta = FrameMeta {
                now: self.now,
                from,
                to,
                transport,
                frame: &frame,
            };
            match filter(&meta) {
                FrameAction::Deliver => {}
                FrameAction::Drop => {
                    self.nodes[from].stats.blocked += 1;
                    return;
                }
                FrameAction::Replace(b) => frame = b,
            }
        }
        let (lo, hi) = (self.cfg.latency_min, self.cfg.latency_max);
        let latency = if lo == hi {
            lo
        } else {
            Duration::from_nanos(
                self.rng
                    .random_range(lo.as_nanos() as u64..=hi.as_nanos() as u64),
            )
        };
        if is_table {
            self.table_in_flight += 1;
        }
        let life = self.nodes[to].life;
        self.push(
            self.now + latency,
            Ev::Frame {
                to,
                life,
                from,
                from_addr: addr_of(from),
                table: is_table,
                bytes: frame,
            },
        );
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
