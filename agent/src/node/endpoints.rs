//! Endpoints: attach (address, kernel, tables), detach, list, inspect; attach and detach
//! by a client id (idempotent, for runtimes that retry: CNI, Docker), and the removal of
//! client endpoints whose container namespace is gone.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::views::{EndpointInfo, LocalPart};
use super::{Agent, sandbox_of};
use crate::error::{AgentError, Result};
use crate::records::{self, ENDPOINTS, EndpointRecord, NetworkDef, PEERS, PeerRecord, ServiceDef};
use crate::spec::{AttachSpec, FieldError, format_mac};
use crate::state::LocalEndpoint;
use crate::tables;

/// Identity (device, inode) of the namespace file at `path`, if it can be read.
pub fn netns_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether the namespace `ep` was attached to is gone (its path is missing or names another
/// namespace now). Handed-off endpoints are the runtime's to remove: never gone here.
pub fn netns_gone(ep: &LocalEndpoint) -> bool {
    if ep.handoff {
        return false;
    }
    match (ep.netns_id, netns_identity(&ep.netns)) {
        (_, None) => true,
        (Some(was), Some(now)) => was != now,
        (None, Some(_)) => false,
    }
}

/// Default MAC of an endpoint: `02:42` followed by its IPv4 address.
pub fn default_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

impl Agent {
    /// Announce a local endpoint in its network's `peers` and `endpoints` tables.
    pub(super) async fn publish_endpoint(&self, ep: &LocalEndpoint) -> Result<()> {
        let peer = PeerRecord {
            ip: ep.ip,
            mac: ep.mac,
            vtep: self.cfg.data_path_addr,
        };
        let rec = EndpointRecord {
            name: ep.name.clone(),
            aliases: ep.aliases.clone(),
            ip: ep.ip,
            prefix: ep.prefix,
            mac: ep.mac,
            network: ep.network.clone(),
            node: self.id,
            disabled: ep.disabled,
            service: ep.service.clone(),
        };
        self.db
            .put(&ep.network, PEERS, &ep.id, records::encode(&peer))
            .await?;
        self.db
            .put(&ep.network, ENDPOINTS, &ep.id, records::encode(&rec))
            .await?;
        Ok(())
    }

    /// Attach. With a client id: idempotent (see `AttachRequest.client_id` in the API).
    pub async fn attach(&self, spec: AttachSpec) -> Result<EndpointInfo> {
        self.reconciler
            .dataplane
            .can_attach()
            .map_err(AgentError::FailedPrecondition)?;
        let _guard = self.attach_lock.lock().await;
        if let Some(cid) = &spec.client_id {
            let existing = self
                .local()
                .endpoints
                .values()
                .find(|e| e.client_id.as_deref() == Some(cid.as_str()))
                .cloned();
            if let Some(ep) = existing {
                if netns_gone(&ep) {
                    tracing::info!(endpoint = %ep.name, client_id = %cid, "the namespace of an earlier attach with this client id is gone: replacing it");
                    self.detach_locked(&ep).await?;
                } else {
                    return self.same_attach(&ep, &spec).await;
                }
            }
        }
        let view = tables::network_view(&self.db).await?;
        let def = view
            .find(&spec.network)
            .cloned()
            .ok_or_else(|| AgentError::NotFound(format!("network {} not found", spec.network)))?;
        if !view.verdicts[&def.id].is_accepted() {
            return Err(AgentError::Unavailable(format!(
                "network {} lost a conflict with a concurrently created network and is being repaired: retry",
                def.name
            )));
        }
        if def.encrypted {
            self.esp_ready(&def.name)
                .map_err(AgentError::FailedPrecondition)?;
        }
        let service = match &spec.service {
            Some(s) => Some(self.service_for_attach(s, &def).await?),
            None => None,
        };
        let local = self.local();
        // A network already in use here keeps the definition it was set up with.
        let def = match local.networks.get(&def.id) {
            Some(d) => d.clone(),
            None => self.settled_network(def).await?,
        };
        if !spec.netns.exists() {
            return Err(FieldError::new(
                "netns",
                format!("{} does not exist", spec.netns.display()),
            )
            .into());
        }
        if let Some(e) = local
            .endpoints
            .values()
            .find(|e| e.netns == spec.netns && e.ifname == spec.ifname && !netns_gone(e))
        {
            return Err(AgentError::AlreadyExists(format!(
                "ifname: {} in {} is already endpoint {} ({})",
                spec.ifname,
                spec.netns.display(),
                e.name,
                e.id
            )));
        }
        let joined = !local.networks.contains_key(&def.id);
        if joined {
            self.update_local(|s| {
                s.networks.insert(def.id.clone(), def.clone());
            })
            .await?;
            self.db.join_network(&def.id).await?;
        }
        let result = self.attach_on(&def, &spec, joined, service.as_ref()).await;
        if result.is_err() && joined {
            // Nothing of ours is on the network: leave it as it was.
            let none_left = !self.local().endpoints.values().any(|e| e.network == def.id);
            if none_left {
                self.release_network(&def.id).await?;
                self.dirty.notify_one();
            }
        }
        result
    }

    async fn attach_on(
        &self,
        def: &NetworkDef,
        spec: &AttachSpec,
        just_joined: bool,
        service: Option<&ServiceDef>,
    ) -> Result<EndpointInfo> {
        if just_joined && spec.ip.is_some() {
            // The network's tables arrive by anti-entropy right after the join: give them the
            // settle period before checking a requested address against them. (An allocated
            // address waits at least as long for its first block claim.)
            tokio::time::sleep(self.cfg.settle).await;
        }
        if let (Some(ip), Some(cid)) = (spec.ip, &spec.client_id) {
            // The address was reserved for this attachment (Docker's IPAM): take it over.
            self.take_reservation(&def.id, ip, cid).await?;
        }
        let ip = self.allocate_ip(def, spec.ip).await?;
        // Checked after allocation, so that a first attach sees the synced tables.
        let u = self.usage(&def.id).await?;
        if let Some((id, node)) = u.names.get(&spec.name) {
            return Err(AgentError::AlreadyExists(format!(
                "name: endpoint {} already exists on network {} (id {id}, node {node})",
                spec.name, def.name
            )));
        }
        if let Some(mac) = spec.mac
            && let Some(holder) = u.macs.get(&mac)
        {
            return Err(AgentError::AlreadyExists(format!(
                "mac: {} is already in use by endpoint {holder} on network {}",
                format_mac(&mac),
                def.name
            )));
        }
        let ep = LocalEndpoint {
            id: super::random_id(),
            name: spec.name.clone(),
            network: def.id.clone(),
            aliases: spec.aliases.clone(),
            ip,
            prefix: def.subnet_prefix,
            mac: spec.mac.unwrap_or_else(|| default_mac(ip)),
            ifname: spec.ifname.clone(),
            netns: spec.netns.clone(),
            mtu: self.mtu_for(def),
            service: service.map(|s| s.id.clone()),
            disabled: false,
            resolv_conf: spec.resolv_conf.clone(),
            client_id: spec.client_id.clone(),
            netns_id: netns_identity(&spec.netns),
            handoff: spec.handoff,
            handed_off: false,
        };
        if let Some(path) = &ep.resolv_conf {
            if self.reconciler.dns.is_none() {
                return Err(FieldError::new(
                    "resolv_conf",
                    "this agent serves no DNS (it runs without a dataplane)",
                )
                .into());
            }
            self.write_resolv_conf(path, &spec.dns_search, &spec.dns_options)?;
        }
        self.update_local(|s| {
            s.endpoints.insert(ep.id.clone(), ep.clone());
        })
        .await?;
        // The kernel first: a failure is the caller's to see, and nothing was announced.
        if let Err(e) = self.reconcile_for_endpoint(&ep).await {
            self.drop_resolv_conf(&ep);
            self.update_local(|s| {
                s.endpoints.remove(&ep.id);
            })
            .await?;
            if let Err(e2) = self.reconciler.pass(self).await {
                tracing::warn!(error = %e2, "cleanup after a failed attach");
            }
            return Err(e);
        }
        let ep = if ep.handoff {
            // Created: from now on the runtime owns the container end.
            let done = LocalEndpoint {
                handed_off: true,
                ..ep
            };
            self.update_local(|s| {
                s.endpoints.insert(done.id.clone(), done.clone());
            })
            .await?;
            done
        } else {
            ep
        };
        self.publish_endpoint(&ep).await?;
        self.publish_node().await?;
        if let Err(e) = self.maintain_ipam(&def.id).await {
            tracing::warn!(network = %def.name, error = %e, "claiming the next block");
        }
        tracing::info!(endpoint = %ep.name, id = %ep.id, network = %def.name, %ip, "attached");
        self.endpoint_view(&ep, def).await
    }

    /// Reconcile now and fail if an operation for `ep` (or its sandbox) failed.
    async fn reconcile_for_endpoint(&self, ep: &LocalEndpoint) -> Result<()> {
        let vni = self
            .local()
            .networks
            .get(&ep.network)
            .map(|d| d.vni)
            .unwrap_or_default();
        let report = self.reconciler.pass(self).await?;
        let failure = report.failed.iter().find(|f| match &f.op {
            overlay::Op::AttachEndpoint { endpoint, .. } => endpoint.id == ep.id,
            overlay::Op::CreateSandbox { vni: v }
            | overlay::Op::CreateBridge { vni: v, .. }
            | overlay::Op::ConfigureBridge { vni: v, .. }
            | overlay::Op::CreateVxlan { vni: v, .. } => *v == vni,
            _ => false,
        });
        match failure {
            Some(f) => Err(AgentError::FailedPrecondition(format!(
                "attach {} failed: {}: {}",
                ep.name, f.op, f.error
            ))),
            None => Ok(()),
        }
    }

    /// The endpoint `ep` (with the same client id as `spec`) if `spec` asks for the same
    /// attachment, else ALREADY_EXISTS naming the first field that differs.
    async fn same_attach(&self, ep: &LocalEndpoint, spec: &AttachSpec) -> Result<EndpointInfo> {
        let local = self.local();
        let def = sandbox_of(&local, &ep.network)?;
        let cid = ep.client_id.as_deref().unwrap_or_default();
        let differs = |field: &'static str, has: String, asked: String| {
            Err(AgentError::AlreadyExists(format!(
                "{field}: endpoint {} (client id {cid}) has {has}, not {asked}",
                ep.name
            )))
        };
        if spec.network != def.id && spec.network != def.name {
            return differs("network", def.name.clone(), spec.network.clone());
        }
        if spec.netns != ep.netns {
            return differs(
                "netns",
                ep.netns.display().to_string(),
                spec.netns.display().to_string(),
            );
        }
        if spec.ifname != ep.ifname {
            return differs("ifname", ep.ifname.clone(), spec.ifname.clone());
        }
        if spec.name != ep.name {
            return differs("name", ep.name.clone(), spec.name.clone());
        }
        if spec.aliases != ep.aliases {
            return differs(
                "aliases",
                format!("{:?}", ep.aliases),
                format!("{:?}", spec.aliases),
            );
        }
        if let Some(ip) = spec.ip
            && ip != ep.ip
        {
            return differs("ip", ep.ip.to_string(), ip.to_string());
        }
        if let Some(mac) = spec.mac
            && mac != ep.mac
        {
            return differs("mac", format_mac(&ep.mac), format_mac(&mac));
        }
        let asked_service = match &spec.service {
            Some(s) => Some(self.find_service(s).await?.id),
            None => None,
        };
        if asked_service != ep.service {
            return differs(
                "service",
                ep.service.clone().unwrap_or_else(|| "none".into()),
                spec.service.clone().unwrap_or_else(|| "none".into()),
            );
        }
        self.endpoint_view(ep, &def).await
    }

    /// Detach a local endpoint by id or name. `Ok(false)` when there is none (already
    /// detached); an endpoint of another node is refused.
    pub async fn detach(&self, name_or_id: &str, network: Option<&str>) -> Result<bool> {
        if name_or_id.is_empty() {
            return Err(FieldError::new("endpoint", "required (an endpoint name or id)").into());
        }
        let _guard = self.attach_lock.lock().await;
        let local = self.local();
        let net_filter = match network {
            Some(n) if !n.is_empty() => Some(
                local
                    .networks
                    .values()
                    .find(|d| d.id == n || d.name == n)
                    .map(|d| d.id.clone())
                    .unwrap_or_else(|| n.to_string()),
            ),
            _ => None,
        };
        let matches: Vec<&LocalEndpoint> = local
            .endpoints
            .values()
            .filter(|e| e.id == name_or_id || e.name == name_or_id)
            .filter(|e| net_filter.as_ref().is_none_or(|n| *n == e.network))
            .collect();
        let ep = match matches.as_slice() {
            [one] => (*one).clone(),
            [] => {
                // Is it another node's?
                for net in local.networks.keys() {
                    for (id, r) in tables::endpoint_records(&self.db, net).await? {
                        if id == name_or_id || r.name == name_or_id {
                            return Err(AgentError::FailedPrecondition(format!(
                                "endpoint {name_or_id} is on node {}: detach it through that node's agent",
                                r.node
                            )));
                        }
                    }
                }
                return Ok(false);
            }
            many => {
                return Err(AgentError::FailedPrecondition(format!(
                    "endpoint name {name_or_id} is used on {} networks: give the network (--network)",
                    many.len()
                )));
            }
        };
        self.detach_locked(&ep).await?;
        Ok(true)
    }

    /// Detach the local endpoint attached with `client_id`; `Ok(false)` when there is none.
    pub async fn detach_client(&self, client_id: &str) -> Result<bool> {
        crate::spec::validate_client_id("client_id", client_id)?;
        let _guard = self.attach_lock.lock().await;
        let ep = self.local().endpoint_of_client(client_id).cloned();
        match ep {
            Some(ep) => {
                self.detach_locked(&ep).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Detach client endpoints whose container namespace is gone (runtimes do not always
    /// say so: `ctr run -d` never calls CNI DEL). Called by the reconciler. Returns how many.
    pub async fn collect_dead_endpoints(&self) -> Result<usize> {
        let dead: Vec<LocalEndpoint> = self
            .local()
            .endpoints
            .values()
            .filter(|e| e.client_id.is_some() && netns_gone(e))
            .cloned()
            .collect();
        if dead.is_empty() {
            return Ok(0);
        }
        let _guard = self.attach_lock.lock().await;
        let mut n = 0;
        for ep in dead {
            // Checked again under the lock: a detach or a replacing attach may have won.
            let still = self.local().endpoints.get(&ep.id).is_some_and(netns_gone);
            if still {
                tracing::info!(endpoint = %ep.name, id = %ep.id, netns = %ep.netns.display(), "the container's namespace is gone: detaching");
                self.detach_locked(&ep).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Detach `ep` (the caller holds the attach lock).
    async fn detach_locked(&self, ep: &LocalEndpoint) -> Result<()> {
        let local = self.local();
        let last = !local
            .endpoints
            .values()
            .any(|e| e.network == ep.network && e.id != ep.id);
        self.drop_resolv_conf(ep);
        self.update_local(|s| {
            s.endpoints.remove(&ep.id);
        })
        .await?;
        self.db.delete(&ep.network, PEERS, &ep.id).await?;
        self.db.delete(&ep.network, ENDPOINTS, &ep.id).await?;
        if last {
            self.release_network(&ep.network).await?;
        }
        self.publish_node().await?;
        if let Err(e) = self.reconciler.pass(self).await {
            tracing::warn!(endpoint = %ep.name, error = %e, "reconcile after detach (retried periodically)");
        }
        tracing::info!(endpoint = %ep.name, id = %ep.id, "detached");
        Ok(())
    }

    /// Give the local endpoint attached with `client_id` a new name and aliases (a runtime
    /// that learns its container's name only after the attach: Docker). Aliases that are
    /// not valid names, or equal to the name, are left out. Refused (nothing changes) when
    /// the name is taken on the network.
    pub async fn rename_endpoint(
        &self,
        client_id: &str,
        name: &str,
        aliases: &[String],
    ) -> Result<()> {
        crate::spec::validate_name("name", name)?;
        let _guard = self.attach_lock.lock().await;
        let ep = self
            .local()
            .endpoint_of_client(client_id)
            .cloned()
            .ok_or_else(|| AgentError::NotFound(format!("endpoint {client_id} not found")))?;
        let mut keep: Vec<String> = Vec::new();
        for a in aliases {
            if a != name && crate::spec::validate_name("aliases", a).is_ok() && !keep.contains(a) {
                keep.push(a.clone());
            }
        }
        keep.truncate(crate::spec::MAX_ALIASES);
        if ep.name == name && ep.aliases == keep {
            return Ok(());
        }
        let u = self.usage(&ep.network).await?;
        if let Some((id, node)) = u.names.get(name)
            && *id != ep.id
        {
            return Err(AgentError::AlreadyExists(format!(
                "name: endpoint {name} already exists on the network (id {id}, node {node})"
            )));
        }
        let renamed = LocalEndpoint {
            name: name.to_string(),
            aliases: keep,
            ..ep
        };
        self.update_local(|s| {
            s.endpoints.insert(renamed.id.clone(), renamed.clone());
        })
        .await?;
        self.publish_endpoint(&renamed).await?;
        self.dirty.notify_one();
        Ok(())
    }

    /// One local endpoint by client id, or by name or id (and network); NOT_FOUND if none.
    pub async fn inspect_endpoint(
        &self,
        name_or_id: &str,
        network: &str,
        client_id: &str,
    ) -> Result<EndpointInfo> {
        let local = self.local();
        let found: Vec<&LocalEndpoint> = if !client_id.is_empty() {
            local
                .endpoints
                .values()
                .filter(|e| e.client_id.as_deref() == Some(client_id))
                .collect()
        } else if !name_or_id.is_empty() {
            local.endpoints_named(name_or_id, network).collect()
        } else {
            return Err(FieldError::new(
                "endpoint",
                "required (an endpoint name or id, or a client_id)",
            )
            .into());
        };
        let ep = match found.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let what = if client_id.is_empty() {
                    name_or_id
                } else {
                    client_id
                };
                return Err(AgentError::NotFound(format!(
                    "endpoint {what} not found on this node"
                )));
            }
            many => {
                return Err(AgentError::FailedPrecondition(format!(
                    "endpoint name {name_or_id} is used on {} networks: give the network",
                    many.len()
                )));
            }
        };
        let def = sandbox_of(&local, &ep.network)?;
        self.endpoint_view(&ep, &def).await
    }

    /// The view of a local endpoint, with the name of the service it backs.
    pub(super) async fn endpoint_view(
        &self,
        ep: &LocalEndpoint,
        def: &NetworkDef,
    ) -> Result<EndpointInfo> {
        let mut info = self.endpoint_info(ep, def);
        self.fill_service_names(std::slice::from_mut(&mut info))
            .await?;
        Ok(info)
    }

    pub(super) fn endpoint_info(&self, ep: &LocalEndpoint, def: &NetworkDef) -> EndpointInfo {
        EndpointInfo {
            id: ep.id.clone(),
            name: ep.name.clone(),
            network_id: def.id.clone(),
            network_name: def.name.clone(),
            node: self.id,
            aliases: ep.aliases.clone(),
            ip: ep.ip,
            prefix: ep.prefix,
            mac: ep.mac,
            disabled: ep.disabled,
            local: Some(LocalPart {
                ifname: ep.ifname.clone(),
                netns: ep.netns.clone(),
                mtu: ep.mtu,
            }),
            service: ep.service.clone().map(|id| (id, String::new())),
            dns_server: self
                .reconciler
                .dns
                .as_ref()
                .filter(|_| ep.in_container())
                .map(|_| crate::dns::RESOLVER_IP),
            client_id: ep.client_id.clone(),
            gateway: def.gateway,
        }
    }

    /// The last local endpoint of `net_id` is gone: drop the sandbox from local state (unless
    /// this node's ingress endpoint needs it), and, unless this node holds VIPs or an ingress
    /// endpoint there, its block claims and its membership of the network (which tombstones
    /// our claims; other nodes' entries are hidden here).
    pub(super) async fn release_network(&self, net_id: &str) -> Result<()> {
        self.release_hold(net_id, |s| {
            if !s.ingress.contains_key(net_id) {
                s.networks.remove(net_id);
            }
        })
        .await
    }

    /// ListEndpoints: local endpoints, and the other nodes' endpoints of networks this node
    /// is on (it does not receive the tables of other networks).
    pub async fn list_endpoints(&self, network: &str) -> Result<Vec<EndpointInfo>> {
        let local = self.local();
        let view = tables::network_view(&self.db).await?;
        let filter = if network.is_empty() {
            None
        } else {
            Some(
                local
                    .networks
                    .values()
                    .find(|d| d.id == network || d.name == network)
                    .or_else(|| view.find(network))
                    .cloned()
                    .ok_or_else(|| AgentError::NotFound(format!("network {network} not found")))?,
            )
        };
        let net_def = |id: &str| -> Option<NetworkDef> {
            local
                .networks
                .get(id)
                .cloned()
                .or_else(|| view.defs.iter().find(|d| d.id == id).cloned())
        };
        let mut out = Vec::new();
        for ep in local.endpoints.values() {
            if filter.as_ref().is_some_and(|f| f.id != ep.network) {
                continue;
            }
            if let Some(def) = net_def(&ep.network) {
                out.push(self.endpoint_info(ep, &def));
            }
        }
        for net in local.networks.keys() {
            if filter.as_ref().is_some_and(|f| f.id != *net) {
                continue;
            }
            let Some(def) = net_def(net) else { continue };
            for (id, r) in tables::endpoint_records(&self.db, net).await? {
                if r.node == self.id {
                    continue;
                }
                out.push(EndpointInfo {
                    id,
                    name: r.name,
                    network_id: def.id.clone(),
                    network_name: def.name.clone(),
                    node: r.node,
                    aliases: r.aliases,
                    ip: r.ip,
                    prefix: r.prefix,
                    mac: r.mac,
                    disabled: r.disabled,
                    local: None,
                    service: r.service.map(|id| (id, String::new())),
                    dns_server: None,
                    client_id: None,
                    gateway: def.gateway,
                });
            }
        }
        out.sort_by(|a, b| (&a.network_name, &a.name).cmp(&(&b.network_name, &b.name)));
        self.fill_service_names(&mut out).await?;
        Ok(out)
    }
}
