//! Invariant checks over the simulated cluster.

use std::collections::{BTreeMap, BTreeSet};

use super::Sim;
use crate::effects::Event;
use crate::types::{NetworkId, NodeId};

/// An entry as convergence compares it: everything but the residual ttl.
type Row = (NodeId, u64, Option<Vec<u8>>);

impl Sim {
    /// Convergence of the stored state: for every network, every live node that is a member
    /// holds identical records (`Core::records`, compared on network, table, key, owner,
    /// version and value, ignoring the residual ttl); and nodes that see the same set of
    /// members up (themselves included) show identical visible state (`Core::snapshot`).
    /// The error names the network, the nodes and the first key that differs.
    pub fn check_converged(&self) -> Result<(), String> {
        let now = self.now;
        let mut networks: BTreeSet<NetworkId> = BTreeSet::new();
        for i in self.live() {
            if let Some(c) = self.core(i) {
                networks.extend(c.networks());
            }
        }
        for net in &networks {
            let members = self.members_of(net);
            let rows = |i: usize| -> BTreeMap<(String, String), Row> {
                self.core(i)
                    .map(|c| c.records(now, net))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| ((r.table, r.key), (r.owner, r.version, r.value)))
                    .collect()
            };
            let Some((&first, rest)) = members.split_first() else {
                continue;
            };
            let reference = rows(first);
            for &i in rest {
                let other = rows(i);
                if let Some(diff) = first_difference(&reference, &other) {
                    return Err(format!(
                        "network {net:?}: records of node {first} ({}) and node {i} ({}) differ \
                         ({} vs {} records); first difference at {diff}",
                        self.id(first),
                        self.id(i),
                        reference.len(),
                        other.len(),
                    ));
                }
            }
            // Visible state, per group of nodes that agree on who is up.
            let mut groups: BTreeMap<BTreeSet<NodeId>, usize> = BTreeMap::new();
            for &i in &members {
                let up = self.up_set(i);
                let snap = self.visible(i, net);
                match groups.get(&up) {
                    None => {
                        groups.insert(up, i);
                    }
                    Some(&j) => {
                        let theirs = self.visible(j, net);
                        if let Some(diff) = first_difference(&theirs, &snap) {
                            return Err(format!(
                                "network {net:?}: visible state of node {j} ({}) and node {i} \
                                 ({}), which see the same members up, differs at {diff}",
                                self.id(j),
                                self.id(i),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Convergence of membership: every live node sees exactly the other live nodes up.
    pub fn check_membership(&self) -> Result<(), String> {
        let live: BTreeSet<NodeId> = self.live().into_iter().map(|i| self.id(i)).collect();
        for i in self.live() {
            let up = self.up_set(i);
            if up != live {
                let missing: Vec<NodeId> = live.difference(&up).copied().collect();
                let extra: Vec<NodeId> = up.difference(&live).copied().collect();
                return Err(format!(
                    "node {i} ({}) sees {} members up, {} are live; not up there: {missing:?}; \
                     up there but crashed: {extra:?}",
                    self.id(i),
                    up.len(),
                    live.len(),
                ));
            }
        }
        Ok(())
    }

    /// Ids of the members node `i` sees up, itself included.
    fn up_set(&self, i: usize) -> BTreeSet<NodeId> {
        let Some(c) = self.core(i) else {
            return BTreeSet::new();
        };
        let mut up: BTreeSet<NodeId> = c
            .members()
            .into_iter()
            .filter(|m| m.up)
            .map(|m| m.peer.id)
            .collect();
        up.insert(c.me().id);
        up
    }

    fn visible(&self, i: usize, net: &str) -> BTreeMap<(String, String), Row> {
        self.core(i)
            .map(|c| c.snapshot(Some(net), None))
            .unwrap_or_default()
            .into_iter()
            .map(|e: Event| ((e.table, e.key), (e.owner, 0, e.new)))
            .collect()
    }
}

/// The first key on which two record maps differ, described.
fn first_difference(
    a: &BTreeMap<(String, String), Row>,
    b: &BTreeMap<(String, String), Row>,
) -> Option<String> {
    let keys: BTreeSet<&(String, String)> = a.keys().chain(b.keys()).collect();
    keys.into_iter().find_map(|k| {
        let (x, y) = (a.get(k), b.get(k));
        (x != y).then(|| format!("{}/{}: {} vs {}", k.0, k.1, describe(x), describe(y)))
    })
}

fn describe(r: Option<&Row>) -> String {
    match r {
        None => "absent".into(),
        Some((owner, version, None)) => format!("tombstone (owner {owner}, version {version})"),
        Some((owner, version, Some(v))) => format!(
            "value {:?} (owner {owner}, version {version})",
            String::from_utf8_lossy(v)
        ),
    }
}
