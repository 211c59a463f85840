use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

use super::plan;
use crate::actual::{
    Actual, Bridge, ContainerIface, FdbEntry, NeighbourEntry, Nud, Sandbox, Veth, Vxlan,
};
use crate::{Desired, LocalEndpoint, Names, NetworkSpec, Op, RemotePeer};

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 3);

fn net(id: &str, vni: u32) -> NetworkSpec {
    let third = (vni % 250) as u8;
    NetworkSpec {
        id: id.into(),
        vni,
        subnet: Ipv4Network::new(Ipv4Addr::new(10, 10, third, 0), 24).unwrap(),
        gateway: Ipv4Addr::new(10, 10, third, 1),
        mtu: 1450,
        vxlan_port: 4789,
    }
}

fn ep(id: &str, network: &NetworkSpec, host: u8) -> LocalEndpoint {
    let o = network.subnet.ip().octets();
    LocalEndpoint {
        id: id.into(),
        network: network.id.clone(),
        netns: PathBuf::from(format!("/var/run/netns/c-{id}")),
        ifname: "eth0".into(),
        ip: Ipv4Addr::new(o[0], o[1], o[2], host),
        prefix_len: 24,
        mac: [0x02, 0x42, o[0], o[1], o[2], host],
        mtu: network.mtu,
        handoff: crate::Handoff::No,
    }
}

fn peer(id: &str, network: &NetworkSpec, host: u8, vtep: Ipv4Addr) -> RemotePeer {
    let o = network.subnet.ip().octets();
    RemotePeer {
        network: network.id.clone(),
        endpoint: id.into(),
        ip: Ipv4Addr::new(o[0], o[1], o[2], host),
        mac: [0x02, 0x42, o[0], o[1], o[2], host],
        vtep,
    }
}

/// The state the executor reads back after applying `plan(desired, empty)`.
fn converged(desired: &Desired, local: Ipv4Addr) -> Actual {
    let names = Names::default();
    let empty = Actual::empty(names.clone());
    let mut actual = empty.clone();
    let mut ifindex = 10;
    let mut next = || {
        ifindex += 1;
        ifindex
    };
    for op in plan(desired, &empty, local) {
        match op {
            Op::CreateSandbox { vni } => {
                actual.sandboxes.insert(
                    vni,
                    Sandbox {
                        vni,
                        netns: names.sandbox(vni),
                        mounted: true,
                        ..Sandbox::default()
                    },
                );
            }
            Op::CreateBridge {
                vni,
                gateway,
                prefix_len,
                mtu,
            } => {
                actual.sandboxes.get_mut(&vni).unwrap().bridge = Some(Bridge {
                    ifindex: next(),
                    is_bridge: true,
                    mtu,
                    up: true,
                    addresses: vec![Ipv4Network::new(gateway, prefix_len).unwrap()],
                });
            }
            Op::CreateVxlan {
                vni,
                port,
                local,
                mtu,
            } => {
                actual.sandboxes.get_mut(&vni).unwrap().vxlan = Some(Vxlan {
                    ifindex: next(),
                    is_vxlan: true,
                    vni: Some(vni),
                    port: Some(port),
                    local: (!local.is_unspecified()).then_some(local),
                    learning: false,
                    proxy: true,
                    mtu,
                    up: true,
                    on_bridge: true,
                });
            }
            Op::AttachEndpoint {
                vni,
                veth,
                endpoint: e,
            } => {
                let (sandbox_index, container_index) = (next(), next());
                actual.sandboxes.get_mut(&vni).unwrap().veths.insert(
                    veth.clone(),
                    Veth {
                        name: veth,
                        ifindex: sandbox_index,
                        alias: Some(e.id.clone()),
                        is_veth: true,
                        mtu: e.mtu,
                        up: true,
                        on_bridge: true,
                        peer_ifindex: Some(container_index),
                        container: Some(ContainerIface {
                            netns: e.netns.clone(),
                            ifname: e.ifname.clone(),
                            ifindex: container_index,
                            peer_ifindex: Some(sandbox_index),
                            mac: Some(e.mac),
                            mtu: e.mtu,
                            up: true,
                            addresses: vec![Ipv4Network::new(e.ip, e.prefix_len).unwrap()],
                        }),
                    },
                );
            }
            Op::ReplaceFdb { vni, mac, vtep } => {
                actual.sandboxes.get_mut(&vni).unwrap().fdb.push(FdbEntry {
                    mac,
                    dst: Some(vtep),
                    state: Nud::Permanent,
                    port: None,
                    vni: None,
                });
            }
            Op::ReplaceNeighbour { vni, ip, mac } => {
                actual
                    .sandboxes
                    .get_mut(&vni)
                    .unwrap()
                    .neighbours
                    .push(NeighbourEntry {
                        ip,
                        mac: Some(mac),
                        state: Nud::Permanent,
                    });
            }
            other => panic!("unexpected op on an empty node: {other:?}"),
        }
    }
    actual
}

/// One network (vni 256), one local endpoint, two remote peers on two other hosts.
fn scenario() -> Desired {
    let n = net("n1", 256);
    Desired {
        endpoints: vec![ep("e-local", &n, 2)],
        peers: vec![peer("e-r3", &n, 3, REMOTE), peer("e-r4", &n, 4, OTHER)],
        networks: vec![n],
    }
}

fn sandbox(actual: &mut Actual, vni: u32) -> &mut Sandbox {
    actual.sandboxes.get_mut(&vni).unwrap()
}

const MAC3: [u8; 6] = [0x02, 0x42, 10, 10, 6, 3];
const MAC4: [u8; 6] = [0x02, 0x42, 10, 10, 6, 4];
const IP3: Ipv4Addr = Ipv4Addr::new(10, 10, 6, 3);
const IP4: Ipv4Addr = Ipv4Addr::new(10, 10, 6, 4);

#[test]
fn nothing_desired_on_an_empty_node_gives_no_ops() {
    assert!(plan(&Desired::default(), &Actual::default(), LOCAL).is_empty());
}

#[test]
fn a_new_network_creates_the_sandbox_bridge_and_vxlan_before_attaching_and_programming() {
    let ops = plan(&scenario(), &Actual::default(), LOCAL);
    let e = scenario().endpoints[0].clone();
    let veth = Names::default().veth("e-local");
    assert_eq!(
        ops,
        vec![
            Op::CreateSandbox { vni: 256 },
            Op::CreateBridge {
                vni: 256,
                gateway: Ipv4Addr::new(10, 10, 6, 1),
                prefix_len: 24,
                mtu: 1450
            },
            Op::CreateVxlan {
                vni: 256,
                port: 4789,
                local: LOCAL,
                mtu: 1450
            },
            Op::AttachEndpoint {
                vni: 256,
                veth,
                endpoint: e
            },
            Op::ReplaceFdb {
                vni: 256,
                mac: MAC3,
                vtep: REMOTE
            },
            Op::ReplaceFdb {
                vni: 256,
                mac: MAC4,
                vtep: OTHER
            },
            Op::ReplaceNeighbour {
                vni: 256,
                ip: IP3,
                mac: MAC3
            },
            Op::ReplaceNeighbour {
                vni: 256,
                ip: IP4,
                mac: MAC4
            },
        ]
    );
}

#[test]
fn a_converged_node_gives_no_ops() {
    let d = scenario();
    assert_eq!(plan(&d, &converged(&d, LOCAL), LOCAL), vec![]);
}

#[test]
fn an_fdb_entry_pointing_at_the_wrong_vtep_is_replaced() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).fdb[0].dst = Some(OTHER);
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![Op::ReplaceFdb {
            vni: 256,
            mac: MAC3,
            vtep: REMOTE
        }]
    );
}

#[test]
fn a_learned_fdb_entry_for_a_peer_mac_is_replaced_by_a_permanent_one() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).fdb[0].state = Nud::Reachable;
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![Op::ReplaceFdb {
            vni: 256,
            mac: MAC3,
            vtep: REMOTE
        }]
    );
}

#[test]
fn an_fdb_entry_with_a_port_or_vni_override_is_replaced() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).fdb[0].port = Some(9999);
    sandbox(&mut a, 256).fdb[1].vni = Some(7);
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![
            Op::ReplaceFdb {
                vni: 256,
                mac: MAC3,
                vtep: REMOTE
            },
            Op::ReplaceFdb {
                vni: 256,
                mac: MAC4,
                vtep: OTHER
            },
        ]
    );
}

#[test]
fn an_fdb_entry_with_several_remotes_is_deleted_then_replaced() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    let mut extra = sandbox(&mut a, 256).fdb[0].clone();
    extra.dst = Some(OTHER);
    sandbox(&mut a, 256).fdb.push(extra);
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![
            Op::DeleteFdb {
                vni: 256,
                mac: MAC3
            },
            Op::ReplaceFdb {
                vni: 256,
                mac: MAC3,
                vtep: REMOTE
            },
        ]
    );
}

#[test]
fn a_missing_fdb_entry_is_added_back() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).fdb.retain(|e| e.mac != MAC4);
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![Op::ReplaceFdb {
            vni: 256,
            mac: MAC4,
            vtep: OTHER
        }]
    );
}

#[test]
fn removing_a_peer_deletes_its_neighbour_and_fdb_entries() {
    let mut d = scenario();
    let a = converged(&d, LOCAL);
    d.peers.retain(|p| p.endpoint != "e-r4");
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![
            Op::DeleteNeighbour { vni: 256, ip: IP4 },
            Op::DeleteFdb {
                vni: 256,
                mac: MAC4
            }
        ]
    );
}

#[test]
fn stale_entries_nobody_desires_are_deleted_whatever_their_state() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    let junk_mac = [0x02, 0, 0, 0, 0, 0x99];
    let sb = sandbox(&mut a, 256);
    sb.fdb.push(FdbEntry {
        mac: junk_mac,
        dst: Some(REMOTE),
        state: Nud::Reachable,
        port: None,
        vni: None,
    });
    sb.fdb.push(FdbEntry {
        mac: [0; 6],
        dst: Some(OTHER),
        state: Nud::Permanent,
        port: None,
        vni: None,
    });
    sb.neighbours.push(NeighbourEntry {
        ip: Ipv4Addr::new(10, 10, 6, 99),
        mac: None,
        state: Nud::Failed,
    });
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![
            Op::DeleteNeighbour {
                vni: 256,
                ip: Ipv4Addr::new(10, 10, 6, 99)
            },
            Op::DeleteFdb {
                vni: 256,
                mac: [0; 6]
            },
            Op::DeleteFdb {
                vni: 256,
                mac: junk_mac
            },
        ]
    );
}

#[test]
fn a_neighbour_entry_with_the_wrong_mac_is_replaced() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).neighbours[0].mac = Some(MAC4);
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![Op::ReplaceNeighbour {
            vni: 256,
            ip: IP3,
            mac: MAC3
        }]
    );
}

#[test]
fn a_neighbour_entry_that_is_not_permanent_is_replaced() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).neighbours[1].state = Nud::Stale;
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![Op::ReplaceNeighbour {
            vni: 256,
            ip: IP4,
            mac: MAC4
        }]
    );
}

fn vxlan_is_recreated_and_reprogrammed_when(perturb: impl FnOnce(&mut Vxlan)) {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    perturb(sandbox(&mut a, 256).vxlan.as_mut().unwrap());
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![
            Op::DeleteVxlan { vni: 256 },
            Op::CreateVxlan {
                vni: 256,
                port: 4789,
                local: LOCAL,
                mtu: 1450
            },
            Op::ReplaceFdb {
                vni: 256,
                mac: MAC3,
                vtep: REMOTE
            },
            Op::ReplaceFdb {
                vni: 256,
                mac: MAC4,
                vtep: OTHER
            },
            Op::ReplaceNeighbour {
                vni: 256,
                ip: IP3,
                mac: MAC3
            },
            Op::ReplaceNeighbour {
                vni: 256,
                ip: IP4,
                mac: MAC4
            },
        ]
    );
}

#[test]
fn a_vxlan_with_the_wrong_vni_is_recreated() {
    vxlan_is_recreated_and_reprogrammed_when(|v| v.vni = Some(257));
}

#[test]
fn a_vxlan_with_the_wrong_port_is_recreated() {
    vxlan_is_recreated_and_reprogrammed_when(|v| v.port = Some(4790));
}

#[test]
fn a_vxlan_with_learning_on_is_recreated() {
    vxlan_is_recreated_and_reprogrammed_when(|v| v.learning = true);
}

#[test]
fn a_vxlan_without_proxy_is_recreated() {
    vxlan_is_recreated_and_reprogrammed_when(|v| v.proxy = false);
}

#[test]
fn a_vxlan_with_another_local_address_or_mtu_or_master_is_recreated() {
    vxlan_is_recreated_and_reprogrammed_when(|v| v.local = Some(OTHER));
    vxlan_is_recreated_and_reprogrammed_when(|v| v.mtu = 1500);
    vxlan_is_recreated_and_reprogrammed_when(|v| v.on_bridge = false);
    vxlan_is_recreated_and_reprogrammed_when(|v| v.up = false);
    vxlan_is_recreated_and_reprogrammed_when(|v| v.is_vxlan = false);
}

#[test]
fn a_missing_vxlan_is_created_and_programmed_without_a_delete() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    let sb = sandbox(&mut a, 256);
    sb.vxlan = None;
    sb.fdb.clear();
    sb.neighbours.clear();
    let ops = plan(&d, &a, LOCAL);
    assert_eq!(
        ops[0],
        Op::CreateVxlan {
            vni: 256,
            port: 4789,
            local: LOCAL,
            mtu: 1450
        }
    );
    assert_eq!(ops.len(), 5);
}

#[test]
fn a_bridge_with_the_wrong_mtu_address_or_state_is_reconfigured() {
    let d = scenario();
    let expect = vec![Op::ConfigureBridge {
        vni: 256,
        gateway: Ipv4Addr::new(10, 10, 6, 1),
        prefix_len: 24,
        mtu: 1450,
    }];
    for perturb in [
        (|b: &mut Bridge| b.mtu = 1500) as fn(&mut Bridge),
        |b| b.up = false,
        |b| b.addresses.push("10.9.9.9/8".parse().unwrap()),
        |b| b.addresses.clear(),
    ] {
        let mut a = converged(&d, LOCAL);
        perturb(sandbox(&mut a, 256).bridge.as_mut().unwrap());
        assert_eq!(plan(&d, &a, LOCAL), expect);
    }
}

#[test]
fn a_missing_bridge_is_created() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).bridge = None;
    assert!(matches!(
        plan(&d, &a, LOCAL).as_slice(),
        [Op::CreateBridge { vni: 256, .. }]
    ));
}

#[test]
fn a_sandbox_whose_br0_is_not_a_bridge_is_rebuilt_from_scratch() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    sandbox(&mut a, 256).bridge.as_mut().unwrap().is_bridge = false;
    let ops = plan(&d, &a, LOCAL);
    assert_eq!(ops[0], Op::DeleteSandbox { vni: 256 });
    assert_eq!(ops[1..], plan(&d, &Actual::default(), LOCAL)[..]);
}

#[test]
fn a_sandbox_file_that_is_not_a_live_namespace_is_deleted_and_recreated() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    let sb = sandbox(&mut a, 256);
    *sb = Sandbox {
        vni: 256,
        netns: sb.netns.clone(),
        mounted: false,
        ..Sandbox::default()
    };
    let ops = plan(&d, &a, LOCAL);
    assert_eq!(ops[0], Op::DeleteSandbox { vni: 256 });
    assert_eq!(ops[1], Op::CreateSandbox { vni: 256 });
}

#[test]
fn a_sandbox_is_removed_when_its_network_is_no_longer_desired() {
    let d = scenario();
    let a = converged(&d, LOCAL);
    let ops = plan(&Desired::default(), &a, LOCAL);
    assert_eq!(ops, vec![Op::DeleteSandbox { vni: 256 }]);
}

#[test]
fn a_sandbox_of_a_desired_network_stays_after_its_last_endpoint_leaves() {
    let mut d = scenario();
    let a = converged(&d, LOCAL);
    d.endpoints.clear();
    let ops = plan(&d, &a, LOCAL);
    assert_eq!(
        ops,
        vec![Op::DetachEndpoint {
            vni: 256,
            veth: Names::default().veth("e-local")
        }]
    );
}

#[test]
fn a_veth_nobody_desires_is_detached() {
    let d = scenario();
    let mut a = converged(&d, LOCAL);
    let mut stray = sandbox(&mut a, 256).veths.values().next().unwrap().clone();
    stray.name = "swn0badf00d".into();
    stray.container = None;
    sandbox(&mut a, 256).veths.insert(stray.name.clone(), stray);
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![Op::DetachEndpoint {
            vni: 256,
            veth: "swn0badf00d".into()
        }]
    );
}

#[test]
fn an_endpoint_whose_interfaces_differ_is_detached_and_attached_again() {
    let d = scenario();
    let veth = Names::default().veth("e-local");
    let expect = vec![
        Op::DetachEndpoint {
            vni: 256,
            veth: veth.clone(),
        },
        Op::AttachEndpoint {
            vni: 256,
            veth: veth.clone(),
            endpoint: d.endpoints[0].clone(),
        },
    ];
    let perturbations: Vec<fn(&mut Veth)> = vec![
        |v| v.mtu = 1500,
        |v| v.up = false,
        |v| v.on_bridge = false,
        |v| v.alias = Some("someone-else".into()),
        |v| v.alias = None,
        |v| v.container = None,
        |v| v.peer_ifindex = Some(999),
        |v| v.container.as_mut().unwrap().peer_ifindex = Some(999),
        |v| v.container.as_mut().unwrap().mac = Some([0x02, 0, 0, 0, 0, 1]),
        |v| v.container.as_mut().unwrap().mtu = 1500,
        |v| v.container.as_mut().unwrap().up = false,
        |v| v.container.as_mut().unwrap().ifname = "eth1".into(),
        |v| v.container.as_mut().unwrap().addresses.clear(),
    ];
    for (i, perturb) in perturbations.into_iter().enumerate() {
        let mut a = converged(&d, LOCAL);
        perturb(sandbox(&mut a, 256).veths.get_mut(&veth).unwrap());
        assert_eq!(plan(&d, &a, LOCAL), expect, "perturbation {i}");
    }
}

#[test]
fn extra_addresses_on_a_container_interface_are_tolerated() {
    let d = scenario();
    let veth = Names::default().veth("e-local");
    let mut a = converged(&d, LOCAL);
    let c = sandbox(&mut a, 256)
        .veths
        .get_mut(&veth)
        .unwrap()
        .container
        .as_mut()
        .unwrap();
    c.addresses.push("192.0.2.7/32".parse().unwrap());
    assert_eq!(plan(&d, &a, LOCAL), vec![]);
}

#[test]
fn peers_on_the_local_vtep_or_unknown_networks_or_with_bad_addresses_are_ignored() {
    let n = net("n1", 256);
    let mut bad_mac = peer("p-mc", &n, 5, REMOTE);
    bad_mac.mac = [0x01, 0, 0x5e, 0, 0, 1];
    let mut bad_vtep = peer("p-vtep", &n, 6, REMOTE);
    bad_vtep.vtep = Ipv4Addr::UNSPECIFIED;
    let d = Desired {
        peers: vec![
            peer("p-self", &n, 7, LOCAL),
            peer("p-elsewhere", &net("n2", 300), 8, REMOTE),
            bad_mac,
            bad_vtep,
        ],
        networks: vec![n],
        endpoints: vec![],
    };
    let ops = plan(&d, &Actual::default(), LOCAL);
    assert!(
        ops.iter()
            .all(|op| !matches!(op, Op::ReplaceFdb { .. } | Op::ReplaceNeighbour { .. })),
        "{ops:?}"
    );
}

#[test]
fn a_peer_clashing_with_a_local_endpoint_is_ignored() {
    let mut d = scenario();
    let local = d.endpoints[0].clone();
    d.peers = vec![RemotePeer {
        network: "n1".into(),
        endpoint: "stale-copy".into(),
        ip: local.ip,
        mac: [0x02, 0, 0, 0, 0, 0x55],
        vtep: REMOTE,
    }];
    let ops = plan(&d, &Actual::default(), LOCAL);
    assert!(
        ops.iter()
            .all(|op| !matches!(op, Op::ReplaceNeighbour { .. })),
        "{ops:?}"
    );
}

#[test]
fn when_two_peers_claim_one_ip_the_smallest_endpoint_id_wins() {
    let n = net("n1", 256);
    let mut b = peer("b", &n, 3, REMOTE);
    b.mac = [0x02, 0, 0, 0, 0, 0xbb];
    let a = peer("a", &n, 3, OTHER);
    let d = Desired {
        networks: vec![n],
        endpoints: vec![],
        peers: vec![b, a.clone()],
    };
    let ops = plan(&d, &Actual::default(), LOCAL);
    assert!(ops.contains(&Op::ReplaceNeighbour {
        vni: 256,
        ip: a.ip,
        mac: a.mac
    }));
    assert_eq!(
        ops.iter()
            .filter(|op| matches!(op, Op::ReplaceNeighbour { .. }))
            .count(),
        1
    );
    // Both MACs still get forwarding entries.
    assert_eq!(
        ops.iter()
            .filter(|op| matches!(op, Op::ReplaceFdb { .. }))
            .count(),
        2
    );
}

#[test]
fn deletions_come_before_creations_so_names_can_be_reused() {
    // The endpoint moves from network n1 (vni 256) to n2 (vni 300), same container eth0.
    let d1 = scenario();
    let a = converged(&d1, LOCAL);
    let n2 = net("n2", 300);
    let mut e = d1.endpoints[0].clone();
    e.network = "n2".into();
    e.ip = Ipv4Addr::new(10, 10, 50, 2);
    let d2 = Desired {
        networks: vec![n2],
        endpoints: vec![e],
        peers: vec![],
    };
    let ops = plan(&d2, &a, LOCAL);
    assert_eq!(ops[0], Op::DeleteSandbox { vni: 256 });
    assert_eq!(ops[1], Op::CreateSandbox { vni: 300 });
    assert!(matches!(ops[3], Op::CreateVxlan { vni: 300, .. }));
    assert!(matches!(ops[4], Op::AttachEndpoint { vni: 300, .. }));
}

#[test]
fn detaches_in_one_sandbox_precede_attaches_in_another() {
    // Two networks; the container's eth0 moves from n1's endpoint to n2's endpoint.
    let n1 = net("n1", 256);
    let n2 = net("n2", 300);
    let d1 = Desired {
        networks: vec![n1.clone(), n2.clone()],
        endpoints: vec![ep("a", &n1, 2)],
        peers: vec![],
    };
    let a = converged(&d1, LOCAL);
    let mut b = ep("b", &n2, 2);
    b.netns = d1.endpoints[0].netns.clone();
    let d2 = Desired {
        networks: vec![n1, n2],
        endpoints: vec![b],
        peers: vec![],
    };
    let ops = plan(&d2, &a, LOCAL);
    let detach = ops
        .iter()
        .position(|op| matches!(op, Op::DetachEndpoint { vni: 256, .. }));
    let attach = ops
        .iter()
        .position(|op| matches!(op, Op::AttachEndpoint { vni: 300, .. }));
    assert!(detach.unwrap() < attach.unwrap(), "{ops:?}");
}

#[test]
fn the_plan_does_not_depend_on_the_order_of_the_desired_lists() {
    let n1 = net("n1", 256);
    let n2 = net("n2", 300);
    let d = Desired {
        networks: vec![n1.clone(), n2.clone()],
        endpoints: vec![ep("a", &n1, 2), ep("b", &n2, 2), ep("c", &n1, 3)],
        peers: vec![
            peer("p1", &n1, 10, REMOTE),
            peer("p2", &n2, 11, OTHER),
            peer("p3", &n1, 12, OTHER),
        ],
    };
    let mut r = d.clone();
    r.networks.reverse();
    r.endpoints.reverse();
    r.peers.reverse();
    let a = Actual::default();
    assert_eq!(plan(&d, &a, LOCAL), plan(&r, &a, LOCAL));
    let conv = converged(&d, LOCAL);
    assert_eq!(plan(&r, &conv, LOCAL), vec![]);
}

#[test]
fn ops_and_actual_state_serialize_for_debug_dumps() {
    let d = scenario();
    let a = converged(&d, LOCAL);
    let json = serde_json::to_string(&a).unwrap();
    assert!(json.contains("\"02:42:0a:0a:06:03\""), "{json}");
    let back: Actual = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    let ops = plan(&d, &Actual::default(), LOCAL);
    let json = serde_json::to_string(&ops).unwrap();
    assert!(json.contains("\"op\":\"replace_fdb\""), "{json}");
    let back: Vec<Op> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ops);
    let dj = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Desired>(&dj).unwrap(), d);
}

#[test]
fn validation_accepts_the_scenario() {
    scenario().validate(&Names::default()).unwrap();
}

#[test]
fn validation_names_the_endpoint_whose_address_is_outside_its_subnet() {
    let mut d = scenario();
    d.endpoints[0].ip = Ipv4Addr::new(10, 99, 0, 2);
    let err = d.validate(&Names::default()).unwrap_err().to_string();
    assert!(
        err.contains("endpoint \"e-local\"") && err.contains("outside subnet"),
        "{err}"
    );
}

#[test]
fn validation_rejects_duplicate_vnis_unknown_networks_and_bad_ifnames() {
    let names = Names::default();
    let mut d = scenario();
    d.networks.push(NetworkSpec {
        id: "n2".into(),
        ..d.networks[0].clone()
    });
    assert!(
        d.validate(&names)
            .unwrap_err()
            .to_string()
            .contains("vni 256")
    );

    let mut d = scenario();
    d.endpoints[0].network = "nope".into();
    assert!(
        d.validate(&names)
            .unwrap_err()
            .to_string()
            .contains("\"nope\"")
    );

    let mut d = scenario();
    d.endpoints[0].ifname = "a-name-that-is-too-long".into();
    assert!(
        d.validate(&names)
            .unwrap_err()
            .to_string()
            .contains("ifname")
    );

    let mut d = scenario();
    d.endpoints[0].mac = [0xff; 6];
    assert!(
        d.validate(&names)
            .unwrap_err()
            .to_string()
            .contains("unicast")
    );
}

#[test]
fn validation_rejects_two_endpoints_whose_veth_names_collide() {
    // Find two ids with the same FNV-1a-32 hash (birthday search over a few 100k ids).
    let names = Names::default();
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0u32..)
        .find_map(|i| {
            let id = format!("ep{i}");
            seen.insert(names.veth(&id), id.clone())
                .map(|prev| (prev, id))
        })
        .unwrap();
    let n = net("n1", 256);
    let mut e2 = ep(&b, &n, 3);
    e2.netns = PathBuf::from("/var/run/netns/other");
    let d = Desired {
        endpoints: vec![ep(&a, &n, 2), e2],
        networks: vec![n],
        peers: vec![],
    };
    let err = d.validate(&names).unwrap_err().to_string();
    assert!(err.contains("collides"), "{err}");
}

#[test]
fn a_handed_off_endpoint_keeps_its_bridge_end_and_is_never_recreated() {
    let n = net("n1", 300);
    let mut e = ep("e1", &n, 2);
    e.handoff = crate::Handoff::Pending;
    let mut d = Desired {
        networks: vec![n.clone()],
        endpoints: vec![e.clone()],
        peers: vec![],
    };
    // Pending: created like any endpoint.
    let empty = Actual::empty(Names::default());
    assert!(
        plan(&d, &empty, LOCAL)
            .iter()
            .any(|op| matches!(op, Op::AttachEndpoint { .. })),
        "a pending hand-off is created"
    );
    let mut a = converged(&d, LOCAL);
    // The runtime moved the container end away: nothing of it can be read.
    let veth = Names::default().veth("e1");
    sandbox(&mut a, 300).veths.get_mut(&veth).unwrap().container = None;
    d.endpoints[0].handoff = crate::Handoff::Done;
    assert_eq!(
        plan(&d, &a, LOCAL),
        vec![],
        "a done hand-off is left as it is"
    );
    // Its container died: the pair went with it; nothing is re-created.
    sandbox(&mut a, 300).veths.remove(&veth);
    assert_eq!(plan(&d, &a, LOCAL), vec![]);
    // Nor when the whole sandbox is rebuilt.
    let ops = plan(&d, &empty, LOCAL);
    assert!(
        !ops.iter().any(|op| matches!(op, Op::AttachEndpoint { .. })),
        "{ops:?}"
    );
}
