//! Services: create (VIPs from this node's address blocks), delete, list, inspect; the
//! service membership of endpoints (attach with a service, enable/disable = drain); the
//! release of VIPs of services deleted elsewhere.
//!
//! A VIP is an address of one of the creator's blocks on that network, so the creator keeps
//! the network's gossip and its block claims (`LocalState::vip_networks`) for as long as the
//! service lives, even with no endpoint of its own there.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use networkdb::CLUSTER;

use super::views::{BackendInfo, EndpointInfo, PublishedStatusInfo, ServiceInfo, VipInfo};
use super::{Agent, now_ms, sandbox_of};
use crate::error::{AgentError, Result};
use crate::records::{
    self, EndpointRecord, NetworkDef, Protocol, SERVICES, ServiceDef, ServiceMode, ServicePort,
};
use crate::spec::{FieldError, ServiceModeArg, ServiceRequest};
use crate::tables;

/// A service created less than this long ago is never taken for deleted by the VIP release
/// pass (its table entry may not be visible yet).
const RELEASE_GRACE: Duration = Duration::from_secs(10);
/// How long an attach waits for a service it names to arrive by gossip.
const SERVICE_ARRIVAL: Duration = Duration::from_secs(3);

impl Agent {
    /// A service by id or name, or NotFound.
    pub async fn find_service(&self, name_or_id: &str) -> Result<ServiceDef> {
        if name_or_id.is_empty() {
            return Err(FieldError::new("service", "required (a service name or id)").into());
        }
        let all = tables::services(&self.db).await?;
        all.iter()
            .find(|s| s.id == name_or_id)
            .or_else(|| all.iter().find(|s| s.name == name_or_id))
            .cloned()
            .ok_or_else(|| AgentError::NotFound(format!("service {name_or_id} not found")))
    }

    /// The service an endpoint attaching to `def` asks to back.
    pub(super) async fn service_for_attach(
        &self,
        name_or_id: &str,
        def: &NetworkDef,
    ) -> Result<ServiceDef> {
        // A service created through another agent a moment ago may still be on its way.
        let deadline = tokio::time::Instant::now() + SERVICE_ARRIVAL;
        let svc = loop {
            match self.find_service(name_or_id).await {
                Err(AgentError::NotFound(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(AgentError::NotFound(m)) => {
                    return Err(FieldError::new("service", m).into());
                }
                other => break other?,
            }
        };
        if !svc.networks.contains(&def.id) {
            let view = tables::network_view(&self.db).await?;
            let names: Vec<String> = svc
                .networks
                .iter()
                .map(|n| view.find(n).map_or_else(|| n.clone(), |d| d.name.clone()))
                .collect();
            return Err(FieldError::new(
                "service",
                format!(
                    "service {} is not on network {} (it is on: {})",
                    svc.name,
                    def.name,
                    names.join(", ")
                ),
            )
            .into());
        }
        Ok(svc)
    }

    /// CreateService. With a client-supplied id: idempotent (see [`same_service`]).
    pub async fn create_service(&self, req: ServiceRequest) -> Result<ServiceDef> {
        let _guard = self.create_lock.lock().await;
        if let Some(id) = &req.id
            && let Some(svc) = tables::all_services(&self.db)
                .await?
                .into_iter()
                .find(|s| s.id == *id)
        {
            let view = tables::network_view(&self.db).await?;
            return same_service(&svc, &req, &view).map(|()| svc);
        }
        let existing = tables::services(&self.db).await?;
        if existing.iter().any(|s| s.name == req.name) {
            return Err(AgentError::AlreadyExists(format!(
                "name: service {} already exists",
                req.name
            )));
        }
        self.check_published(&req, &existing).await?;
        let view = tables::network_view(&self.db).await?;
        let mut defs = Vec::new();
        for n in &req.networks {
            let def = view
                .find(n)
                .cloned()
                .ok_or_else(|| FieldError::new("networks", format!("network {n} not found")))?;
            if !view.verdicts[&def.id].is_accepted() {
                return Err(AgentError::Unavailable(format!(
                    "network {} lost a conflict with a concurrently created network and is being repaired: retry",
                    def.name
                )));
            }
            if defs.iter().any(|d: &NetworkDef| d.id == def.id) {
                continue;
            }
            defs.push(def);
        }
        let mode = mode_of(req.mode);
        let mut svc = ServiceDef {
            id: req.id.clone().unwrap_or_else(super::random_id),
            name: req.name.clone(),
            aliases: req.aliases.clone(),
            mode,
            ports: ports_of(&req),
            networks: defs.iter().map(|d| d.id.clone()).collect(),
            vips: BTreeMap::new(),
            creator: self.id,
            created: now_ms(),
            published: req.published.clone(),
        };
        if mode == ServiceMode::Vip {
            for def in &defs {
                let vip = self.take_vip(def).await?;
                svc.vips.insert(def.id.clone(), vip);
                // Recorded at once, so that the next network's allocation (and a crash) sees
                // it.
                self.update_local(|s| {
                    s.services.insert(svc.id.clone(), svc.clone());
                })
                .await?;
            }
        }
        self.update_local(|s| {
            s.services.insert(svc.id.clone(), svc.clone());
        })
        .await?;
        self.db
            .put(CLUSTER, SERVICES, &svc.id, records::encode(&svc))
            .await?;
        tracing::info!(name = %svc.name, id = %svc.id, vips = ?svc.vips, "service created");
        self.dirty.notify_one();
        Ok(svc)
    }

    /// Published ports must be free: not published by another service, and (on this node,
    /// with a dataplane) not held by a process (see [`crate::mesh::reserve`]) nor DNATed by
    /// another table (see [`crate::mesh::firewall::foreign_dnat`]). Other nodes
    /// check their own host when they program the port and report a clash per node.
    async fn check_published(&self, req: &ServiceRequest, existing: &[ServiceDef]) -> Result<()> {
        let live: BTreeSet<(Protocol, u16)> = existing
            .iter()
            .flat_map(|s| s.published.iter().map(|p| (p.protocol, p.published)))
            .collect();
        for p in &req.published {
            if let Some(other) = existing.iter().find(|s| {
                s.published
                    .iter()
                    .any(|q| q.protocol == p.protocol && q.published == p.published)
            }) {
                return Err(AgentError::AlreadyExists(format!(
                    "published: {}/{} is already published by service {}",
                    p.protocol.as_str(),
                    p.published,
                    other.name
                )));
            }
            if self.reconciler.dataplane.kind() == crate::config::DataplaneKind::Kernel {
                self.reconciler
                    .mesh
                    .reservations
                    .check_free(p.protocol, p.published, &live)
                    .map_err(|why| AgentError::FailedPrecondition(format!("published: {why}")))?;
                let key = BTreeSet::from([(p.protocol, p.published)]);
                let dnat = tokio::task::spawn_blocking(move || {
                    crate::mesh::firewall::scan_dnat(&key).unwrap_or_default()
                })
                .await
                .unwrap_or_default();
                if let Some(why) = dnat.into_values().next() {
                    return Err(AgentError::FailedPrecondition(format!("published: {why}")));
                }
            }
        }
        Ok(())
    }

    /// An address of this node's blocks on `def` for a VIP (joining the network's gossip and
    /// holding it, if this node is not on it yet).
    async fn take_vip(&self, def: &NetworkDef) -> Result<Ipv4Addr> {
        let _guard = self.attach_lock.lock().await;
        let local = self.local();
        let def = match local.held_network(&def.id) {
            Some(d) => d.clone(),
            None => {
                self.db.join_network(&def.id).await?;
                self.settled_network(def.clone()).await?
            }
        };
        if !local.vip_networks.contains_key(&def.id) {
            self.update_local(|s| {
                s.vip_networks.insert(def.id.clone(), def.clone());
            })
            .await?;
        }
        match self.allocate_ip(&def, None).await {
            Ok(ip) => Ok(ip),
            Err(e) => {
                self.drop_vip_network_if_unused(&def.id).await?;
                Err(e)
            }
        }
    }

    /// Stop holding `net` for VIPs when no service of this node has one there any more (and
    /// leave it when no local endpoint is on it either).
    async fn drop_vip_network_if_unused(&self, net: &str) -> Result<()> {
        let local = self.local();
        if local.vips_on(net).next().is_some() || !local.vip_networks.contains_key(net) {
            return Ok(());
        }
        self.release_hold(net, |s| {
            s.vip_networks.remove(net);
        })
        .await
    }

    /// DeleteService. Endpoints that backed it stay attached (they just back nothing); its
    /// VIPs leave every container's balancer and DNS. `Ok(false)` when there is no such
    /// service (already deleted).
    pub async fn delete_service(&self, name_or_id: &str) -> Result<bool> {
        let _guard = self.create_lock.lock().await;
        let svc = match self.find_service(name_or_id).await {
            Ok(s) => s,
            Err(AgentError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        self.db.delete(CLUSTER, SERVICES, &svc.id).await?;
        tracing::info!(name = %svc.name, id = %svc.id, "service deleted");
        if svc.creator == self.id {
            self.release_service(&svc.id).await?;
        }
        self.dirty.notify_one();
        Ok(true)
    }

    /// Forget a service this node created: its VIPs return to the blocks.
    async fn release_service(&self, id: &str) -> Result<()> {
        let Some(svc) = self.update_local(|s| s.services.remove(id)).await? else {
            return Ok(());
        };
        for net in svc.vips.keys() {
            self.drop_vip_network_if_unused(net).await?;
        }
        Ok(())
    }

    /// Withdraw services that lost a name conflict (those this node answers for), and
    /// release the VIPs of services this node created that were deleted through another
    /// agent (called by the reconciler).
    pub async fn release_deleted_services(&self) -> Result<()> {
        let local = self.local();
        let (accepted, losers) = tables::split_by_name(tables::all_services(&self.db).await?);
        for svc in &losers {
            if !self.answers_for(svc.creator).await? {
                continue;
            }
            tracing::warn!(name = %svc.name, id = %svc.id, creator = %svc.creator, "an older service of the same name was created through another agent: withdrawing this one");
            self.db.delete(CLUSTER, SERVICES, &svc.id).await?;
            if local.services.contains_key(&svc.id) {
                self.release_service(&svc.id).await?;
            }
        }
        let live: BTreeSet<String> = accepted.into_iter().map(|s| s.id).collect();
        let grace = RELEASE_GRACE.as_millis() as u64;
        for svc in self.local().services.values() {
            if !live.contains(&svc.id) && now_ms().saturating_sub(svc.created) > grace {
                tracing::info!(name = %svc.name, id = %svc.id, "service deleted elsewhere: releasing its VIPs");
                self.release_service(&svc.id).await?;
            }
        }
        Ok(())
    }

    /// After a restart: hold the VIP networks again (the service definitions themselves were
    /// restored by networkdb with their original versions).
    pub(super) async fn recover_services(&self) -> Result<()> {
        let local = self.local();
        for net in local.vip_networks.keys() {
            if !local.networks.contains_key(net) {
                self.db.join_network(net).await?;
                for (block, at) in local.claims.get(net).into_iter().flatten() {
                    if let Ok(block) = block.parse() {
                        self.put_claim(net, block, *at).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Backends of every service on network `net`, as the `endpoints` table says: service id
    /// -> (endpoint id, record).
    pub async fn backends_on(
        &self,
        net: &str,
    ) -> Result<BTreeMap<String, Vec<(String, EndpointRecord)>>> {
        Ok(tables::by_service(
            tables::endpoint_records(&self.db, net).await?,
        ))
    }

    /// A service with its VIPs; its backends only when asked (Inspect), on the networks
    /// this node holds.
    pub async fn service_info(&self, svc: &ServiceDef, backends: bool) -> Result<ServiceInfo> {
        let view = tables::network_view(&self.db).await?;
        let net_name = |id: &str| {
            view.find(id)
                .map_or_else(|| id.to_string(), |d| d.name.clone())
        };
        let mut out = ServiceInfo {
            def: svc.clone(),
            vips: svc
                .vips
                .iter()
                .map(|(net, vip)| VipInfo {
                    network_id: net.clone(),
                    network_name: net_name(net),
                    vip: *vip,
                })
                .collect(),
            backends: Vec::new(),
            published_status: Vec::new(),
        };
        if backends && let Some(net) = svc.publish_network() {
            let names = self.node_names().await?;
            let held = self.local().held_networks();
            let records = if held.contains(net) {
                tables::mesh_records(&self.db, net).await?
            } else {
                Vec::new()
            };
            for (node, rec) in records {
                for p in &svc.published {
                    let key = (p.protocol, p.published);
                    let ready = rec.ready.contains(&key);
                    let problem = rec
                        .problems
                        .iter()
                        .find(|(q, port, _)| (*q, *port) == key)
                        .map(|(_, _, why)| why.clone());
                    if !ready && problem.is_none() {
                        continue;
                    }
                    out.published_status.push(PublishedStatusInfo {
                        node,
                        node_name: names.get(&node).cloned().unwrap_or_default(),
                        protocol: p.protocol,
                        port: p.published,
                        ready,
                        reason: problem.unwrap_or_default(),
                    });
                }
            }
            out.published_status
                .sort_by(|a, b| (a.port, &a.node_name).cmp(&(b.port, &b.node_name)));
        }
        if backends {
            let names = self.node_names().await?;
            let held = self.local().held_networks();
            for net in svc.networks.iter().filter(|n| held.contains(*n)) {
                for (id, r) in self
                    .backends_on(net)
                    .await?
                    .remove(&svc.id)
                    .unwrap_or_default()
                {
                    out.backends.push(BackendInfo {
                        endpoint_id: id,
                        endpoint_name: r.name,
                        network_id: net.clone(),
                        network_name: net_name(net),
                        node: r.node,
                        node_name: names.get(&r.node).cloned().unwrap_or_default(),
                        ip: r.ip,
                        disabled: r.disabled,
                    });
                }
            }
            out.backends.sort_by(|a, b| {
                (&a.network_name, &a.node_name, &a.endpoint_name).cmp(&(
                    &b.network_name,
                    &b.node_name,
                    &b.endpoint_name,
                ))
            });
        }
        Ok(out)
    }

    /// ListServices.
    pub async fn list_services(&self) -> Result<Vec<ServiceInfo>> {
        let mut out = Vec::new();
        for s in tables::services(&self.db).await? {
            out.push(self.service_info(&s, false).await?);
        }
        Ok(out)
    }

    /// Enable (`disabled == false`) or drain (`true`) a local endpoint's service membership.
    pub async fn set_endpoint_disabled(
        &self,
        name_or_id: &str,
        network: &str,
        disabled: bool,
    ) -> Result<EndpointInfo> {
        if name_or_id.is_empty() {
            return Err(FieldError::new("endpoint", "required (an endpoint name or id)").into());
        }
        let _guard = self.attach_lock.lock().await;
        let local = self.local();
        let matches: Vec<_> = local
            .endpoints_named(name_or_id, network)
            .cloned()
            .collect();
        let ep = match matches.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(AgentError::NotFound(format!(
                    "endpoint {name_or_id} not found on this node"
                )));
            }
            many => {
                return Err(AgentError::FailedPrecondition(format!(
                    "endpoint name {name_or_id} is used on {} networks: give the network",
                    many.len()
                )));
            }
        };
        if ep.service.is_none() {
            return Err(AgentError::FailedPrecondition(format!(
                "endpoint {} backs no service (attach it with a service to balance to it)",
                ep.name
            )));
        }
        let mut ep = ep;
        if ep.disabled != disabled {
            ep.disabled = disabled;
            self.update_local(|s| {
                s.endpoints.insert(ep.id.clone(), ep.clone());
            })
            .await?;
            self.publish_endpoint(&ep).await?;
            tracing::info!(endpoint = %ep.name, disabled, "service membership changed");
            self.dirty.notify_one();
        }
        let def = sandbox_of(&local, &ep.network)?;
        self.endpoint_view(&ep, &def).await
    }

    /// Fill in the names of the services endpoints back.
    pub async fn fill_service_names(&self, eps: &mut [EndpointInfo]) -> Result<()> {
        if eps.iter().all(|e| e.service.is_none()) {
            return Ok(());
        }
        let names: BTreeMap<String, String> = tables::services(&self.db)
            .await?
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        for (id, name) in eps.iter_mut().filter_map(|e| e.service.as_mut()) {
            if let Some(n) = names.get(id.as_str()) {
                *name = n.clone();
            }
        }
        Ok(())
    }
}

/// A request's mode as the table records it.
fn mode_of(mode: ServiceModeArg) -> ServiceMode {
    match mode {
        ServiceModeArg::Vip => ServiceMode::Vip,
        ServiceModeArg::Dnsrr => ServiceMode::Dnsrr,
    }
}

/// A request's ports as the table records them.
fn ports_of(req: &ServiceRequest) -> Vec<ServicePort> {
    req.ports
        .iter()
        .map(|p| ServicePort {
            protocol: if p.udp { Protocol::Udp } else { Protocol::Tcp },
            port: p.port,
            target: p.target,
        })
        .collect()
}

/// Whether a create request with the id of the existing `svc` asks for the same service:
/// `Ok`, else ALREADY_EXISTS naming the first field that differs.
pub fn same_service(
    svc: &ServiceDef,
    req: &ServiceRequest,
    view: &tables::NetworkView,
) -> Result<()> {
    let differs = |field: &str, has: String, asked: String| {
        Err(AgentError::AlreadyExists(format!(
            "{field}: service {} (id {}) has {has}, not {asked}",
            svc.name, svc.id
        )))
    };
    if req.name != svc.name {
        return differs("name", svc.name.clone(), req.name.clone());
    }
    let asked: BTreeSet<String> = req
        .networks
        .iter()
        .map(|n| view.find(n).map_or_else(|| n.clone(), |d| d.id.clone()))
        .collect();
    let has: BTreeSet<String> = svc.networks.iter().cloned().collect();
    if asked != has {
        let names = |ids: &BTreeSet<String>| {
            ids.iter()
                .map(|n| view.find(n).map_or_else(|| n.clone(), |d| d.name.clone()))
                .collect::<Vec<_>>()
                .join(",")
        };
        return differs("networks", names(&has), names(&asked));
    }
    let mode = mode_of(req.mode);
    if mode != svc.mode {
        return differs("mode", svc.mode.as_str().into(), mode.as_str().into());
    }
    let ports = ports_of(req);
    let mut have_ports = svc.ports.clone();
    have_ports.sort();
    let mut want_ports = ports;
    want_ports.sort();
    if want_ports != have_ports {
        let show = |ps: &[ServicePort]| {
            ps.iter()
                .map(|p| format!("{}:{}/{}", p.port, p.target, p.protocol.as_str()))
                .collect::<Vec<_>>()
                .join(",")
        };
        return differs("ports", show(&have_ports), show(&want_ports));
    }
    let mut have_published = svc.published.clone();
    have_published.sort();
    if req.published != have_published {
        let show = |ps: &[crate::records::PublishedPort]| {
            ps.iter()
                .map(|p| {
                    format!(
                        "{}:{}/{} {}",
                        p.published,
                        p.target,
                        p.protocol.as_str(),
                        p.mode.as_str()
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        return differs("published", show(&have_published), show(&req.published));
    }
    if req.aliases != svc.aliases {
        return differs(
            "aliases",
            format!("{:?}", svc.aliases),
            format!("{:?}", req.aliases),
        );
    }
    Ok(())
}
