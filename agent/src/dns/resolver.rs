//! The runtime part: one [`Resolver`] per agent serves every local container namespace.
//!
//! Contract for the agent:
//! * create it once inside the tokio runtime (`Resolver::new`), keep it in an `Arc`;
//! * call [`Resolver::set_zone`] with a fresh [`Zone`] after every table change (cheap: one
//!   pointer swap; queries in flight finish with the zone they started with);
//! * call [`Resolver::sync`] with the full set of local container namespaces and their
//!   networks whenever it changes (and from the periodic reconcile: it is idempotent);
//! * call [`Resolver::shutdown`] on stop.
//!
//! Forwarding happens from the namespace the runtime's threads are in: the agent's own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::DnsError;
use super::config::DnsConfig;
use super::forward::UpstreamPool;
use super::metrics::DnsMetrics;
use super::netns::{self, NsId};
use super::query::Limits;
use super::resolv_conf::host_upstreams;
use super::server::{NsView, serve_tcp, serve_udp};
use super::zone::Zone;

/// State the serving tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: DnsConfig,
    pub(crate) metrics: DnsMetrics,
    zone: RwLock<Arc<Zone>>,
    upstreams: RwLock<Arc<Vec<SocketAddr>>>,
    forwards: Arc<Semaphore>,
    pub(crate) pool: UpstreamPool,
}

impl Shared {
    pub(crate) fn zone(&self) -> Arc<Zone> {
        self.zone.read().map(|z| z.clone()).unwrap_or_default()
    }

    pub(crate) fn upstreams(&self) -> Arc<Vec<SocketAddr>> {
        self.upstreams.read().map(|u| u.clone()).unwrap_or_default()
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            ttl: self.config.ttl_secs(),
            max_udp_payload: self.config.max_udp_payload,
        }
    }

    /// A forward slot, or `None` (counted) when `max_concurrent_forwards` are in flight.
    pub(crate) fn forward_permit(&self) -> Option<OwnedSemaphorePermit> {
        match self.forwards.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                self.metrics.forwards_rejected.inc();
                None
            }
        }
    }
}

/// One served namespace.
#[derive(Debug)]
struct Served {
    id: NsId,
    view: Arc<NsView>,
    ports: (u16, u16),
    tasks: Vec<JoinHandle<()>>,
}

impl Served {
    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What one [`Resolver::sync`] did. Errors are per namespace and never stop the others; a
/// namespace that failed to start is retried on the next `sync`.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub started: Vec<PathBuf>,
    /// Namespaces whose network list changed.
    pub updated: Vec<PathBuf>,
    pub stopped: Vec<PathBuf>,
    pub errors: Vec<(PathBuf, DnsError)>,
}

/// The embedded resolver of one agent. See the module docs.
#[derive(Debug)]
pub struct Resolver {
    shared: Arc<Shared>,
    served: Mutex<BTreeMap<PathBuf, Served>>,
    /// Network sandboxes served on their gateway address (see [`Resolver::sync_gateways`]).
    gateways: Mutex<BTreeMap<PathBuf, (std::net::Ipv4Addr, Served)>>,
}

impl Resolver {
    /// A resolver with an empty zone and no namespace. Upstreams: `config.upstreams`, or the
    /// host's resolv.conf nameservers (read now and on every `sync`).
    pub fn new(config: DnsConfig, metrics: DnsMetrics) -> Arc<Resolver> {
        let forwards = Arc::new(Semaphore::new(config.max_concurrent_forwards));
        let shared = Arc::new(Shared {
            zone: RwLock::new(Arc::new(Zone::default())),
            upstreams: RwLock::new(Arc::new(Vec::new())),
            forwards,
            pool: UpstreamPool::default(),
            metrics,
            config,
        });
        let r = Arc::new(Resolver {
            shared,
            served: Mutex::new(BTreeMap::new()),
            gateways: Mutex::new(BTreeMap::new()),
        });
        r.reload_upstreams();
        r
    }

    /// Replaces the zone every namespace answers from.
    pub fn set_zone(&self, zone: Arc<Zone>) {
        if let Ok(mut z) = self.shared.zone.write() {
            *z = zone;
        }
    }

    /// The upstreams in use now.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.shared.upstreams().to_vec()
    }

    /// Re-reads the upstreams (configured list, else the host's resolv.conf; an unreadable
    /// file leaves none: forwarded names get SERVFAIL).
    pub fn reload_upstreams(&self) {
        let list = if self.shared.config.upstreams.is_empty() {
            match std::fs::read_to_string(&self.shared.config.host_resolv_conf) {
                Ok(text) => host_upstreams(&text),
                Err(e) => {
                    tracing::warn!(path = %self.shared.config.host_resolv_conf.display(), error = %e, "cannot read the host resolv.conf: no DNS upstreams");
                    Vec::new()
                }
            }
        } else {
            self.shared.config.upstreams.clone()
        };
        self.shared.pool.retain(&list);
        if let Ok(mut u) = self.shared.upstreams.write() {
            *u = Arc::new(list);
        }
    }

    /// The (UDP, TCP) ports the resolver listens on in a served namespace (the DNAT
    /// targets), for diagnostics and tests.
    pub async fn ports(&self, netns: &Path) -> Option<(u16, u16)> {
        self.served.lock().await.get(netns).map(|s| s.ports)
    }

    /// Makes the served namespaces match `containers` (namespace path -> network ids, in
    /// the container's order): starts listeners and DNAT rules in new namespaces, updates
    /// the networks of existing ones, stops and removes the rules of the others. A path
    /// that now refers to another namespace (the container was re-created) is restarted.
    /// Idempotent; concurrent calls are serialized.
    pub async fn sync(&self, containers: &BTreeMap<PathBuf, Vec<String>>) -> SyncReport {
        self.reload_upstreams();
        let mut report = SyncReport::default();
        let mut served = self.served.lock().await;
        let own = netns::ns_id(Path::new("/proc/thread-self/ns/net")).ok();
        // Stop what is gone (or was replaced by another namespace at the same path).
        let gone: Vec<PathBuf> = served
            .iter()
            .filter(|(p, s)| {
                !containers.contains_key(*p) || netns::ns_id(p).map_or(true, |id| id != s.id)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(s) = served.remove(&p) {
                s.stop();
                if containers.contains_key(&p) {
                    // Replaced: the old namespace's rules went with it (or belong to a
                    // namespace we no longer reach); the new one is started below.
                    continue;
                }
                if let Err(e) = netns::close(&p, self.shared.config.nft.clone()).await {
                    report.errors.push((p.clone(), e));
                }
                report.stopped.push(p);
            }
        }
        for (path, nets) in containers {
            if let Some(s) = served.get(path) {
                let changed = s
                    .view
                    .networks
                    .read()
                    .map(|n| n.as_slice() != nets.as_slice())
                    .unwrap_or(true);
                if changed {
                    if let Ok(mut n) = s.view.networks.write() {
                        *n = Arc::new(nets.clone());
                    }
                    report.updated.push(path.clone());
                }
                continue;
            }
            match self.start(path, nets, own).await {
                Ok(s) => {
                    served.insert(path.clone(), s);
                    report.started.push(path.clone());
                }
                Err(e) => {
                    tracing::warn!(netns = %path.display(), error = %e, "cannot start the DNS resolver");
                    report.errors.push((path.clone(), e));
                }
            }
        }
        self.shared.metrics.namespaces.set(served.len() as i64);
        report
    }

    /// Makes the served network sandboxes match `sandboxes` (namespace path -> (gateway
    /// address, network id)): each answers on `<gateway>:53` with its network's names (and
    /// forwards the rest), for runtimes whose containers keep their own resolver and forward
    /// to the gateway (Docker's embedded DNS with `--dns <gateway>`). Idempotent.
    pub async fn sync_gateways(
        &self,
        sandboxes: &BTreeMap<PathBuf, (std::net::Ipv4Addr, String)>,
    ) -> SyncReport {
        let mut report = SyncReport::default();
        let mut served = self.gateways.lock().await;
        let gone: Vec<PathBuf> = served
            .iter()
            .filter(|(p, (ip, s))| {
                sandboxes.get(*p).is_none_or(|(want, _)| want != ip)
                    || netns::ns_id(p).map_or(true, |id| id != s.id)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some((_, s)) = served.remove(&p) {
                s.stop();
                report.stopped.push(p);
            }
        }
        for (path, (ip, net)) in sandboxes {
            if served.contains_key(path) {
                continue;
            }
            let started = match netns::open_at(path, *ip).await {
                Ok(socks) => self.serve(path, std::slice::from_ref(net), socks),
                Err(e) => Err(e),
            };
            match started {
                Ok(s) => {
                    served.insert(path.clone(), (*ip, s));
                    report.started.push(path.clone());
                }
                Err(e) => report.errors.push((path.clone(), e)),
            }
        }
        report
    }

    async fn start(
        &self,
        path: &Path,
        nets: &[String],
        own: Option<NsId>,
    ) -> Result<Served, DnsError> {
        let id = netns::ns_id(path)?;
        if own == Some(id) {
            return Err(DnsError::Netns {
                path: path.display().to_string(),
                detail: "is the agent's own namespace".into(),
            });
        }
        let socks = netns::open(path, self.shared.config.nft.clone()).await?;
        self.serve(path, nets, socks)
    }

    /// Serve `socks` (created in the namespace at `path`) for `nets`.
    fn serve(
        &self,
        path: &Path,
        nets: &[String],
        socks: netns::NsSockets,
    ) -> Result<Served, DnsError> {
        let ports = netns::ports(&socks);
        let shown = path.display().to_string();
        let io = |what: &'static str| DnsError::io(what, &shown);
        let udp =
            tokio::net::UdpSocket::from_std(socks.udp).map_err(io("register udp socket of"))?;
        let tcp =
            tokio::net::TcpListener::from_std(socks.tcp).map_err(io("register tcp listener of"))?;
        let view = Arc::new(NsView {
            networks: RwLock::new(Arc::new(nets.to_vec())),
        });
        let udp = Arc::new(udp);
        let mut tasks = vec![tokio::spawn(serve_tcp(
            tcp,
            view.clone(),
            self.shared.clone(),
        ))];
        for _ in 0..self.shared.config.udp_workers.max(1) {
            tasks.push(tokio::spawn(serve_udp(
                udp.clone(),
                view.clone(),
                self.shared.clone(),
            )));
        }
        tracing::debug!(netns = %path.display(), udp = ports.0, tcp = ports.1, "DNS resolver started");
        Ok(Served {
            id: socks.id,
            view,
            ports,
            tasks,
        })
    }

    /// Checks the DNAT rules of every served namespace and re-installs those that were
    /// deleted or changed behind our back (the agent calls this once per reconcile period).
    /// Returns the repaired namespaces and the errors.
    pub async fn repair(&self) -> (Vec<PathBuf>, Vec<(PathBuf, DnsError)>) {
        let served = self.served.lock().await;
        let (mut repaired, mut errors) = (Vec::new(), Vec::new());
        for (path, s) in served.iter() {
            let (udp, tcp) = s.ports;
            match netns::ensure_rules(path, self.shared.config.nft.clone(), udp, tcp).await {
                Ok(true) => repaired.push(path.clone()),
                Ok(false) => {}
                Err(e) => errors.push((path.clone(), e)),
            }
        }
        (repaired, errors)
    }

    /// Stops every namespace (listeners, connections, DNAT rules). Errors are returned per
    /// namespace; everything is attempted.
    pub async fn shutdown(&self) -> Vec<(PathBuf, DnsError)> {
        let mut served = self.served.lock().await;
        let mut errors = Vec::new();
        for (p, s) in std::mem::take(&mut *served) {
            s.stop();
            if let Err(e) = netns::close(&p, self.shared.config.nft.clone()).await {
                errors.push((p, e));
            }
        }
        for (_, (_, s)) in std::mem::take(&mut *self.gateways.lock().await) {
            s.stop();
        }
        self.shared.metrics.namespaces.set(0);
        self.shared.pool.retain(&[]);
        errors
    }
}
