//! Writes and their order: own writes (Lamport ticks), entries from peers (last writer
//! wins, with the rules that refuse stale ones), attachments and the entries of an owner that
//! left a network.

use super::*;

impl Core {
    pub(super) fn tick(&mut self) -> u64 {
        // Saturating: the clock witnesses peers' clocks, and peer input must never panic.
        self.clock = self.clock.saturating_add(1);
        self.clock
    }

    pub(super) fn witness(&mut self, v: u64) {
        self.clock = self.clock.max(v);
    }

    /// Write an own entry (value or tombstone), notify, queue it for eager push.
    pub(super) fn write(
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
    pub(super) fn store(&mut self, now: Duration, rec: EntryRecord, rt: &mut impl Runtime) {
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

    pub(super) fn index_attachment(&mut self, key: &str, joined: bool) {
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
    pub(super) fn apply_remote(
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
    pub(super) fn detached_at(&self, network: &str, owner: NodeId) -> Option<u64> {
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
    pub(super) fn drop_detached(
        &mut self,
        network: &str,
        owner: NodeId,
        version: u64,
        rt: &mut impl Runtime,
    ) {
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
}
