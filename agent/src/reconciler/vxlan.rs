//! The VXLAN overlay this node should hold: a sandbox per network it has endpoints on, its
//! local endpoints (its ingress endpoints for published ports among them), and every remote
//! endpoint of those networks from the `peers` tables.
//! After a restart, remote peers still in the kernel are kept until gossip has had time to
//! deliver them ([`ADOPTED_PREFIX`]), so a restart does not cut running containers off.

use std::collections::{BTreeMap, BTreeSet};

use overlay::{Desired, LocalEndpoint as OverlayEndpoint, NetworkSpec, RemotePeer};

use super::Reconciler;
use crate::node::Agent;
use crate::state::LocalState;
use crate::tables::Snapshot;

/// Endpoint id prefix of peers adopted from the kernel after a restart (see
/// [`Reconciler::adopt_until`]).
pub const ADOPTED_PREFIX: &str = "adopted:";

/// What this node's overlay should hold, from its local state and a snapshot (pure).
pub fn desired(agent: &Agent, local: &LocalState, snap: &Snapshot) -> Desired {
    let mut d = Desired::default();
    for def in local.networks.values() {
        d.networks.push(NetworkSpec {
            id: def.id.clone(),
            vni: def.vni,
            subnet: def.subnet(),
            gateway: def.gateway,
            mtu: agent.mtu_for(def),
            vxlan_port: agent.vxlan_port_for(def),
        });
        for p in snap.peers.get(&def.id).into_iter().flatten() {
            if p.owner == agent.id {
                continue;
            }
            d.peers.push(RemotePeer {
                network: def.id.clone(),
                endpoint: p.endpoint.clone(),
                ip: p.record.ip,
                mac: p.record.mac,
                vtep: p.record.vtep,
            });
        }
    }
    for ep in local.endpoints.values() {
        d.endpoints.push(OverlayEndpoint {
            id: ep.id.clone(),
            network: ep.network.clone(),
            netns: ep.netns.clone(),
            ifname: ep.ifname.clone(),
            ip: ep.ip,
            prefix_len: ep.prefix,
            mac: ep.mac,
            mtu: ep.mtu,
            handoff: ep.overlay_handoff(),
        });
    }
    // Ingress endpoints (published ports): an ordinary endpoint whose "container" is the
    // host namespace itself.
    for (net, ing) in &local.ingress {
        let Some(def) = local.networks.get(net) else {
            continue;
        };
        d.endpoints.push(OverlayEndpoint {
            id: ing.id.clone(),
            network: net.clone(),
            netns: crate::mesh::HOST_NETNS.into(),
            ifname: ing.ifname.clone(),
            ip: ing.ip,
            prefix_len: def.subnet_prefix,
            mac: ing.mac,
            mtu: agent.mtu_for(def),
            handoff: overlay::Handoff::No,
        });
    }
    d.peers.sort();
    d
}

impl Reconciler {
    /// Keep the remote peers the kernel holds that gossip has not delivered yet (only while
    /// [`Reconciler::adopt_until`] lasts, right after a restart).
    pub(super) async fn adopt_kernel_peers(&self, d: &mut Desired) {
        let actual = match self.dataplane.read_actual(d).await {
            Ok(Some(a)) => a,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "reading the dataplane to adopt peers");
                return;
            }
        };
        let by_vni: BTreeMap<u32, String> =
            d.networks.iter().map(|n| (n.vni, n.id.clone())).collect();
        let known: BTreeSet<(String, std::net::Ipv4Addr)> =
            d.peers.iter().map(|p| (p.network.clone(), p.ip)).collect();
        for (vni, sb) in &actual.sandboxes {
            let Some(net) = by_vni.get(vni) else { continue };
            let vteps: BTreeMap<[u8; 6], std::net::Ipv4Addr> = sb
                .fdb
                .iter()
                .filter_map(|f| Some((f.mac, f.dst?)))
                .collect();
            for n in &sb.neighbours {
                let Some(mac) = n.mac else { continue };
                let Some(vtep) = vteps.get(&mac) else {
                    continue;
                };
                if known.contains(&(net.clone(), n.ip)) {
                    continue;
                }
                d.peers.push(RemotePeer {
                    network: net.clone(),
                    endpoint: format!("{ADOPTED_PREFIX}{}", n.ip),
                    ip: n.ip,
                    mac,
                    vtep: *vtep,
                });
            }
        }
        d.peers.sort();
    }
}
