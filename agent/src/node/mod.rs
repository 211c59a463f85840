//! The running agent: its identity, its networkdb node, its dataplane and its local state,
//! and the operations the API serves. The API layer only converts; every rule lives here.
//!
//! Data flows one way: an API call changes local state and networkdb; watches wake the
//! reconciler ([`crate::reconciler`]), which computes the desired dataplane from tables and
//! local state and applies it. Attach is the one exception that reconciles synchronously, so
//! that a failed attach is reported to the caller (and rolled back) instead of retried
//! silently.

mod cluster;
mod endpoints;
mod esp;
mod ingress;
mod ipam;
mod keys;
mod networks;
mod recover;
mod reservations;
mod resolv_conf;
mod services;
#[cfg(test)]
mod tests;
pub mod views;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use networkdb::runtime::Handle;
use networkdb::{CLUSTER, NodeId};
use tokio::sync::Notify;

use crate::config::AgentConfig;
use crate::dataplane::Dataplane;
use crate::error::{AgentError, Result};
use crate::lb::LoadBalancer;
use crate::metrics::Metrics;
use crate::reconciler::Reconciler;
use crate::records::{self, NODES, NetworkDef, NodeRecord};
use crate::state::{LocalState, StateDir};

pub use cluster::{join_loop, resolve_seeds, start_join};
pub use endpoints::default_mac;
pub use ingress::ingress_networks;

/// VXLAN over IPv4 overhead subtracted from the underlay MTU.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The agent of this node.
#[derive(Debug)]
pub struct Agent {
    pub cfg: AgentConfig,
    pub id: NodeId,
    pub db: Handle,
    pub metrics: Arc<Metrics>,
    /// Woken on every change that may alter the desired dataplane.
    pub dirty: Notify,
    /// MTU of the interface holding the data-path address.
    pub underlay_mtu: u32,
    state_dir: StateDir,
    local: Mutex<LocalState>,
    /// Serialises changes of `local` (see [`Agent::update_local`]).
    local_writer: tokio::sync::Mutex<()>,
    /// Serialises attach and detach (allocation decisions must see each other's results).
    attach_lock: tokio::sync::Mutex<()>,
    /// Serialises network creation on this node.
    create_lock: tokio::sync::Mutex<()>,
    /// Hybrid logical clock of network creation stamps (ms).
    hlc: Mutex<u64>,
    started: Instant,
    /// Joining the cluster (see [`Agent::run_join_loop`]).
    join: JoinState,
    /// Host routes read at start (refreshed on every network creation).
    host_routes: Mutex<Vec<ipnetwork::Ipv4Network>>,
    /// The kernel-facing half: dataplane, balancer, resolver, and the passes over them.
    pub reconciler: Reconciler,
    /// The key rings (see [`Agent::set_keys`]).
    keys: KeyState,
}

/// Joining the cluster: what status shows, and the one join loop running.
#[derive(Debug, Default)]
struct JoinState {
    /// Empty while joined; the last error otherwise.
    state: Mutex<String>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
    /// Join loops running now: at most one.
    loops: std::sync::atomic::AtomicUsize,
}

/// The key rings from SetKeys (see [`crate::keys`]).
#[derive(Debug)]
struct KeyState {
    rings: Mutex<crate::keys::Rings>,
    /// The keys networkdb's gossip keyring holds now (the flags' or the ring's).
    gossip_in_use: Mutex<Vec<Vec<u8>>>,
    /// Serialises SetKeys.
    lock: tokio::sync::Mutex<()>,
}

/// A new id for a network, service or endpoint: 128 random bits, as 32 hex digits.
pub fn random_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// Wall-clock milliseconds since the UNIX epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The definition of `net` as this node holds it (its sandbox), or an internal error: a local
/// endpoint's network is always held.
fn sandbox_of(local: &LocalState, net: &str) -> Result<NetworkDef> {
    local
        .networks
        .get(net)
        .cloned()
        .ok_or_else(|| AgentError::Internal(format!("network {net} not held")))
}

impl Agent {
    /// An agent over a started networkdb node. Call [`Agent::recover`] next.
    #[allow(clippy::too_many_arguments)] // called once, by the daemon
    pub fn new(
        cfg: AgentConfig,
        id: NodeId,
        db: Handle,
        dataplane: Arc<dyn Dataplane>,
        state_dir: StateDir,
        local: LocalState,
        underlay_mtu: u32,
        lb: Option<(Arc<dyn LoadBalancer>, String)>,
        rings: crate::keys::Rings,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        // Containers exist (and get a resolver) only with the kernel dataplane.
        let kernel = dataplane.kind() == crate::config::DataplaneKind::Kernel;
        let dns = kernel.then(|| crate::dns::Resolver::new(cfg.dns.clone(), metrics.dns.clone()));
        let kind = lb.as_ref().map_or("none", |(l, _)| l.kind().as_str());
        metrics
            .esp_supported
            .set(i64::from(dataplane.esp().is_ok()));
        if let Err(why) = dataplane.esp()
            && kernel
        {
            tracing::warn!(reason = %why, "encrypted networks cannot be attached on this node");
        }
        metrics
            .lb_info
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .set(1);
        let cfg_gossip_keys = cfg.gossip_keys.clone();
        let adopt = if local.networks.is_empty() {
            Duration::ZERO
        } else {
            // Two anti-entropy periods of networkdb plus the settle period.
            Duration::from_secs(10) + cfg.settle
        };
        Arc::new(Agent {
            cfg,
            id,
            db,
            metrics,
            dirty: Notify::new(),
            underlay_mtu,
            state_dir,
            local: Mutex::new(local),
            local_writer: tokio::sync::Mutex::new(()),
            attach_lock: tokio::sync::Mutex::new(()),
            create_lock: tokio::sync::Mutex::new(()),
            hlc: Mutex::new(0),
            started: Instant::now(),
            join: JoinState::default(),
            host_routes: Mutex::new(Vec::new()),
            reconciler: Reconciler::new(dataplane, lb, dns, adopt),
            keys: KeyState {
                gossip_in_use: Mutex::new(if rings.gossip.is_empty() {
                    cfg_gossip_keys
                } else {
                    rings.gossip.iter().map(|k| k.key.clone()).collect()
                }),
                rings: Mutex::new(rings),
                lock: tokio::sync::Mutex::new(()),
            },
        })
    }

    /// A copy of the local state.
    pub fn local(&self) -> LocalState {
        self.local.lock().expect("not poisoned").clone()
    }

    /// Apply `release` (which ends one reason to hold `net`) to the local state; once nothing
    /// holds `net` ([`LocalState::holds`]), drop this node's block claims there and leave the
    /// network (which tombstones our claims; other nodes' entries are hidden here).
    async fn release_hold(&self, net: &str, release: impl FnOnce(&mut LocalState)) -> Result<()> {
        let left = self
            .update_local(|s| {
                release(s);
                let left = !s.holds(net);
                if left {
                    s.claims.remove(net);
                }
                left
            })
            .await?;
        if left {
            self.db.leave_network(net).await?;
        }
        Ok(())
    }

    /// Change the local state and persist it (crash-safely) before returning. Updates are
    /// serialised; the file is written on a blocking thread (never on the async workers,
    /// never under the lock readers take), and readers see the new state only once it is on
    /// disk.
    async fn update_local<T>(&self, f: impl FnOnce(&mut LocalState) -> T) -> Result<T> {
        let _writer = self.local_writer.lock().await;
        let (next, out) = {
            let mut next = self.local.lock().expect("not poisoned").clone();
            let out = f(&mut next);
            (next, out)
        };
        if next != *self.local.lock().expect("not poisoned") {
            let dir = self.state_dir.clone();
            let saved = next.clone();
            tokio::task::spawn_blocking(move || dir.save(&saved))
                .await
                .map_err(|e| AgentError::Internal(format!("saving the local state: {e}")))??;
            *self.local.lock().expect("not poisoned") = next;
        }
        Ok(out)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn set_join_state(&self, s: String) {
        *self.join.state.lock().expect("not poisoned") = s;
    }

    pub fn join_state(&self) -> String {
        self.join.state.lock().expect("not poisoned").clone()
    }

    /// MTU of endpoints of `def` on this node: the network's own, else the underlay's less
    /// VXLAN (and, for an encrypted network, ESP) overhead.
    pub fn mtu_for(&self, def: &NetworkDef) -> u32 {
        if def.mtu != 0 {
            return def.mtu;
        }
        let vxlan = self.underlay_mtu.saturating_sub(VXLAN_OVERHEAD);
        let mtu = if def.encrypted {
            overlay::esp::encrypted_mtu(vxlan)
        } else {
            vxlan
        };
        mtu.clamp(68, 65535)
    }

    /// The VXLAN UDP port of `def` (encrypted networks have their own, which IPsec covers).
    pub fn vxlan_port_for(&self, def: &NetworkDef) -> u16 {
        if def.encrypted {
            self.cfg.vxlan_port_encrypted
        } else {
            self.cfg.vxlan_port
        }
    }

    /// A stamp for a new network definition: above the wall clock and above every stamp seen.
    fn next_stamp(&self, seen: impl Iterator<Item = u64>) -> u64 {
        let mut hlc = self.hlc.lock().expect("not poisoned");
        let max_seen = seen.max().unwrap_or(0);
        *hlc = (*hlc + 1).max(max_seen + 1).max(now_ms());
        *hlc
    }

    /// Refresh the host's IPv4 routes (logged and kept as they were on failure).
    pub async fn refresh_host_routes(&self) -> Vec<ipnetwork::Ipv4Network> {
        match crate::host::ipv4_routes().await {
            Ok(r) => {
                *self.host_routes.lock().expect("not poisoned") = r.clone();
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the host routes; subnets may overlap them");
                self.host_routes.lock().expect("not poisoned").clone()
            }
        }
    }

    /// Publish this node's record (name, addresses, endpoint counts) in the `nodes` table.
    pub async fn publish_node(&self) -> Result<()> {
        let rec = NodeRecord {
            name: self.cfg.node_name.clone(),
            gossip_addr: self.db.addr().to_string(),
            data_path: self.cfg.data_path_addr,
            version: env!("CARGO_PKG_VERSION").to_string(),
            dataplane: self.reconciler.dataplane.kind().as_str().to_string(),
            endpoints: self.local().endpoint_counts(),
            esp: self.reconciler.dataplane.esp().is_ok(),
            esp_layout: u32::from(overlay::esp::LAYOUT_VERSION),
        };
        self.db
            .put(CLUSTER, NODES, &self.id.to_string(), records::encode(&rec))
            .await?;
        Ok(())
    }
}
