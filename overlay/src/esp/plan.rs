//! The ESP planner: desired versus actual state, giving the ops that make the kernel match.
//! Pure and deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;

use super::spec::unicast;
use super::{
    EspActual, EspDesired, EspNode, EspOp, GuardHook, GuardRule, PolicySpec, PolicyState, SaDir,
    SaSpec, Selector4, sa_key, spi,
};

#[cfg(test)]
mod tests;

/// Two SAs of this node that would share a destination and SPI (a 31-bit hash collision;
/// about `n² / 2³²` likely for `n` inbound SAs). The kernel can hold only one: the planner
/// keeps the one with the smaller (tag, peer) and skips the other, so traffic from the
/// dropped peer under that key fails closed (it cannot be decrypted) until the next
/// rotation changes the SPIs. Report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SpiConflict {
    /// The shared SPI.
    pub spi: u32,
    /// (peer id, key tag) of the SA installed.
    pub kept: (u64, u64),
    /// (peer id, key tag) of the SA skipped.
    pub skipped: (u64, u64),
}

/// The SAs and policies `desired` calls for, with the reqid `reqid`.
#[derive(Clone, Debug, Default)]
pub struct DesiredXfrm {
    /// Inbound SAs, by (dst, spi).
    pub inbound: BTreeMap<(Ipv4Addr, u32), SaSpec>,
    /// Outbound SAs, by (dst, spi).
    pub outbound: BTreeMap<(Ipv4Addr, u32), SaSpec>,
    /// Outbound policies, by (dst, port).
    pub policies: BTreeMap<(Ipv4Addr, u16), PolicySpec>,
    /// SPI collisions found among the inbound SAs.
    pub conflicts: Vec<SpiConflict>,
}

/// How the planner treats a node of [`EspDesired`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    /// Inbound SAs, outbound SA, policies.
    Peer,
    /// Inbound SAs and outbound SA, no policy.
    Idle,
    /// Inbound SAs only.
    ReceiveOnly,
}

/// Nodes after dropping invalid and duplicate entries, with their role.
///
/// Skipped: this node itself (same id or address), non-unicast addresses. One entry per id
/// (a `peers` entry beats an `idle` one, which beats a `receive_only` one; then the smaller
/// address) and one per address (the smaller id).
fn normalize(d: &EspDesired) -> Vec<(EspNode, Role)> {
    let mut all: Vec<(EspNode, Role)> = d
        .peers
        .iter()
        .map(|n| (*n, Role::Peer))
        .chain(d.idle.iter().map(|n| (*n, Role::Idle)))
        .chain(d.receive_only.iter().map(|n| (*n, Role::ReceiveOnly)))
        .filter(|(n, _)| n.id != d.local.id && n.addr != d.local.addr && unicast(n.addr))
        .collect();
    all.sort_by_key(|(n, role)| (n.id, *role, n.addr));
    let mut ids = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    all.retain(|(n, _)| ids.insert(n.id) && addrs.insert(n.addr));
    all
}

/// Computes the SAs and policies of `desired` (see [`plan_esp`] for the rules).
pub fn desired_xfrm(desired: &EspDesired, reqid: u32) -> DesiredXfrm {
    let mut out = DesiredXfrm::default();
    let Some(ring) = &desired.ring else {
        return out;
    };
    let local = desired.local;
    let nodes = normalize(desired);
    let mut ports: Vec<u16> = desired
        .vxlan_ports
        .iter()
        .copied()
        .filter(|p| *p != 0)
        .collect();
    ports.sort_unstable();
    ports.dedup();

    // Inbound: every key from every node, oldest key first, then by node id.
    let mut owner: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for k in ring.keys() {
        for (n, _) in &nodes {
            let s = spi(k.tag, n.id, local.id);
            if let Some(kept) = owner.get(&s) {
                out.conflicts.push(SpiConflict {
                    spi: s,
                    kept: *kept,
                    skipped: (n.id, k.tag),
                });
                continue;
            }
            owner.insert(s, (n.id, k.tag));
            out.inbound.insert(
                (local.addr, s),
                SaSpec {
                    dir: SaDir::In,
                    peer: n.id,
                    tag: k.tag,
                    src: n.addr,
                    dst: local.addr,
                    spi: s,
                    reqid,
                    key: sa_key(k, n.id, local.id),
                },
            );
        }
    }

    // Outbound: the primary to every peer (with its policies) and idle node (without).
    let p = ring.primary();
    for (n, role) in &nodes {
        if *role == Role::ReceiveOnly {
            continue;
        }
        let s = spi(p.tag, local.id, n.id);
        out.outbound.insert(
            (n.addr, s),
            SaSpec {
                dir: SaDir::Out,
                peer: n.id,
                tag: p.tag,
                src: local.addr,
                dst: n.addr,
                spi: s,
                reqid,
                key: sa_key(p, local.id, n.id),
            },
        );
        if *role == Role::Idle {
            continue;
        }
        for port in &ports {
            out.policies.insert(
                (n.addr, *port),
                PolicySpec {
                    peer: n.id,
                    src: local.addr,
                    dst: n.addr,
                    port: *port,
                    spi: s,
                    reqid,
                },
            );
        }
    }
    out
}

/// Computes the operations that turn `actual` into `desired`.
///
/// Contract:
/// * Total: never panics. Invalid local input (see [`EspDesired::validate`]) gives an
///   unspecified but harmless plan. Peers are never rejected: entries for this node, with a
///   non-unicast address, or duplicated (by id or by address) are skipped deterministically.
/// * Desired: with a ring, per peer an inbound SA for every key (SPI
///   `spi(tag, peer, local)`), an outbound SA for the primary (`spi(tag, local, peer)`) and
///   one outbound policy per VXLAN port whose template names that SPI; per `idle` node the
///   same SAs without a policy; per `receive_only` node only the inbound SAs. Without a
///   ring, none. The guard table holds exactly `desired.guard` (output and input rule per
///   entry), or is absent when that is empty.
/// * Replace semantics: an SA of ours that differs in anything (addresses, key, algorithm,
///   mode, ESN, window, selector) is replaced; a policy with a desired identity (direction,
///   selector, mark 0) is updated in place; everything of ours not desired is deleted,
///   unless `keep_unlisted` is set (then nothing of ours is deleted).
/// * Renewal: every inbound SA that is already in the kernel, as desired, from a node in
///   `renew_inbound` gets its anti-replay state reset ([`EspOp::ResetReplay`]).
/// * Order, so that no packet is dropped during a rotation or a peer change: set the guard;
///   add inbound SAs; add outbound SAs; reset replay states; set policies (switching the
///   template to the new SPI atomically); delete policies; delete outbound SAs; delete
///   inbound SAs; delete the guard.
/// * Applying the plan and planning again against the new actual state gives no ops, except
///   the resets `renew_inbound` asks for again.
pub fn plan_esp(desired: &EspDesired, actual: &EspActual) -> Vec<EspOp> {
    let want = desired_xfrm(desired, actual.reqid);
    let mut ops = Vec::new();

    // Guard first: never a moment where clear text of an encrypted network can pass.
    let mut guard: Vec<GuardRule> = desired.guard.clone();
    guard.sort_unstable();
    guard.dedup();
    if !guard.is_empty() {
        let mut expected: Vec<(GuardHook, GuardRule)> = guard
            .iter()
            .flat_map(|r| [(GuardHook::Output, *r), (GuardHook::Input, *r)])
            .collect();
        expected.sort_unstable();
        let ok = actual.guard.as_ref().is_some_and(|g| {
            let mut have: Vec<(GuardHook, GuardRule)> =
                g.rules.iter().map(|c| (c.hook, c.rule)).collect();
            have.sort_unstable();
            g.well_formed && have == expected
        });
        if !ok {
            ops.push(EspOp::SetGuard {
                rules: guard.clone(),
            });
        }
    }

    // SAs: add or replace, inbound first.
    let have: BTreeMap<(Ipv4Addr, u32), _> =
        actual.sas.iter().map(|s| ((s.dst, s.spi), s)).collect();
    for sas in [&want.inbound, &want.outbound] {
        for (k, spec) in sas {
            match have.get(k) {
                None => ops.push(EspOp::AddSa(spec.clone())),
                Some(s) if s.matches(spec) => {}
                Some(_) => ops.push(EspOp::ReplaceSa(spec.clone())),
            }
        }
    }

    // Inbound SAs of restarted senders that stay: forget the sequence numbers seen.
    let renew: BTreeSet<u64> = desired.renew_inbound.iter().copied().collect();
    for (k, spec) in &want.inbound {
        if renew.contains(&spec.peer) && have.get(k).is_some_and(|s| s.matches(spec)) {
            ops.push(EspOp::ResetReplay {
                src: spec.src,
                dst: spec.dst,
                spi: spec.spi,
            });
        }
    }

    // Policies: set what differs, then delete what is not ours to keep.
    let identity = |p: &PolicyState| (p.dir, p.selector, p.mark, p.if_id);
    let wanted_identity = |p: &PolicySpec| {
        (
            super::xfrm::XFRM_POLICY_OUT,
            Selector4::udp_to(p.src, p.dst, p.port),
            (0u32, 0u32),
            0u32,
        )
    };
    for spec in want.policies.values() {
        let current = actual
            .policies
            .iter()
            .find(|p| identity(p) == wanted_identity(spec));
        if !current.is_some_and(|p| p.matches(spec)) {
            ops.push(EspOp::SetPolicy(spec.clone()));
        }
    }
    let keep: BTreeSet<_> = want.policies.values().map(wanted_identity).collect();
    let mut deletes: Vec<&PolicyState> = actual
        .policies
        .iter()
        .filter(|p| !desired.keep_unlisted && !keep.contains(&identity(p)))
        .collect();
    deletes.sort_by_key(|p| identity(p));
    deletes.dedup_by_key(|p| identity(p));
    for p in deletes {
        ops.push(EspOp::DeletePolicy {
            dir: p.dir,
            selector: p.selector,
            mark: p.mark,
        });
    }

    // SAs not desired: outbound ones first, then inbound ones.
    let mut stale: Vec<_> = actual
        .sas
        .iter()
        .filter(|s| {
            let k = (s.dst, s.spi);
            !desired.keep_unlisted
                && !want.inbound.contains_key(&k)
                && !want.outbound.contains_key(&k)
        })
        .map(|s| (s.dst == desired.local.addr, s.dst, s.spi, s.src))
        .collect();
    stale.sort_unstable();
    stale.dedup_by_key(|s| (s.1, s.2));
    for (_, dst, spi, src) in stale {
        ops.push(EspOp::DeleteSa { src, dst, spi });
    }

    if guard.is_empty() && actual.guard.is_some() {
        ops.push(EspOp::DeleteGuard);
    }
    ops
}

/// The SPI collisions `desired` runs into on this node (see [`SpiConflict`]).
pub fn spi_conflicts(desired: &EspDesired) -> Vec<SpiConflict> {
    desired_xfrm(desired, 0).conflicts
}
