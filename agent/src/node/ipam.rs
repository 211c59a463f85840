//! Address blocks of this node: what the tables say is in use on a network, claims and their
//! withdrawal, and the allocation of an endpoint's or a VIP's address (the rules are
//! [`crate::ipam`]'s).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnetwork::Ipv4Network;
use networkdb::NodeId;

use super::{Agent, now_ms};
use crate::error::{AgentError, Result};
use crate::ipam::{self, Alloc, Claim, Input, Layout, RequestError};
use crate::records::{self, BlockClaim, IPAM, NetworkDef, PEERS, PeerRecord};
use crate::spec::FieldError;
use crate::tables;

/// Attempts of the allocation loop (each waits at most a settle period).
const ALLOC_ATTEMPTS: usize = 8;
/// Free addresses below which the next block is claimed ahead of need.
pub const LOW_WATER: u64 = 4;

/// What the tables say about one network's addresses.
#[derive(Debug, Default)]
pub(super) struct Usage {
    pub(super) claims: Vec<Claim>,
    /// Address -> endpoint name holding it.
    pub(super) holders: BTreeMap<Ipv4Addr, String>,
    pub(super) macs: BTreeMap<[u8; 6], String>,
    pub(super) names: BTreeMap<String, (String, NodeId)>,
}

impl Agent {
    pub(super) async fn usage(&self, net_id: &str) -> Result<Usage> {
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
        for (id, r) in tables::endpoint_records(&self.db, net_id).await? {
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
        for (ip, holder) in local.reservations.get(net_id).into_iter().flatten() {
            u.holders
                .insert(*ip, format!("an address reserved for {holder}"));
        }
        for ep in local.endpoints.values().filter(|e| e.network == net_id) {
            u.holders.insert(ep.ip, ep.name.clone());
            u.macs.insert(ep.mac, ep.name.clone());
            u.names.insert(ep.name.clone(), (ep.id.clone(), self.id));
        }
        if let Some(ing) = local.ingress.get(net_id) {
            u.holders.insert(ing.ip, ing.id.clone());
            u.macs.insert(ing.mac, ing.id.clone());
        }
        // VIPs: every service's, including one that lost a name conflict and is not
        // withdrawn yet, whoever created it (the services table is durable, so a VIP stays
        // reserved while its service lives, even after its creator's blocks were reaped),
        // and this node's own for sure.
        for s in tables::all_services(&self.db)
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

    pub(super) fn layout(&self, def: &NetworkDef) -> Layout {
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

    pub(super) async fn release_claim(&self, net_id: &str, block: Ipv4Network) -> Result<()> {
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

    pub(super) fn ipam_input<'a>(
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
            .chain(local.ingress.get(net_id).map(|i| i.ip))
            .chain(local.reserved_on(net_id))
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
}
