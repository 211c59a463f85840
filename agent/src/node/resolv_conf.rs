//! The containers' resolv.conf files: written on attach when asked for, removed on detach
//! (the resolver itself is served by the reconciler: [`crate::reconciler::resolver`]).

use std::path::Path;

use super::Agent;
use crate::dns;
use crate::error::{AgentError, Result};
use crate::state::LocalEndpoint;

impl Agent {
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
