//! Deterministic resolution of conflicting network definitions: pure logic, no I/O.
//!
//! Any agent may create a network, so two agents can create definitions that clash: the same
//! name, the same VNI, or overlapping subnets. Every agent sees every definition through the
//! `networks` table and computes the same verdicts with [`resolve`]:
//!
//! * definitions are taken oldest first: lowest `(created, creator, id)` (see
//!   [`NetworkDef::age`]);
//! * a definition is *accepted* unless it clashes with an already accepted one; a clash with
//!   a definition that itself lost does not count (that one is being repaired);
//! * the oldest definition therefore never moves, and every loser is repaired by its creator
//!   with [`repair`]: renamed (`<name>-<id prefix>`) for a name clash, re-allocated from the
//!   pools for a VNI or subnet clash, with `revision + 1` and a note. The repaired value
//!   avoids every other definition, so repairs converge (each step fixes the oldest loser for
//!   good).
//!
//! An agent never attaches an endpoint to a losing definition (nor to one younger than the
//! settle period), so a repair happens before any endpoint uses it.

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::Ipv4Network;

use crate::pools::{self, Pools, overlaps};
use crate::records::NetworkDef;

/// What a definition is, relative to the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Another (older) accepted definition has the same name.
    NameTaken {
        by: String,
    },
    /// Another accepted definition has the same VNI.
    VniTaken {
        by: String,
    },
    /// Another accepted definition's subnet overlaps.
    SubnetTaken {
        by: String,
    },
}

impl Verdict {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted)
    }
}

/// Verdicts for every definition, by id.
pub fn resolve(defs: &[NetworkDef]) -> BTreeMap<String, Verdict> {
    let mut order: Vec<&NetworkDef> = defs.iter().collect();
    order.sort_by(|a, b| a.age().cmp(&b.age()));
    let mut accepted: Vec<&NetworkDef> = Vec::new();
    let mut out = BTreeMap::new();
    for d in order {
        let verdict = if let Some(w) = accepted.iter().find(|w| w.name == d.name) {
            Verdict::NameTaken { by: w.id.clone() }
        } else if let Some(w) = accepted.iter().find(|w| w.vni == d.vni) {
            Verdict::VniTaken { by: w.id.clone() }
        } else if let Some(w) = accepted.iter().find(|w| overlaps(w.subnet(), d.subnet())) {
            Verdict::SubnetTaken { by: w.id.clone() }
        } else {
            accepted.push(d);
            Verdict::Accepted
        };
        out.insert(d.id.clone(), verdict);
    }
    out
}

/// Why a repair was impossible.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    #[error("the VNI pool is exhausted")]
    NoVni,
    #[error("the subnet pool is exhausted")]
    NoSubnet,
}

/// The repaired form of `def` (which lost with `verdict`), avoiding every other definition of
/// `all` and the host's routes.
pub fn repair(
    def: &NetworkDef,
    verdict: &Verdict,
    all: &[NetworkDef],
    pools: &Pools,
    host_routes: &[Ipv4Network],
) -> Result<NetworkDef, RepairError> {
    let others: Vec<&NetworkDef> = all.iter().filter(|d| d.id != def.id).collect();
    let mut new = def.clone();
    new.revision += 1;
    match verdict {
        Verdict::Accepted => return Ok(new),
        Verdict::NameTaken { by } => {
            let names: BTreeSet<&str> = others.iter().map(|d| d.name.as_str()).collect();
            let short = &def.id[..def.id.len().min(8)];
            let mut candidate = format!("{}-{short}", def.name);
            let mut n = 2;
            while names.contains(candidate.as_str()) {
                candidate = format!("{}-{short}-{n}", def.name);
                n += 1;
            }
            new.note = format!(
                "renamed from {:?}: network {by} was created earlier with that name",
                def.name
            );
            new.name = candidate;
        }
        Verdict::VniTaken { by } => {
            let taken: BTreeSet<u32> = others.iter().map(|d| d.vni).collect();
            new.vni = pools.vni(&taken).ok_or(RepairError::NoVni)?;
            new.note = format!(
                "vni changed from {}: network {by} was created earlier with it",
                def.vni
            );
        }
        Verdict::SubnetTaken { by } => {
            let taken: Vec<Ipv4Network> = others.iter().map(|d| d.subnet()).collect();
            let subnet = pools
                .subnet(&taken, host_routes)
                .ok_or(RepairError::NoSubnet)?;
            new.note = format!(
                "subnet changed from {}: network {by} was created earlier with an overlapping one",
                def.subnet()
            );
            new.set_subnet(subnet);
            new.gateway = pools::first_host(subnet);
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests;
