//! Endpoint address allocation without a central allocator: pure logic, no I/O.
//!
//! A network's subnet is cut into *blocks* (by default /28). A node hands out addresses only
//! from blocks it owns. To own a block it writes a claim `<block>@<node>` (value: node and
//! wall-clock claim time) into the network's `ipam` table, and waits:
//!
//! * a claim is **usable** once it is the *winner* of its block and has been held for the
//!   settle period (`now - claimed_at >= settle`);
//! * the **winner** among the claims visible for a block is the one with the lowest
//!   `(claimed_at, node)`: the earliest claim, ties to the lowest node id. Every node computes
//!   the same winner from the same table, so a conflict resolves the same way everywhere;
//!   a block that has been in use for long is never taken over by a later claim;
//! * a node whose claim lost **releases** it once none of its own endpoints uses an address
//!   in it (addresses it already handed out stay valid; the winner never hands out an
//!   address that any endpoint in the `endpoints` table holds).
//!
//! A node claims its next block when its usable blocks have fewer than `low_water` free
//! addresses left, so in steady state an attach never waits for a settle period; only the
//! first attach on a network does. Network and broadcast addresses of the subnet and the
//! gateway are never handed out. Requested addresses bypass blocks (the orchestrator's choice
//! always wins) and are only checked against addresses in use.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use networkdb::NodeId;

/// One claim as read from the `ipam` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    pub block: Ipv4Network,
    pub node: NodeId,
    pub at_ms: u64,
}

/// Key of a claim in the `ipam` table.
pub fn claim_key(block: Ipv4Network, node: NodeId) -> String {
    format!("{block}@{node}")
}

/// Inverse of [`claim_key`]; `None` for anything else.
pub fn parse_claim_key(key: &str) -> Option<(Ipv4Network, NodeId)> {
    let (block, node) = key.split_once('@')?;
    let (addr, prefix) = block.split_once('/')?;
    let net = Ipv4Network::new(addr.parse().ok()?, prefix.parse().ok()?).ok()?;
    (net.network() == net.ip()).then_some(())?;
    Some((net, node.parse().ok()?))
}

/// How a network's subnet is cut into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub subnet: Ipv4Network,
    pub gateway: Ipv4Addr,
    /// Prefix length of a block (at least the subnet's).
    pub block_prefix: u8,
}

impl Layout {
    /// Blocks of `block_prefix` (clamped to the subnet's prefix and /32).
    pub fn new(subnet: Ipv4Network, gateway: Ipv4Addr, block_prefix: u8) -> Self {
        Layout {
            subnet,
            gateway,
            block_prefix: block_prefix.clamp(subnet.prefix(), 32),
        }
    }

    pub fn block_count(&self) -> u64 {
        1u64 << (self.block_prefix - self.subnet.prefix())
    }

    fn block_size(&self) -> u64 {
        1u64 << (32 - self.block_prefix)
    }

    /// The `i`-th block (`i < block_count`).
    pub fn block(&self, i: u64) -> Ipv4Network {
        let base = u64::from(u32::from(self.subnet.network())) + i * self.block_size();
        Ipv4Network::new(Ipv4Addr::from(base as u32), self.block_prefix).expect("valid prefix")
    }

    /// Whether `block` is one of this layout's blocks.
    pub fn is_block(&self, block: Ipv4Network) -> bool {
        block.prefix() == self.block_prefix
            && self.subnet.contains(block.network())
            && block.network() == block.ip()
    }

    /// An address that may be handed out: in the subnet, not its network or broadcast
    /// address, not the gateway.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(ip)
            && ip != self.subnet.network()
            && ip != self.subnet.broadcast()
            && ip != self.gateway
    }

    /// Assignable addresses of `block`, in order.
    pub fn addresses(&self, block: Ipv4Network) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let start = u32::from(block.network());
        let size = self.block_size() as u32;
        (0..size)
            .map(move |i| Ipv4Addr::from(start.wrapping_add(i)))
            .filter(|ip| self.is_assignable(*ip))
    }
}

/// The winning claim among `claims` (all for one block): lowest `(at_ms, node)`.
pub fn winner<'a>(claims: impl IntoIterator<Item = &'a Claim>) -> Option<&'a Claim> {
    claims.into_iter().min_by_key(|c| (c.at_ms, c.node))
}

/// Claims grouped by block (claims of blocks outside the layout are ignored: a stale claim of
/// an earlier subnet of a repaired network).
pub fn by_block(layout: &Layout, claims: &[Claim]) -> BTreeMap<Ipv4Network, Vec<Claim>> {
    let mut out: BTreeMap<Ipv4Network, Vec<Claim>> = BTreeMap::new();
    for c in claims.iter().filter(|c| layout.is_block(c.block)) {
        out.entry(c.block).or_default().push(*c);
    }
    out
}

/// Where one of this node's claims stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockState {
    /// Won and settled: addresses may be handed out.
    Usable,
    /// Winning so far, usable in `remaining_ms`.
    Settling { remaining_ms: u64 },
    /// Another node's claim wins.
    Lost { to: NodeId },
}

/// Everything the allocator needs, as plain values.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub layout: Layout,
    pub me: NodeId,
    /// Every claim visible in the network's `ipam` table (this node's included).
    pub claims: &'a [Claim],
    /// Addresses in use on the network (every endpoint in the `endpoints` and `peers` tables
    /// and every local endpoint).
    pub used: &'a BTreeSet<Ipv4Addr>,
    pub now_ms: u64,
    pub settle_ms: u64,
    /// Claim the next block when fewer free addresses than this remain in usable blocks.
    pub low_water: u64,
}

impl Input<'_> {
    /// State of each of this node's claims.
    pub fn own_blocks(&self) -> BTreeMap<Ipv4Network, BlockState> {
        let mut out = BTreeMap::new();
        for (block, claims) in by_block(&self.layout, self.claims) {
            let Some(mine) = claims.iter().find(|c| c.node == self.me) else {
                continue;
            };
            let w = winner(&claims).expect("non-empty");
            let state = if w.node != self.me {
                BlockState::Lost { to: w.node }
            } else {
                let held = self.now_ms.saturating_sub(mine.at_ms);
                if held >= self.settle_ms {
                    BlockState::Usable
                } else {
                    BlockState::Settling {
                        remaining_ms: self.settle_ms - held,
                    }
                }
            };
            out.insert(block, state);
        }
        out
    }

    fn usable(&self) -> Vec<Ipv4Network> {
        self.own_blocks()
            .into_iter()
            .filter(|(_, s)| *s == BlockState::Usable)
            .map(|(b, _)| b)
            .collect()
    }

    /// Free addresses in this node's usable blocks.
    pub fn free_usable(&self) -> u64 {
        self.usable()
            .into_iter()
            .map(|b| {
                self.layout
                    .addresses(b)
                    .filter(|ip| !self.used.contains(ip))
                    .count() as u64
            })
            .sum()
    }

    /// The block this node should claim next: an unclaimed block that has at least one free
    /// assignable address, scanning from an offset derived from the node id (so that nodes
    /// claiming at the same time rarely pick the same block). `None` when every block is
    /// claimed or full.
    pub fn next_block(&self) -> Option<Ipv4Network> {
        let claimed = by_block(&self.layout, self.claims);
        let n = self.layout.block_count();
        let start = spread(self.me.0) % n;
        (0..n)
            .map(|i| self.layout.block((start + i) % n))
            .find(|b| {
                !claimed.contains_key(b)
                    && self.layout.addresses(*b).any(|ip| !self.used.contains(&ip))
            })
    }

    /// What an attach without a requested address should do now.
    pub fn allocate(&self) -> Alloc {
        let own = self.own_blocks();
        for (block, state) in &own {
            if *state == BlockState::Usable
                && let Some(ip) = self
                    .layout
                    .addresses(*block)
                    .find(|ip| !self.used.contains(ip))
            {
                return Alloc::Ip(ip);
            }
        }
        // Nothing free in usable blocks: wait for a settling claim that has room, or claim.
        let settling = own
            .iter()
            .filter_map(|(b, s)| match s {
                BlockState::Settling { remaining_ms }
                    if self.layout.addresses(*b).any(|ip| !self.used.contains(&ip)) =>
                {
                    Some(*remaining_ms)
                }
                _ => None,
            })
            .min();
        if let Some(ms) = settling {
            return Alloc::Wait { ms };
        }
        match self.next_block() {
            Some(block) => Alloc::Claim {
                block,
                wait_ms: self.settle_ms,
            },
            None => Alloc::Exhausted,
        }
    }

    /// A block to claim ahead of need: when usable blocks have fewer than `low_water` free
    /// addresses, no claim of this node is settling, and some block is free.
    pub fn prefetch(&self) -> Option<Ipv4Network> {
        let own = self.own_blocks();
        if own.is_empty()
            || own
                .values()
                .any(|s| matches!(s, BlockState::Settling { .. }))
        {
            // No block yet: the network is not in use here; claim on first attach.
            return None;
        }
        if self.free_usable() >= self.low_water {
            return None;
        }
        self.next_block()
    }

    /// This node's claims that lost and hold none of `local_ips` (this node's own
    /// endpoints): they can be withdrawn.
    pub fn releasable(&self, local_ips: &BTreeSet<Ipv4Addr>) -> Vec<Ipv4Network> {
        self.own_blocks()
            .into_iter()
            .filter(|(b, s)| {
                matches!(s, BlockState::Lost { .. }) && !local_ips.iter().any(|ip| b.contains(*ip))
            })
            .map(|(b, _)| b)
            .collect()
    }
}

/// Decision of [`Input::allocate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alloc {
    /// Hand out this address.
    Ip(Ipv4Addr),
    /// A claim of this node is settling: try again in `ms`.
    Wait { ms: u64 },
    /// Write a claim for `block`, then try again in `wait_ms`.
    Claim { block: Ipv4Network, wait_ms: u64 },
    /// Every block is claimed (or full) and this node's blocks are full.
    Exhausted,
}

/// Why a requested address cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("{ip} is outside subnet {subnet}")]
    OutsideSubnet { ip: Ipv4Addr, subnet: Ipv4Network },
    #[error("{ip} is the network, broadcast or gateway address of {subnet}")]
    Reserved { ip: Ipv4Addr, subnet: Ipv4Network },
    #[error("{ip} is already in use by endpoint {holder}")]
    InUse { ip: Ipv4Addr, holder: String },
}

/// Check a requested address against the layout and the addresses in use (`holders`: address
/// -> name of the endpoint holding it).
pub fn check_requested(
    layout: &Layout,
    ip: Ipv4Addr,
    holders: &BTreeMap<Ipv4Addr, String>,
) -> Result<(), RequestError> {
    if !layout.subnet.contains(ip) {
        return Err(RequestError::OutsideSubnet {
            ip,
            subnet: layout.subnet,
        });
    }
    if !layout.is_assignable(ip) {
        return Err(RequestError::Reserved {
            ip,
            subnet: layout.subnet,
        });
    }
    if let Some(holder) = holders.get(&ip) {
        return Err(RequestError::InUse {
            ip,
            holder: holder.clone(),
        });
    }
    Ok(())
}

/// A well-mixed 64-bit value of `x` (splitmix64's finaliser).
fn spread(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
