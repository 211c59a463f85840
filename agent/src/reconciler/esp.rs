//! The IPsec side of encrypted networks: the desired ESP state of this node, computed from
//! the pass's snapshot, the local state, what gossip knows of nodes that are down, and the
//! dataplane key ring, and its reconcile (first in every pass, so the guard is in place
//! before a sandbox of an encrypted network exists).
//!
//! * Guard (fail closed): clear VXLAN of every encrypted network's VNI is dropped on send and
//!   receive, on both VXLAN ports, for every encrypted network the cluster defines (and those
//!   this node still has a sandbox for), whether or not this node is on it.
//! * Peers: the nodes with endpoints on an encrypted network this node has a sandbox for get
//!   inbound SAs for every key, an outbound SA (the primary key) and a policy for
//!   `--vxlan-port-encrypted`. Nothing else: a node with no encrypted endpoint holds no SA.
//! * SAs outlive what does not end them. Both ends of an SA must keep it together: an end
//!   that makes its outbound SA anew starts its sequence numbers again, which the other
//!   end's anti-replay window rejects (see [`overlay::esp::EspSession`]). So a peer that is
//!   down but not gone (its entries suspended by gossip: a failure-detector flap, an agent
//!   being restarted) stays a peer, from the records gossip keeps for it, until its
//!   endpoints are deleted or it is reaped; right after this agent starts, what the kernel
//!   holds is kept until the tables are complete ([`Reconciler::adopt_until`]); each node's
//!   gossip generation is passed on, so the executor renews the inbound SAs of a node that
//!   restarted; a peer that leaves lingers (the executor's session).
//! * On a kernel without ESP, no SA or policy is attempted (attach refuses first); the guard
//!   still is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use networkdb::NodeId;
use overlay::esp::{EspDesired, EspNode, GuardRule, KeyRing};

use super::Reconciler;
use crate::config::DataplaneKind;
use crate::error::Result;
use crate::node::Agent;
use crate::records::{self, PEERS, PeerRecord};
use crate::state::LocalState;
use crate::tables::Snapshot;

/// This node as the ESP dataplane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EspSelf {
    pub id: NodeId,
    /// The data-path address (outer source of VXLAN and ESP).
    pub addr: Ipv4Addr,
    /// `--vxlan-port` and `--vxlan-port-encrypted`.
    pub vxlan_port: u16,
    pub vxlan_port_encrypted: u16,
}

/// What gossip knows beyond the pass's snapshot (which shows only nodes that are up).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EspFacts {
    /// Per encrypted network this node has a sandbox for: the nodes with a `peers` entry on
    /// it that is not deleted, whether their node is up or down (suspended), with the
    /// entry's VTEP.
    pub peers: BTreeMap<String, Vec<(NodeId, Ipv4Addr)>>,
    /// Every known node's gossip generation (it grows when the node restarts or rejoins
    /// after being declared down).
    pub generations: BTreeMap<u64, u64>,
}

/// What this node's ESP dataplane should hold (pure). `ring` is `None` when no keys are set
/// or the kernel has no ESP (then only the guard is wanted). `adopting`: right after a
/// start, keep what the kernel holds.
pub fn desired(
    me: EspSelf,
    local: &LocalState,
    snap: &Snapshot,
    facts: &EspFacts,
    ring: Option<KeyRing>,
    adopting: bool,
) -> EspDesired {
    let mut guard = BTreeSet::new();
    for def in snap.networks.defs.iter().chain(local.networks.values()) {
        if def.encrypted {
            for port in [me.vxlan_port_encrypted, me.vxlan_port] {
                guard.insert(GuardRule { port, vni: def.vni });
            }
        }
    }
    let mut peers: BTreeMap<u64, EspNode> = BTreeMap::new();
    if ring.is_some() {
        for def in local.networks.values().filter(|d| d.encrypted) {
            // Up nodes from the snapshot, and those that are down from the kept records.
            let up = snap
                .peers
                .get(&def.id)
                .into_iter()
                .flatten()
                .map(|p| (p.owner, p.record.vtep));
            let known = facts.peers.get(&def.id).into_iter().flatten().copied();
            for (owner, vtep) in up.chain(known) {
                if owner != me.id {
                    peers.entry(owner.0).or_insert(EspNode {
                        id: owner.0,
                        addr: vtep,
                    });
                }
            }
        }
    }
    EspDesired {
        local: EspNode {
            id: me.id.0,
            addr: me.addr,
        },
        ring,
        peers: peers.into_values().collect(),
        receive_only: Vec::new(),
        vxlan_ports: vec![me.vxlan_port_encrypted],
        guard: guard.into_iter().collect(),
        idle: Vec::new(),
        generations: facts.generations.clone(),
        renew_inbound: Vec::new(),
        keep_unlisted: adopting,
    }
}

/// SAs a desired state holds: per peer one outbound and one inbound per key (former peers
/// lingering in the executor not counted).
fn sa_count(d: &EspDesired) -> usize {
    let keys = d.ring.as_ref().map_or(0, |r| r.keys().len());
    d.peers.len() * (1 + keys)
}

/// [`EspFacts`] from networkdb: the kept `peers` records of the encrypted networks this
/// node has a sandbox for, and the members' generations.
async fn facts(agent: &Agent, local: &LocalState) -> Result<EspFacts> {
    let mut out = EspFacts::default();
    for def in local.networks.values().filter(|d| d.encrypted) {
        let mut nodes = Vec::new();
        for r in agent.db.records(&def.id, PEERS).await? {
            let Some(v) = r.value.as_deref() else {
                continue; // deleted
            };
            if let Some(rec) = records::decode::<PeerRecord>(PEERS, &r.key, v) {
                nodes.push((r.owner, rec.vtep));
            }
        }
        out.peers.insert(def.id.clone(), nodes);
    }
    for m in agent.db.members().await? {
        out.generations.insert(m.peer.id.0, m.peer.generation);
    }
    Ok(out)
}

impl Reconciler {
    /// Reconcile the ESP dataplane when its desired state changed, or once per reconcile
    /// interval (repairs drift; an unchanged state costs nothing in between).
    pub(super) async fn reconcile_esp(&self, agent: &Agent, local: &LocalState, snap: &Snapshot) {
        self.reconcile_esp_with(agent, local, snap, false).await;
    }

    /// Reconcile IPsec now, whatever was applied before (under the pass lock, so never
    /// beside a pass): `SetKeys` returns once its dataplane ring is in the kernel, so that an
    /// orchestrator taking the next rotation step on another node can rely on this one
    /// receiving with every key of the ring. `false` when something failed (logged, counted
    /// and retried by the next pass).
    pub async fn reconcile_esp_now(&self, agent: &Agent) -> Result<bool> {
        let _pass = self.pass_lock.lock().await;
        let local = agent.local();
        let snap = Snapshot::take(&agent.db, &local.held_networks()).await?;
        Ok(self.reconcile_esp_with(agent, &local, &snap, true).await)
    }

    async fn reconcile_esp_with(
        &self,
        agent: &Agent,
        local: &LocalState,
        snap: &Snapshot,
        force: bool,
    ) -> bool {
        if self.dataplane.kind() != DataplaneKind::Kernel {
            return true;
        }
        let ring = if self.dataplane.esp().is_ok() {
            agent.esp_ring()
        } else {
            None
        };
        let facts = match facts(agent, local).await {
            Ok(f) => f,
            Err(e) => {
                // Without the kept records a peer that is down would look gone: wait.
                agent.metrics.esp_errors.inc();
                tracing::warn!(error = %e, "IPsec: cannot read the peers and members");
                return false;
            }
        };
        let me = EspSelf {
            id: agent.id,
            addr: agent.cfg.data_path_addr,
            vxlan_port: agent.cfg.vxlan_port,
            vxlan_port_encrypted: agent.cfg.vxlan_port_encrypted,
        };
        let adopting = Instant::now() < self.adopt_until;
        let desired = desired(me, local, snap, &facts, ring, adopting);
        let mut done = self.esp_done.lock().await;
        if !force
            && done
                .as_ref()
                .is_some_and(|(d, at)| *d == desired && at.elapsed() < agent.cfg.reconcile_interval)
        {
            return true;
        }
        match self.dataplane.reconcile_esp(&desired).await {
            Ok(report) => {
                for f in &report.failed {
                    agent.metrics.esp_errors.inc();
                    tracing::warn!(op = %f.op, error = %f.error, "IPsec operation failed (retried on the next reconcile)");
                }
                for c in &report.conflicts {
                    tracing::error!(conflict = ?c, "two IPsec SAs derive the same SPI: traffic under that key fails closed until the next rotation");
                }
                if !report.applied.is_empty() {
                    tracing::info!(ops = report.applied.len(), elapsed = ?report.elapsed, "IPsec reconciled");
                    for op in &report.applied {
                        tracing::debug!(%op, "IPsec");
                    }
                }
                let sas = sa_count(&desired);
                self.esp_sas.store(sas, Ordering::Relaxed);
                agent.metrics.esp_sas.set(sas as i64);
                let ok = report.is_ok();
                *done = ok.then(|| (desired, Instant::now()));
                ok
            }
            Err(e) => {
                agent.metrics.esp_errors.inc();
                tracing::warn!(error = %e, "IPsec reconcile failed");
                *done = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::records::NetworkDef;
    use crate::tables::PeerEntry;
    use overlay::esp::EspKey;

    const ME: NodeId = NodeId(1);

    fn me() -> EspSelf {
        EspSelf {
            id: ME,
            addr: Ipv4Addr::new(10, 0, 0, 1),
            vxlan_port: 4789,
            vxlan_port_encrypted: 4790,
        }
    }

    fn ring() -> Option<KeyRing> {
        Some(
            KeyRing::new([EspKey {
                tag: 1,
                key: vec![7; 16],
            }])
            .unwrap(),
        )
    }

    fn net(id: &str, vni: u32, encrypted: bool) -> NetworkDef {
        NetworkDef {
            id: id.into(),
            name: id.into(),
            vni,
            subnet_addr: Ipv4Addr::new(10, 128, 0, 0),
            subnet_prefix: 24,
            gateway: Ipv4Addr::new(10, 128, 0, 1),
            mtu: 0,
            encrypted,
            creator: ME,
            created: 1,
            revision: 0,
            note: String::new(),
        }
    }

    fn peer(owner: u64, last: u8) -> PeerEntry {
        PeerEntry {
            endpoint: format!("ep{owner}"),
            owner: NodeId(owner),
            record: PeerRecord {
                ip: Ipv4Addr::new(10, 128, 0, last),
                mac: [2, 0, 0, 0, 0, last],
                vtep: Ipv4Addr::new(10, 0, 0, owner as u8),
            },
        }
    }

    fn local_on(defs: &[NetworkDef]) -> LocalState {
        let mut l = LocalState::default();
        for d in defs {
            l.networks.insert(d.id.clone(), d.clone());
        }
        l
    }

    fn peer_ids(d: &EspDesired) -> Vec<u64> {
        d.peers.iter().map(|n| n.id).collect()
    }

    #[test]
    fn only_nodes_sharing_an_encrypted_network_with_this_one_get_sas() {
        let enc = net("enc", 4096, true);
        let open = net("open", 4097, false);
        let mut snap = Snapshot::default();
        snap.peers
            .insert("enc".into(), vec![peer(2, 2), peer(1, 1)]);
        snap.peers.insert("open".into(), vec![peer(3, 3)]);
        let facts = EspFacts::default();
        let d = desired(
            me(),
            &local_on(&[enc.clone(), open]),
            &snap,
            &facts,
            ring(),
            false,
        );
        assert_eq!(peer_ids(&d), [2], "not itself, not a clear network's node");
        assert!(
            d.receive_only.is_empty(),
            "no SA for nodes it shares nothing with"
        );
        assert_eq!(d.vxlan_ports, [4790]);
        // No sandbox of an encrypted network here: no SA at all, the guard stays.
        let d = desired(me(), &LocalState::default(), &snap, &facts, ring(), false);
        assert!(d.peers.is_empty() && d.receive_only.is_empty());
        assert!(d.guard.is_empty(), "the snapshot defines no network here");
        let mut snap2 = Snapshot::default();
        snap2.networks.defs.push(enc);
        let d = desired(me(), &LocalState::default(), &snap2, &facts, ring(), false);
        assert_eq!(
            d.guard,
            [
                GuardRule {
                    port: 4789,
                    vni: 4096
                },
                GuardRule {
                    port: 4790,
                    vni: 4096
                }
            ]
        );
    }

    #[test]
    fn a_peer_that_is_down_but_not_gone_keeps_its_sas() {
        let enc = net("enc", 4096, true);
        // Node 3 is down: the snapshot hides its entry, the kept records still have it.
        let mut snap = Snapshot::default();
        snap.peers.insert("enc".into(), vec![peer(2, 2)]);
        let facts = EspFacts {
            peers: BTreeMap::from([(
                "enc".to_string(),
                vec![
                    (NodeId(2), Ipv4Addr::new(10, 0, 0, 2)),
                    (NodeId(3), Ipv4Addr::new(10, 0, 0, 3)),
                ],
            )]),
            generations: BTreeMap::from([(2, 10), (3, 11)]),
        };
        let d = desired(me(), &local_on(&[enc]), &snap, &facts, ring(), false);
        assert_eq!(peer_ids(&d), [2, 3]);
        assert_eq!(d.generations, facts.generations);
        assert!(!d.keep_unlisted);
    }

    #[test]
    fn without_keys_only_the_guard_is_wanted_and_adopting_keeps_the_rest() {
        let enc = net("enc", 4096, true);
        let mut snap = Snapshot::default();
        snap.peers.insert("enc".into(), vec![peer(2, 2)]);
        let d = desired(
            me(),
            &local_on(&[enc]),
            &snap,
            &EspFacts::default(),
            None,
            true,
        );
        assert!(d.peers.is_empty());
        assert_eq!(d.guard.len(), 2);
        assert!(d.keep_unlisted);
    }
}
