//! Embedded DNS: a resolver at `127.0.0.11` (UDP and TCP, port 53 as the container sees it)
//! in every local container namespace, answered by this agent (docs/ARCHITECTURE.md, "Embedded DNS").
//!
//! | file | concept |
//! | --- | --- |
//! | [`zone`] | pure: the internal names per network, built from the tables |
//! | [`query`] | pure: one query's bytes -> reply / forward / nothing |
//! | [`config`] | [`DnsConfig`] and its defaults |
//! | [`resolv_conf`] | containers' resolv.conf (atomic write, removal); host upstreams |
//! | [`forward`] | forwarding to the upstreams (UDP/TCP, timeout, TC retry) |
//! | [`netns`] | sockets and nft DNAT inside a container namespace (dedicated threads) |
//! | `server` | the UDP and TCP serving loops |
//! | [`resolver`] | [`Resolver`]: `set_zone`, `sync`, `shutdown` |
//! | [`metrics`] | [`DnsMetrics`] |
//!
//! Integration (the agent): `let dns = Resolver::new(config, metrics.clone())` once, with
//! `metrics.register(&mut registry)`; on every table change `dns.set_zone(Arc::new(
//! Zone::build(&networks, &endpoints, &services)))`; whenever local containers change,
//! `dns.sync(&containers).await` (namespace path -> network ids); on attach, write the
//! container's resolv.conf with [`write_resolv_conf`] ([`render_resolv_conf`] of the host's
//! [`parse_resolv_conf`]), on detach [`remove_resolv_conf`]; on stop `dns.shutdown().await`.

pub mod config;
pub mod forward;
pub mod metrics;
pub mod netns;
pub mod query;
pub mod resolv_conf;
pub mod resolver;
mod server;
pub mod zone;

#[cfg(test)]
mod tests;

pub use config::DnsConfig;
pub use metrics::DnsMetrics;
pub use query::{Handled, Limits, Outcome, Transport, handle_query};
pub use resolv_conf::{
    HostResolvConf, RESOLVER_IP, host_upstreams, parse_resolv_conf, remove_resolv_conf,
    render_resolv_conf, write_resolv_conf,
};
pub use resolver::{Resolver, SyncReport};
pub use zone::{Lookup, Zone};

/// Errors of the DNS module.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("namespace {path}: {detail}")]
    Netns { path: String, detail: String },
    #[error("nft in namespace {netns}: {detail}")]
    Nft { netns: String, detail: String },
}

impl DnsError {
    /// For `map_err`: an I/O error of `what` in the namespace (or at the path) `path`.
    pub fn io(what: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> DnsError + use<> {
        let path = path.to_string();
        move |source| DnsError::Io { what, path, source }
    }
}
