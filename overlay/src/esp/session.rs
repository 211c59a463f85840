//! What the ESP executor remembers between reconciles so that the two ends of every SA stay
//! in step. Pure: time is an input.
//!
//! An SA is a pair of kernel objects: the sender's outbound SA and the receiver's inbound SA
//! with the same SPI and key. The receiver's anti-replay window follows the sender's
//! sequence numbers. If the sender makes its outbound SA anew (numbers from 1 again) while
//! the receiver keeps its inbound SA, the receiver rejects every packet (with extended
//! sequence numbers, as an integrity failure: it assumes the numbers wrapped) until the new
//! numbers pass the old ones, which can take as long as the traffic sent before. Seen on a
//! real kernel: a node declared down for a moment had its SAs removed and made anew by its
//! peers, and its peers' traffic to it stopped while its own went on.
//!
//! Two rules keep the ends in step, whatever the order in which each end learns things:
//!
//! * **Linger.** A node that leaves `peers` stays `idle` (its SAs without a policy) for
//!   `linger`. A peer that comes back within it finds its SAs and continues their numbers,
//!   so the other end may have noticed the gap or not (a detach and re-attach within one
//!   reconcile of the other end): either way it holds a window the numbers fit.
//! * **Renew.** The inbound SAs of a node that becomes a peer again (it was one before, or
//!   lingered), or whose generation changed (its agent or its host restarted), get their
//!   anti-replay state reset ([`EspOp::ResetReplay`](super::EspOp::ResetReplay)): whatever
//!   the sender did meanwhile, its next packets are accepted.
//!
//! A session that has just started knows nothing: it renews and lingers nothing (the
//! agent's `keep_unlisted` keeps what the kernel has until its tables are complete).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{EspDesired, EspNode};

/// How long a node that stopped being a peer keeps its SAs by default.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(5);

/// See the module docs.
#[derive(Clone, Debug)]
pub struct EspSession {
    linger: Duration,
    /// Peers of the last prepared state, by id; `None` before the first.
    last_peers: Option<BTreeMap<u64, EspNode>>,
    /// Nodes that stopped being peers, with when.
    left: BTreeMap<u64, (EspNode, Instant)>,
    /// The last generation seen of every node.
    generations: BTreeMap<u64, u64>,
    /// Renewals asked for but not planned yet.
    pending: BTreeSet<u64>,
}

impl EspSession {
    /// A session whose former peers keep their SAs for `linger`.
    pub fn new(linger: Duration) -> EspSession {
        EspSession {
            linger,
            last_peers: None,
            left: BTreeMap::new(),
            generations: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }

    /// `desired` as the planner should see it at `now`: former peers within `linger` added
    /// to `idle`, and the nodes whose inbound SAs must be renewed added to `renew_inbound`.
    /// Renewals stay asked for until [`EspSession::planned`] is called.
    pub fn prepare(&mut self, desired: &EspDesired, now: Instant) -> EspDesired {
        let local = desired.local.id;
        let peers: BTreeMap<u64, EspNode> = desired
            .peers
            .iter()
            .filter(|n| n.id != local)
            .map(|n| (n.id, *n))
            .collect();
        if let Some(last) = &self.last_peers {
            for (id, n) in last {
                if !peers.contains_key(id) {
                    self.left.entry(*id).or_insert((*n, now));
                }
            }
            for id in peers.keys() {
                if !last.contains_key(id) {
                    self.pending.insert(*id);
                }
            }
        }
        for id in peers.keys() {
            self.left.remove(id);
        }
        for (id, g) in &desired.generations {
            if self
                .generations
                .insert(*id, *g)
                .is_some_and(|old| old != *g)
            {
                self.pending.insert(*id);
            }
        }
        let linger = self.linger;
        self.left
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < linger);
        self.last_peers = Some(peers);

        let mut out = desired.clone();
        for (n, _) in self.left.values() {
            if !out.idle.iter().any(|i| i.id == n.id) {
                out.idle.push(*n);
            }
        }
        out.idle.sort();
        let mut renew: BTreeSet<u64> = desired.renew_inbound.iter().copied().collect();
        renew.extend(self.pending.iter().copied());
        out.renew_inbound = renew.into_iter().collect();
        out
    }

    /// The prepared state was planned and applied: its renewals are done.
    pub fn planned(&mut self) {
        self.pending.clear();
    }

    /// Nodes kept idle now (for diagnostics).
    pub fn lingering(&self) -> Vec<u64> {
        self.left.keys().copied().collect()
    }
}

impl Default for EspSession {
    fn default() -> Self {
        EspSession::new(DEFAULT_LINGER)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::esp::{EspKey, GuardRule, KeyRing};

    fn node(id: u64) -> EspNode {
        EspNode {
            id,
            addr: Ipv4Addr::new(10, 0, 0, id as u8),
        }
    }

    fn desired(peers: &[u64], generations: &[(u64, u64)]) -> EspDesired {
        EspDesired {
            local: node(1),
            ring: Some(
                KeyRing::new([EspKey {
                    tag: 1,
                    key: vec![1; 16],
                }])
                .unwrap(),
            ),
            peers: peers.iter().map(|p| node(*p)).collect(),
            receive_only: vec![],
            vxlan_ports: vec![4790],
            guard: vec![GuardRule { port: 4790, vni: 7 }],
            idle: vec![],
            generations: generations.iter().copied().collect(),
            renew_inbound: vec![],
            keep_unlisted: false,
        }
    }

    fn ids(nodes: &[EspNode]) -> Vec<u64> {
        nodes.iter().map(|n| n.id).collect()
    }

    #[test]
    fn a_new_session_renews_and_lingers_nothing() {
        let mut s = EspSession::default();
        let d = s.prepare(&desired(&[2, 3], &[(2, 7), (3, 9)]), Instant::now());
        assert!(d.idle.is_empty() && d.renew_inbound.is_empty(), "{d:?}");
    }

    #[test]
    fn a_peer_that_leaves_stays_idle_for_the_linger_then_goes() {
        let t0 = Instant::now();
        let mut s = EspSession::new(Duration::from_secs(10));
        s.prepare(&desired(&[2, 3], &[]), t0);
        s.planned();
        let d = s.prepare(&desired(&[2], &[]), t0 + Duration::from_secs(1));
        assert_eq!(ids(&d.peers), [2]);
        assert_eq!(ids(&d.idle), [3]);
        assert!(d.renew_inbound.is_empty());
        let d = s.prepare(&desired(&[2], &[]), t0 + Duration::from_secs(10));
        assert_eq!(ids(&d.idle), [3], "10 s after it left is still within");
        let d = s.prepare(&desired(&[2], &[]), t0 + Duration::from_secs(12));
        assert!(d.idle.is_empty(), "{d:?}");
        assert!(s.lingering().is_empty());
    }

    #[test]
    fn a_peer_that_comes_back_is_a_peer_again_with_its_inbound_sas_renewed_once() {
        let t0 = Instant::now();
        let mut s = EspSession::default();
        s.prepare(&desired(&[2, 3], &[]), t0);
        s.planned();
        s.prepare(&desired(&[2], &[]), t0 + Duration::from_secs(1));
        s.planned();
        let d = s.prepare(&desired(&[2, 3], &[]), t0 + Duration::from_secs(2));
        assert_eq!(ids(&d.peers), [2, 3]);
        assert!(d.idle.is_empty(), "a peer is not idle: {d:?}");
        assert_eq!(d.renew_inbound, [3]);
        s.planned();
        let d = s.prepare(&desired(&[2, 3], &[]), t0 + Duration::from_secs(3));
        assert!(d.renew_inbound.is_empty(), "{d:?}");
    }

    #[test]
    fn a_new_generation_renews_the_nodes_inbound_sas_until_planned() {
        let t0 = Instant::now();
        let mut s = EspSession::default();
        s.prepare(&desired(&[2, 3], &[(2, 100), (3, 200)]), t0);
        s.planned();
        let d = s.prepare(&desired(&[2, 3], &[(2, 100), (3, 201)]), t0);
        assert_eq!(d.renew_inbound, [3]);
        // Not planned (the kernel could not be read): asked again.
        let d = s.prepare(&desired(&[2, 3], &[(2, 100), (3, 201)]), t0);
        assert_eq!(d.renew_inbound, [3]);
        s.planned();
        let d = s.prepare(&desired(&[2, 3], &[(2, 100), (3, 201)]), t0);
        assert!(d.renew_inbound.is_empty());
        // A node forgotten by gossip and back with a new generation is renewed too.
        s.prepare(&desired(&[2], &[(2, 100)]), t0);
        let d = s.prepare(&desired(&[2, 3], &[(2, 100), (3, 202)]), t0);
        assert_eq!(d.renew_inbound, [3]);
    }
}
