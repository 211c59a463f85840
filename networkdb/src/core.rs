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

    // ---------------------------------------------------------------- durability

    /// A counter bumped on every change of a durable entry (stored, replaced, expired): the
    /// owner of the core persists [`Core::durable_records`] whenever it moved.
    pub fn durable_changes(&self) -> u64 {
        self.durable_changes
    }

    /// Every stored record of the durable tables, tombstones included, with residual ttls as
    /// of `now`: what a node persists so that it can [`Core::restore`] them after a restart.
    pub fn durable_records(&self, now: Duration) -> Vec<EntryRecord> {
        let net = &self.nets[CLUSTER];
        net.store
            .entries
            .iter()
            .filter(|(_, s)| s.durable)
            .map(|((t, k), s)| to_record(&CLUSTER.to_owned(), t, k, s, now))
            .collect()
    }

    /// Put back durable records persisted by an earlier life of this node (or by any node):
    /// each is applied with its original owner and version, as if a peer had sent it, so a
    /// newer write or delete made anywhere meanwhile wins when anti-entropy meets it, and
    /// nothing is re-asserted over it. Records of non-durable tables are ignored. Returns how
    /// many were taken. Call before [`Core::join`].
    pub fn restore(
        &mut self,
        now: Duration,
        records: Vec<EntryRecord>,
        rt: &mut impl Runtime,
    ) -> usize {
        let mut taken = 0;
        for rec in records {
            if !self.config.is_durable(&rec.network, &rec.table) {
                continue;
            }
            let before = self.durable_changes;
            self.apply_remote(now, rec, Relay::No, rt);
            if self.durable_changes != before {
                taken += 1;
            }
        }
        taken
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

    // ---------------------------------------------------------------- writes

    fn tick(&mut self) -> u64 {
        // Saturating: the clock witnesses peers' clocks, and peer input must never panic.
        self.clock = self.clock.saturating_add(1);
        self.clock
    }

    fn witness(&mut self, v: u64) {
        self.clock = self.clock.max(v);
    }

    /// Write an own entry (value or tombstone), notify, queue it for eager push.
    fn write(
        &mut self,
        now: Duration,
        network: &str,
        table: &str,
        key: &str,
        value: Option<Vec<u8>>,
        rt: &mut impl Runtime,
    ) {
        let version = self.tick();
        let rec = EntryRecord {
            network: network.to_owned(),
            table: table.to_owned(),
            key: key.to_owned(),
            owner: self.me.id,
            version,
            ttl_ms: if value.is_none() {
                self.config.tombstone_ttl_of(network, table).as_millis() as u64
            } else {
                0
            },
            value,
        };
        self.store(now, rec, rt);
        let budget = self.budget(network);
        if let Some(net) = self.nets.get_mut(network) {
            net.queue.push(table, key, true, budget);
        }
        self.schedule_flush(rt);
    }

    /// Store a record that won the LWW comparison; emit the visible change.
    fn store(&mut self, now: Duration, rec: EntryRecord, rt: &mut impl Runtime) {
        let fp = wire::fingerprint(&rec);
        let durable = self.config.is_durable(&rec.network, &rec.table);
        let stored = Stored {
            owner: rec.owner,
            version: rec.version,
            // A peer's residual never extends a tombstone beyond our own ttl for it.
            reap_at: now
                + Duration::from_millis(rec.ttl_ms)
                    .min(self.config.tombstone_ttl_of(&rec.network, &rec.table)),
            value: rec.value,
            fp,
            durable,
        };
        if durable {
            self.durable_changes += 1;
        }
        let Some(net) = self.nets.get_mut(&rec.network) else {
            return;
        };
        let old = net
            .store
            .put(rec.table.clone(), rec.key.clone(), stored.clone());
        self.stats.entries_applied += 1;
        let net = &self.nets[&rec.network];
        let was = old.as_ref().filter(|o| self.is_visible(net, o));
        let is = Some(&stored).filter(|s| self.is_visible(net, s));
        let event = |kind, old: Option<&Stored>, new: Option<&Stored>, owner| Event {
            kind,
            network: rec.network.clone(),
            table: rec.table.clone(),
            key: rec.key.clone(),
            owner,
            old: old.and_then(|o| o.value.clone()),
            new: new.and_then(|n| n.value.clone()),
        };
        let ev = match (was, is) {
            (None, Some(n)) => Some(event(EventKind::Create, None, Some(n), n.owner)),
            (Some(o), None) => Some(event(EventKind::Delete, Some(o), None, o.owner)),
            (Some(o), Some(n)) if o.value != n.value || o.owner != n.owner => {
                Some(event(EventKind::Update, Some(o), Some(n), n.owner))
            }
            _ => None,
        };
        if rec.network == CLUSTER && rec.table == ATTACH_TABLE {
            self.index_attachment(&rec.key, stored.value.is_some());
            if stored.value.is_none()
                && let Some((network, node)) = parse_attach_key(&rec.key)
            {
                self.drop_detached(network, node, stored.version, rt);
            }
            // A new member of a network may be what queued entries were waiting for.
            self.schedule_gossip(rt);
        }
        if let Some(ev) = ev {
            rt.notify(Notification::Entry(ev));
        }
    }

    fn index_attachment(&mut self, key: &str, joined: bool) {
        let Some((network, node)) = parse_attach_key(key) else {
            return;
        };
        if node == self.me.id {
            return;
        }
        let set = self.attached.entry(network.to_owned()).or_default();
        if joined {
            set.insert(node);
        } else {
            set.remove(&node);
            if set.is_empty() {
                self.attached.remove(network);
            }
        }
    }

    /// Apply a record from a peer. `relay` queues it for further gossip when it was new.
    fn apply_remote(
        &mut self,
        now: Duration,
        rec: EntryRecord,
        relay: Relay,
        rt: &mut impl Runtime,
    ) {
        self.witness(rec.version);
        let Some(net) = self.nets.get(&rec.network) else {
            self.stats.dropped_not_member += 1;
            return;
        };
        if rec.value.is_none() && rec.ttl_ms == 0 {
            self.stats.dropped_stale += 1;
            return;
        }
        if rec.owner != self.me.id
            && rec.value.is_some()
            && self
                .detached_at(&rec.network, rec.owner)
                .is_some_and(|v| rec.version < v)
        {
            // Written before its owner left the network (see `drop_detached`).
            self.stats.dropped_stale += 1;
            return;
        }
        let existing = net.store.get(&rec.table, &rec.key);
        let order = record_order(&rec);
        if existing.is_some_and(|e| e.order() >= order) {
            self.stats.dropped_stale += 1;
            return;
        }
        // Durable entries do not belong to their writer: whoever wrote them (an earlier life
        // of this node included), last writer wins, and the writer's membership is irrelevant.
        let durable = self.config.is_durable(&rec.network, &rec.table);
        if rec.owner == self.me.id && !durable {
            // A write of ours that is newer than what we hold: it comes from an earlier life of
            // this node. Re-assert what we hold now, or tombstone what we no longer have.
            let (network, table, key) = (rec.network.clone(), rec.table.clone(), rec.key.clone());
            let current = existing.and_then(|e| e.value.clone());
            if current.is_none() && rec.value.is_none() {
                self.store(now, rec, rt);
            } else {
                self.witness(order.0);
                self.write(now, &network, &table, &key, current, rt);
            }
            self.stats.reclaimed += 1;
            return;
        }
        if !durable
            && self
                .nodes
                .get(&rec.owner)
                .is_some_and(|n| n.reaped && !n.up)
        {
            self.stats.dropped_reaped += 1;
            return;
        }
        // Unknown to membership so far: stored suspended until foca reports it up, and
        // reaped like a down node if it never does.
        if !durable
            && rec.owner != self.me.id
            && let std::collections::btree_map::Entry::Vacant(v) = self.nodes.entry(rec.owner)
        {
            v.insert(NodeState {
                peer: None,
                up: false,
                down_since: now,
                reaped: false,
            });
            self.unknown_owner = true;
        }
        let (network, table, key) = (rec.network.clone(), rec.table.clone(), rec.key.clone());
        self.store(now, rec, rt);
        let budget = match relay {
            Relay::Full => self.budget(&network),
            Relay::Once => 1,
            Relay::No => return,
        };
        if let Some(net) = self.nets.get_mut(&network) {
            net.queue.push(&table, &key, false, budget);
        }
        self.schedule_flush(rt);
    }

    /// The version at which `owner` left `network`: Some while the current attachment
    /// record of `owner` to `network` is a tombstone.
    fn detached_at(&self, network: &str, owner: NodeId) -> Option<u64> {
        if network == CLUSTER {
            return None;
        }
        self.nets[CLUSTER]
            .store
            .get(ATTACH_TABLE, &attach_key(network, owner))
            .filter(|s| s.value.is_none())
            .map(|s| s.version)
    }

    /// `owner` left `network` at `version`: the live entries it wrote there before are
    /// obsolete. Drop them (watchers see Delete for what was visible); `apply_remote` refuses
    /// them from now on. Its tombstones stay, like any tombstone, so that the deletes it made
    /// keep winning over older writes of others until they expire.
    ///
    /// This is what removes the entries of a node that left a network while no member could
    /// hear its tombstones (it left during a partition), or that restarted without joining
    /// the network again (its new life tombstones the attachment of its earlier life).
    fn drop_detached(&mut self, network: &str, owner: NodeId, version: u64, rt: &mut impl Runtime) {
        if owner == self.me.id {
            return;
        }
        let Some(net) = self.nets.get(network) else {
            return;
        };
        let keys: Vec<(String, String)> = net
            .store
            .entries
            .iter()
            .filter(|(_, s)| s.owner == owner && s.version < version && s.value.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for (t, k) in keys {
            let net = &self.nets[network];
            let visible = net
                .store
                .get(&t, &k)
                .filter(|s| self.is_visible(net, s))
                .and_then(|s| s.value.clone());
            if let Some(n) = self.nets.get_mut(network) {
                n.store.remove(&t, &k);
            }
            if let Some(old) = visible {
                rt.notify(Notification::Entry(Event {
                    kind: EventKind::Delete,
                    network: network.to_owned(),
                    table: t,
                    key: k,
                    owner,
                    old: Some(old),
                    new: None,
                }));
            }
        }
    }

    fn is_visible(&self, net: &Net, s: &Stored) -> bool {
        s.value.is_some()
            && net.leaving_until.is_none()
            && (s.durable
                || s.owner == self.me.id
                || self.nodes.get(&s.owner).is_some_and(|n| n.up))
    }

    /// Create events for the visible entries of a network whose table passes `filter`.
    fn visible_events(&self, network: &str, filter: impl Fn(&str) -> bool) -> Vec<Event> {
        let Some(net) = self.nets.get(network) else {
            return Vec::new();
        };
        net.store
            .entries
            .iter()
            .filter(|((t, _), s)| filter(t) && self.is_visible(net, s))
            .map(|((t, k), s)| Event {
                kind: EventKind::Create,
                network: network.to_owned(),
                table: t.clone(),
                key: k.clone(),
                owner: s.owner,
                old: None,
                new: s.value.clone(),
            })
            .collect()
    }

    /// Visibility of every entry of `owner` flips (node up or down): emit the events.
    fn owner_visibility_changed(&self, owner: NodeId, up: bool, rt: &mut impl Runtime) {
        for (nid, net) in &self.nets {
            if net.leaving_until.is_some() {
                continue;
            }
            for ((t, k), s) in &net.store.entries {
                if s.owner != owner || s.value.is_none() || s.durable {
                    continue;
                }
                rt.notify(Notification::Entry(Event {
                    kind: if up {
                        EventKind::Create
                    } else {
                        EventKind::Delete
                    },
                    network: nid.clone(),
                    table: t.clone(),
                    key: k.clone(),
                    owner,
                    old: (!up).then(|| s.value.clone()).flatten(),
                    new: up.then(|| s.value.clone()).flatten(),
                }));
            }
        }
    }

    // ---------------------------------------------------------------- dissemination

    fn budget(&self, network: &str) -> u32 {
        let n = self.candidates(network).len() as f64 + 1.0;
        let rounds = (n + 1.0).log10().ceil().max(1.0) as u32;
        (self.config.retransmit_mult * rounds).max(1)
    }

    fn schedule_flush(&mut self, rt: &mut impl Runtime) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            rt.schedule(Duration::ZERO, Timer::Flush);
        }
    }

    /// Schedule a gossip round if anything is queued for a network that has live members.
    /// Called after writes, rounds, and whenever a member or an attachment shows up.
    fn schedule_gossip(&mut self, rt: &mut impl Runtime) {
        if !self.gossip_scheduled
            && self
                .nets
                .iter()
                .any(|(id, n)| !n.queue.is_empty() && self.has_candidates(id))
        {
            self.gossip_scheduled = true;
            rt.schedule(self.config.gossip_interval, Timer::Gossip);
        }
    }

    /// Eager push: what was queued since the last flush goes to `fanout` members at once.
    fn flush(&mut self, now: Duration, rt: &mut impl Runtime) {
        // A network without live members keeps its queue (and its budget) until one shows up.
        let networks: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(id, n)| n.queue.has_eager() && self.has_candidates(id))
            .map(|(id, _)| id.clone())
            .collect();
        for nid in networks {
            let keys = self
                .nets
                .get_mut(&nid)
                .map(|n| n.queue.take_eager())
                .unwrap_or_default();
            self.send_keys(now, &nid, &keys, rt);
        }
        self.schedule_gossip(rt);
    }

    /// A gossip round: every network with queued entries sends them to `fanout` members.
    fn gossip_round(&mut self, now: Duration, rt: &mut impl Runtime) {
        self.stats.gossip_rounds += 1;
        let networks: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(id, n)| !n.queue.is_empty() && self.has_candidates(id))
            .map(|(id, _)| id.clone())
            .collect();
        for nid in networks {
            let keys = self
                .nets
                .get_mut(&nid)
                .map(|n| n.queue.take_round())
                .unwrap_or_default();
            self.send_keys(now, &nid, &keys, rt);
        }
        self.schedule_gossip(rt);
    }

    /// Send the current state of `keys` of a network to `fanout` random members, packed into
    /// as few datagrams as fit.
    fn send_keys(
        &mut self,
        now: Duration,
        network: &str,
        keys: &[(String, String)],
        rt: &mut impl Runtime,
    ) {
        if keys.is_empty() {
            return;
        }
        let targets = self.random_members(network, self.config.fanout);
        if targets.is_empty() {
            return;
        }
        let Some(net) = self.nets.get(network) else {
            return;
        };
        let nid = network.to_owned();
        let records: Vec<EntryRecord> = keys
            .iter()
            .filter_map(|(t, k)| net.store.get(t, k).map(|s| to_record(&nid, t, k, s, now)))
            .collect();
        let frames = self.pack_gossip(records);
        for peer in &targets {
            for (transport, frame) in &frames {
                self.stats.gossip_out += 1;
                rt.send(*peer, *transport, frame.clone());
            }
        }
    }

    /// Pack records into gossip frames of at most `max_packet` bytes; a record too big for a
    /// datagram travels alone by stream.
    fn pack_gossip(&self, records: Vec<EntryRecord>) -> Vec<(Transport, Vec<u8>)> {
        // Frame overhead: tag, version, enum tag, from, clock (varints), vec length.
        const OVERHEAD: usize = 2 + 1 + 10 + 10 + 5;
        let mut out = Vec::new();
        let mut batch = Vec::new();
        let mut size = OVERHEAD;
        let encode = |entries: Vec<EntryRecord>| {
            wire::encode(&Message::Gossip(Gossip {
                from: self.me.id,
                clock: self.clock,
                entries,
            }))
        };
        for rec in records {
            let len = postcard::to_stdvec(&rec).map_or(usize::MAX, |v| v.len());
            if OVERHEAD + len > self.config.max_packet {
                out.push((Transport::Stream, encode(vec![rec])));
                continue;
            }
            if size + len > self.config.max_packet {
                out.push((Transport::Datagram, encode(std::mem::take(&mut batch))));
                size = OVERHEAD;
            }
            size += len;
            batch.push(rec);
        }
        if !batch.is_empty() {
            out.push((Transport::Datagram, encode(batch)));
        }
        out
    }

    fn has_candidates(&self, network: &str) -> bool {
        let up = |id: &NodeId| self.nodes.get(id).is_some_and(|n| n.up && n.peer.is_some());
        if network == CLUSTER {
            self.nodes.keys().any(up)
        } else {
            self.attached.get(network).is_some_and(|s| s.iter().any(up))
        }
    }

    /// Live members of a network other than self (every live node for the cluster scope).
    fn candidates(&self, network: &str) -> Vec<NodeId> {
        let up = |id: &NodeId| self.nodes.get(id).is_some_and(|n| n.up && n.peer.is_some());
        if network == CLUSTER {
            self.nodes.keys().filter(|id| up(id)).copied().collect()
        } else {
            self.attached
                .get(network)
                .map(|s| s.iter().filter(|id| up(id)).copied().collect())
                .unwrap_or_default()
        }
    }

    fn random_members(&mut self, network: &str, n: usize) -> Vec<SocketAddr> {
        let mut c = self.candidates(network);
        c.shuffle(&mut self.rng);
        c.truncate(n);
        c.iter()
            .filter_map(|id| {
                self.nodes
                    .get(id)
                    .and_then(|s| s.peer.as_ref())
                    .map(|p| p.addr)
            })
            .collect()
    }

    fn addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes
            .get(&id)
            .and_then(|n| n.peer.as_ref())
            .map(|p| p.addr)
    }

    // ---------------------------------------------------------------- anti-entropy

    fn periodic_sync(&mut self, now: Duration, rt: &mut impl Runtime) {
        self.stats.sync_rounds += 1;
        let mut by_peer: BTreeMap<SocketAddr, Vec<NetworkId>> = BTreeMap::new();
        let nets: Vec<NetworkId> = self.nets.keys().cloned().collect();
        for nid in nets {
            if let Some(peer) = self.random_members(&nid, 1).pop() {
                by_peer.entry(peer).or_default().push(nid);
            }
        }
        for (peer, nets) in by_peer {
            self.send_digests(now, peer, &nets, rt);
        }
    }

    /// Sync every network with a random member of it (on join and rejoin).
    fn sync_all(&mut self, now: Duration, rt: &mut impl Runtime) {
        self.periodic_sync(now, rt);
    }

    fn send_digests(
        &mut self,
        _now: Duration,
        peer: SocketAddr,
        networks: &[NetworkId],
        rt: &mut impl Runtime,
    ) {
        let digests = networks
            .iter()
            .filter_map(|nid| {
                self.nets.get(nid).map(|n| NetworkDigest {
                    network: nid.clone(),
                    owners: n.store.digests(),
                })
            })
            .collect();
        let msg = wire::Sync {
            from: self.me.id,
            addr: Some(self.me.addr),
            clock: self.clock,
            digests,
            members_hash: Some(self.members_hash()),
            ..Default::default()
        };
        self.send_sync(peer, msg, rt);
    }

    /// Anti-entropy always rides the reliable transport: it is what guarantees convergence
    /// whatever gossip lost, and one lost step of an exchange would otherwise cost a whole
    /// sync period (with 10% loss, about a quarter of all three-step exchanges).
    ///
    /// Every message carries this node's own attachment records of the networks it is about,
    /// so the receiver never refuses to answer for lack of a membership fact it lost.
    fn send_sync(&mut self, peer: SocketAddr, mut msg: wire::Sync, rt: &mut impl Runtime) {
        let networks: BTreeSet<&str> = msg
            .digests
            .iter()
            .map(|d| d.network.as_str())
            .chain(msg.want_all.iter().map(|w| w.network.as_str()))
            .chain(msg.buckets.iter().map(|b| b.network.as_str()))
            .chain(msg.want_buckets.iter().map(|b| b.network.as_str()))
            .filter(|n| *n != CLUSTER)
            .collect();
        let cluster = &self.nets[CLUSTER];
        let attachments: Vec<EntryRecord> = networks
            .into_iter()
            .filter_map(|n| {
                let key = attach_key(n, self.me.id);
                cluster
                    .store
                    .get(ATTACH_TABLE, &key)
                    .map(|s| to_record(&CLUSTER.to_owned(), ATTACH_TABLE, &key, s, Duration::ZERO))
            })
            .filter(|r| r.value.is_some())
            .collect();
        msg.entries.extend(attachments);
        let frame = wire::encode(&Message::Sync(msg));
        self.stats.sync_out += 1;
        rt.send(peer, Transport::Stream, frame);
    }

    fn handle_sync(
        &mut self,
        now: Duration,
        from: SocketAddr,
        s: wire::Sync,
        rt: &mut impl Runtime,
    ) {
        self.witness(s.clock);
        // Replies go to the address the request came from: its IP, with the sender's gossip
        // port (`from` is a stream's ephemeral port; the sender may not be a member we know
        // yet, it just joined). Never to an address the frame merely names.
        let reply_to = self
            .addr_of(s.from)
            .or(s.addr)
            .map(|a| SocketAddr::new(from.ip(), a.port()));
        let asker = s.from;
        if !s.members.is_empty() {
            let mut acc = foca::AccumulatingRuntime::new();
            if let Err(e) = self.foca.apply_many(s.members.into_iter(), false, &mut acc) {
                tracing::debug!(error = %e, "membership state from a peer");
            }
            self.drain_foca(now, acc, rt);
        }
        let send_members =
            s.want_members || s.members_hash.is_some_and(|h| h != self.members_hash());
        let want_members = s.members_hash.is_some_and(|h| h != self.members_hash());
        // Entries anti-entropy brings are relayed once (one gossip round to `fanout`
        // members, whose relays then spread them as usual), newest first and at most
        // SYNC_RELAY_MAX per message: a repair of a few lost writes reaches the whole network
        // within the sync period, while a bulk catch-up (a joining node learning everything,
        // which the others already hold) does not turn into a broadcast of the whole table.
        let mut entries = s.entries;
        entries.sort_by_key(|r| std::cmp::Reverse((r.version, r.owner)));
        for (n, rec) in entries.into_iter().enumerate() {
            let relay = if n < SYNC_RELAY_MAX {
                Relay::Once
            } else {
                Relay::No
            };
            self.apply_remote(now, rec, relay, rt);
        }
        let mut reply = wire::Sync {
            from: self.me.id,
            addr: Some(self.me.addr),
            clock: self.clock,
            want_members,
            members: if send_members {
                self.membership_state()
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        for d in s.digests {
            if !self.serves(&d.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            let Some(net) = self.nets.get(&d.network) else {
                continue;
            };
            let theirs: BTreeMap<NodeId, _> = d.owners.iter().map(|o| (o.owner, *o)).collect();
            for mine in net.store.digests() {
                match theirs.get(&mine.owner) {
                    None => reply
                        .entries
                        .extend(net.store.records_of(&d.network, mine.owner, None, now)),
                    Some(t) if *t != mine => reply.buckets.push(OwnerBuckets {
                        network: d.network.clone(),
                        owner: mine.owner,
                        buckets: net.store.buckets(mine.owner),
                    }),
                    Some(_) => {}
                }
            }
            for t in d
                .owners
                .iter()
                .filter(|t| !net.store.owners.contains_key(&t.owner))
            {
                reply.want_all.push(OwnerRef {
                    network: d.network.clone(),
                    owner: t.owner,
                });
            }
        }
        for w in s.want_all {
            if !self.serves(&w.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            if let Some(net) = self.nets.get(&w.network) {
                reply
                    .entries
                    .extend(net.store.records_of(&w.network, w.owner, None, now));
            }
        }
        for ob in s.buckets {
            if !self.serves(&ob.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            let Some(net) = self.nets.get(&ob.network) else {
                continue;
            };
            let theirs: BTreeMap<u16, _> = ob.buckets.iter().map(|b| (b.bucket, *b)).collect();
            let mine: BTreeMap<u16, _> = net
                .store
                .buckets(ob.owner)
                .into_iter()
                .map(|b| (b.bucket, b))
                .collect();
            let differing: Vec<u16> = theirs
                .keys()
                .chain(mine.keys())
                .copied()
                .collect::<BTreeSet<u16>>()
                .into_iter()
                .filter(|b| theirs.get(b) != mine.get(b))
                .collect();
            if differing.is_empty() {
                continue;
            }
            reply.entries.extend(net.store.records_of(
                &ob.network,
                ob.owner,
                Some(&differing),
                now,
            ));
            let they_have: Vec<u16> = differing
                .iter()
                .copied()
                .filter(|b| theirs.contains_key(b))
                .collect();
            if !they_have.is_empty() {
                reply.want_buckets.push(BucketRef {
                    network: ob.network,
                    owner: ob.owner,
                    buckets: they_have,
                });
            }
        }
        for wb in s.want_buckets {
            if !self.serves(&wb.network, asker) {
                self.stats.sync_refused += 1;
                continue;
            }
            if let Some(net) = self.nets.get(&wb.network) {
                reply.entries.extend(net.store.records_of(
                    &wb.network,
                    wb.owner,
                    Some(&wb.buckets),
                    now,
                ));
            }
        }
        if reply.is_empty() {
            return;
        }
        match reply_to {
            Some(to) => self.send_sync(to, reply, rt),
            None => {
                self.stats.sync_refused += 1;
                tracing::debug!(%from, "sync from a peer that named no gossip address: not answered");
            }
        }
    }

    /// Whether anti-entropy answers `asker` about `network`: the cluster scope for anyone
    /// (every member is in it), another network only for a node attached to it. A request
    /// carries the asker's attachments (see [`Core::send_sync`]), so a fresh attachment is
    /// known by the time its first request is answered.
    fn serves(&self, network: &str, asker: NodeId) -> bool {
        network == CLUSTER
            || self
                .attached
                .get(network)
                .is_some_and(|nodes| nodes.contains(&asker))
    }

    // ---------------------------------------------------------------- reaping

    fn reap(&mut self, now: Duration, rt: &mut impl Runtime) {
        let mut durable_expired = 0;
        for net in self.nets.values_mut() {
            let expired: Vec<(String, String)> = net
                .store
                .entries
                .iter()
                .filter(|(_, s)| s.value.is_none() && s.reap_at <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for (t, k) in expired {
                if net.store.remove(&t, &k).is_some_and(|s| s.durable) {
                    durable_expired += 1;
                }
                self.stats.tombstones_reaped += 1;
            }
        }
        self.durable_changes += durable_expired;
        let node_reap = self.config.node_reap;
        let to_reap: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.up && !n.reaped && now.saturating_sub(n.down_since) >= node_reap)
            .map(|(id, _)| *id)
            .collect();
        for id in to_reap {
            for net in self.nets.values_mut() {
                // Durable entries describe the cluster, not the node: they stay.
                let keys: Vec<(String, String)> = net
                    .store
                    .entries
                    .iter()
                    .filter(|(_, s)| s.owner == id && !s.durable)
                    .map(|(k, _)| k.clone())
                    .collect();
                for (t, k) in keys {
                    net.store.remove(&t, &k);
                }
            }
            let keys: Vec<String> = self.nets[CLUSTER]
                .store
                .entries
                .keys()
                .filter(|(t, k)| {
                    t == ATTACH_TABLE && parse_attach_key(k).is_some_and(|(_, n)| n == id)
                })
                .map(|(_, k)| k.clone())
                .collect();
            for k in keys {
                self.index_attachment(&k, false);
            }
            if let Some(n) = self.nodes.get_mut(&id) {
                n.reaped = true;
            }
            self.stats.nodes_reaped += 1;
        }
        let done: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(_, n)| n.leaving_until.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for nid in done {
            self.nets.remove(&nid);
        }
        let _ = rt;
    }

    // ---------------------------------------------------------------- membership

    /// Announce to the seeds; while foca is disconnected also to a few known members (the
    /// seeds may be gone, or this node may be the only seed).
    fn announce_seeds(&mut self, now: Duration, rt: &mut impl Runtime) {
        let mut acc = foca::AccumulatingRuntime::new();
        let mut targets = self.seeds.clone();
        if !self.foca_active {
            let mut known: Vec<SocketAddr> = self
                .nodes
                .values()
                .filter_map(|n| n.peer.as_ref().map(|p| p.addr))
                .filter(|a| !targets.contains(a))
                .collect();
            known.shuffle(&mut self.rng);
            targets.extend(known.into_iter().take(3));
        }
        for seed in targets {
            let dst = Peer {
                id: NodeId::UNKNOWN,
                addr: seed,
                generation: 0,
            };
            if let Err(e) = self.foca.announce(dst, &mut acc) {
                tracing::debug!(%seed, error = %e, "announce");
            }
        }
        self.drain_foca(now, acc, rt);
    }

    fn drain_foca(
        &mut self,
        now: Duration,
        mut acc: foca::AccumulatingRuntime<Peer>,
        rt: &mut impl Runtime,
    ) {
        while let Some((to, data)) = acc.to_send() {
            self.stats.foca_out += 1;
            rt.send(to.addr, Transport::Datagram, wire::encode_foca(&data));
        }
        while let Some((after, t)) = acc.to_schedule() {
            rt.schedule(after, Timer::Foca(t));
        }
        while let Some(n) = acc.to_notify() {
            self.on_foca(now, n, rt);
        }
    }

    fn on_foca(&mut self, now: Duration, n: OwnedNotification<Peer>, rt: &mut impl Runtime) {
        match n {
            OwnedNotification::MemberUp(peer) => self.member_up(now, peer, rt),
            OwnedNotification::MemberDown(peer) => self.member_down(now, peer, rt),
            OwnedNotification::Rename(old, new) => {
                if old.id != new.id {
                    self.member_down(now, old, rt);
                } else if let Some(n) = self.nodes.get_mut(&new.id) {
                    n.peer = Some(new);
                }
            }
            OwnedNotification::Active => {
                self.foca_active = true;
                self.inactive_since = None;
                self.reconcile_members(now, rt);
                tracing::info!(me = ?self.me, "joined the cluster");
                self.sync_all(now, rt);
            }
            OwnedNotification::Rejoin(me) => {
                tracing::warn!(
                    ?me,
                    "declared down by the cluster; rejoined with a new generation"
                );
                self.me = me;
                self.became_inactive(now);
                self.sync_all(now, rt);
            }
            OwnedNotification::Idle => {
                self.became_inactive(now);
                tracing::info!("no live members");
            }
            OwnedNotification::Defunct => {
                self.became_inactive(now);
                if self.joined {
                    tracing::warn!("declared down and cannot rejoin");
                } else {
                    tracing::debug!("left the cluster");
                }
            }
        }
    }

    fn became_inactive(&mut self, now: Duration) {
        if self.foca_active || self.inactive_since.is_none() {
            self.inactive_since = Some(now);
        }
        self.foca_active = false;
    }

    /// While foca is disconnected (it renewed our identity and nobody answered yet) it
    /// neither probes nor reports failures, so the members it last saw up would stay up here
    /// forever, e.g. when the renewal coincided with a partition. Once it has been inactive
    /// for longer than failure detection takes, consider every member down; `Active`
    /// reconciles with foca's view again.
    fn cut_off(&mut self, now: Duration, rt: &mut impl Runtime) {
        let detection = self.config.suspect_to_down + self.config.probe_period * 2;
        if self.foca_active || self.inactive_since.is_none_or(|t| now < t + detection) {
            return;
        }
        let up: Vec<Peer> = self
            .nodes
            .values()
            .filter(|n| n.up)
            .filter_map(|n| n.peer.clone())
            .collect();
        for peer in up {
            self.member_down(now, peer, rt);
        }
    }

    /// Make our view of who is up match foca's active members (after foca reconnected).
    fn reconcile_members(&mut self, now: Duration, rt: &mut impl Runtime) {
        let active: BTreeMap<NodeId, Peer> = self
            .foca
            .iter_members()
            .map(|m| (m.id().id, m.id().clone()))
            .collect();
        let stale: Vec<Peer> = self
            .nodes
            .iter()
            .filter(|(id, n)| n.up && !active.contains_key(id))
            .filter_map(|(_, n)| n.peer.clone())
            .collect();
        for peer in stale {
            self.member_down(now, peer, rt);
        }
        for (id, peer) in active {
            let current = self
                .nodes
                .get(&id)
                .is_some_and(|n| n.up && n.peer.as_ref() == Some(&peer));
            if !current {
                self.member_up(now, peer, rt);
            }
        }
    }

    /// Hash of this node's membership view: itself and every member foca holds alive or
    /// suspect, by (id, address, generation). Equal on two nodes that agree on who is up.
    fn members_hash(&self) -> u64 {
        let mut ids: Vec<(NodeId, SocketAddr, u64)> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != foca::State::Down)
            .map(|m| (m.id().id, m.id().addr, m.id().generation))
            .chain(std::iter::once((
                self.me.id,
                self.me.addr,
                self.me.generation,
            )))
            .collect();
        ids.sort();
        let mut bytes = Vec::with_capacity(ids.len() * 40);
        for (id, addr, generation) in ids {
            bytes.extend_from_slice(&id.0.to_le_bytes());
            bytes.extend_from_slice(addr.to_string().as_bytes());
            bytes.extend_from_slice(&generation.to_le_bytes());
        }
        wire::hash_bytes(&bytes)
    }

    /// foca's membership state plus this node itself, for a peer's `apply_many`.
    fn membership_state(&self) -> Vec<foca::Member<Peer>> {
        self.foca
            .iter_membership_state()
            .cloned()
            .chain(std::iter::once(foca::Member::alive(self.me.clone())))
            .collect()
    }

    /// Keep foca's retransmission budget matched to the cluster size (it only changes when the
    /// size crosses a power of ten, so this is cheap).
    fn resize_foca(&mut self) {
        let size = self.nodes.values().filter(|n| n.up).count() + 1;
        // Only the budget changes; foca accepts that at runtime.
        let _ = self.foca.set_config(self.config.foca(size));
    }

    fn member_up(&mut self, now: Duration, peer: Peer, rt: &mut impl Runtime) {
        let id = peer.id;
        if id == NodeId::UNKNOWN {
            return;
        }
        let n = self.nodes.entry(id).or_insert(NodeState {
            peer: None,
            up: false,
            down_since: now,
            reaped: false,
        });
        let was_up = n.up;
        n.peer = Some(peer.clone());
        n.up = true;
        n.reaped = false;
        if !was_up {
            self.resize_foca();
            self.owner_visibility_changed(id, true, rt);
            rt.notify(Notification::Member(MemberEvent { peer, up: true }));
            self.sync_with_returning(now, id, rt);
            self.schedule_gossip(rt);
        }
    }

    /// Anti-entropy with a member that just came up (joined, or returned after a partition
    /// or a restart) over the networks we share, so that what either side wrote meanwhile is
    /// exchanged at once instead of at the next periodic sync with a random peer. Rate
    /// limited to one per quarter `sync_interval`: when half a cluster returns at once, one
    /// exchange with any of them is enough (each side already converged internally).
    fn sync_with_returning(&mut self, now: Duration, id: NodeId, rt: &mut impl Runtime) {
        let limit = self.config.sync_interval / 4;
        if self.last_up_sync.is_some_and(|t| now < t + limit) {
            return;
        }
        let Some(addr) = self.addr_of(id) else {
            return;
        };
        let nets: Vec<NetworkId> = self
            .nets
            .iter()
            .filter(|(nid, n)| {
                n.leaving_until.is_none()
                    && (nid.as_str() == CLUSTER
                        || self.attached.get(*nid).is_some_and(|s| s.contains(&id)))
            })
            .map(|(nid, _)| nid.clone())
            .collect();
        self.last_up_sync = Some(now);
        self.send_digests(now, addr, &nets, rt);
    }

    fn member_down(&mut self, now: Duration, peer: Peer, rt: &mut impl Runtime) {
        let Some(n) = self.nodes.get_mut(&peer.id) else {
            return;
        };
        // Only the node's current life going down counts (a restarted node's old identity
        // is declared down after the new one is already up).
        if !n.up || n.peer.as_ref() != Some(&peer) {
            return;
        }
        n.up = false;
        n.down_since = now;
        self.resize_foca();
        self.owner_visibility_changed(peer.id, false, rt);
        rt.notify(Notification::Member(MemberEvent { peer, up: false }));
    }

    fn jitter(&mut self, d: Duration) -> Duration {
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
