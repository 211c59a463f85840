//! The desired dataplane of this node, computed from local state and the `peers` tables, and
//! the reconcile call itself (counted in the metrics).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use overlay::{Desired, LocalEndpoint as OverlayEndpoint, NetworkSpec, RemotePeer, Report};

use super::Agent;
use crate::error::{AgentError, Result};
use crate::records::{self, PEERS, PeerRecord};

/// Endpoint id prefix of peers adopted from the kernel after a restart (see
/// [`Agent::adopt_until`]).
pub const ADOPTED_PREFIX: &str = "adopted:";

impl Agent {
    /// What this node's dataplane should hold now.
    pub async fn desired(&self) -> Result<Desired> {
        let local = self.local();
        let mut d = Desired::default();
        for def in local.networks.values() {
            d.networks.push(NetworkSpec {
                id: def.id.clone(),
                vni: def.vni,
                subnet: def.subnet(),
                gateway: def.gateway,
                mtu: self.mtu_for(def),
                vxlan_port: self.vxlan_port_for(def),
            });
            for e in self.db.snapshot(Some(&def.id), Some(PEERS)).await? {
                if e.owner == self.id {
                    continue;
                }
                if let Some(p) = e
                    .new
                    .as_deref()
                    .and_then(|v| records::decode::<PeerRecord>(PEERS, &e.key, v))
                {
                    d.peers.push(RemotePeer {
                        network: def.id.clone(),
                        endpoint: e.key.clone(),
                        ip: p.ip,
                        mac: p.mac,
                        vtep: p.vtep,
                    });
                }
            }
        }
        for ep in local.endpoints.values() {
            d.endpoints.push(OverlayEndpoint {
                id: ep.id.clone(),
                network: ep.network.clone(),
                netns: ep.netns.clone(),
                ifname: ep.ifname.clone(),
                ip: ep.ip,
                prefix_len: ep.prefix,
                mac: ep.mac,
                mtu: ep.mtu,
            });
        }
        d.peers.sort();
        Ok(d)
    }

    /// Keep the remote peers the kernel holds that gossip has not delivered yet (only while
    /// [`Agent::adopt_until`] lasts, right after a restart), so that a restart does not cut
    /// running containers off their peers.
    async fn adopt_kernel_peers(&self, d: &mut Desired) {
        let actual = match self.dataplane.read_actual(d).await {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "reading the dataplane to adopt peers");
                return;
            }
        };
        let by_vni: BTreeMap<u32, String> =
            d.networks.iter().map(|n| (n.vni, n.id.clone())).collect();
        let known: BTreeSet<(String, std::net::Ipv4Addr)> =
            d.peers.iter().map(|p| (p.network.clone(), p.ip)).collect();
        for (vni, sb) in &actual.sandboxes {
            let Some(net) = by_vni.get(vni) else { continue };
            let vteps: BTreeMap<[u8; 6], std::net::Ipv4Addr> = sb
                .fdb
                .iter()
                .filter_map(|f| Some((f.mac, f.dst?)))
                .collect();
            for n in &sb.neighbours {
                let Some(mac) = n.mac else { continue };
                let Some(vtep) = vteps.get(&mac) else {
                    continue;
                };
                if known.contains(&(net.clone(), n.ip)) {
                    continue;
                }
                d.peers.push(RemotePeer {
                    network: net.clone(),
                    endpoint: format!("{ADOPTED_PREFIX}{}", n.ip),
                    ip: n.ip,
                    mac,
                    vtep: *vtep,
                });
            }
        }
        d.peers.sort();
    }

    /// One reconcile of the dataplane, counted. Failed operations are logged (and retried by
    /// the next run); the report is returned for callers that care about one endpoint.
    ///
    /// Single-flight: a pass reads its inputs (local state, tables) and applies them (overlay,
    /// balancer, resolver) under one lock, so a pass that read older inputs can never apply
    /// them after a pass that read newer ones (an attach's own pass and the periodic one
    /// race otherwise, and the stale one would undo what the attach just reported done).
    pub async fn reconcile_now(&self) -> Result<Report> {
        let _pass = self.reconcile_lock.lock().await;
        // IPsec first: the guard against clear VXLAN of an encrypted network must be in
        // place before its sandbox exists.
        self.reconcile_esp().await;
        let mut d = self.desired().await?;
        if Instant::now() < self.adopt_until {
            self.adopt_kernel_peers(&mut d).await;
        }
        self.metrics.reconcile_runs.inc();
        // The balancer's rules need only the container's namespace, not its interfaces: both
        // run at once (the overlay on its executor thread, the balancer on a blocking one).
        let tables = self.service_tables().await;
        let services = async {
            match &tables {
                Ok(t) => self.reconcile_lb(t).await,
                Err(e) => tracing::warn!(error = %e, "reading the tables for balancing and DNS"),
            }
        };
        let (result, ()) = tokio::join!(self.dataplane.reconcile(&d), services);
        if let Ok(t) = &tables {
            self.reconcile_dns(t).await;
        }
        match result {
            Ok(report) => {
                if !report.is_ok() {
                    self.metrics.reconcile_errors.inc();
                    for f in &report.failed {
                        tracing::warn!(op = %f.op, error = %f.error, "dataplane operation failed (retried on the next reconcile)");
                    }
                }
                if !report.applied.is_empty() {
                    tracing::debug!(ops = report.applied.len(), elapsed = ?report.elapsed, "dataplane reconciled");
                }
                Ok(report)
            }
            Err(e) => {
                self.metrics.reconcile_errors.inc();
                tracing::warn!(error = %e, "dataplane reconcile failed");
                Err(AgentError::Internal(format!("dataplane: {e}")))
            }
        }
    }
}
