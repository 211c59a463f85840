//! Published ports (see [`crate::mesh`]): what this node's host table and backend containers
//! should hold, computed purely from the pass's snapshot and the local state, and the run
//! that programs them and publishes this node's `mesh` record.
//!
//! One pass, after the overlay (the ingress endpoints and the containers' interfaces must
//! exist):
//! 1. the published ports in force ([`published`]): one service per (protocol, port), the
//!    oldest wins a clash (create refuses a second; two agents at once can still race);
//! 2. every local backend container of a published service is programmed with the ingress
//!    MACs of its network ([`container_specs`]);
//! 3. the host table: each port over the backends that are ready for this node's ingress
//!    ([`host_spec`]); ports a process holds here are left out; the reservations follow;
//! 4. this node's `mesh` record on each network says which ingress MACs its backends answer
//!    through, which failed, and which ports it answers ([`crate::records::MeshRecord`]).
//!
//! Drain and node failure work as for VIPs: a disabled backend leaves the port's chain
//! (established flows keep their conntrack binding), a failed node's endpoints vanish from
//! the snapshot (networkdb suspends them), and conntrack entries of a backend that left are
//! deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use networkdb::NodeId;

use super::Reconciler;
use crate::config::PublishConfig;
use crate::mesh::backend::{BackendMesh, ContainerSpec, IfaceSpec, mark_of, slot_of};
use crate::mesh::firewall::{self, ForwardDrop};
use crate::mesh::host::HostMesh;
use crate::mesh::host_plan::HostSpec;
use crate::mesh::reserve::Reservations;
use crate::mesh::{INGRESS_PREFIX, PortSpec, PortStatus};
use crate::node::Agent;
use crate::records::{
    self, EndpointRecord, MESH, MeshRecord, Protocol, PublishMode, PublishedPort, ServiceDef,
};
use crate::state::LocalState;
use crate::tables::Snapshot;

/// The mesh's kernel-facing state, owned by the [`Reconciler`].
#[derive(Debug, Default)]
pub struct MeshState {
    pub host: HostMesh,
    pub backends: BackendMesh,
    pub reservations: Reservations,
    /// Last spec programmed per backend container, and when.
    done: tokio::sync::Mutex<BTreeMap<PathBuf, (ContainerSpec, Instant)>>,
    /// Health of each published port on this node after the last pass.
    pub status: Mutex<BTreeMap<(Protocol, u16), PortStatus>>,
    /// Whether backends here can keep the client address (netdev egress), decided once.
    keep_source: std::sync::OnceLock<Result<(), String>>,
    /// Forward drops of other tables, and when they were last looked for.
    firewall: Mutex<Option<(Instant, Vec<ForwardDrop>)>>,
}

impl MeshState {
    /// `Err(why)` when backends here cannot keep the client address (other nodes then SNAT
    /// to them).
    pub fn keep_source(&self) -> Result<(), String> {
        self.keep_source
            .get_or_init(|| {
                crate::mesh::backend::egress_supported().map_err(|e| {
                    format!("no netdev egress hook (kernel >= 5.16 and nft >= 1.0.1 needed): {e}")
                })
            })
            .clone()
    }
}

/// A published port in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub service: ServiceDef,
    pub port: PublishedPort,
    /// The network it is reached through.
    pub network: String,
}

/// Published ports in force by (protocol, port).
pub type PublishedPorts = BTreeMap<(Protocol, u16), Published>;
/// A port a younger service also asked for: (its name, port, the name of the holder).
pub type Clash = (String, (Protocol, u16), String);
/// Backend containers: namespace -> (spec, the endpoints it covers).
pub type ContainerSpecs = BTreeMap<PathBuf, (ContainerSpec, Vec<String>)>;

/// The published ports in force, by (protocol, port), and the ports a younger service also
/// asked for (a clash: reported on it). Pure.
pub fn published(services: &[ServiceDef]) -> (PublishedPorts, Vec<Clash>) {
    let mut by_age: Vec<&ServiceDef> = services
        .iter()
        .filter(|s| s.publish_network().is_some())
        .collect();
    by_age.sort_by(|a, b| (a.created, a.creator, &a.id).cmp(&(b.created, b.creator, &b.id)));
    let mut out: BTreeMap<(Protocol, u16), Published> = BTreeMap::new();
    let mut clashes = Vec::new();
    for svc in by_age {
        let net = svc.publish_network().unwrap_or_default().to_string();
        for p in &svc.published {
            let key = (p.protocol, p.published);
            if let Some(first) = out.get(&key) {
                clashes.push((svc.name.clone(), key, first.service.name.clone()));
                continue;
            }
            out.insert(
                key,
                Published {
                    service: svc.clone(),
                    port: *p,
                    network: net.clone(),
                },
            );
        }
    }
    (out, clashes)
}

/// The ingress endpoints of network `net`: (MAC, address), this node's own included.
pub fn ingress_of(
    net: &str,
    me: NodeId,
    local: &LocalState,
    snap: &Snapshot,
) -> BTreeMap<[u8; 6], Ipv4Addr> {
    let mut out: BTreeMap<[u8; 6], Ipv4Addr> = snap
        .peers
        .get(net)
        .into_iter()
        .flatten()
        .filter(|p| p.endpoint.starts_with(INGRESS_PREFIX) && p.owner != me)
        .map(|p| (p.record.mac, p.record.ip))
        .collect();
    if let Some(ing) = local.ingress.get(net) {
        out.insert(ing.mac, ing.ip);
    }
    out
}

/// What every local backend container of a published service should hold, with the
/// endpoints each container's spec covers (pure). Empty specs when `keep_source` is false
/// (nothing is needed: other nodes SNAT). Warnings name what was skipped.
pub fn container_specs(
    me: NodeId,
    local: &LocalState,
    snap: &Snapshot,
    ports: &BTreeMap<(Protocol, u16), Published>,
    keep_source: bool,
) -> (ContainerSpecs, Vec<String>) {
    let mut out = ContainerSpecs::new();
    let mut warnings = Vec::new();
    if !keep_source {
        return (out, warnings);
    }
    // service id -> (network, UDP targets)
    let mut by_service: BTreeMap<&str, (&str, BTreeSet<u16>)> = BTreeMap::new();
    for p in ports.values() {
        let e = by_service
            .entry(p.service.id.as_str())
            .or_insert((p.network.as_str(), BTreeSet::new()));
        if p.port.protocol == Protocol::Udp {
            e.1.insert(p.port.target);
        }
    }
    let mut ingress_cache: BTreeMap<&str, BTreeMap<[u8; 6], Ipv4Addr>> = BTreeMap::new();
    // Endpoints handed to a runtime (Docker) are not entered: they back no published port.
    for ep in local.endpoints.values().filter(|e| e.in_container()) {
        let Some((net, udp)) = ep
            .service
            .as_deref()
            .and_then(|s| by_service.get(s))
            .filter(|(net, _)| *net == ep.network)
        else {
            continue;
        };
        let Some(def) = local.networks.get(*net) else {
            continue;
        };
        let ingress = ingress_cache
            .entry(net)
            .or_insert_with(|| ingress_of(net, me, local, snap));
        let slot = slot_of(&ep.ifname);
        let mut marks: BTreeMap<[u8; 6], u32> = BTreeMap::new();
        let mut used: BTreeSet<u32> = BTreeSet::new();
        for (mac, ip) in ingress.iter() {
            let m = mark_of(slot, *ip);
            if used.insert(m) {
                marks.insert(*mac, m);
            } else {
                warnings.push(format!(
                    "ingress endpoint {ip} shares its low 16 address bits with another on network {}: skipped in {}",
                    def.name,
                    ep.netns.display()
                ));
            }
        }
        let entry = out.entry(ep.netns.clone()).or_default();
        if entry.0.ifaces.iter().any(|i| i.slot == slot) {
            // Another endpoint of the same container on this slot (two networks whose
            // interface names hash alike, or the same interface twice).
            warnings.push(format!(
                "{} in {}: its slot is taken by another interface; not a mesh backend",
                ep.ifname,
                ep.netns.display()
            ));
            continue;
        }
        entry.0.ifaces.push(IfaceSpec {
            ifname: ep.ifname.clone(),
            slot,
            ip: ep.ip,
            subnet: def.subnet(),
            ingress: marks,
            udp_ports: udp.clone(),
        });
        entry.0.ifaces.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        entry.1.push(ep.id.clone());
    }
    (out, warnings)
}

/// The records of network `net`'s `mesh` table by writer.
fn mesh_of<'a>(net: &str, snap: &'a Snapshot) -> BTreeMap<NodeId, &'a MeshRecord> {
    snap.mesh
        .get(net)
        .into_iter()
        .flatten()
        .map(|(n, r)| (*n, r))
        .collect()
}

/// The host table and the health of every port (pure). `failed_local`: this node's backend
/// endpoints whose container could not be programmed; `blocked`: ports left out (held by a
/// process here) and why; `firewall`: why forwarded traffic is dropped here, if it is.
#[allow(clippy::too_many_arguments)] // one pure function of one pass's inputs
pub fn host_spec(
    me: NodeId,
    cfg: &PublishConfig,
    local: &LocalState,
    snap: &Snapshot,
    ports: &BTreeMap<(Protocol, u16), Published>,
    failed_local: &BTreeSet<String>,
    keep_source: bool,
    blocked: &BTreeMap<(Protocol, u16), String>,
    firewall: Option<&str>,
) -> (HostSpec, BTreeMap<(Protocol, u16), PortStatus>) {
    let mut spec = HostSpec {
        ingress: local.ingress.values().map(|i| i.ifname.clone()).collect(),
        addrs: cfg.addrs.iter().copied().collect(),
        ifaces: cfg.interfaces.iter().cloned().collect(),
        idle_timeout: cfg.idle_timeout_secs,
        ..HostSpec::default()
    };
    let mut status = BTreeMap::new();
    for (key, p) in ports {
        let local_only = p.port.mode == PublishMode::Local;
        let mut st = PortStatus {
            service: p.service.name.clone(),
            protocol: key.0,
            port: key.1,
            mode: p.port.mode,
            ready: false,
            backends: 0,
            local_backends: 0,
            reason: String::new(),
        };
        if let Some(why) = blocked.get(key) {
            st.reason = why.clone();
            status.insert(*key, st);
            continue;
        }
        let mine = local.ingress.get(&p.network);
        let records = mesh_of(&p.network, snap);
        let candidates: Vec<&(String, EndpointRecord)> = snap
            .endpoints
            .get(&p.network)
            .into_iter()
            .flatten()
            .filter(|(_, r)| r.service.as_deref() == Some(p.service.id.as_str()))
            .filter(|(_, r)| !local_only || r.node == me)
            .collect();
        let mut usable: BTreeSet<Ipv4Addr> = BTreeSet::new();
        let mut waiting = 0;
        let enabled = candidates.iter().filter(|(_, r)| !r.disabled).count();
        for (id, r) in &candidates {
            spec.members.insert((key.0, key.1, r.ip));
            if r.disabled {
                continue;
            }
            let Some(ing) = mine else { continue };
            if r.node == me {
                if failed_local.contains(id) {
                    continue;
                }
                if !keep_source {
                    spec.snat.insert(r.ip);
                }
                usable.insert(r.ip);
                st.local_backends += 1;
                continue;
            }
            match records.get(&r.node) {
                Some(m) if m.failed.contains(id) => {}
                Some(m) if !m.keep_source => {
                    spec.snat.insert(r.ip);
                    usable.insert(r.ip);
                }
                Some(m) if m.ingress.contains(&ing.mac) => {
                    usable.insert(r.ip);
                }
                _ => waiting += 1,
            }
        }
        st.backends = usable.len() as u32;
        st.ready = !usable.is_empty() && mine.is_some();
        st.reason = if st.ready {
            String::new()
        } else if enabled == 0 && local_only {
            "no enabled backend on this node".into()
        } else if enabled == 0 {
            "no enabled backend".into()
        } else if mine.is_none() {
            "this node has no ingress endpoint on the network yet".into()
        } else if waiting > 0 {
            format!("{waiting} enabled backends are not ready for this node's ingress yet")
        } else {
            "no enabled backend could be programmed".into()
        };
        if let Some(why) = firewall
            && st.ready
        {
            st.ready = false;
            st.reason = why.to_string();
        }
        spec.ports.insert(
            *key,
            PortSpec {
                protocol: key.0,
                port: key.1,
                target: p.port.target,
                backends: usable.into_iter().collect(),
            },
        );
        status.insert(*key, st);
    }
    (spec, status)
}

/// The path of a published port's health on the metrics listener.
pub fn health_path(protocol: Protocol, port: u16) -> String {
    format!("/published/{}/{port}", protocol.as_str())
}

/// Parses `/published/<tcp|udp>/<port>`.
pub fn parse_health_path(path: &str) -> Option<(Protocol, u16)> {
    let rest = path.strip_prefix("/published/")?;
    let (proto, port) = rest.split_once('/')?;
    let proto = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((proto, port.trim_end_matches('/').parse().ok()?))
}

impl Reconciler {
    /// Health of a published port on this node for an external balancer:
    /// `/published/<proto>/<port>` answers 200 with the port's status as JSON when this node
    /// answers it with a backend, 503 with the reason otherwise, 404 for a path that is not a
    /// published port.
    pub fn published_health(&self, path: &str) -> crate::metrics::Answer {
        let key = parse_health_path(path)?;
        let st = self
            .mesh
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned()?;
        let body = serde_json::to_string(&st).unwrap_or_default() + "\n";
        Some(if st.ready { Ok(body) } else { Err(body) })
    }

    /// This node's health of every published port.
    pub fn published_status(&self) -> BTreeMap<(Protocol, u16), PortStatus> {
        self.mesh
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Program the backend containers and the host table, publish this node's `mesh`
    /// records, and keep the health of every port (see the module docs). Failures are
    /// logged, counted and retried by the next pass.
    pub(super) async fn program_mesh(&self, agent: &Agent, local: &LocalState, snap: &Snapshot) {
        if agent.reconciler.dataplane.kind() != crate::config::DataplaneKind::Kernel {
            return;
        }
        let mesh = &self.mesh;
        let (ports, clashes) = published(&snap.services);
        for (svc, key, first) in &clashes {
            tracing::warn!(service = %svc, port = %format!("{}/{}", key.0.as_str(), key.1), published_by = %first, "published port clash: the older service keeps it");
        }
        let keep_source = ports.is_empty() || mesh.keep_source().is_ok();
        if let Err(why) = mesh.keep_source()
            && !ports.is_empty()
        {
            tracing::debug!(reason = %why, "backends here are reached with SNAT");
        }
        // 2. Backend containers.
        let (specs, warnings) = container_specs(agent.id, local, snap, &ports, keep_source);
        for w in warnings {
            tracing::warn!("mesh: {w}");
        }
        let failed_local = self.program_backends(agent, &specs).await;
        // 3. The host table.
        let wanted: BTreeSet<(Protocol, u16)> = ports.keys().copied().collect();
        let blocked = mesh.reservations.sync(&wanted, |fresh| {
            crate::mesh::firewall::scan_dnat(fresh).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "listing the ruleset for other DNATs");
                BTreeMap::new()
            })
        });
        for (key, why) in &blocked {
            tracing::warn!(port = %format!("{}/{}", key.0.as_str(), key.1), reason = %why, "published port not answered here");
        }
        let firewall = self.firewall_problem(agent, !ports.is_empty()).await;
        let (spec, status) = host_spec(
            agent.id,
            &agent.cfg.publish,
            local,
            snap,
            &ports,
            &failed_local,
            keep_source,
            &blocked,
            firewall.as_deref(),
        );
        let mut forwarding: BTreeSet<String> = spec.ifaces.clone();
        let lease = agent.cfg.publish.lease;
        let has_ports = !spec.ports.is_empty();
        let ingress = spec.ingress.clone();
        let host = tokio::task::spawn_blocking({
            let state = self.mesh.clone();
            move || {
                let r = state.host.program(spec, lease);
                let fw = if has_ports {
                    if forwarding.is_empty() {
                        crate::mesh::host::enable_forwarding(&BTreeSet::new())
                    } else {
                        forwarding.extend(ingress);
                        crate::mesh::host::enable_forwarding(&forwarding)
                    }
                } else {
                    Ok(Vec::new())
                };
                (r, fw)
            }
        })
        .await;
        let m = &agent.metrics;
        let mut status = status;
        match host {
            Ok((Ok(report), fw)) => {
                m.mesh_changes.inc_by(report.changes as u64);
                m.lb_conntrack_flushed
                    .inc_by(report.conntrack_flushed as u64);
                if report.changes > 0 {
                    tracing::debug!(
                        changes = report.changes,
                        flushed = report.conntrack_flushed,
                        lease_until = report.lease_until,
                        "mesh host table programmed"
                    );
                }
                match fw {
                    Ok(changed) if !changed.is_empty() => {
                        tracing::info!(interfaces = ?changed, "forwarding enabled for published ports");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "enabling forwarding for published ports"),
                }
            }
            Ok((Err(e), _)) => {
                m.mesh_errors.inc();
                tracing::warn!(error = %e, "programming the mesh host table (retried on the next reconcile)");
                for st in status.values_mut() {
                    st.ready = false;
                    st.reason = format!("host table: {e}");
                }
            }
            Err(e) => tracing::warn!(error = %e, "mesh task failed"),
        }
        m.mesh_ports.set(status.len() as i64);
        m.mesh_ready_ports
            .set(status.values().filter(|s| s.ready).count() as i64);
        *mesh.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
        // 4. This node's records (after the containers: the ingress MACs they now answer
        // through; after the host table: the ports it answers).
        self.publish_mesh_records(
            agent,
            local,
            snap,
            &ports,
            &specs,
            &failed_local,
            keep_source,
        )
        .await;
    }

    /// Programs the backend containers whose spec changed or whose repair is due, removes
    /// what containers that back nothing any more had; returns the endpoints whose container
    /// failed.
    async fn program_backends(&self, agent: &Agent, specs: &ContainerSpecs) -> BTreeSet<String> {
        let due = agent.cfg.reconcile_interval;
        let mut done = self.mesh.done.lock().await;
        let mut todo: Vec<(PathBuf, ContainerSpec, Vec<String>)> = specs
            .iter()
            .filter(|(ns, (spec, _))| {
                done.get(*ns)
                    .is_none_or(|(s, at)| s != spec || at.elapsed() >= due)
            })
            .map(|(ns, (spec, eps))| (ns.clone(), spec.clone(), eps.clone()))
            .collect();
        for ns in done.keys() {
            if !specs.contains_key(ns) {
                todo.push((ns.clone(), ContainerSpec::default(), Vec::new()));
            }
        }
        let mut failed = BTreeSet::new();
        if todo.is_empty() {
            return failed;
        }
        let state = self.mesh.clone();
        let results = tokio::task::spawn_blocking(move || {
            todo.into_iter()
                .map(|(ns, spec, eps)| {
                    let r = if ns.exists() {
                        Some(state.backends.program(&ns, &spec, due))
                    } else {
                        state.backends.forget(&ns);
                        None
                    };
                    (ns, spec, eps, r)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(results) = results else {
            tracing::warn!("mesh backend task failed");
            return failed;
        };
        let m = &agent.metrics;
        for (ns, spec, eps, r) in results {
            match r {
                None => {
                    done.remove(&ns);
                }
                Some(Ok(report)) => {
                    m.mesh_changes.inc_by(report.changes as u64);
                    if spec.ifaces.is_empty() {
                        done.remove(&ns);
                    } else {
                        done.insert(ns, (spec, Instant::now()));
                    }
                }
                Some(Err(e)) => {
                    m.mesh_errors.inc();
                    tracing::warn!(netns = %ns.display(), error = %e, "programming a mesh backend container (retried on the next reconcile)");
                    done.remove(&ns);
                    failed.extend(eps);
                }
            }
        }
        // Containers not reprogrammed this pass keep their last result: a failure is
        // retried every pass (it left `done`), so only this pass's failures count.
        failed
    }

    /// Writes this node's `mesh` record on every network it has published-port backends
    /// or an ingress endpoint on (only when it changed), and deletes its records elsewhere.
    #[allow(clippy::too_many_arguments)] // one step of one pass
    async fn publish_mesh_records(
        &self,
        agent: &Agent,
        local: &LocalState,
        snap: &Snapshot,
        ports: &BTreeMap<(Protocol, u16), Published>,
        specs: &ContainerSpecs,
        failed_local: &BTreeSet<String>,
        keep_source: bool,
    ) {
        let mut nets: BTreeSet<String> = local.ingress.keys().cloned().collect();
        let backend_eps: BTreeSet<&String> = specs.values().flat_map(|(_, e)| e).collect();
        for ep in local.endpoints.values() {
            if backend_eps.contains(&ep.id) {
                nets.insert(ep.network.clone());
            }
        }
        if !keep_source {
            // Nothing is programmed in containers, but other nodes still need to learn
            // that they must SNAT to this node's backends.
            for p in ports.values() {
                if local
                    .endpoints
                    .values()
                    .any(|e| e.network == p.network && e.service.as_deref() == Some(&p.service.id))
                {
                    nets.insert(p.network.clone());
                }
            }
        }
        let status = self
            .mesh
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let me = agent.id.to_string();
        for (net, recs) in &snap.mesh {
            let mine = recs.iter().find(|(n, _)| *n == agent.id).map(|(_, r)| r);
            if !nets.contains(net) {
                if mine.is_some()
                    && let Err(e) = agent.db.delete(net, MESH, &me).await
                {
                    tracing::warn!(network = %net, error = %e, "deleting this node's mesh record");
                }
                continue;
            }
            let mut rec = MeshRecord {
                ingress: ingress_of(net, agent.id, local, snap).into_keys().collect(),
                failed: failed_local
                    .iter()
                    .filter(|id| local.endpoints.get(*id).is_some_and(|e| e.network == *net))
                    .cloned()
                    .collect(),
                keep_source,
                ready: Vec::new(),
                problems: Vec::new(),
            };
            for (key, p) in ports.iter().filter(|(_, p)| p.network == *net) {
                match status.get(key) {
                    Some(st) if st.ready => rec.ready.push(*key),
                    Some(st) => rec.problems.push((key.0, key.1, st.reason.clone())),
                    None if p.port.mode == PublishMode::Local
                        && !local.ingress.contains_key(net) => {}
                    None => rec
                        .problems
                        .push((key.0, key.1, "not programmed yet".into())),
                }
            }
            if mine != Some(&rec)
                && let Err(e) = agent.db.put(net, MESH, &me, records::encode(&rec)).await
            {
                tracing::warn!(network = %net, error = %e, "publishing this node's mesh record");
            }
        }
    }

    /// Why forwarded traffic would be dropped here (another table's forward policy), looked
    /// for at most once per reconcile interval while ports are published; with
    /// `--publish-accept-iptables`, iptables' chain is fixed instead.
    async fn firewall_problem(&self, agent: &Agent, any: bool) -> Option<String> {
        if !any {
            return None;
        }
        let due = agent.cfg.reconcile_interval;
        {
            let cached = self.mesh.firewall.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, drops)) = cached.as_ref()
                && at.elapsed() < due
            {
                return drops.first().map(ForwardDrop::describe);
            }
        }
        let accept = agent.cfg.publish.accept_iptables;
        let found = tokio::task::spawn_blocking(move || {
            let mut drops = firewall::scan()?;
            if accept && drops.iter().any(ForwardDrop::is_iptables) {
                match firewall::accept_in_iptables() {
                    Ok(chain) => {
                        tracing::info!(%chain, "accepted published-port flows in iptables");
                        drops = firewall::scan()?;
                    }
                    Err(e) => tracing::warn!(error = %e, "inserting the iptables accept"),
                }
            }
            Ok::<_, String>(drops)
        })
        .await;
        let drops = match found {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "listing the host's chains");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        for d in &drops {
            tracing::warn!(problem = %d.describe(), "published ports blocked");
        }
        let first = drops.first().map(ForwardDrop::describe);
        *self.mesh.firewall.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), drops));
        first
    }
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;
