//! Visibility and suspension: entries of a node that is down are hidden (watchers see
//! Delete) but kept, shown again when it returns, reaped after `node_reap` (durable entries
//! excepted); expired tombstones are dropped.

use super::*;

impl Core {
    pub(super) fn is_visible(&self, net: &Net, s: &Stored) -> bool {
        s.value.is_some()
            && net.leaving_until.is_none()
            && (s.durable
                || s.owner == self.me.id
                || self.nodes.get(&s.owner).is_some_and(|n| n.up))
    }

    /// Create events for the visible entries of a network whose table passes `filter`.
    pub(super) fn visible_events(
        &self,
        network: &str,
        filter: impl Fn(&str) -> bool,
    ) -> Vec<Event> {
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
    pub(super) fn owner_visibility_changed(&self, owner: NodeId, up: bool, rt: &mut impl Runtime) {
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

    pub(super) fn reap(&mut self, now: Duration, rt: &mut impl Runtime) {
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
}
