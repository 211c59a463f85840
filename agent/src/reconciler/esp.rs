//! The IPsec side of encrypted networks: the desired ESP state of this node, computed from
//! the pass's snapshot, the local state and the dataplane key ring, and its reconcile (first in
//! every pass, so the guard is in place before a sandbox of an encrypted network exists).
//!
//! * Guard (fail closed): clear VXLAN of every encrypted network's VNI is dropped on send and
//!   receive, on both VXLAN ports, for every encrypted network the cluster defines (and those
//!   this node still has a sandbox for), whether or not this node is on it.
//! * Peers: the nodes with endpoints on an encrypted network this node has a sandbox for get
//!   an outbound SA (the primary key) and policy for `--vxlan-port-encrypted`, and inbound SAs
//!   for every key; every other node that announces ESP gets inbound SAs, so it can send as
//!   soon as it learns of a shared network.
//! * On a kernel without ESP, no SA or policy is attempted (attach refuses first); the guard
//!   still is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

use overlay::esp::{EspDesired, EspNode, GuardRule, KeyRing};

use super::Reconciler;
use crate::config::DataplaneKind;
use crate::node::Agent;
use crate::state::LocalState;
use crate::tables::Snapshot;

/// What this node's ESP dataplane should hold (pure). `ring` is `None` when no keys are set
/// or the kernel has no ESP (then only the guard is wanted).
pub fn desired(
    agent: &Agent,
    local: &LocalState,
    snap: &Snapshot,
    ring: Option<KeyRing>,
) -> EspDesired {
    let (clear, enc) = (agent.cfg.vxlan_port, agent.cfg.vxlan_port_encrypted);
    let mut guard = BTreeSet::new();
    for def in snap.networks.defs.iter().chain(local.networks.values()) {
        if def.encrypted {
            guard.insert(GuardRule {
                port: enc,
                vni: def.vni,
            });
            guard.insert(GuardRule {
                port: clear,
                vni: def.vni,
            });
        }
    }
    let mut peers: BTreeMap<u64, EspNode> = BTreeMap::new();
    let mut receive_only: BTreeMap<u64, EspNode> = BTreeMap::new();
    if ring.is_some() {
        for def in local.networks.values().filter(|d| d.encrypted) {
            for p in snap.peers.get(&def.id).into_iter().flatten() {
                if p.owner != agent.id {
                    peers.insert(
                        p.owner.0,
                        EspNode {
                            id: p.owner.0,
                            addr: p.record.vtep,
                        },
                    );
                }
            }
        }
        for (id, rec) in &snap.nodes {
            if *id != agent.id && rec.esp && !peers.contains_key(&id.0) {
                receive_only.insert(
                    id.0,
                    EspNode {
                        id: id.0,
                        addr: rec.data_path,
                    },
                );
            }
        }
    }
    EspDesired {
        local: EspNode {
            id: agent.id.0,
            addr: agent.cfg.data_path_addr,
        },
        ring,
        peers: peers.into_values().collect(),
        receive_only: receive_only.into_values().collect(),
        vxlan_ports: vec![enc],
        guard: guard.into_iter().collect(),
    }
}

/// SAs a desired state holds: per peer one outbound and one inbound per key, per
/// receive-only node one inbound per key.
fn sa_count(d: &EspDesired) -> usize {
    let keys = d.ring.as_ref().map_or(0, |r| r.keys().len());
    if keys == 0 {
        return 0;
    }
    d.peers.len() * (1 + keys) + d.receive_only.len() * keys
}

impl Reconciler {
    /// Reconcile the ESP dataplane when its desired state changed, or once per reconcile
    /// interval (repairs drift; an unchanged state costs nothing in between).
    pub(super) async fn reconcile_esp(&self, agent: &Agent, local: &LocalState, snap: &Snapshot) {
        if self.dataplane.kind() != DataplaneKind::Kernel {
            return;
        }
        let ring = if self.dataplane.esp().is_ok() {
            agent.esp_ring()
        } else {
            None
        };
        let desired = desired(agent, local, snap, ring);
        let mut done = self.esp_done.lock().await;
        if done
            .as_ref()
            .is_some_and(|(d, at)| *d == desired && at.elapsed() < agent.cfg.reconcile_interval)
        {
            return;
        }
        match self.dataplane.reconcile_esp(&desired).await {
            Ok(report) => {
                for f in &report.failed {
                    agent.metrics.esp_errors.inc();
                    tracing::warn!(op = %f.op, error = %f.error, "IPsec operation failed (retried on the next reconcile)");
                }
                for c in &report.conflicts {
                    tracing::error!(conflict = ?c, "two IPsec SAs derive the same SPI: traffic under that key fails closed until the next rotation");
                }
                if !report.applied.is_empty() {
                    tracing::info!(ops = report.applied.len(), elapsed = ?report.elapsed, "IPsec reconciled");
                }
                let sas = sa_count(&desired);
                self.esp_sas.store(sas, Ordering::Relaxed);
                agent.metrics.esp_sas.set(sas as i64);
                *done = report.is_ok().then(|| (desired, Instant::now()));
            }
            Err(e) => {
                agent.metrics.esp_errors.inc();
                tracing::warn!(error = %e, "IPsec reconcile failed");
                *done = None;
            }
        }
    }
}
