//! The planner: desired state versus actual state, giving the operations that make the
//! kernel match. Pure and deterministic: the same inputs give the same ops in the same order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use crate::actual::{Actual, FdbEntry, NeighbourEntry, Nud, Sandbox, Veth};
use crate::{Desired, Handoff, LocalEndpoint, NetworkSpec, Op, mac};

#[cfg(test)]
mod tests;

/// Computes the operations that turn `actual` into `desired` for the node whose data-path
/// address is `local_vtep` (the `local` of every VXLAN device; peers with this VTEP are this
/// node's own records and are skipped).
///
/// Contract:
/// * Total: never panics, whatever the input. Invalid local input (see
///   [`Desired::validate`]) gives an unspecified but harmless plan; the first network with a
///   given VNI or id wins. Invalid peers are skipped (see [`Desired::peers`]).
/// * Replace semantics: anything of ours that differs from desired is replaced, not
///   tolerated. FDB entries pointing at the wrong VTEP, learned (non-permanent), with several
///   remotes or a port/VNI override are replaced; neighbour entries with the wrong MAC or not
///   permanent are replaced; entries not desired are deleted; a `vxlan0` with the wrong
///   VNI/port/local/learning/proxy/MTU/master/up state is deleted and recreated (and all its
///   entries reprogrammed); `br0` with wrong MTU/addresses/up state is reconfigured; an
///   endpoint whose veth or container interface differs in any checked property
///   (alias, MTU, up, master, peer pairing, name, MAC, address present) is detached and
///   attached again. Extra IPv4 addresses on a container interface are tolerated.
/// * Order: all deletions first (sandboxes, then per sandbox in VNI order: detaches,
///   neighbour deletes, FDB deletes, `vxlan0` deletes), then creations per sandbox
///   (namespace, bridge, vxlan), then all attaches, then per sandbox FDB replaces and
///   neighbour replaces. Deleting first frees names (a container's `eth0`, a VNI) that
///   creations may reuse.
/// * A sandbox exists exactly for the networks in `desired.networks`; every other sandbox of
///   the prefix (and any sandbox file that is not a live namespace) is deleted.
/// * Applying the plan and planning again against the new actual state gives no ops.
pub fn plan(desired: &Desired, actual: &Actual, local_vtep: Ipv4Addr) -> Vec<Op> {
    let names = &actual.names;

    // Desired networks by VNI and by id (first wins on duplicates).
    let mut by_vni: BTreeMap<u32, &NetworkSpec> = BTreeMap::new();
    let mut by_id: BTreeMap<&str, &NetworkSpec> = BTreeMap::new();
    for n in &desired.networks {
        if by_id.contains_key(n.id.as_str()) || by_vni.contains_key(&n.vni) {
            continue;
        }
        by_id.insert(&n.id, n);
        by_vni.insert(n.vni, n);
    }

    // Local endpoints per VNI, by sandbox-side veth name (first wins on a name collision).
    let mut endpoints: BTreeMap<u32, BTreeMap<String, &LocalEndpoint>> = BTreeMap::new();
    for e in &desired.endpoints {
        if let Some(n) = by_id.get(e.network.as_str()) {
            endpoints
                .entry(n.vni)
                .or_default()
                .entry(names.veth(&e.id))
                .or_insert(e);
        }
    }

    // Remote entries per VNI: neighbour ip -> mac and fdb mac -> vtep.
    let mut peers: Vec<_> = desired.peers.iter().collect();
    peers.sort();
    let mut neigh_want: BTreeMap<u32, BTreeMap<Ipv4Addr, [u8; 6]>> = BTreeMap::new();
    let mut fdb_want: BTreeMap<u32, BTreeMap<[u8; 6], Ipv4Addr>> = BTreeMap::new();
    for p in peers {
        let Some(n) = by_id.get(p.network.as_str()) else {
            continue;
        };
        if p.vtep == local_vtep || !unicast_ipv4(p.vtep) || !mac::is_unicast(&p.mac) {
            continue;
        }
        let clashes_with_local = endpoints
            .get(&n.vni)
            .is_some_and(|eps| eps.values().any(|e| e.ip == p.ip || e.mac == p.mac));
        if clashes_with_local {
            continue;
        }
        neigh_want
            .entry(n.vni)
            .or_default()
            .entry(p.ip)
            .or_insert(p.mac);
        fdb_want
            .entry(n.vni)
            .or_default()
            .entry(p.mac)
            .or_insert(p.vtep);
    }

    let mut delete_sandboxes = Vec::new();
    let mut deletes = Vec::new();
    let mut creates = Vec::new();
    let mut attaches = Vec::new();
    let mut programs = Vec::new();

    // Sandboxes that must go: not desired, a dead namespace file, or a `br0` that is not a
    // bridge (nothing short of recreating the sandbox fixes that).
    let mut gone = BTreeSet::new();
    for (vni, sb) in &actual.sandboxes {
        let corrupt = !sb.mounted || sb.bridge.as_ref().is_some_and(|b| !b.is_bridge);
        if !by_vni.contains_key(vni) || corrupt {
            delete_sandboxes.push(Op::DeleteSandbox { vni: *vni });
            gone.insert(*vni);
        }
    }

    let no_endpoints = BTreeMap::new();
    let no_neigh = BTreeMap::new();
    let no_fdb = BTreeMap::new();
    for (&vni, net) in &by_vni {
        let sb: Option<&Sandbox> = actual.sandboxes.get(&vni).filter(|_| !gone.contains(&vni));
        let eps = endpoints.get(&vni).unwrap_or(&no_endpoints);
        let neigh = neigh_want.get(&vni).unwrap_or(&no_neigh);
        let fdb = fdb_want.get(&vni).unwrap_or(&no_fdb);
        let gateway = Ipv4Network::new(net.gateway, net.subnet.prefix()).ok();
        let bridge_op = |configure: bool| {
            let (gateway, prefix_len, mtu) = (net.gateway, net.subnet.prefix(), net.mtu);
            if configure {
                Op::ConfigureBridge {
                    vni,
                    gateway,
                    prefix_len,
                    mtu,
                }
            } else {
                Op::CreateBridge {
                    vni,
                    gateway,
                    prefix_len,
                    mtu,
                }
            }
        };
        let create_vxlan = Op::CreateVxlan {
            vni,
            port: net.vxlan_port,
            local: local_vtep,
            mtu: net.mtu,
        };

        let Some(sb) = sb else {
            creates.push(Op::CreateSandbox { vni });
            creates.push(bridge_op(false));
            creates.push(create_vxlan);
            for (veth, e) in eps.iter().filter(|(_, e)| e.handoff != Handoff::Done) {
                attaches.push(attach(vni, veth, e));
            }
            program_all(vni, fdb, neigh, &mut programs);
            continue;
        };

        // br0
        match &sb.bridge {
            None => creates.push(bridge_op(false)),
            Some(b) => {
                let ok = b.mtu == net.mtu && b.up && gateway.is_some_and(|g| b.addresses == [g]);
                if !ok {
                    creates.push(bridge_op(true));
                }
            }
        }

        // vxlan0
        let vxlan_ok = sb.vxlan.as_ref().is_some_and(|v| {
            v.is_vxlan
                && v.vni == Some(vni)
                && v.port == Some(net.vxlan_port)
                && v.local.unwrap_or(Ipv4Addr::UNSPECIFIED) == local_vtep
                && !v.learning
                && v.proxy
                && v.mtu == net.mtu
                && v.up
                && v.on_bridge
        });
        let entries_gone = !vxlan_ok;
        if !vxlan_ok {
            if sb.vxlan.is_some() {
                deletes.push(Op::DeleteVxlan { vni });
            }
            creates.push(create_vxlan);
        }

        // Endpoints.
        for (veth, e) in eps {
            if e.handoff == Handoff::Done {
                // The runtime owns the container end: keep our end while it is ours, never
                // re-create it.
                if let Some(v) = sb.veths.get(veth)
                    && !(v.is_veth && v.alias.as_deref() == Some(e.id.as_str()))
                {
                    deletes.push(Op::DetachEndpoint {
                        vni,
                        veth: veth.clone(),
                    });
                }
                continue;
            }
            match sb.veths.get(veth) {
                Some(v) if endpoint_ok(v, e) => {}
                Some(_) => {
                    deletes.push(Op::DetachEndpoint {
                        vni,
                        veth: veth.clone(),
                    });
                    attaches.push(attach(vni, veth, e));
                }
                None => attaches.push(attach(vni, veth, e)),
            }
        }
        for veth in sb.veths.keys() {
            if !eps.contains_key(veth) {
                deletes.push(Op::DetachEndpoint {
                    vni,
                    veth: veth.clone(),
                });
            }
        }

        // Peers.
        if entries_gone {
            program_all(vni, fdb, neigh, &mut programs);
            continue;
        }
        let mut fdb_ops = Vec::new();
        let mut neigh_ops = Vec::new();
        let mut have_fdb: BTreeMap<[u8; 6], Vec<&FdbEntry>> = BTreeMap::new();
        for e in &sb.fdb {
            have_fdb.entry(e.mac).or_default().push(e);
        }
        for (m, entries) in &have_fdb {
            match fdb.get(m) {
                None => deletes.push(Op::DeleteFdb { vni, mac: *m }),
                Some(vtep) => {
                    let ok = matches!(entries.as_slice(), [e] if e.dst == Some(*vtep)
                        && e.state == Nud::Permanent && e.port.is_none() && e.vni.is_none());
                    if !ok {
                        if entries.len() > 1 {
                            // `replace` only rewrites the first remote; start from scratch.
                            deletes.push(Op::DeleteFdb { vni, mac: *m });
                        }
                        fdb_ops.push(Op::ReplaceFdb {
                            vni,
                            mac: *m,
                            vtep: *vtep,
                        });
                    }
                }
            }
        }
        for (m, vtep) in fdb {
            if !have_fdb.contains_key(m) {
                fdb_ops.push(Op::ReplaceFdb {
                    vni,
                    mac: *m,
                    vtep: *vtep,
                });
            }
        }
        let mut have_neigh: BTreeMap<Ipv4Addr, &NeighbourEntry> = BTreeMap::new();
        for n in &sb.neighbours {
            have_neigh.insert(n.ip, n);
        }
        for (ip, n) in &have_neigh {
            match neigh.get(ip) {
                None => deletes.push(Op::DeleteNeighbour { vni, ip: *ip }),
                Some(m) => {
                    if n.mac != Some(*m) || n.state != Nud::Permanent {
                        neigh_ops.push(Op::ReplaceNeighbour {
                            vni,
                            ip: *ip,
                            mac: *m,
                        });
                    }
                }
            }
        }
        for (ip, m) in neigh {
            if !have_neigh.contains_key(ip) {
                neigh_ops.push(Op::ReplaceNeighbour {
                    vni,
                    ip: *ip,
                    mac: *m,
                });
            }
        }
        fdb_ops.sort_by_key(op_key);
        neigh_ops.sort_by_key(op_key);
        programs.extend(fdb_ops);
        programs.extend(neigh_ops);
    }

    // Deletes: detaches, neighbours, fdb, vxlan, each group in VNI order.
    deletes.sort_by_key(|op| (delete_rank(op), op.vni(), op_key(op)));

    let mut ops = delete_sandboxes;
    ops.extend(deletes);
    ops.extend(creates);
    ops.extend(attaches);
    ops.extend(programs);
    ops
}

fn attach(vni: u32, veth: &str, e: &LocalEndpoint) -> Op {
    Op::AttachEndpoint {
        vni,
        veth: veth.to_string(),
        endpoint: e.clone(),
    }
}

fn program_all(
    vni: u32,
    fdb: &BTreeMap<[u8; 6], Ipv4Addr>,
    neigh: &BTreeMap<Ipv4Addr, [u8; 6]>,
    out: &mut Vec<Op>,
) {
    out.extend(fdb.iter().map(|(m, vtep)| Op::ReplaceFdb {
        vni,
        mac: *m,
        vtep: *vtep,
    }));
    out.extend(neigh.iter().map(|(ip, m)| Op::ReplaceNeighbour {
        vni,
        ip: *ip,
        mac: *m,
    }));
}

fn endpoint_ok(v: &Veth, e: &LocalEndpoint) -> bool {
    let Ok(addr) = Ipv4Network::new(e.ip, e.prefix_len) else {
        return false;
    };
    v.is_veth
        && v.alias.as_deref() == Some(e.id.as_str())
        && v.mtu == e.mtu
        && v.up
        && v.on_bridge
        && v.is_paired()
        && v.container.as_ref().is_some_and(|c| {
            c.ifname == e.ifname
                && c.mac == Some(e.mac)
                && c.mtu == e.mtu
                && c.up
                && c.addresses.contains(&addr)
        })
}

fn unicast_ipv4(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}

fn delete_rank(op: &Op) -> u8 {
    match op {
        Op::DetachEndpoint { .. } => 0,
        Op::DeleteNeighbour { .. } => 1,
        Op::DeleteFdb { .. } => 2,
        Op::DeleteVxlan { .. } => 3,
        _ => 4,
    }
}

/// Orders ops of one kind within one sandbox.
fn op_key(op: &Op) -> (String, [u8; 6], u32) {
    match op {
        Op::DetachEndpoint { veth, .. } => (veth.clone(), [0; 6], 0),
        Op::DeleteNeighbour { ip, .. } | Op::ReplaceNeighbour { ip, .. } => {
            (String::new(), [0; 6], u32::from(*ip))
        }
        Op::DeleteFdb { mac, .. } | Op::ReplaceFdb { mac, .. } => (String::new(), *mac, 0),
        _ => (String::new(), [0; 6], 0),
    }
}
