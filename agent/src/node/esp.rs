//! The IPsec side of encrypted networks: the desired ESP state of this node, computed from
//! the tables, the local state and the dataplane key ring, and its reconcile (run before the
//! overlay's in every pass, so the guard is in place before a sandbox of an encrypted
//! network exists).
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

use overlay::esp::{EspDesired, EspNode, GuardRule};

use super::Agent;
use crate::error::Result;
use crate::records::{self, PEERS, PeerRecord};

impl Agent {
    /// Whether an endpoint may attach to an encrypted network here: ESP in the kernel and a
    /// dataplane key ring. `Err` says which is missing, for the caller.
    pub fn esp_ready(&self, network: &str) -> std::result::Result<(), String> {
        if let Err(why) = self.dataplane.esp() {
            return Err(format!(
                "network {network} is encrypted and this node cannot do IPsec ESP ({why}); \
                 its traffic is never sent in clear, so it cannot attach here"
            ));
        }
        if self.esp_ring().is_none() {
            return Err(format!(
                "network {network} is encrypted and this node has no dataplane keys yet: the \
                 orchestrator sets them with Cluster.SetKeys (swarmnet cluster keys set \
                 --dataplane TAG:HEX)"
            ));
        }
        Ok(())
    }

    /// What this node's ESP dataplane should hold now.
    pub async fn esp_desired(&self) -> Result<EspDesired> {
        let local = self.local();
        let view = self.network_view().await?;
        let (clear, enc) = (self.cfg.vxlan_port, self.cfg.vxlan_port_encrypted);
        let mut guard = BTreeSet::new();
        for def in view.defs.iter().chain(local.networks.values()) {
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
        let supported = self.dataplane.esp().is_ok();
        let mut peers: BTreeMap<u64, EspNode> = BTreeMap::new();
        let mut receive_only: BTreeMap<u64, EspNode> = BTreeMap::new();
        if supported {
            for def in local.networks.values().filter(|d| d.encrypted) {
                for e in self.db.snapshot(Some(&def.id), Some(PEERS)).await? {
                    if e.owner == self.id {
                        continue;
                    }
                    if let Some(p) = e
                        .new
                        .as_deref()
                        .and_then(|v| records::decode::<PeerRecord>(PEERS, &e.key, v))
                    {
                        peers.insert(
                            e.owner.0,
                            EspNode {
                                id: e.owner.0,
                                addr: p.vtep,
                            },
                        );
                    }
                }
            }
            for (id, rec) in self.node_records().await? {
                if id != self.id && rec.esp && !peers.contains_key(&id.0) {
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
        Ok(EspDesired {
            local: EspNode {
                id: self.id.0,
                addr: self.cfg.data_path_addr,
            },
            ring: if supported { self.esp_ring() } else { None },
            peers: peers.into_values().collect(),
            receive_only: receive_only.into_values().collect(),
            vxlan_ports: vec![enc],
            guard: guard.into_iter().collect(),
        })
    }

    /// Reconcile the ESP dataplane when its desired state changed, or once per reconcile
    /// interval (repairs drift; an unchanged state costs nothing in between).
    pub(super) async fn reconcile_esp(&self) {
        if self.dataplane.kind() != crate::config::DataplaneKind::Kernel {
            return;
        }
        let desired = match self.esp_desired().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading the tables for IPsec");
                return;
            }
        };
        let mut done = self.esp_done.lock().await;
        if done
            .as_ref()
            .is_some_and(|(d, at)| *d == desired && at.elapsed() < self.cfg.reconcile_interval)
        {
            return;
        }
        match self.dataplane.reconcile_esp(&desired).await {
            Ok(report) => {
                for f in &report.failed {
                    self.metrics.esp_errors.inc();
                    tracing::warn!(op = %f.op, error = %f.error, "IPsec operation failed (retried on the next reconcile)");
                }
                for c in &report.conflicts {
                    tracing::error!(conflict = ?c, "two IPsec SAs derive the same SPI: traffic under that key fails closed until the next rotation");
                }
                if !report.applied.is_empty() {
                    tracing::info!(ops = report.applied.len(), elapsed = ?report.elapsed, "IPsec reconciled");
                }
                let sas = desired_sa_count(&desired);
                self.esp_sas.store(sas, Ordering::Relaxed);
                self.metrics.esp_sas.set(sas as i64);
                *done = report.is_ok().then(|| (desired, Instant::now()));
            }
            Err(e) => {
                self.metrics.esp_errors.inc();
                tracing::warn!(error = %e, "IPsec reconcile failed");
                *done = None;
            }
        }
    }

    /// Encrypted networks this node has a sandbox for.
    pub fn encrypted_networks_here(&self) -> usize {
        self.local()
            .networks
            .values()
            .filter(|d| d.encrypted)
            .count()
    }
}

/// SAs a desired state holds: per peer one outbound and one inbound per key, per
/// receive-only node one inbound per key.
fn desired_sa_count(d: &EspDesired) -> usize {
    let keys = d.ring.as_ref().map_or(0, |r| r.keys().len());
    if keys == 0 {
        return 0;
    }
    d.peers.len() * (1 + keys) + d.receive_only.len() * keys
}
