//! Endpoints: attach (IPAM, kernel, tables), detach, list; block claims.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::spec::format_mac;
use ipnetwork::Ipv4Network;
use networkdb::NodeId;

use crate::spec::{AttachSpec, FieldError};

use super::views::{EndpointInfo, LocalPart};
use super::{Agent, now_ms};
use crate::error::{AgentError, Result};
use crate::ipam::{self, Alloc, Claim, Input, Layout, RequestError};
use crate::records::{
    self, BlockClaim, ENDPOINTS, EndpointRecord, IPAM, NetworkDef, PEERS, PeerRecord, ServiceDef,
};
use crate::state::LocalEndpoint;

/// Attempts of the allocation loop (each waits at most a settle period).
const ALLOC_ATTEMPTS: usize = 8;
/// Free addresses below which the next block is claimed ahead of need.
pub const LOW_WATER: u64 = 4;

/// What the tables say about one network's addresses.
#[derive(Debug, Default)]
struct Usage {
    claims: Vec<Claim>,
    /// Address -> endpoint name holding it.
    holders: BTreeMap<Ipv4Addr, String>,
    macs: BTreeMap<[u8; 6], String>,
    names: BTreeMap<String, (String, NodeId)>,
}

fn random_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// Default MAC of an endpoint: `02:42` followed by its IPv4 address.
pub fn default_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

impl Agent {
    /// The decoded `endpoints` table of `net`: (endpoint id, record); undecodable entries
    /// are skipped.
    pub async fn endpoint_records(&self, net: &str) -> Result<Vec<(String, EndpointRecord)>> {
        Ok(self
            .db
            .snapshot(Some(net), Some(ENDPOINTS))
            .await?
            .into_iter()
            .filter_map(|e| {
                let r = records::decode::<EndpointRecord>(ENDPOINTS, &e.key, e.new.as_deref()?)?;
                Some((e.key, r))
            })
            .collect())
    }

    async fn usage(&self, net_id: &str) -> Result<Usage> {
        let mut u = Usage::default();
        for e in self.db.snapshot(Some(net_id), Some(IPAM)).await? {
            let (Some((block, node)), Some(v)) = (ipam::parse_claim_key(&e.key), e.new.as_deref())
            else {
                continue;
            };
            if let Some(c) = records::decode::<BlockClaim>(IPAM, &e.key, v) {
                u.claims.push(Claim {
                    block,
                    node,
                    at_ms: c.claimed_at_ms,
                });
            }
        }
        for (id, r) in self.endpoint_records(net_id).await? {
            u.holders.insert(r.ip, r.name.clone());
            u.macs.insert(r.mac, r.name.clone());
            u.names.insert(r.name.clone(), (id, r.node));
        }
        for e in self.db.snapshot(Some(net_id), Some(PEERS)).await? {
            if let Some(r) = e
                .new
                .as_deref()
                .and_then(|v| records::decode::<PeerRecord>(PEERS, &e.key, v))
            {
                u.holders.entry(r.ip).or_insert_with(|| e.key.clone());
                u.macs.entry(r.mac).or_insert_with(|| e.key.clone());
            }
        }
        let local = self.local();
        for ep in local.endpoints.values().filter(|e| e.network == net_id) {
            u.holders.insert(ep.ip, ep.name.clone());
            u.macs.insert(ep.mac, ep.name.clone());
            u.names.insert(ep.name.clone(), (ep.id.clone(), self.id));
        }
        // VIPs: every service's, including one that lost a name conflict and is not
        // withdrawn yet, whoever created it (the services table is durable, so a VIP stays
        // reserved while its service lives, even after its creator's blocks were reaped),
        // and this node's own for sure.
        for s in self
            .all_services()
            .await?
            .iter()
            .chain(local.services.values())
        {
            if let Some(vip) = s.vips.get(net_id) {
                u.holders
                    .insert(*vip, format!("the VIP of service {}", s.name));
            }
        }
        Ok(u)
    }

    fn layout(&self, def: &NetworkDef) -> Layout {
        Layout::new(def.subnet(), def.gateway, self.cfg.block_prefix)
    }

    /// Write this node's claim on `block` (and remember it in local state).
    pub(super) async fn put_claim(
        &self,
        net_id: &str,
        block: Ipv4Network,
        at_ms: u64,
    ) -> Result<()> {
        let claim = BlockClaim {
            node: self.id,
            claimed_at_ms: at_ms,
        };
        self.update_local(|s| {
            s.claims
                .entry(net_id.to_string())
                .or_default()
                .insert(block.to_string(), at_ms);
        })
        .await?;
        self.db
            .put(
                net_id,
                IPAM,
                &ipam::claim_key(block, self.id),
                records::encode(&claim),
            )
            .await?;
        Ok(())
    }

    async fn release_claim(&self, net_id: &str, block: Ipv4Network) -> Result<()> {
        self.update_local(|s| {
            if let Some(c) = s.claims.get_mut(net_id) {
                c.remove(&block.to_string());
            }
        })
        .await?;
        self.db
            .delete(net_id, IPAM, &ipam::claim_key(block, self.id))
            .await?;
        Ok(())
    }

    fn ipam_input<'a>(
        &self,
        layout: Layout,
        claims: &'a [Claim],
        used: &'a BTreeSet<Ipv4Addr>,
    ) -> Input<'a> {
        Input {
            layout,
            me: self.id,
            claims,
            used,
            now_ms: now_ms(),
            settle_ms: self.cfg.settle.as_millis() as u64,
            low_water: LOW_WATER,
        }
    }

    /// An address for a new endpoint or VIP on `def`: the requested one (checked), or one
    /// from this node's blocks (claiming and waiting for a block when needed).
    pub(super) async fn allocate_ip(
        &self,
        def: &NetworkDef,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        let layout = self.layout(def);
        if let Some(ip) = requested {
            let u = self.usage(&def.id).await?;
            return match ipam::check_requested(&layout, ip, &u.holders) {
                Ok(()) => Ok(ip),
                Err(e @ RequestError::InUse { .. }) => Err(AgentError::AlreadyExists(format!(
                    "ip: {e} on network {}",
                    def.name
                ))),
                Err(e) => Err(FieldError::new("ip", e.to_string()).into()),
            };
        }
        for _ in 0..ALLOC_ATTEMPTS {
            let u = self.usage(&def.id).await?;
            let used: BTreeSet<Ipv4Addr> = u.holders.keys().copied().collect();
            let decision = self.ipam_input(layout, &u.claims, &used).allocate();
            match decision {
                Alloc::Ip(ip) => return Ok(ip),
                Alloc::Wait { ms } => {
                    tokio::time::sleep(Duration::from_millis(ms + 20)).await;
                }
                Alloc::Claim { block, wait_ms } => {
                    tracing::info!(network = %def.name, %block, "claiming an address block");
                    self.put_claim(&def.id, block, now_ms()).await?;
                    tokio::time::sleep(Duration::from_millis(wait_ms + 20)).await;
                }
                Alloc::Exhausted => {
                    return Err(AgentError::ResourceExhausted(format!(
                        "network {} ({}) has no free address for this node: all {} address blocks are claimed or full",
                        def.name,
                        def.subnet(),
                        layout.block_count()
                    )));
                }
            }
        }
        Err(AgentError::Unavailable(format!(
            "network {}: no address block settled after {ALLOC_ATTEMPTS} attempts (concurrent claims); retry",
            def.name
        )))
    }

    /// Claim the next block ahead of need, and withdraw lost claims nobody here uses.
    /// Called after every attach and by the reconciler.
    pub async fn maintain_ipam(&self, net_id: &str) -> Result<()> {
        let local = self.local();
        let Some(def) = local.held_network(net_id) else {
            return Ok(());
        };
        let layout = self.layout(def);
        let u = self.usage(net_id).await?;
        let used: BTreeSet<Ipv4Addr> = u.holders.keys().copied().collect();
        let input = self.ipam_input(layout, &u.claims, &used);
        let local_ips: BTreeSet<Ipv4Addr> = local
            .endpoints
            .values()
            .filter(|e| e.network == net_id)
            .map(|e| e.ip)
            .chain(local.vips_on(net_id))
            .collect();
        for block in input.releasable(&local_ips) {
            tracing::info!(network = %def.name, %block, "withdrawing a block claim that lost");
            self.release_claim(net_id, block).await?;
        }
        if let Some(block) = input.prefetch() {
            tracing::info!(network = %def.name, %block, "claiming the next address block ahead of need");
            self.put_claim(net_id, block, now_ms()).await?;
        }
        Ok(())
    }

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

    /// Attach.
    pub async fn attach(&self, spec: AttachSpec) -> Result<EndpointInfo> {
        self.dataplane
            .can_attach()
            .map_err(AgentError::FailedPrecondition)?;
        let _guard = self.attach_lock.lock().await;
        let view = self.network_view().await?;
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
            .find(|e| e.netns == spec.netns && e.ifname == spec.ifname)
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
            id: random_id(),
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
        };
        if let Some(path) = &ep.resolv_conf {
            if self.dns.is_none() {
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
            if let Err(e2) = self.reconcile_now().await {
                tracing::warn!(error = %e2, "cleanup after a failed attach");
            }
            return Err(e);
        }
        self.publish_endpoint(&ep).await?;
        self.publish_node().await?;
        if let Err(e) = self.maintain_ipam(&def.id).await {
            tracing::warn!(network = %def.name, error = %e, "claiming the next block");
        }
        tracing::info!(endpoint = %ep.name, id = %ep.id, network = %def.name, %ip, "attached");
        let mut info = self.endpoint_info(&ep, def);
        self.fill_service_names(std::slice::from_mut(&mut info))
            .await?;
        Ok(info)
    }

    /// Reconcile now and fail if an operation for `ep` (or its sandbox) failed.
    async fn reconcile_for_endpoint(&self, ep: &LocalEndpoint) -> Result<()> {
        let vni = self
            .local()
            .networks
            .get(&ep.network)
            .map(|d| d.vni)
            .unwrap_or_default();
        let report = self.reconcile_now().await?;
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

    /// Detach a local endpoint by id or name.
    pub async fn detach(&self, name_or_id: &str, network: Option<&str>) -> Result<()> {
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
                    for (id, r) in self.endpoint_records(net).await? {
                        if id == name_or_id || r.name == name_or_id {
                            return Err(AgentError::FailedPrecondition(format!(
                                "endpoint {name_or_id} is on node {}: detach it through that node's agent",
                                r.node
                            )));
                        }
                    }
                }
                return Err(AgentError::NotFound(format!(
                    "endpoint {name_or_id} not found on this node"
                )));
            }
            many => {
                return Err(AgentError::FailedPrecondition(format!(
                    "endpoint name {name_or_id} is used on {} networks: give the network (--network)",
                    many.len()
                )));
            }
        };
        let last = !local
            .endpoints
            .values()
            .any(|e| e.network == ep.network && e.id != ep.id);
        self.drop_resolv_conf(&ep);
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
        if let Err(e) = self.reconcile_now().await {
            tracing::warn!(endpoint = %ep.name, error = %e, "reconcile after detach (retried periodically)");
        }
        tracing::info!(endpoint = %ep.name, id = %ep.id, "detached");
        Ok(())
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
            dns_server: self.dns.is_some().then_some(crate::dns::RESOLVER_IP),
        }
    }

    /// The last local endpoint of `net_id` is gone: drop the sandbox from local state, and,
    /// unless this node holds VIPs there, its block claims and its membership of the network
    /// (which tombstones our claims; other nodes' entries are hidden here).
    pub(super) async fn release_network(&self, net_id: &str) -> Result<()> {
        let keep = self.local().vip_networks.contains_key(net_id);
        self.update_local(|s| {
            s.networks.remove(net_id);
            if !keep {
                s.claims.remove(net_id);
            }
        })
        .await?;
        if !keep {
            self.db.leave_network(net_id).await?;
        }
        Ok(())
    }

    /// ListEndpoints: local endpoints, and the other nodes' endpoints of networks this node
    /// is on (it does not receive the tables of other networks).
    pub async fn list_endpoints(&self, network: &str) -> Result<Vec<EndpointInfo>> {
        let local = self.local();
        let view = self.network_view().await?;
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
            for (id, r) in self.endpoint_records(net).await? {
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
                });
            }
        }
        out.sort_by(|a, b| (&a.network_name, &a.name).cmp(&(&b.network_name, &b.name)));
        self.fill_service_names(&mut out).await?;
        Ok(out)
    }
}
