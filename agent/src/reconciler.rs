//! The reconciler: one task watches networkdb and wakes the loop that repairs this node's
//! network definitions, maintains its address blocks and reconciles the dataplane, debounced
//! on every change and on a periodic timer.

use std::sync::Arc;
use std::time::Duration;

use networkdb::runtime::WatchEvent;
use tokio::sync::watch;

use crate::node::Agent;
use crate::records::{ENDPOINTS, IPAM, NETWORKS, NODES, PEERS, SERVICES};

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
                    NETWORKS | PEERS | ENDPOINTS | IPAM | NODES | SERVICES
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
    let mut tick = tokio::time::interval(agent.cfg.reconcile_interval);
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
    for net in agent.local().held_networks() {
        if let Err(e) = agent.maintain_ipam(&net).await {
            tracing::warn!(network = %net, error = %e, "address block maintenance");
        }
    }
    let _ = agent.reconcile_now().await;
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
    if let Ok(v) = agent.network_view().await {
        m.networks.set(v.accepted().count() as i64);
    }
}
