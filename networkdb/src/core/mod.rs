//! The sans-IO state machine: tables, dissemination, anti-entropy and foca membership.
//!
//! Contract: the owner (the tokio runtime or the simulator) calls every method with the
//! current monotonic time `now` and a [`Runtime`]; it delivers every frame a peer sent to
//! [`Core::handle_frame`] and every scheduled timer to [`Core::handle_timer`]. The core never
//! blocks, reads a clock, touches a socket or draws OS randomness.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::config::Config;
use crate::effects::{Event, EventKind, MemberEvent, Notification, Runtime, Timer, Transport};
use crate::error::Error;
use crate::queue::Queue;
use crate::stats::Stats;
use crate::store::{Store, Stored, record_order, to_record};
use crate::types::{CLUSTER, EntryRecord, NetworkId, NodeId, Peer};
use crate::wire::{self, BucketRef, Frame, Gossip, Message, NetworkDigest, OwnerBuckets, OwnerRef};

mod anti_entropy;
mod dissemination;
mod durability;
mod entries;
mod membership;
mod suspension;

/// Most entries of one anti-entropy message that are relayed by gossip (see
/// `Core::handle_sync`).
const SYNC_RELAY_MAX: usize = 256;

/// How an entry learnt from a peer is passed on, if it was new here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relay {
    /// Gossip: retransmitted for the network's full budget.
    Full,
    /// Anti-entropy: sent in one gossip round.
    Once,
    No,
}

/// The cluster-scope table holding network attachments, keyed `"<network>/<node id>"`.
pub const ATTACH_TABLE: &str = "_attach";

/// A node as this core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub peer: Peer,
    pub up: bool,
    /// When it was last seen going down (core time), if it is down.
    pub down_since: Option<Duration>,
}

#[derive(Debug)]
struct NodeState {
    peer: Option<Peer>,
    up: bool,
    down_since: Duration,
    /// Down for longer than `node_reap`: its entries were dropped and are refused until it
    /// comes back.
    reaped: bool,
}

#[derive(Debug, Default)]
struct Net {
    store: Store,
    queue: Queue,
    /// Left by the local node: hidden from watchers, still answering syncs until then.
    leaving_until: Option<Duration>,
}

type FocaT = Foca<Peer, PostcardCodec, StdRng, NoCustomBroadcast>;

/// The networkdb state machine. See the module docs for the calling contract.
pub struct Core {
    config: Config,
    me: Peer,
    clock: u64,
    rng: StdRng,
    foca: FocaT,
    nodes: BTreeMap<NodeId, NodeState>,
    nets: BTreeMap<NetworkId, Net>,
    /// network -> nodes attached to it (from `_attach` entries), self excluded.
    attached: BTreeMap<NetworkId, BTreeSet<NodeId>>,
    seeds: Vec<SocketAddr>,
    gossip_scheduled: bool,
    flush_scheduled: bool,
    started: bool,
    /// When this node last synced with a member it saw come up (rate limit, see
    /// [`Core::sync_with_returning`]).
    last_up_sync: Option<Duration>,
    /// foca's connection state as its notifications tell it: true from `Active` until
    /// `Idle`, `Rejoin` or `Defunct`. While false foca neither probes nor gossips, so only an
    /// announce (see `Timer::Rejoin`) brings it back.
    foca_active: bool,
    /// Since when foca is not active (after it was once).
    inactive_since: Option<Duration>,
    /// `join` was called and `leave` was not called since.
    joined: bool,
    /// An entry of an owner unknown to membership arrived (see `handle_frame`).
    unknown_owner: bool,
    /// When a membership comparison was last asked for because of an unknown owner.
    last_member_sync: Option<Duration>,
    /// Bumped on every change of a durable entry (see [`Core::durable_changes`]).
    durable_changes: u64,
    stats: Stats,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core for `me`. `seed` drives every random choice (probe order, gossip targets,
    /// sync peers, jitter), so a simulation with the same seed replays exactly.
    pub fn new(config: Config, me: Peer, seed: u64) -> Result<Core, Error> {
        config.validate()?;
        if me.id == NodeId::UNKNOWN {
            return Err(Error::Invalid {
                field: "node_id",
                reason: "0 is reserved".into(),
            });
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let foca_rng = StdRng::seed_from_u64(rng.random());
        let foca = Foca::new(me.clone(), config.foca(2), foca_rng, PostcardCodec);
        let mut nets = BTreeMap::new();
        nets.insert(CLUSTER.to_owned(), Net::default());
        Ok(Core {
            // Versions start at the generation (the agent uses its start time in ms), so a
            // restarted node's writes order after everything its earlier life wrote.
            clock: me.generation,
            config,
            me,
            rng,
            foca,
            nodes: BTreeMap::new(),
            nets,
            attached: BTreeMap::new(),
            seeds: Vec::new(),
            gossip_scheduled: false,
            flush_scheduled: false,
            started: false,
            last_up_sync: None,
            foca_active: false,
            inactive_since: None,
            joined: false,
            unknown_owner: false,
            last_member_sync: None,
            durable_changes: 0,
            stats: Stats::default(),
        })
    }

    /// This node's identity (its generation changes if the cluster declared it down and it
    /// rejoined).
    pub fn me(&self) -> &Peer {
        &self.me
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Start the periodic timers. Call once, before anything else.
    pub fn start(&mut self, _now: Duration, rt: &mut impl Runtime) {
        if self.started {
            return;
        }
        self.started = true;
        let sync = self.jitter(self.config.sync_interval);
        rt.schedule(sync, Timer::Sync);
        rt.schedule(self.config.reap_interval, Timer::Reap);
        rt.schedule(self.config.rejoin_interval, Timer::Rejoin);
    }

    /// Join the cluster through `seeds` (announce to each; re-announced every
    /// `rejoin_interval` while none of them is a live member).
    pub fn join(&mut self, now: Duration, seeds: &[SocketAddr], rt: &mut impl Runtime) {
        self.seeds = seeds
            .iter()
            .copied()
            .filter(|s| *s != self.me.addr)
            .collect();
        self.joined = true;
        self.announce_seeds(now, rt);
    }

    /// Leave the cluster gracefully: peers see this node down at once (its entries are
    /// suspended on them, as for a failure).
    pub fn leave(&mut self, now: Duration, rt: &mut impl Runtime) {
        let mut acc = foca::AccumulatingRuntime::new();
        if let Err(e) = self.foca.leave_cluster(&mut acc) {
            tracing::debug!(error = %e, "foca leave");
        }
        self.seeds.clear();
        self.joined = false;
        self.drain_foca(now, acc, rt);
    }

    /// Join a network's gossip: from now on its entries are stored and watched here.
    pub fn join_network(&mut self, now: Duration, network: &str, rt: &mut impl Runtime) {
        if network == CLUSTER {
            return;
        }
        let net = self.nets.entry(network.to_owned()).or_default();
        if net.leaving_until.take().is_some() {
            // Rejoined while still draining: entries become visible again.
            let events = self.visible_events(network, |_| true);
            for e in events {
                rt.notify(Notification::Entry(e));
            }
        }
        let key = attach_key(network, self.me.id);
        self.write(now, CLUSTER, ATTACH_TABLE, &key, Some(Vec::new()), rt);
        // Catch up from a known member right away; the periodic sync covers the rest.
        if let Some(peer) = self.random_members(network, 1).pop() {
            self.send_digests(now, peer, &[network.to_owned()], rt);
        }
    }

    /// Leave a network: own entries are tombstoned and pushed, the others are hidden at once
    /// (watchers see Delete), and the network is dropped after a drain period.
    pub fn leave_network(&mut self, now: Duration, network: &str, rt: &mut impl Runtime) {
        if network == CLUSTER || !self.nets.contains_key(network) {
            return;
        }
        let own: Vec<(String, String)> = self.nets[network]
            .store
            .entries
            .iter()
            .filter(|(_, s)| s.owner == self.me.id && s.value.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for (t, k) in own {
            self.write(now, network, &t, &k, None, rt);
        }
        for e in self.visible_events(network, |_| true) {
            rt.notify(Notification::Entry(Event {
                kind: EventKind::Delete,
                old: e.new,
                new: None,
                ..e
            }));
        }
        let drain = self.config.sync_interval * 2;
        if let Some(n) = self.nets.get_mut(network) {
            n.leaving_until = Some(now + drain);
        }
        let key = attach_key(network, self.me.id);
        self.write(now, CLUSTER, ATTACH_TABLE, &key, None, rt);
    }

    /// Networks this node is a member of (the cluster scope `""` included).
    pub fn networks(&self) -> Vec<NetworkId> {
        self.nets
            .iter()
            .filter(|(_, n)| n.leaving_until.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Create or update an entry owned by this node.
    pub fn put(
        &mut self,
        now: Duration,
        network: &str,
        table: &str,
        key: &str,
        value: Vec<u8>,
        rt: &mut impl Runtime,
    ) -> Result<(), Error> {
        self.check_write(network, table, key)?;
        self.write(now, network, table, key, Some(value), rt);
        Ok(())
    }

    /// Delete an entry (a tombstone kept for `tombstone_ttl`). Returns false if there was no
    /// live entry.
    pub fn delete(
        &mut self,
        now: Duration,
        network: &str,
        table: &str,
        key: &str,
        rt: &mut impl Runtime,
    ) -> Result<bool, Error> {
        self.check_write(network, table, key)?;
        let live = self.nets[network]
            .store
            .get(table, key)
            .is_some_and(|s| s.value.is_some());
        if live {
            self.write(now, network, table, key, None, rt);
        }
        Ok(live)
    }

    fn check_write(&self, network: &str, table: &str, key: &str) -> Result<(), Error> {
        if self
            .nets
            .get(network)
            .is_none_or(|n| n.leaving_until.is_some())
        {
            return Err(Error::NotMember(network.to_owned()));
        }
        if table.is_empty() || table.starts_with('_') {
            return Err(Error::Invalid {
                field: "table",
                reason: "must be non-empty and not start with '_' (reserved)".into(),
            });
        }
        if key.is_empty() {
            return Err(Error::Invalid {
                field: "key",
                reason: "must be non-empty".into(),
            });
        }
        Ok(())
    }

    /// The visible value of an entry.
    pub fn get(&self, network: &str, table: &str, key: &str) -> Option<&[u8]> {
        let net = self.nets.get(network)?;
        let s = net.store.get(table, key)?;
        if self.is_visible(net, s) {
            s.value.as_deref()
        } else {
            None
        }
    }

    /// Visible entries matching the filters (None = any), as Create events: what a new
    /// watcher receives first.
    pub fn snapshot(&self, network: Option<&str>, table: Option<&str>) -> Vec<Event> {
        let mut out = Vec::new();
        for (nid, _) in self
            .nets
            .iter()
            .filter(|(n, _)| network.is_none_or(|f| f == *n))
        {
            out.extend(self.visible_events(nid, |t| table.is_none_or(|f| f == t)));
        }
        out
    }

    /// The stored record of one entry (tombstones and suspended entries included), with the
    /// residual ttl as of `now`. For simulators, invariant checks and debugging.
    pub fn record(
        &self,
        now: Duration,
        network: &str,
        table: &str,
        key: &str,
    ) -> Option<EntryRecord> {
        let net = self.nets.get(network)?;
        let s = net.store.get(table, key)?;
        Some(to_record(&network.to_owned(), table, key, s, now))
    }

    /// Every stored record of a network, tombstones and suspended entries included: what
    /// anti-entropy converges. For invariant checks and debugging.
    pub fn records(&self, now: Duration, network: &str) -> Vec<EntryRecord> {
        self.nets.get(network).map_or_else(Vec::new, |n| {
            n.store
                .entries
                .iter()
                .map(|((t, k), s)| to_record(&network.to_owned(), t, k, s, now))
                .collect()
        })
    }

    /// Nodes this core knows of, self excluded.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.nodes
            .values()
            .filter_map(|n| {
                n.peer.clone().map(|peer| MemberInfo {
                    peer,
                    up: n.up,
                    down_since: (!n.up).then_some(n.down_since),
                })
            })
            .collect()
    }

    /// Live nodes attached to `network` (all live nodes for the cluster scope), self excluded.
    pub fn network_members(&self, network: &str) -> Vec<NodeId> {
        self.candidates(network)
    }

    /// Entries waiting in retransmit queues, over all networks.
    pub fn queue_depth(&self) -> usize {
        self.nets.values().map(|n| n.queue.len()).sum()
    }

    // ---------------------------------------------------------------- input

    /// Handle one opened frame received from `from` (datagram or stream message).
    pub fn handle_frame(
        &mut self,
        now: Duration,
        from: SocketAddr,
        bytes: &[u8],
        rt: &mut impl Runtime,
    ) {
        let limit = self.config.max_stream;
        match wire::decode(bytes, limit) {
            Err(e) => {
                self.stats.rejected_frames += 1;
                tracing::debug!(%from, error = %e, "dropped frame");
            }
            Ok(Frame::Foca(packet)) => {
                self.stats.foca_in += 1;
                let mut acc = foca::AccumulatingRuntime::new();
                if let Err(e) = self.foca.handle_data(packet, &mut acc) {
                    self.stats.rejected_frames += 1;
                    tracing::trace!(%from, error = %e, "foca rejected packet");
                }
                self.drain_foca(now, acc, rt);
            }
            Ok(Frame::Table(Message::Gossip(g))) => {
                self.stats.gossip_in += 1;
                self.witness(g.clock);
                for rec in g.entries {
                    self.apply_remote(now, rec, Relay::Full, rt);
                }
                // An entry from a node membership has not told us about: the sender knows
                // it, so compare membership views with the sender now (rate limited) rather
                // than hide the entry until the owner happens to probe us.
                if std::mem::take(&mut self.unknown_owner)
                    && self
                        .last_member_sync
                        .is_none_or(|t| now >= t + self.config.probe_period)
                {
                    self.last_member_sync = Some(now);
                    let msg = wire::Sync {
                        from: self.me.id,
                        addr: Some(self.me.addr),
                        clock: self.clock,
                        members_hash: Some(self.members_hash()),
                        ..Default::default()
                    };
                    self.send_sync(from, msg, rt);
                }
            }
            Ok(Frame::Table(Message::Sync(s))) => {
                self.stats.sync_in += 1;
                self.handle_sync(now, from, s, rt);
            }
        }
    }

    /// Handle a timer scheduled earlier.
    pub fn handle_timer(&mut self, now: Duration, timer: Timer, rt: &mut impl Runtime) {
        match timer {
            Timer::Foca(t) => {
                let mut acc = foca::AccumulatingRuntime::new();
                if let Err(e) = self.foca.handle_timer(t, &mut acc) {
                    tracing::debug!(error = %e, "foca timer");
                }
                self.drain_foca(now, acc, rt);
            }
            Timer::Flush => {
                self.flush_scheduled = false;
                self.flush(now, rt);
            }
            Timer::Gossip => {
                self.gossip_scheduled = false;
                self.gossip_round(now, rt);
            }
            Timer::Sync => {
                self.periodic_sync(now, rt);
                let next = self.jitter(self.config.sync_interval);
                rt.schedule(next, Timer::Sync);
            }
            Timer::Reap => {
                self.reap(now, rt);
                rt.schedule(self.config.reap_interval, Timer::Reap);
            }
            Timer::Rejoin => {
                let seed_alive = self.nodes.values().any(|n| {
                    n.up && n
                        .peer
                        .as_ref()
                        .is_some_and(|p| self.seeds.contains(&p.addr))
                });
                // Our view of who is up goes stale while foca is disconnected (after it renewed
                // our identity, or went idle), so that alone also calls for an announce: when
                // every node of a small cluster renewed at once after a partition, each one's
                // gossip goes to identities that no longer exist and nobody would ever talk
                // again.
                if self.joined && (!self.foca_active || (!self.seeds.is_empty() && !seed_alive)) {
                    self.announce_seeds(now, rt);
                }
                self.cut_off(now, rt);
                rt.schedule(self.config.rejoin_interval, Timer::Rejoin);
            }
        }
    }

    pub(super) fn jitter(&mut self, d: Duration) -> Duration {
        let ms = d.as_millis() as u64;
        let spread = ms / 4;
        Duration::from_millis(ms - spread + self.rng.random_range(0..=2 * spread))
    }
}

fn attach_key(network: &str, node: NodeId) -> String {
    format!("{network}/{node}")
}

fn parse_attach_key(key: &str) -> Option<(&str, NodeId)> {
    let (n, id) = key.rsplit_once('/')?;
    Some((n, id.parse().ok()?))
}
