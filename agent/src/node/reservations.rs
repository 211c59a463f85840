//! Networks pinned for a runtime's network object and addresses reserved ahead of an
//! attach: what Docker's IPAM protocol needs (it asks for a pool when a Docker network is
//! created and for an address before the endpoint exists). Both live in the local state, so
//! they survive restarts of the agent.

use std::net::Ipv4Addr;

use super::Agent;
use crate::error::{AgentError, Result};
use crate::records::NetworkDef;

impl Agent {
    /// Hold network `name_or_id` without local endpoints (join its gossip, keep block
    /// claims) until [`Agent::unpin_network`]. Idempotent; returns the definition held.
    pub async fn pin_network(&self, name_or_id: &str) -> Result<NetworkDef> {
        let def = self.find_network(name_or_id).await?;
        let _guard = self.attach_lock.lock().await;
        let local = self.local();
        if let Some(d) = local.pinned_networks.get(&def.id) {
            return Ok(d.clone());
        }
        let def = match local.held_network(&def.id) {
            Some(d) => d.clone(),
            None => {
                self.db.join_network(&def.id).await?;
                self.settled_network(def).await?
            }
        };
        self.update_local(|s| {
            s.pinned_networks.insert(def.id.clone(), def.clone());
        })
        .await?;
        tracing::info!(network = %def.name, id = %def.id, "network pinned");
        Ok(def)
    }

    /// Stop pinning `net_id` (and leave it, with its block claims, when nothing else holds
    /// it here). Its reservations go too.
    pub async fn unpin_network(&self, net_id: &str) -> Result<()> {
        let _guard = self.attach_lock.lock().await;
        let local = self.local();
        if !local.pinned_networks.contains_key(net_id) {
            return Ok(());
        }
        self.release_hold(net_id, |s| {
            s.pinned_networks.remove(net_id);
            s.reservations.remove(net_id);
        })
        .await?;
        tracing::info!(id = %net_id, "network unpinned");
        Ok(())
    }

    /// Reserve an address on the pinned network `net_id` for `holder`: `requested` (checked
    /// against every address in use) or one from this node's blocks. Returns the address and
    /// the subnet's prefix length.
    pub async fn reserve_address(
        &self,
        net_id: &str,
        requested: Option<Ipv4Addr>,
        holder: &str,
    ) -> Result<(Ipv4Addr, u8)> {
        let _guard = self.attach_lock.lock().await;
        let def = self.local().held_network(net_id).cloned().ok_or_else(|| {
            AgentError::FailedPrecondition(format!("network {net_id} is not held on this node"))
        })?;
        let ip = self.allocate_ip(&def, requested).await?;
        self.update_local(|s| {
            s.reservations
                .entry(def.id.clone())
                .or_default()
                .insert(ip, holder.to_string());
        })
        .await?;
        if let Err(e) = self.maintain_ipam(&def.id).await {
            tracing::warn!(network = %def.name, error = %e, "claiming the next block");
        }
        Ok((ip, def.subnet_prefix))
    }

    /// Give the reservation of `ip` on `net_id` to `holder` (e.g. once the client id of the
    /// coming attach is known). `false` when there is no such reservation.
    pub async fn rename_reservation(
        &self,
        net_id: &str,
        ip: Ipv4Addr,
        holder: &str,
    ) -> Result<bool> {
        self.update_local(
            |s| match s.reservations.get_mut(net_id).and_then(|r| r.get_mut(&ip)) {
                Some(h) => {
                    *h = holder.to_string();
                    true
                }
                None => false,
            },
        )
        .await
    }

    /// Release the reservation of `ip` on `net_id` (fine when there is none).
    pub async fn release_reservation(&self, net_id: &str, ip: Ipv4Addr) -> Result<bool> {
        self.update_local(|s| {
            let found = s
                .reservations
                .get_mut(net_id)
                .is_some_and(|r| r.remove(&ip).is_some());
            if s.reservations.get(net_id).is_some_and(|r| r.is_empty()) {
                s.reservations.remove(net_id);
            }
            found
        })
        .await
    }

    /// After a restart: hold the pinned networks again (those without local endpoints or
    /// VIPs; the others were rejoined with them).
    pub(super) async fn recover_pins(&self) -> Result<()> {
        let local = self.local();
        for net in local.pinned_networks.keys() {
            if local.networks.contains_key(net) || local.vip_networks.contains_key(net) {
                continue;
            }
            self.db.join_network(net).await?;
            for (block, at) in local.claims.get(net).into_iter().flatten() {
                if let Ok(block) = block.parse() {
                    self.put_claim(net, block, *at).await?;
                }
            }
        }
        Ok(())
    }

    /// An attach with `client_id` asks for `ip` on `net_id`: if it is reserved for that
    /// client, the reservation ends (the endpoint holds the address from now on). The
    /// caller holds the attach lock.
    pub(super) async fn take_reservation(
        &self,
        net_id: &str,
        ip: Ipv4Addr,
        client_id: &str,
    ) -> Result<()> {
        let ours = self
            .local()
            .reservations
            .get(net_id)
            .and_then(|r| r.get(&ip))
            .is_some_and(|h| h == client_id);
        if ours {
            self.release_reservation(net_id, ip).await?;
        }
        Ok(())
    }
}
