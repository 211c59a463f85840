//! The embedded resolver of this node's containers: the zone (rebuilt from the tables on
//! every reconcile), the set of served namespaces (one per local container, with the
//! networks it is on), and the containers' resolv.conf files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Agent;
use super::balancing::ServiceTables;
use crate::dns::{self, Zone};
use crate::error::{AgentError, Result};
use crate::records::EndpointRecord;
use crate::state::LocalEndpoint;

impl Agent {
    /// The zone as the tables say now: every network definition, the endpoints of the
    /// networks this node has containers on, every service.
    pub async fn dns_zone(&self, tables: &ServiceTables) -> Result<Zone> {
        let view = self.network_view().await?;
        let endpoints: Vec<(String, EndpointRecord)> =
            tables.endpoints.values().flatten().cloned().collect();
        Ok(Zone::build(&view.defs, &endpoints, &tables.services))
    }

    /// Rebuild the zone and serve exactly the local containers (idempotent; per-namespace
    /// failures are logged and retried by the next run).
    pub async fn reconcile_dns(&self, tables: &ServiceTables) {
        let Some(resolver) = &self.dns else { return };
        match self.dns_zone(tables).await {
            Ok(z) => resolver.set_zone(Arc::new(z)),
            Err(e) => tracing::warn!(error = %e, "building the DNS zone"),
        }
        let mut containers: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
        for ep in self.local().endpoints.values() {
            let nets = containers.entry(ep.netns.clone()).or_default();
            if !nets.contains(&ep.network) {
                nets.push(ep.network.clone());
            }
        }
        let report = resolver.sync(&containers).await;
        for (ns, e) in &report.errors {
            tracing::warn!(netns = %ns.display(), error = %e, "DNS resolver (retried on the next reconcile)");
        }
        let due = {
            let mut last = self.dns_repaired.lock().expect("not poisoned");
            let due = last.is_none_or(|t| t.elapsed() >= self.cfg.reconcile_interval);
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

    /// Write `ep`'s resolv.conf (nameserver 127.0.0.11, the host's search domains then
    /// `search`, the given options or the host's, `ndots` from them or the configured one).
    pub(super) fn write_resolv_conf(
        &self,
        path: &Path,
        search: &[String],
        options: &[String],
    ) -> Result<()> {
        let host_text = std::fs::read_to_string(&self.cfg.dns.host_resolv_conf).unwrap_or_default();
        let mut host = dns::parse_resolv_conf(&host_text);
        let mut ndots = self.cfg.dns.ndots;
        if !options.is_empty() {
            host.options = options
                .iter()
                .filter(|o| {
                    if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                        ndots = n;
                        false
                    } else {
                        true
                    }
                })
                .cloned()
                .collect();
        }
        let mut extra = self.cfg.dns.search.clone();
        extra.extend(search.iter().cloned());
        let text = dns::render_resolv_conf(&host, &extra, ndots);
        dns::write_resolv_conf(path, &text)
            .map_err(|e| AgentError::FailedPrecondition(format!("resolv_conf: {e}")))
    }

    /// Remove the resolv.conf `ep` asked for, unless another local endpoint of the same
    /// container still relies on the resolver (then the file stays valid).
    pub(super) fn drop_resolv_conf(&self, ep: &LocalEndpoint) {
        let Some(path) = &ep.resolv_conf else { return };
        let shared = self
            .local()
            .endpoints
            .values()
            .any(|e| e.id != ep.id && e.netns == ep.netns);
        if shared {
            return;
        }
        if let Err(e) = dns::remove_resolv_conf(path) {
            tracing::warn!(path = %path.display(), error = %e, "removing a container's resolv.conf");
        }
    }
}
