//! `swarmnet agent`: start everything, run until SIGTERM/SIGINT, stop cleanly.
//!
//! Start: state dir and node id, local state, dataplane, networkdb node, recovery
//! (re-announce what this node owns), join loop, watch and reconcile tasks, API listeners,
//! metrics listener. Stop: API listeners close (unix socket files removed), the reconciler
//! stops, networkdb leaves the cluster gracefully and closes its sockets. Kernel objects stay:
//! containers keep their connectivity, and the next start adopts them.

use std::net::SocketAddr;
use std::sync::Arc;

use networkdb::runtime::{NodeConfig, generation_now};
use tokio::sync::watch;

use crate::api::{self, Api, Listeners};
use crate::config::{AgentConfig, DataplaneKind};
use crate::dataplane::{Dataplane, KernelDataplane, NoDataplane};
use crate::node::Agent;
use crate::reconciler;
use crate::state::StateDir;

/// Underlay MTU assumed when the data-path interface cannot be found.
const FALLBACK_UNDERLAY_MTU: u32 = 1500;
/// How long open API connections may drain on stop.
const API_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("dataplane: {0} (the kernel dataplane needs root; --dataplane none runs without it)")]
    Dataplane(overlay::Error),
    #[error("networkdb: {0}")]
    Db(#[from] networkdb::Error),
    #[error("{0}")]
    Api(String),
    #[error("metrics_addr: bind {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("load balancer: {0}")]
    LoadBalancer(String),
    #[error("recovery: {0}")]
    Recover(#[from] crate::error::AgentError),
}

/// Run the agent until SIGTERM or SIGINT.
pub async fn run(cfg: AgentConfig) -> Result<(), DaemonError> {
    let state_dir = StateDir::open(&cfg.state_dir)?;
    let id = state_dir.node_id()?;
    let local = state_dir.load()?;
    let dataplane: Arc<dyn Dataplane> = match cfg.dataplane {
        DataplaneKind::Kernel => Arc::new(
            KernelDataplane::new(&cfg.prefix, cfg.data_path_addr)
                .map_err(DaemonError::Dataplane)?,
        ),
        DataplaneKind::None => {
            tracing::warn!("running without a dataplane (--dataplane none): attach is refused");
            Arc::new(NoDataplane)
        }
    };
    let lb = match cfg.dataplane {
        DataplaneKind::Kernel => {
            Some(crate::lb::choose(cfg.lb).map_err(DaemonError::LoadBalancer)?)
        }
        DataplaneKind::None => None,
    };
    if let Some((l, note)) = &lb {
        tracing::info!(lb = l.kind().as_str(), note = %note, "service load balancer");
    }
    let underlay_mtu = match crate::host::mtu_of_address(cfg.data_path_addr).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            tracing::warn!(addr = %cfg.data_path_addr, "no interface holds the data-path address; assuming MTU {FALLBACK_UNDERLAY_MTU}");
            FALLBACK_UNDERLAY_MTU
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the underlay MTU; assuming {FALLBACK_UNDERLAY_MTU}");
            FALLBACK_UNDERLAY_MTU
        }
    };
    // API listeners are bound before anything is announced, so a bad address fails fast.
    let listeners = Listeners::bind(&cfg.api).await.map_err(DaemonError::Api)?;
    if let Some(tls) = &cfg.tls {
        api::serve_check_tls(tls).map_err(DaemonError::Api)?;
    }
    let metrics_listener = match cfg.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Metrics { addr, source })?,
        ),
        None => None,
    };

    // Rings set by SetKeys before a restart are newer than the --gossip-key flags.
    let rings = crate::keys::KeysFile::in_dir(&cfg.state_dir).load()?;
    let mut ndb = NodeConfig::new(id, SocketAddr::new(cfg.listen_addr, cfg.gossip_port));
    ndb.advertise = SocketAddr::new(cfg.advertise_addr, 0);
    ndb.keys = if rings.gossip.is_empty() {
        cfg.gossip_keys.clone()
    } else {
        tracing::info!(
            tags = ?rings.gossip.iter().map(|k| k.tag).collect::<Vec<_>>(),
            "gossip keys from the ring last set with SetKeys (not the flags)"
        );
        crate::keys::startup_order(&rings.gossip)
    };
    ndb.generation = generation_now();
    // Networks and services describe the cluster, not the node that created them: durable
    // (never suspended or reaped with a node; saved and restored by every node).
    ndb.core.durable_tables = crate::records::DURABLE_TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    ndb.core.node_reap = cfg.node_reap;
    ndb.durable_path = Some(cfg.state_dir.join(crate::state::DEFINITIONS_FILE));
    let db = networkdb::runtime::spawn(ndb).await?;
    tracing::info!(
        node = %id,
        name = %cfg.node_name,
        gossip = %db.addr(),
        data_path = %cfg.data_path_addr,
        dataplane = cfg.dataplane.as_str(),
        underlay_mtu,
        "agent starting"
    );
    let agent = Agent::new(
        cfg.clone(),
        id,
        db.clone(),
        dataplane,
        state_dir,
        local,
        underlay_mtu,
        lb,
        rings,
    );
    let _ = agent.refresh_host_routes().await;
    agent.recover().await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    if !cfg.join.is_empty() {
        agent.set_join_state(format!("joining {}", cfg.join.join(",")));
        agent.run_join_loop(cfg.join.clone());
    }
    let watcher = tokio::spawn(reconciler::watch_tables(agent.clone()));
    let rec = tokio::spawn(reconciler::run(agent.clone(), stop_rx.clone()));
    let metrics = metrics_listener.map(|l| {
        tracing::info!(addr = ?l.local_addr().ok(), "serving /metrics and /healthz");
        let (a1, a2, a3) = (agent.clone(), agent.clone(), agent.clone());
        tokio::spawn(crate::metrics::serve(
            l,
            move || {
                let a = a1.clone();
                Box::pin(async move {
                    reconciler::refresh_gauges(&a).await;
                    a.metrics.render()
                })
            },
            move || {
                let a = a2.clone();
                Box::pin(async move {
                    a.db.stats()
                        .await
                        .map(|_| "ok\n".to_string())
                        .map_err(|e| format!("networkdb: {e}\n"))
                })
            },
            move |path: &str| a3.reconciler.published_health(path),
        ))
    });
    for ep in &cfg.api {
        tracing::info!(endpoint = %ep, "serving the API");
    }
    let docker = match &cfg.docker {
        Some(d) => {
            let plugin = crate::docker::Plugin::new(agent.clone(), d.api.clone())
                .map_err(|e| DaemonError::Api(format!("docker_plugin: {e}")))?;
            let listener = crate::docker::server::bind(&d.socket).map_err(DaemonError::Api)?;
            tracing::info!(socket = %d.socket.display(), api = %d.api.display(), "serving the Docker network and IPAM plugin");
            Some(tokio::spawn(crate::docker::server::serve(
                plugin,
                listener,
                d.socket.clone(),
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let server = tokio::spawn(api::serve(
        Api {
            agent: agent.clone(),
            watch: crate::watch::Hub::start(agent.clone()),
        },
        listeners,
        cfg.tls.clone(),
        stop_rx.clone(),
    ));

    let reason = wait_for_signal().await;
    tracing::info!(signal = reason, "stopping");
    let _ = stop_tx.send(true);
    // Graceful: in-flight calls finish; clients that keep connections open are cut off after
    // the drain period.
    let mut server = server;
    let served = match tokio::time::timeout(API_DRAIN, &mut server).await {
        Ok(r) => r,
        Err(_) => {
            tracing::info!("API clients still connected after {API_DRAIN:?}: closing");
            server.abort();
            Ok(Ok(()))
        }
    };
    for ep in &cfg.api {
        if let crate::config::ApiEndpoint::Unix(path) = ep {
            let _ = std::fs::remove_file(path);
        }
    }
    let _ = rec.await;
    if let Some(d) = docker {
        let _ = d.await;
    }
    if let Some(dns) = &agent.reconciler.dns {
        for (ns, e) in dns.shutdown().await {
            tracing::debug!(netns = %ns.display(), error = %e, "stopping the DNS resolver");
        }
    }
    if let Some(m) = metrics {
        m.abort();
    }
    if let Err(e) = db.shutdown().await {
        tracing::warn!(error = %e, "networkdb shutdown");
    }
    watcher.abort();
    tracing::info!("stopped (kernel objects left in place for the next start)");
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Api(e)),
        Err(e) => Err(DaemonError::Api(format!("api task: {e}"))),
    }
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the agent still runs; it then stops only when killed.
        std::future::pending::<()>().await;
        unreachable!()
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
