//! Prometheus metrics and the small HTTP listener that serves them (`/metrics`, `/healthz`,
//! and `/published/<proto>/<port>`: whether this node answers a published port).
//!
//! The listener is off unless `metrics_addr` is configured (a bare port binds loopback). It
//! answers one GET per connection and reads at most [`MAX_REQUEST`] bytes of a request.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Largest request head read.
pub const MAX_REQUEST: usize = 8192;

/// Every metric the agent exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub members: Gauge,
    pub endpoints: Gauge,
    pub networks: Gauge,
    pub queue_depth: Gauge,
    pub gossip_bytes_in: Counter<u64, AtomicU64>,
    pub gossip_bytes_out: Counter<u64, AtomicU64>,
    pub reconcile_runs: Counter<u64, AtomicU64>,
    pub reconcile_errors: Counter<u64, AtomicU64>,
    /// Successful balancer programs of one container namespace.
    pub lb_programs: Counter<u64, AtomicU64>,
    /// Kernel changes those programs applied.
    pub lb_changes: Counter<u64, AtomicU64>,
    pub lb_errors: Counter<u64, AtomicU64>,
    /// Conntrack entries deleted for removed backends.
    pub lb_conntrack_flushed: Counter<u64, AtomicU64>,
    /// The embedded resolver's metrics (`swarmnet_dns_*`).
    pub dns: crate::dns::DnsMetrics,
    /// 1, labelled with the balancer in use.
    pub lb_info: Family<Vec<(String, String)>, Gauge>,
    /// 1 when this node can attach to encrypted networks (IPsec ESP in the kernel).
    pub esp_supported: Gauge,
    /// IPsec SAs this node holds.
    pub esp_sas: Gauge,
    /// Failed IPsec operations and reconciles (retried).
    pub esp_errors: Counter<u64, AtomicU64>,
    /// Published ports this node programs, and those it answers (ready).
    pub mesh_ports: Gauge,
    pub mesh_ready_ports: Gauge,
    /// Kernel changes of the mesh (host table, backend containers).
    pub mesh_changes: Counter<u64, AtomicU64>,
    /// Failed mesh programs (retried).
    pub mesh_errors: Counter<u64, AtomicU64>,
    /// Last gossip byte totals seen (counters only move forward by the difference).
    last_bytes: Mutex<(u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("swarmnet");
        let m = Metrics {
            members: Gauge::default(),
            endpoints: Gauge::default(),
            networks: Gauge::default(),
            queue_depth: Gauge::default(),
            gossip_bytes_in: Counter::default(),
            gossip_bytes_out: Counter::default(),
            reconcile_runs: Counter::default(),
            reconcile_errors: Counter::default(),
            lb_programs: Counter::default(),
            lb_changes: Counter::default(),
            lb_errors: Counter::default(),
            lb_conntrack_flushed: Counter::default(),
            lb_info: Family::default(),
            esp_supported: Gauge::default(),
            esp_sas: Gauge::default(),
            esp_errors: Counter::default(),
            mesh_ports: Gauge::default(),
            mesh_ready_ports: Gauge::default(),
            mesh_changes: Counter::default(),
            mesh_errors: Counter::default(),
            dns: crate::dns::DnsMetrics::default(),
            last_bytes: Mutex::new((0, 0)),
            registry: Registry::default(),
        };
        registry.register("members", "Other nodes that are up", m.members.clone());
        m.dns.register(&mut registry);
        registry.register(
            "lb_programs",
            "Balancer programs of one container namespace",
            m.lb_programs.clone(),
        );
        registry.register(
            "lb_changes",
            "Kernel changes applied by balancer programs",
            m.lb_changes.clone(),
        );
        registry.register(
            "lb_errors",
            "Failed balancer programs (retried)",
            m.lb_errors.clone(),
        );
        registry.register(
            "lb_conntrack_flushed",
            "Conntrack entries deleted for removed backends",
            m.lb_conntrack_flushed.clone(),
        );
        registry.register(
            "load_balancer",
            "The service load balancer in use (label kind)",
            m.lb_info.clone(),
        );
        registry.register(
            "esp_supported",
            "1 when this node can attach to encrypted networks (IPsec ESP in its kernel)",
            m.esp_supported.clone(),
        );
        registry.register("esp_sas", "IPsec SAs this node holds", m.esp_sas.clone());
        registry.register(
            "esp_errors",
            "Failed IPsec operations and reconciles (retried)",
            m.esp_errors.clone(),
        );
        registry.register(
            "published_ports",
            "Published ports this node programs",
            m.mesh_ports.clone(),
        );
        registry.register(
            "published_ports_ready",
            "Published ports this node answers with a backend",
            m.mesh_ready_ports.clone(),
        );
        registry.register(
            "mesh_changes",
            "Kernel changes of the published-port mesh",
            m.mesh_changes.clone(),
        );
        registry.register(
            "mesh_errors",
            "Failed programs of the published-port mesh (retried)",
            m.mesh_errors.clone(),
        );
        registry.register("endpoints", "Endpoints on this node", m.endpoints.clone());
        registry.register(
            "networks",
            "Networks known to this node",
            m.networks.clone(),
        );
        registry.register(
            "gossip_queue_depth",
            "Entries waiting in the gossip retransmit queues",
            m.queue_depth.clone(),
        );
        registry.register(
            "gossip_bytes_in",
            "Gossip bytes received (UDP and TCP)",
            m.gossip_bytes_in.clone(),
        );
        registry.register(
            "gossip_bytes_out",
            "Gossip bytes sent (UDP and TCP)",
            m.gossip_bytes_out.clone(),
        );
        registry.register(
            "reconcile_runs",
            "Dataplane reconcile runs",
            m.reconcile_runs.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Dataplane reconcile runs that failed or had failed operations",
            m.reconcile_errors.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Move the gossip byte counters up to the node's current totals.
    pub fn set_gossip_bytes(&self, total_in: u64, total_out: u64) {
        let mut last = self.last_bytes.lock().expect("not poisoned");
        self.gossip_bytes_in.inc_by(total_in.saturating_sub(last.0));
        self.gossip_bytes_out
            .inc_by(total_out.saturating_sub(last.1));
        *last = (total_in.max(last.0), total_out.max(last.1));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The pause after a failed `accept`: 10 ms, doubling up to 1 s while failures go on; a
/// successful accept starts over.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: std::time::Duration,
}

impl AcceptBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(10);
    const MAX: std::time::Duration = std::time::Duration::from_secs(1);

    /// An accept failed: how long to pause before the next one.
    pub fn failed(&mut self) -> std::time::Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        now
    }

    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { next: Self::FIRST }
    }
}

/// What an extra path answers: `None` is 404; `Ok` 200 and `Err` 503, with the body.
pub type Answer = Option<Result<String, String>>;

/// Serve `/metrics` and `/healthz` on `listener` until the task is dropped. `refresh` is
/// called before each `/metrics` answer to update gauges, `healthy` answers `/healthz`, and
/// `other` answers every other GET path (published-port health).
pub async fn serve<R, H, O>(listener: TcpListener, refresh: R, healthy: H, other: O)
where
    R: Fn() -> futures::future::BoxFuture<'static, String> + Send + Sync + Clone + 'static,
    H: Fn() -> futures::future::BoxFuture<'static, Result<String, String>>
        + Send
        + Sync
        + Clone
        + 'static,
    O: Fn(&str) -> Answer + Send + Sync + Clone + 'static,
{
    let mut backoff = AcceptBackoff::default();
    loop {
        let mut sock = match listener.accept().await {
            Ok((sock, _)) => {
                backoff.succeeded();
                sock
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                let pause = backoff.failed();
                tracing::warn!(error = %e, retry_in = ?pause, "accepting a metrics connection");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let (refresh, healthy, other) = (refresh.clone(), healthy.clone(), other.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_REQUEST];
            let mut len = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while len < buf.len() {
                    match sock.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            len += n;
                            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let mut words = head.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (status, ctype, body) = match (method, path) {
                ("GET", "/metrics") => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    refresh().await,
                ),
                ("GET", "/healthz") => match healthy().await {
                    Ok(s) => ("200 OK", "text/plain", s),
                    Err(s) => ("503 Service Unavailable", "text/plain", s),
                },
                ("GET", p) => match other(p) {
                    Some(Ok(s)) => ("200 OK", "application/json", s),
                    Some(Err(s)) => ("503 Service Unavailable", "application/json", s),
                    None => ("404 Not Found", "text/plain", "not found\n".into()),
                },
                _ => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "only GET\n".to_string(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric() {
        let m = Metrics::default();
        m.reconcile_runs.inc();
        m.set_gossip_bytes(100, 50);
        m.set_gossip_bytes(150, 50);
        let text = m.render();
        for name in [
            "swarmnet_members",
            "swarmnet_endpoints",
            "swarmnet_gossip_queue_depth",
            "swarmnet_gossip_bytes_in_total 150",
            "swarmnet_gossip_bytes_out_total 50",
            "swarmnet_reconcile_runs_total 1",
            "swarmnet_reconcile_errors_total 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}

#[cfg(test)]
mod accept_tests {
    use std::time::Duration;

    use super::AcceptBackoff;

    #[test]
    fn failed_accepts_pause_longer_and_longer_up_to_a_second_and_a_success_starts_over() {
        let mut b = AcceptBackoff::default();
        let pauses: Vec<Duration> = (0..9).map(|_| b.failed()).collect();
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }
}
