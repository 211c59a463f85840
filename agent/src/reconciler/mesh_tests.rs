use std::collections::BTreeMap;

use super::*;
use crate::records::{NetworkDef, PeerRecord, ServiceMode};
use crate::state::{IngressEndpoint, LocalEndpoint};
use crate::tables::{NetworkView, PeerEntry};

const ME: NodeId = NodeId(1);
const OTHER: NodeId = NodeId(2);
const THIRD: NodeId = NodeId(3);

fn net() -> NetworkDef {
    NetworkDef {
        id: "n1".into(),
        name: "blue".into(),
        vni: 4096,
        subnet_addr: "10.0.0.0".parse().unwrap(),
        subnet_prefix: 24,
        gateway: "10.0.0.1".parse().unwrap(),
        mtu: 0,
        encrypted: false,
        creator: ME,
        created: 1,
        revision: 0,
        note: String::new(),
    }
}

fn svc(id: &str, created: u64, published: &[(Protocol, u16, u16, PublishMode)]) -> ServiceDef {
    ServiceDef {
        id: id.into(),
        name: format!("{id}-name"),
        aliases: vec![],
        mode: ServiceMode::Vip,
        ports: vec![],
        networks: vec!["n1".into()],
        vips: BTreeMap::new(),
        creator: ME,
        created,
        published: published
            .iter()
            .map(|(protocol, published, target, mode)| PublishedPort {
                protocol: *protocol,
                published: *published,
                target: *target,
                mode: *mode,
            })
            .collect(),
    }
}

fn backend(node: NodeId, last: u8, disabled: bool) -> (String, EndpointRecord) {
    (
        format!("ep{last}"),
        EndpointRecord {
            name: format!("b{last}"),
            aliases: vec![],
            ip: Ipv4Addr::new(10, 0, 0, last),
            prefix: 24,
            mac: [2, 0x42, 10, 0, 0, last],
            network: "n1".into(),
            node,
            disabled,
            service: Some("web".into()),
        },
    )
}

fn ingress_peer(node: NodeId, last: u8) -> PeerEntry {
    PeerEntry {
        endpoint: crate::mesh::ingress_id(node),
        owner: node,
        record: PeerRecord {
            ip: Ipv4Addr::new(10, 0, 0, last),
            mac: [2, 0x42, 10, 0, 0, last],
            vtep: Ipv4Addr::new(192, 168, 0, last),
        },
    }
}

fn local() -> LocalState {
    let mut l = LocalState::default();
    l.networks.insert("n1".into(), net());
    l.ingress.insert(
        "n1".into(),
        IngressEndpoint {
            id: crate::mesh::ingress_id(ME),
            ip: Ipv4Addr::new(10, 0, 0, 251),
            mac: [2, 0x42, 10, 0, 0, 251],
            ifname: "swni001000".into(),
        },
    );
    l.endpoints.insert(
        "ep3".into(),
        LocalEndpoint {
            id: "ep3".into(),
            name: "b3".into(),
            network: "n1".into(),
            aliases: vec![],
            ip: Ipv4Addr::new(10, 0, 0, 3),
            prefix: 24,
            mac: [2, 0x42, 10, 0, 0, 3],
            ifname: "eth0".into(),
            netns: "/var/run/netns/c3".into(),
            mtu: 1450,
            service: Some("web".into()),
            disabled: false,
            resolv_conf: None,
            client_id: None,
            netns_id: None,
            handoff: false,
            handed_off: false,
        },
    );
    l
}

fn snapshot(services: Vec<ServiceDef>, mesh: Vec<(NodeId, MeshRecord)>) -> Snapshot {
    Snapshot {
        services,
        endpoints: BTreeMap::from([(
            "n1".to_string(),
            vec![
                backend(ME, 3, false),
                backend(OTHER, 4, false),
                backend(THIRD, 5, false),
                backend(OTHER, 6, true),
            ],
        )]),
        peers: BTreeMap::from([(
            "n1".to_string(),
            vec![ingress_peer(OTHER, 252), ingress_peer(THIRD, 253)],
        )]),
        mesh: BTreeMap::from([("n1".to_string(), mesh)]),
        ..Snapshot::default()
    }
}

fn acked(macs: &[u8], keep_source: bool) -> MeshRecord {
    MeshRecord {
        ingress: macs.iter().map(|l| [2, 0x42, 10, 0, 0, *l]).collect(),
        keep_source,
        ..MeshRecord::default()
    }
}

fn mesh_port() -> (Protocol, u16, u16, PublishMode) {
    (Protocol::Tcp, 8080, 80, PublishMode::Mesh)
}

#[test]
fn of_two_services_publishing_one_port_the_older_keeps_it() {
    let a = svc("a", 20, &[mesh_port()]);
    let b = svc(
        "b",
        10,
        &[mesh_port(), (Protocol::Udp, 8080, 80, PublishMode::Local)],
    );
    let (ports, clashes) = published(&[a, b]);
    assert_eq!(ports[&(Protocol::Tcp, 8080)].service.id, "b");
    assert_eq!(ports[&(Protocol::Udp, 8080)].service.id, "b");
    assert_eq!(
        clashes,
        vec![(
            "a-name".to_string(),
            (Protocol::Tcp, 8080),
            "b-name".to_string()
        )]
    );
    assert_eq!(ports[&(Protocol::Tcp, 8080)].network, "n1");
}

#[test]
fn a_mesh_port_uses_local_backends_and_remote_ones_whose_node_answers_through_our_ingress() {
    let web = svc("web", 1, &[mesh_port()]);
    // OTHER programmed its backends for our ingress MAC (.251); THIRD only for others.
    let snap = snapshot(
        vec![web.clone()],
        vec![
            (OTHER, acked(&[251, 252], true)),
            (THIRD, acked(&[252, 253], true)),
        ],
    );
    let (ports, _) = published(&snap.services);
    let cfg = PublishConfig::default();
    let (spec, status) = host_spec(
        ME,
        &cfg,
        &local(),
        &snap,
        &ports,
        &BTreeSet::new(),
        true,
        &BTreeMap::new(),
        None,
    );
    let p = &spec.ports[&(Protocol::Tcp, 8080)];
    assert_eq!(
        p.backends,
        vec![Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 4)],
        "local .3, remote .4 (acked); .5's node is not ready for us; .6 drains"
    );
    assert_eq!(p.target, 80);
    assert_eq!(
        spec.members.len(),
        4,
        "draining and waiting backends stay members"
    );
    assert!(spec.snat.is_empty());
    assert_eq!(spec.ingress, BTreeSet::from(["swni001000".to_string()]));
    let st = &status[&(Protocol::Tcp, 8080)];
    assert!(
        st.ready && st.backends == 2 && st.local_backends == 1,
        "{st:?}"
    );
}

#[test]
fn a_node_that_cannot_keep_the_source_is_reached_with_snat_and_failed_backends_are_skipped() {
    let web = svc("web", 1, &[mesh_port()]);
    let mut third = acked(&[], false);
    third.failed = vec![];
    let mut other = acked(&[251], true);
    other.failed = vec!["ep4".into()];
    let snap = snapshot(vec![web], vec![(OTHER, other), (THIRD, third)]);
    let (ports, _) = published(&snap.services);
    let (spec, _) = host_spec(
        ME,
        &PublishConfig::default(),
        &local(),
        &snap,
        &ports,
        &BTreeSet::from(["ep3".to_string()]),
        true,
        &BTreeMap::new(),
        None,
    );
    assert_eq!(
        spec.ports[&(Protocol::Tcp, 8080)].backends,
        vec![Ipv4Addr::new(10, 0, 0, 5)],
        "ep3 failed here, ep4 failed on its node, ep5's node SNATs"
    );
    assert_eq!(spec.snat, BTreeSet::from([Ipv4Addr::new(10, 0, 0, 5)]));
}

#[test]
fn a_local_port_uses_only_this_nodes_backends_and_refuses_without_one() {
    let web = svc("web", 1, &[(Protocol::Tcp, 8081, 80, PublishMode::Local)]);
    let snap = snapshot(vec![web], vec![(OTHER, acked(&[251], true))]);
    let (ports, _) = published(&snap.services);
    let cfg = PublishConfig::default();
    let args = |l: &LocalState| {
        host_spec(
            ME,
            &cfg,
            l,
            &snap,
            &ports,
            &BTreeSet::new(),
            true,
            &BTreeMap::new(),
            None,
        )
    };
    let (spec, status) = args(&local());
    assert_eq!(
        spec.ports[&(Protocol::Tcp, 8081)].backends,
        vec![Ipv4Addr::new(10, 0, 0, 3)]
    );
    assert!(status[&(Protocol::Tcp, 8081)].ready);
    // Without a local backend (its endpoint record gone), the port stays (refusing).
    let snap2 = Snapshot {
        endpoints: BTreeMap::from([("n1".to_string(), vec![backend(OTHER, 4, false)])]),
        ..snapshot(snap.services.clone(), vec![])
    };
    let (spec, status) = host_spec(
        ME,
        &cfg,
        &local(),
        &snap2,
        &ports,
        &BTreeSet::new(),
        true,
        &BTreeMap::new(),
        None,
    );
    assert!(spec.ports[&(Protocol::Tcp, 8081)].backends.is_empty());
    let st = &status[&(Protocol::Tcp, 8081)];
    assert!(!st.ready);
    assert_eq!(st.reason, "no enabled backend on this node");
}

#[test]
fn a_port_held_by_a_process_is_left_out_and_a_firewall_drop_makes_ports_not_ready() {
    let web = svc("web", 1, &[mesh_port()]);
    let snap = snapshot(vec![web], vec![]);
    let (ports, _) = published(&snap.services);
    let blocked = BTreeMap::from([((Protocol::Tcp, 8080), "tcp/8080 is already bound".into())]);
    let (spec, status) = host_spec(
        ME,
        &PublishConfig::default(),
        &local(),
        &snap,
        &ports,
        &BTreeSet::new(),
        true,
        &blocked,
        None,
    );
    assert!(spec.ports.is_empty());
    assert_eq!(
        status[&(Protocol::Tcp, 8080)].reason,
        "tcp/8080 is already bound"
    );
    let (spec, status) = host_spec(
        ME,
        &PublishConfig::default(),
        &local(),
        &snap,
        &ports,
        &BTreeSet::new(),
        true,
        &BTreeMap::new(),
        Some("dropped by FORWARD"),
    );
    assert_eq!(
        spec.ports.len(),
        1,
        "still programmed, so it works once fixed"
    );
    assert!(!status[&(Protocol::Tcp, 8080)].ready);
    assert_eq!(status[&(Protocol::Tcp, 8080)].reason, "dropped by FORWARD");
}

#[test]
fn backend_containers_get_every_ingress_mac_of_the_network_and_their_udp_targets() {
    let web = svc(
        "web",
        1,
        &[mesh_port(), (Protocol::Udp, 5353, 53, PublishMode::Mesh)],
    );
    let snap = snapshot(vec![web], vec![]);
    let (ports, _) = published(&snap.services);
    let (specs, warnings) = container_specs(ME, &local(), &snap, &ports, true);
    assert!(warnings.is_empty(), "{warnings:?}");
    let (spec, eps) = &specs[&PathBuf::from("/var/run/netns/c3")];
    assert_eq!(eps, &vec!["ep3".to_string()]);
    let i = &spec.ifaces[0];
    assert_eq!(i.ifname, "eth0");
    assert_eq!(i.udp_ports, BTreeSet::from([53]));
    let macs: Vec<u8> = i.ingress.keys().map(|m| m[5]).collect();
    assert_eq!(macs, vec![251, 252, 253], "ours and both others'");
    assert_eq!(
        i.ingress[&[2, 0x42, 10, 0, 0, 252]],
        mark_of(i.slot, Ipv4Addr::new(10, 0, 0, 252))
    );
    let (none, _) = container_specs(ME, &local(), &snap, &ports, false);
    assert!(none.is_empty(), "nothing to program when other nodes SNAT");
}

#[test]
fn a_node_needs_an_ingress_endpoint_for_mesh_ports_and_for_local_ports_it_has_backends_of() {
    let view = NetworkView {
        defs: vec![net()],
        verdicts: crate::conflict::resolve(&[net()]),
    };
    let mesh = svc("web", 1, &[mesh_port()]);
    let mut bare = LocalState::default();
    assert!(
        crate::node::ingress_networks(std::slice::from_ref(&mesh), &view, &bare, true)
            .contains_key("n1")
    );
    let loc = svc("web", 1, &[(Protocol::Tcp, 1, 1, PublishMode::Local)]);
    assert!(
        crate::node::ingress_networks(std::slice::from_ref(&loc), &view, &bare, true).is_empty()
    );
    bare.endpoints = local().endpoints;
    assert!(
        crate::node::ingress_networks(std::slice::from_ref(&loc), &view, &bare, true)
            .contains_key("n1")
    );
    let mut enc = net();
    enc.encrypted = true;
    let view = NetworkView {
        defs: vec![enc.clone()],
        verdicts: crate::conflict::resolve(&[enc]),
    };
    assert!(
        crate::node::ingress_networks(&[mesh], &view, &LocalState::default(), false).is_empty(),
        "no ingress on an encrypted network without ESP"
    );
}

#[test]
fn health_paths_name_a_protocol_and_a_port() {
    assert_eq!(
        parse_health_path(&health_path(Protocol::Udp, 53)),
        Some((Protocol::Udp, 53))
    );
    assert_eq!(
        parse_health_path("/published/tcp/8080/"),
        Some((Protocol::Tcp, 8080))
    );
    for bad in [
        "/published/sctp/1",
        "/published/tcp/x",
        "/metrics",
        "/published/tcp",
    ] {
        assert_eq!(parse_health_path(bad), None, "{bad}");
    }
}
