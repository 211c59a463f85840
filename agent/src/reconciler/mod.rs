//! Reconciliation: the kernel made to match the tables and the local state.
//!
//! * [`watch_tables`] wakes the loop on every relevant networkdb change; [`run`] debounces
//!   them, runs the agent's maintenance operations (conflict repair, VIP release, address
//!   blocks) and then one pass, also on a periodic timer.
//! * [`Reconciler::pass`] is single-flight: it takes the local state and one [`Snapshot`] of
//!   the tables, and applies, in order, IPsec ([`esp`]: the guard must exist before a sandbox
//!   of an encrypted network does), then the VXLAN overlay ([`vxlan`]) and the container
//!   balancers ([`balancer`]) at once, then published ports ([`mesh`]), then the resolvers
//!   ([`resolver`]). A pass that read older inputs can never be applied after one that read
//!   newer ones.
//! * Each part computes its desired state purely and hands it to an idempotent executor
//!   (replace, never create-exclusive); failed operations are logged, counted and retried by
//!   the next pass.

pub mod balancer;
pub mod esp;
pub mod mesh;
pub mod resolver;
pub mod vxlan;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use networkdb::runtime::WatchEvent;
use overlay::Report;
use overlay::esp::EspDesired;
use tokio::sync::watch;

use crate::dataplane::Dataplane;
use crate::dns::Resolver;
use crate::error::{AgentError, Result};
use crate::lb::{LbSpec, LoadBalancer};
use crate::node::Agent;
use crate::records::{ENDPOINTS, IPAM, MESH, NETWORKS, NODES, PEERS, SERVICES};
use crate::tables::{self, Snapshot};

/// The kernel-facing half of the agent: its dataplane, balancer and resolver, and what the
/// last passes did (so that an unchanged part costs nothing between repairs).
#[derive(Debug)]
pub struct Reconciler {
    pub dataplane: Arc<dyn Dataplane>,
    /// The service load balancer (None without a dataplane).
    pub lb: Option<Arc<dyn LoadBalancer>>,
    /// Why this balancer (shown in status).
    pub lb_note: String,
    /// The embedded DNS resolver (None without a dataplane).
    pub dns: Option<Arc<Resolver>>,
    /// Until then, the overlay keeps remote peers it finds in the kernel (see [`vxlan`]):
    /// after a restart, gossip has not delivered them yet.
    pub adopt_until: Instant,
    /// Makes passes single-flight.
    pass_lock: tokio::sync::Mutex<()>,
    /// Last spec programmed per container namespace, and when (see [`balancer`]).
    lb_done: tokio::sync::Mutex<BTreeMap<PathBuf, (LbSpec, Instant)>>,
    /// When the containers' DNS redirects were last checked.
    dns_repaired: Mutex<Option<Instant>>,
    /// The last IPsec state applied, and when (see [`esp`]).
    esp_done: tokio::sync::Mutex<Option<(EspDesired, Instant)>>,
    /// IPsec SAs in the kernel after the last IPsec reconcile.
    pub esp_sas: AtomicUsize,
    /// Published ports: host table, backend containers, reservations, health (see [`mesh`]).
    pub mesh: Arc<mesh::MeshState>,
}

impl Reconciler {
    /// `adopt_for`: how long kernel peers are kept after a start (see [`vxlan`]).
    pub fn new(
        dataplane: Arc<dyn Dataplane>,
        lb: Option<(Arc<dyn LoadBalancer>, String)>,
        dns: Option<Arc<Resolver>>,
        adopt_for: Duration,
    ) -> Reconciler {
        let (lb, lb_note) = match lb {
            Some((lb, note)) => (Some(lb), note),
            None => (None, "no dataplane: no load balancing".to_string()),
        };
        Reconciler {
            dataplane,
            lb,
            lb_note,
            dns,
            adopt_until: Instant::now() + adopt_for,
            pass_lock: tokio::sync::Mutex::new(()),
            lb_done: tokio::sync::Mutex::new(BTreeMap::new()),
            dns_repaired: Mutex::new(None),
            esp_done: tokio::sync::Mutex::new(None),
            esp_sas: AtomicUsize::new(0),
            mesh: Arc::new(mesh::MeshState::default()),
        }
    }

    /// One pass (see the module docs), counted. The overlay's report is returned for callers
    /// that care about one endpoint (attach).
    pub async fn pass(&self, agent: &Agent) -> Result<Report> {
        let _pass = self.pass_lock.lock().await;
        let local = agent.local();
        let snap = Snapshot::take(&agent.db, &local.held_networks()).await?;
        self.reconcile_esp(agent, &local, &snap).await;
        let mut d = vxlan::desired(agent, &local, &snap);
        if Instant::now() < self.adopt_until {
            self.adopt_kernel_peers(&mut d).await;
        }
        agent.metrics.reconcile_runs.inc();
        // The balancer's rules need only the container's namespace, not its interfaces: both
        // run at once (the overlay on its executor thread, the balancer on a blocking one).
        let (result, ()) = tokio::join!(
            self.dataplane.reconcile(&d),
            self.program_balancers(agent, &local, &snap)
        );
        // The mesh needs the ingress endpoints and the containers' interfaces in place.
        self.program_mesh(agent, &local, &snap).await;
        self.reconcile_resolver(agent, &local, &snap).await;
        match result {
            Ok(report) => {
                if !report.is_ok() {
                    agent.metrics.reconcile_errors.inc();
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
                agent.metrics.reconcile_errors.inc();
                tracing::warn!(error = %e, "dataplane reconcile failed");
                Err(AgentError::Internal(format!("dataplane: {e}")))
            }
        }
    }

    /// The overlay this node should hold now (for diagnostics).
    pub async fn desired_overlay(&self, agent: &Agent) -> Result<overlay::Desired> {
        let local = agent.local();
        let snap = Snapshot::take(&agent.db, &local.held_networks()).await?;
        Ok(vxlan::desired(agent, &local, &snap))
    }
}

/// Changes arriving within this window are handled by one run.
pub const DEBOUNCE: Duration = Duration::from_millis(20);

/// Forward relevant networkdb changes to [`Agent::dirty`] until the node stops.
pub async fn watch_tables(agent: Arc<Agent>) {
    let mut w = match agent.db.watch(None, None).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch networkdb; only the periodic reconcile runs");
            return;
        }
    };
    while let Some(ev) = w.next().await {
        let relevant = match &ev {
            WatchEvent::Entry(e) => {
                matches!(
                    e.table.as_str(),
                    NETWORKS | PEERS | ENDPOINTS | IPAM | NODES | SERVICES | MESH
                )
            }
            WatchEvent::Reset | WatchEvent::Member(_) => true,
        };
        if relevant {
            agent.dirty.notify_one();
        }
    }
}

/// The reconcile loop; returns when `stop` turns true.
pub async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    // Published ports' lease is renewed by passes: they run at least three times per lease.
    let period = match agent.cfg.publish.lease {
        Some(lease) => agent.cfg.reconcile_interval.min(lease / 3),
        None => agent.cfg.reconcile_interval,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = agent.dirty.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        run_once(&agent).await;
    }
}

/// One pass: repair own losing network definitions, maintain address blocks, reconcile.
pub async fn run_once(agent: &Agent) {
    if let Err(e) = agent.repair_networks().await {
        tracing::warn!(error = %e, "network conflict repair");
    }
    if let Err(e) = agent.release_deleted_services().await {
        tracing::warn!(error = %e, "releasing VIPs of deleted services");
    }
    if let Err(e) = agent.maintain_ingress().await {
        tracing::warn!(error = %e, "ingress endpoints");
    }
    if let Err(e) = agent.collect_dead_endpoints().await {
        tracing::warn!(error = %e, "detaching endpoints whose container is gone");
    }
    for net in agent.local().held_networks() {
        if let Err(e) = agent.maintain_ipam(&net).await {
            tracing::warn!(network = %net, error = %e, "address block maintenance");
        }
    }
    let _ = agent.reconciler.pass(agent).await;
    refresh_gauges(agent).await;
}

/// Update gauges and counters mirrored from networkdb and local state.
pub async fn refresh_gauges(agent: &Agent) {
    let m = &agent.metrics;
    if let Ok(s) = agent.db.stats().await {
        m.members.set(s.members_up as i64);
        m.queue_depth.set(s.queue_depth as i64);
        m.set_gossip_bytes(
            s.udp_bytes_in + s.tcp_bytes_in,
            s.udp_bytes_out + s.tcp_bytes_out,
        );
    }
    m.endpoints.set(agent.local().endpoints.len() as i64);
    if let Ok(v) = tables::network_view(&agent.db).await {
        m.networks.set(v.accepted().count() as i64);
    }
}
