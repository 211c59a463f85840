//! The embedded resolver of this node's containers: the zone, rebuilt from the pass's
//! snapshot (every network definition, the endpoints of the networks this node holds, the
//! services), and the set of served namespaces (one per local container, with the networks
//! it is on); once per reconcile interval, the containers' DNS redirects are checked and
//! repaired.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::Reconciler;
use crate::dns::Zone;
use crate::node::Agent;
use crate::records::EndpointRecord;
use crate::state::LocalState;
use crate::tables::Snapshot;

/// The zone as a snapshot says (pure).
pub fn zone(snap: &Snapshot) -> Zone {
    let endpoints: Vec<(String, EndpointRecord)> =
        snap.endpoints.values().flatten().cloned().collect();
    Zone::build(&snap.networks.defs, &endpoints, &snap.services)
}

impl Reconciler {
    /// Serve the zone to exactly the local containers (idempotent; per-namespace failures
    /// are logged and retried by the next pass).
    pub(super) async fn reconcile_resolver(
        &self,
        agent: &Agent,
        local: &LocalState,
        snap: &Snapshot,
    ) {
        let Some(resolver) = &self.dns else { return };
        resolver.set_zone(Arc::new(zone(snap)));
        let mut containers: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for ep in local.endpoints.values().filter(|e| e.in_container()) {
            let nets = containers.entry(ep.netns.clone()).or_default();
            if !nets.contains(&ep.network) {
                nets.push(ep.network.clone());
            }
        }
        let report = resolver.sync(&containers).await;
        for (ns, e) in &report.errors {
            tracing::warn!(netns = %ns.display(), error = %e, "DNS resolver (retried on the next reconcile)");
        }
        if agent.cfg.docker.is_some()
            && let Ok(names) = overlay::Names::new(agent.cfg.prefix.clone())
        {
            // Docker's containers keep Docker's resolver, which forwards to the gateway.
            let sandboxes: BTreeMap<PathBuf, (std::net::Ipv4Addr, String)> = local
                .networks
                .values()
                .map(|d| (names.sandbox_path(d.vni), (d.gateway, d.id.clone())))
                .collect();
            let report = resolver.sync_gateways(&sandboxes).await;
            for (ns, e) in &report.errors {
                tracing::warn!(netns = %ns.display(), error = %e, "DNS on the gateway (retried on the next reconcile)");
            }
        }
        let due = {
            let mut last = self.dns_repaired.lock().expect("not poisoned");
            let due = last.is_none_or(|t| t.elapsed() >= agent.cfg.reconcile_interval);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if due {
            let (repaired, errors) = resolver.repair().await;
            for ns in repaired {
                tracing::warn!(netns = %ns.display(), "a container's DNS redirect was missing or changed: restored");
            }
            for (ns, e) in errors {
                tracing::warn!(netns = %ns.display(), error = %e, "checking a container's DNS redirect");
            }
        }
    }
}
