//! Prometheus metrics of the embedded resolver. The agent creates one [`DnsMetrics`], calls
//! [`DnsMetrics::register`] on its registry once, and hands a clone to the
//! [`Resolver`](super::Resolver) (clones share the same counters).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::forward::UpstreamFailure;
use super::query::{Outcome, Transport};

type Labels3 = [(&'static str, &'static str); 3];
type UpstreamLabels = [(&'static str, String); 2];

/// Every DNS metric (names under `dns_` in the registry given to [`DnsMetrics::register`]).
#[derive(Clone, Debug)]
pub struct DnsMetrics {
    /// Queries by `type` (A, AAAA, PTR, ..., `other`), `outcome` ([`Outcome::as_str`]) and
    /// `transport`.
    pub queries: Family<Labels3, Counter<u64, AtomicU64>>,
    /// Time to an upstream answer (or to giving up), seconds.
    pub forward_latency: Histogram,
    /// Failed upstream attempts by `upstream` and `reason`.
    pub upstream_failures: Family<UpstreamLabels, Counter<u64, AtomicU64>>,
    /// Forwards refused (SERVFAIL at once) because `max_concurrent_forwards` were in flight.
    pub forwards_rejected: Counter<u64, AtomicU64>,
    /// TCP connections closed at once because a namespace had `max_tcp_connections` open.
    pub tcp_rejected: Counter<u64, AtomicU64>,
    /// Container namespaces served.
    pub namespaces: Gauge,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        DnsMetrics {
            queries: Family::default(),
            // 100 us .. ~3.3 s.
            forward_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            upstream_failures: Family::default(),
            forwards_rejected: Counter::default(),
            tcp_rejected: Counter::default(),
            namespaces: Gauge::default(),
        }
    }
}

impl DnsMetrics {
    /// Registers every metric under the prefix `dns` of `registry` (so, with the agent's
    /// `swarmnet` prefix, `swarmnet_dns_queries_total` and so on).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("dns");
        r.register(
            "queries",
            "DNS queries by type, outcome and transport",
            self.queries.clone(),
        );
        r.register(
            "forward_latency_seconds",
            "Time to forward one query to the upstreams (answer or give-up)",
            self.forward_latency.clone(),
        );
        r.register(
            "upstream_failures",
            "Failed attempts to an upstream by reason",
            self.upstream_failures.clone(),
        );
        r.register(
            "forwards_rejected",
            "Queries answered SERVFAIL because too many forwards were in flight",
            self.forwards_rejected.clone(),
        );
        r.register(
            "tcp_rejected",
            "TCP connections closed because a namespace had too many open",
            self.tcp_rejected.clone(),
        );
        r.register(
            "namespaces",
            "Container namespaces with a resolver",
            self.namespaces.clone(),
        );
    }

    /// Counts one query.
    pub fn query(&self, qtype: Option<RecordType>, outcome: Outcome, transport: Transport) {
        self.queries
            .get_or_create(&[
                ("type", qtype_label(qtype)),
                ("outcome", outcome.as_str()),
                ("transport", transport.as_str()),
            ])
            .inc();
    }

    pub(crate) fn observe_forward(&self, took: Duration) {
        self.forward_latency.observe(took.as_secs_f64());
    }

    pub(crate) fn upstream_failure(&self, upstream: SocketAddr, why: UpstreamFailure) {
        self.upstream_failures
            .get_or_create(&[
                ("upstream", upstream.to_string()),
                ("reason", why.as_str().to_string()),
            ])
            .inc();
    }
}

/// A bounded set of type labels (anything else is `other`).
fn qtype_label(t: Option<RecordType>) -> &'static str {
    match t {
        None => "none",
        Some(RecordType::A) => "A",
        Some(RecordType::AAAA) => "AAAA",
        Some(RecordType::PTR) => "PTR",
        Some(RecordType::SRV) => "SRV",
        Some(RecordType::MX) => "MX",
        Some(RecordType::TXT) => "TXT",
        Some(RecordType::CNAME) => "CNAME",
        Some(RecordType::NS) => "NS",
        Some(RecordType::SOA) => "SOA",
        Some(RecordType::ANY) => "ANY",
        Some(_) => "other",
    }
}
