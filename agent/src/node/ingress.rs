//! Ingress endpoints: this node's door into a network for published ports (see
//! [`crate::mesh`]). One per network that needs it: a network of a published service (its
//! first one) when a port is `mesh`, or when it is `local` and this node has a backend of the
//! service there. Its address comes from this node's own blocks; it is announced in the
//! network's `peers` table (`ingress-<node id>`) like any endpoint, so every other node
//! programs it; it goes (and the network with it, if nothing else holds it here) when no
//! published port needs it. Called from every reconcile run, idempotently.

use std::collections::BTreeMap;

use super::Agent;
use super::endpoints::default_mac;
use crate::config::DataplaneKind;
use crate::error::Result;
use crate::mesh::{ingress_id, ingress_ifname};
use crate::records::{self, NetworkDef, PEERS, PeerRecord, PublishMode, ServiceDef};
use crate::state::{IngressEndpoint, LocalState};
use crate::tables::{self, NetworkView};

/// The networks this node needs an ingress endpoint on, by id, with their definitions
/// (pure). `esp_ok`: this node can hold encrypted networks.
pub fn ingress_networks(
    services: &[ServiceDef],
    view: &NetworkView,
    local: &LocalState,
    esp_ok: bool,
) -> BTreeMap<String, NetworkDef> {
    let mut out = BTreeMap::new();
    for svc in services {
        let Some(net) = svc.publish_network() else {
            continue;
        };
        let Some(def) = local
            .networks
            .get(net)
            .or_else(|| view.accepted().find(|d| d.id == net))
        else {
            continue;
        };
        if def.encrypted && !esp_ok {
            continue;
        }
        let mesh = svc.published.iter().any(|p| p.mode == PublishMode::Mesh);
        let local_backend = local
            .endpoints
            .values()
            .any(|e| e.network == net && e.service.as_deref() == Some(svc.id.as_str()));
        if mesh || local_backend {
            out.insert(net.to_string(), def.clone());
        }
    }
    out
}

impl Agent {
    /// Add the ingress endpoints this node needs, remove those it no longer needs, and
    /// re-announce any whose `peers` entry is missing or differs.
    pub async fn maintain_ingress(&self) -> Result<()> {
        if self.reconciler.dataplane.kind() != DataplaneKind::Kernel {
            return Ok(());
        }
        let services = tables::services(&self.db).await?;
        let view = tables::network_view(&self.db).await?;
        let local = self.local();
        let esp_ok = self.reconciler.dataplane.esp().is_ok();
        let wanted = ingress_networks(&services, &view, &local, esp_ok);
        for net in local.ingress.keys() {
            if !wanted.contains_key(net) {
                self.remove_ingress(net).await?;
            }
        }
        for (net, def) in wanted {
            match local.ingress.get(&net) {
                None => {
                    if let Err(e) = self.add_ingress(def.clone()).await {
                        tracing::warn!(network = %def.name, error = %e, "creating the ingress endpoint (retried)");
                    }
                }
                Some(ing) => {
                    let want = self.ingress_peer(ing);
                    let have = tables::peer_records(&self.db, &net)
                        .await?
                        .into_iter()
                        .find(|p| p.endpoint == ing.id && p.owner == self.id);
                    if have.map(|p| p.record) != Some(want) {
                        self.publish_ingress(&net, ing).await?;
                    }
                }
            }
        }
        Ok(())
    }

    fn ingress_peer(&self, ing: &IngressEndpoint) -> PeerRecord {
        PeerRecord {
            ip: ing.ip,
            mac: ing.mac,
            vtep: self.cfg.data_path_addr,
        }
    }

    /// Announce an ingress endpoint in its network's `peers` table.
    pub(super) async fn publish_ingress(&self, net: &str, ing: &IngressEndpoint) -> Result<()> {
        self.db
            .put(
                net,
                PEERS,
                &ing.id,
                records::encode(&self.ingress_peer(ing)),
            )
            .await?;
        Ok(())
    }

    async fn add_ingress(&self, def: NetworkDef) -> Result<()> {
        let _guard = self.attach_lock.lock().await;
        let local = self.local();
        if local.ingress.contains_key(&def.id) {
            return Ok(());
        }
        let def = match local.networks.get(&def.id) {
            Some(d) => d.clone(),
            None => self.settled_network(def).await?,
        };
        let joined = !local.networks.contains_key(&def.id);
        if joined {
            self.update_local(|s| {
                s.networks.insert(def.id.clone(), def.clone());
            })
            .await?;
            if !local.vip_networks.contains_key(&def.id) {
                self.db.join_network(&def.id).await?;
            }
        }
        let ip = match self.allocate_ip(&def, None).await {
            Ok(ip) => ip,
            Err(e) => {
                if joined {
                    self.drop_network_if_unused(&def.id).await?;
                }
                return Err(e);
            }
        };
        let ing = IngressEndpoint {
            id: ingress_id(self.id),
            ip,
            mac: default_mac(ip),
            ifname: ingress_ifname(&self.cfg.prefix, def.vni),
        };
        self.update_local(|s| {
            s.ingress.insert(def.id.clone(), ing.clone());
        })
        .await?;
        self.publish_ingress(&def.id, &ing).await?;
        tracing::info!(network = %def.name, ip = %ing.ip, ifname = %ing.ifname, "ingress endpoint created");
        self.dirty.notify_one();
        Ok(())
    }

    async fn remove_ingress(&self, net: &str) -> Result<()> {
        let _guard = self.attach_lock.lock().await;
        let Some(ing) = self.update_local(|s| s.ingress.remove(net)).await? else {
            return Ok(());
        };
        self.db.delete(net, PEERS, &ing.id).await?;
        self.drop_network_if_unused(net).await?;
        tracing::info!(network = %net, ip = %ing.ip, "ingress endpoint removed: no published port needs it");
        self.dirty.notify_one();
        Ok(())
    }

    /// Drop the sandbox of `net` when no local endpoint or ingress endpoint is on it, and
    /// leave the network unless something else holds it here (VIPs, a runtime's pin).
    async fn drop_network_if_unused(&self, net: &str) -> Result<()> {
        let local = self.local();
        let used =
            local.ingress.contains_key(net) || local.endpoints.values().any(|e| e.network == net);
        if used || !local.networks.contains_key(net) {
            return Ok(());
        }
        self.release_hold(net, |s| {
            s.networks.remove(net);
        })
        .await
    }
}
