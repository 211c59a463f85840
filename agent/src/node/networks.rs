//! Network definitions: create, delete, list, inspect, and the repair of this node's
//! definitions that lost a conflict (see [`crate::conflict`]).

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::Ipv4Network;
use networkdb::{CLUSTER, NodeId};

use super::views::NetworkInfo;
use super::{Agent, now_ms};
use crate::conflict;
use crate::error::{AgentError, Result};
use crate::pools::{self, overlaps};
use crate::records::{self, NETWORKS, NetworkDef};
use crate::spec::{FieldError, NetworkRequest};
use crate::tables;

impl Agent {
    /// Look a network up by name or id, or fail with NotFound.
    pub async fn find_network(&self, name_or_id: &str) -> Result<NetworkDef> {
        tables::network_view(&self.db)
            .await?
            .find(name_or_id)
            .cloned()
            .ok_or_else(|| AgentError::NotFound(format!("network {name_or_id} not found")))
    }

    /// CreateNetwork. With a client-supplied id: idempotent (see [`same_network`]).
    pub async fn create_network(&self, req: NetworkRequest) -> Result<NetworkDef> {
        let _guard = self.create_lock.lock().await;
        let view = tables::network_view(&self.db).await?;
        if let Some(id) = &req.id
            && let Some(d) = view.defs.iter().find(|d| d.id == *id)
        {
            return same_network(d, &req).map(|()| d.clone());
        }
        if let Some(d) = view.defs.iter().find(|d| d.name == req.name) {
            return Err(AgentError::AlreadyExists(format!(
                "network {} already exists (id {})",
                req.name, d.id
            )));
        }
        let vni = match req.vni {
            Some(v) => {
                if let Some(d) = view.defs.iter().find(|d| d.vni == v) {
                    return Err(AgentError::AlreadyExists(format!(
                        "vni: {v} is used by network {} ({})",
                        d.name, d.id
                    )));
                }
                v
            }
            None => {
                let taken: BTreeSet<u32> = view.defs.iter().map(|d| d.vni).collect();
                self.cfg.pools.vni(&taken).ok_or_else(|| {
                    AgentError::ResourceExhausted(format!(
                        "vni: the VNI pool {}-{} is exhausted",
                        self.cfg.pools.vni.start(),
                        self.cfg.pools.vni.end()
                    ))
                })?
            }
        };
        let routes = self.refresh_host_routes().await;
        let subnet = match req.subnet {
            Some(s) => {
                if let Some(d) = view.defs.iter().find(|d| overlaps(d.subnet(), s)) {
                    return Err(AgentError::AlreadyExists(format!(
                        "subnet: {s} overlaps {} of network {} ({})",
                        d.subnet(),
                        d.name,
                        d.id
                    )));
                }
                if let Some(r) = routes.iter().find(|r| r.prefix() > 0 && overlaps(**r, s)) {
                    tracing::warn!(subnet = %s, route = %r, "the requested subnet overlaps a host route");
                }
                s
            }
            None => {
                let taken: Vec<Ipv4Network> = view.defs.iter().map(|d| d.subnet()).collect();
                self.cfg.pools.subnet(&taken, &routes).ok_or_else(|| {
                    AgentError::ResourceExhausted(format!(
                        "subnet: no free /{} left in the pool {} (other networks and host routes use it)",
                        self.cfg.pools.subnet_prefix, self.cfg.pools.subnet_pool
                    ))
                })?
            }
        };
        let gateway = req.gateway.unwrap_or_else(|| pools::first_host(subnet));
        let created = self.next_stamp(view.defs.iter().map(|d| d.created));
        let def = NetworkDef {
            id: req.id.clone().unwrap_or_else(super::random_id),
            name: req.name,
            vni,
            subnet_addr: subnet.network(),
            subnet_prefix: subnet.prefix(),
            gateway,
            mtu: req.mtu.unwrap_or(0),
            encrypted: req.encrypted,
            creator: self.id,
            created,
            revision: 0,
            note: String::new(),
        };
        self.db
            .put(CLUSTER, NETWORKS, &def.id, records::encode(&def))
            .await?;
        tracing::info!(name = %def.name, id = %def.id, vni, %subnet, "network created");
        Ok(def)
    }

    /// Endpoint counts of a network per node (this node's from local state, the others' from
    /// their `nodes` records).
    pub async fn endpoint_counts(&self, net_id: &str) -> Result<BTreeMap<NodeId, u32>> {
        let mut out = BTreeMap::new();
        for (node, rec) in tables::node_records(&self.db).await? {
            if node == self.id {
                continue;
            }
            if let Some(n) = rec.endpoints.get(net_id).filter(|n| **n > 0) {
                out.insert(node, *n);
            }
        }
        let local = self
            .local()
            .endpoints
            .values()
            .filter(|e| e.network == net_id)
            .count() as u32;
        if local > 0 {
            out.insert(self.id, local);
        }
        Ok(out)
    }

    /// DeleteNetwork: refused while any node reports endpoints on it. `Ok(false)` when there
    /// is no such network (already deleted).
    pub async fn delete_network(&self, name_or_id: &str) -> Result<bool> {
        if name_or_id.is_empty() {
            return Err(FieldError::new("network", "required (a network name or id)").into());
        }
        let _guard = self.create_lock.lock().await;
        let def = match self.find_network(name_or_id).await {
            Ok(d) => d,
            Err(AgentError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let counts = self.endpoint_counts(&def.id).await?;
        let total: u32 = counts.values().sum();
        if total > 0 {
            let nodes = self.names_of(counts.keys()).await?;
            return Err(AgentError::FailedPrecondition(format!(
                "network {} has {total} endpoint{} (on {}): detach {} first",
                def.name,
                if total == 1 { "" } else { "s" },
                nodes.join(", "),
                if total == 1 { "it" } else { "them" }
            )));
        }
        self.db.delete(CLUSTER, NETWORKS, &def.id).await?;
        tracing::info!(name = %def.name, id = %def.id, "network deleted");
        Ok(true)
    }

    /// Names of `nodes` (their ids when the name is unknown), sorted.
    async fn names_of(&self, nodes: impl Iterator<Item = &NodeId>) -> Result<Vec<String>> {
        let names = self.node_names().await?;
        let mut out: Vec<String> = nodes
            .map(|n| names.get(n).cloned().unwrap_or_else(|| n.to_string()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// A definition with the nodes that use it.
    pub async fn network_info(&self, def: &NetworkDef) -> Result<NetworkInfo> {
        let counts = self.endpoint_counts(&def.id).await?;
        let nodes = self.names_of(counts.keys()).await?;
        Ok(NetworkInfo {
            def: def.clone(),
            endpoints: counts.values().sum(),
            nodes,
        })
    }

    /// ListNetworks: accepted definitions, by name.
    pub async fn list_networks(&self) -> Result<Vec<NetworkInfo>> {
        let view = tables::network_view(&self.db).await?;
        let mut defs: Vec<&NetworkDef> = view.accepted().collect();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = Vec::new();
        for d in defs {
            out.push(self.network_info(d).await?);
        }
        Ok(out)
    }

    /// Repair the definitions that lost a conflict and that this node answers for (its own,
    /// or those of a creator that is down: see [`Agent::answers_for`]). The reconciler calls
    /// this on every change of the `networks` table. Returns how many were repaired.
    pub async fn repair_networks(&self) -> Result<usize> {
        let _guard = self.create_lock.lock().await;
        let view = tables::network_view(&self.db).await?;
        let routes = self.host_routes.lock().expect("not poisoned").clone();
        let mut repaired = 0;
        for d in &view.defs {
            let verdict = &view.verdicts[&d.id];
            if verdict.is_accepted() || !self.answers_for(d.creator).await? {
                continue;
            }
            if self.local().networks.contains_key(&d.id) {
                // In use here already (it was accepted when attached): keep it; the other
                // side's agent refuses to attach to the loser, and the clash is logged.
                tracing::error!(network = %d.name, id = %d.id, ?verdict, "a network in use lost a conflict");
                continue;
            }
            match conflict::repair(d, verdict, &view.defs, &self.cfg.pools, &routes) {
                Ok(fixed) => {
                    tracing::warn!(network = %d.name, id = %d.id, note = %fixed.note, "repairing a network that lost a conflict");
                    self.db
                        .put(CLUSTER, NETWORKS, &fixed.id, records::encode(&fixed))
                        .await?;
                    repaired += 1;
                }
                Err(e) => {
                    tracing::error!(network = %d.name, id = %d.id, error = %e, "cannot repair a network that lost a conflict");
                }
            }
        }
        Ok(repaired)
    }

    /// Wait until `def` is old enough to be used (the settle period after its creation, so
    /// that a conflicting concurrent definition has arrived), then check it still stands.
    pub async fn settled_network(&self, def: NetworkDef) -> Result<NetworkDef> {
        let settle = self.cfg.settle.as_millis() as u64;
        let age = now_ms().saturating_sub(def.created);
        if age >= settle {
            return Ok(def);
        }
        tokio::time::sleep(std::time::Duration::from_millis(settle - age)).await;
        let view = tables::network_view(&self.db).await?;
        match (
            view.defs.iter().find(|d| d.id == def.id),
            view.verdicts.get(&def.id),
        ) {
            (Some(now), Some(v)) if v.is_accepted() => Ok(now.clone()),
            (Some(_), Some(v)) => Err(AgentError::Unavailable(format!(
                "network {} lost a conflict with a concurrently created network ({v:?}) and is being repaired: retry",
                def.name
            ))),
            _ => Err(AgentError::NotFound(format!(
                "network {} was deleted",
                def.name
            ))),
        }
    }
}

/// Whether a create request with the id of the existing `def` asks for the same network:
/// `Ok` when every field it gives matches (fields it leaves empty match anything), else
/// ALREADY_EXISTS naming the first field that differs.
pub fn same_network(def: &NetworkDef, req: &NetworkRequest) -> Result<()> {
    let differs = |field: &str, has: String, asked: String| {
        Err(AgentError::AlreadyExists(format!(
            "{field}: network {} (id {}) has {has}, not {asked}",
            def.name, def.id
        )))
    };
    if req.name != def.name {
        return differs("name", def.name.clone(), req.name.clone());
    }
    if let Some(s) = req.subnet
        && s != def.subnet()
    {
        return differs("subnet", def.subnet().to_string(), s.to_string());
    }
    if let Some(g) = req.gateway
        && g != def.gateway
    {
        return differs("gateway", def.gateway.to_string(), g.to_string());
    }
    if let Some(v) = req.vni
        && v != def.vni
    {
        return differs("vni", def.vni.to_string(), v.to_string());
    }
    if let Some(m) = req.mtu
        && m != def.mtu
    {
        return differs("mtu", def.mtu.to_string(), m.to_string());
    }
    if req.encrypted != def.encrypted {
        return differs(
            "encrypted",
            def.encrypted.to_string(),
            req.encrypted.to_string(),
        );
    }
    Ok(())
}
