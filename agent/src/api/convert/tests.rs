use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use proptest::prelude::*;
use proto::pb;

use crate::spec::*;

fn create(name: &str, subnet: &str, gateway: &str, vni: u32, mtu: u32) -> pb::CreateNetworkRequest {
    pb::CreateNetworkRequest {
        name: name.into(),
        subnet: subnet.into(),
        gateway: gateway.into(),
        vni,
        mtu,
        encrypted: false,
        id: String::new(),
    }
}

fn err_of(r: pb::CreateNetworkRequest) -> FieldError {
    NetworkRequest::try_from(r).unwrap_err()
}

#[test]
fn an_invalid_subnet_is_named_in_the_error() {
    let e = err_of(create("n", "10.0.0.0/33", "", 0, 0));
    assert_eq!(e.field, "subnet");
    assert_eq!(
        e.to_string(),
        "subnet: 10.0.0.0/33 is not a valid IPv4 CIDR"
    );
    let status: tonic::Status = e.into();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("subnet: "));
}

#[test]
fn a_subnet_with_host_bits_suggests_the_network() {
    let e = err_of(create("n", "10.0.0.5/24", "", 0, 0));
    assert!(e.message.contains("did you mean 10.0.0.0/24"), "{e}");
}

#[test]
fn each_invalid_field_is_named() {
    assert_eq!(err_of(create("", "", "", 0, 0)).field, "name");
    assert_eq!(err_of(create("-x", "", "", 0, 0)).field, "name");
    assert_eq!(err_of(create("a b", "", "", 0, 0)).field, "name");
    assert_eq!(err_of(create("n", "10.0.0.0/31", "", 0, 0)).field, "subnet");
    assert_eq!(
        err_of(create("n", "10.0.0.0/24", "10.0.1.1", 0, 0)).field,
        "gateway"
    );
    assert_eq!(
        err_of(create("n", "10.0.0.0/24", "10.0.0.255", 0, 0)).field,
        "gateway"
    );
    assert_eq!(err_of(create("n", "", "10.0.0.1", 0, 0)).field, "gateway");
    assert_eq!(err_of(create("n", "", "", 1 << 24, 0)).field, "vni");
    assert_eq!(err_of(create("n", "", "", 0, 67)).field, "mtu");
}

#[test]
fn empty_optional_fields_mean_automatic() {
    let n = NetworkRequest::try_from(create("blue", "", "", 0, 0)).unwrap();
    assert_eq!(
        n,
        NetworkRequest {
            id: None,
            name: "blue".into(),
            subnet: None,
            gateway: None,
            vni: None,
            mtu: None,
            encrypted: false
        }
    );
}

fn attach(network: &str, netns: &str, name: &str) -> pb::AttachRequest {
    pb::AttachRequest {
        network: network.into(),
        netns: netns.into(),
        name: name.into(),
        ..Default::default()
    }
}

#[test]
fn attach_requests_are_checked_field_by_field() {
    let ok = AttachSpec::try_from(attach("blue", "/var/run/netns/c1", "web")).unwrap();
    assert_eq!(ok.ifname, "eth0");
    let field = |r: pb::AttachRequest| AttachSpec::try_from(r).unwrap_err().field;
    assert_eq!(field(attach("", "/x", "web")), "network");
    assert_eq!(field(attach("blue", "", "web")), "netns");
    assert_eq!(field(attach("blue", "relative/ns", "web")), "netns");
    assert_eq!(field(attach("blue", "/x", "")), "name");
    let mut r = attach("blue", "/x", "web");
    r.ip = "10.0.0.300".into();
    assert_eq!(field(r), "ip");
    let mut r = attach("blue", "/x", "web");
    r.mac = "01:00:00:00:00:01".into();
    let e = AttachSpec::try_from(r).unwrap_err();
    assert_eq!(e.field, "mac");
    assert!(e.message.contains("unicast"));
    let mut r = attach("blue", "/x", "web");
    r.ifname = "a-very-long-interface".into();
    assert_eq!(field(r), "ifname");
    let mut r = attach("blue", "/x", "web");
    r.aliases = vec!["ok".into(), "not ok".into()];
    assert_eq!(field(r), "aliases");
}

prop_compose! {
    fn a_name()(s in "[a-z0-9][a-z0-9_.-]{0,20}") -> String { s }
}

prop_compose! {
    fn a_network_request()(
        name in a_name(),
        net in proptest::option::of((any::<u32>(), 8u8..=30)),
        vni in proptest::option::of(1u32..=MAX_VNI),
        mtu in proptest::option::of(68u32..=65535),
        encrypted in any::<bool>(),
        gw_offset in 1u32..3,
    ) -> NetworkRequest {
        let subnet = net.map(|(a, p)| {
            let n = Ipv4Network::new(Ipv4Addr::from(a), p).unwrap();
            Ipv4Network::new(n.network(), p).unwrap()
        });
        let gateway = subnet.map(|s| Ipv4Addr::from(u32::from(s.network()) + gw_offset));
        NetworkRequest { id: None, name, subnet, gateway, vni, mtu, encrypted }
    }
}

prop_compose! {
    fn an_attach_spec()(
        network in a_name(),
        ns in "[a-z0-9]{1,10}",
        name in a_name(),
        aliases in proptest::collection::vec(a_name(), 0..4),
        ip in proptest::option::of(any::<u32>()),
        mac in proptest::option::of(any::<[u8; 6]>()),
        ifname in "[a-z][a-z0-9]{0,14}",
        client_id in proptest::option::of("[!-~]{1,40}"),
    ) -> AttachSpec {
        let mac = mac.map(|mut m| { m[0] = (m[0] & 0xfe) | 0x02; m });
        AttachSpec {
            network,
            netns: PathBuf::from(format!("/var/run/netns/{ns}")),
            name,
            aliases,
            ip: ip.map(Ipv4Addr::from),
            mac,
            ifname,
            service: None,
            resolv_conf: None,
            dns_search: Vec::new(),
            dns_options: Vec::new(),
            client_id,
            handoff: false,
        }
    }
}

proptest! {
    #[test]
    fn network_requests_survive_a_round_trip(n in a_network_request()) {
        let wire = pb::CreateNetworkRequest::from(&n);
        prop_assert_eq!(NetworkRequest::try_from(wire).unwrap(), n);
    }

    #[test]
    fn attach_specs_survive_a_round_trip(a in an_attach_spec()) {
        let wire = pb::AttachRequest::from(&a);
        prop_assert_eq!(AttachSpec::try_from(wire).unwrap(), a);
    }

    #[test]
    fn macs_survive_formatting(m in any::<[u8; 6]>()) {
        let mut m = m;
        m[0] = (m[0] & 0xfe) | 0x02;
        prop_assert_eq!(parse_mac("mac", &format_mac(&m)).unwrap(), m);
    }

    #[test]
    fn garbage_never_panics_the_parsers(s in ".{0,40}") {
        let _ = parse_subnet("subnet", &s);
        let _ = parse_mac("mac", &s);
        let _ = parse_ipv4("ip", &s);
        let _ = validate_name("name", &s);
    }
}

fn service_req(mode: &str, ports: Vec<pb::ServicePort>) -> pb::CreateServiceRequest {
    pb::CreateServiceRequest {
        name: "web".into(),
        networks: vec!["blue".into(), "blue".into(), "red".into()],
        mode: mode.into(),
        ports,
        aliases: vec!["www".into()],
        published: Vec::new(),
        id: String::new(),
    }
}

fn port(protocol: &str, port: u32, target_port: u32) -> pb::ServicePort {
    pb::ServicePort {
        protocol: protocol.into(),
        port,
        target_port,
    }
}

#[test]
fn a_service_request_defaults_to_vip_tcp_and_the_same_target_port() {
    let r = ServiceRequest::try_from(service_req(
        "",
        vec![port("", 80, 0), port("udp", 53, 5353)],
    ))
    .unwrap();
    assert_eq!(r.mode, ServiceModeArg::Vip);
    assert_eq!(r.networks, vec!["blue".to_string(), "red".to_string()]);
    assert_eq!(
        r.ports,
        vec![
            PortSpec {
                udp: false,
                port: 80,
                target: 80
            },
            PortSpec {
                udp: true,
                port: 53,
                target: 5353
            },
        ]
    );
    let back = ServiceRequest::try_from(pb::CreateServiceRequest::from(&r)).unwrap();
    assert_eq!(back, r);
}

#[test]
fn invalid_service_requests_name_the_field() {
    let field = |r: pb::CreateServiceRequest| ServiceRequest::try_from(r).unwrap_err().field;
    assert_eq!(field(service_req("rr", vec![])), "mode");
    assert_eq!(
        field(service_req("vip", vec![port("sctp", 80, 0)])),
        "ports.protocol"
    );
    assert_eq!(
        field(service_req("vip", vec![port("tcp", 0, 0)])),
        "ports.port"
    );
    assert_eq!(
        field(service_req("vip", vec![port("tcp", 70000, 0)])),
        "ports.port"
    );
    assert_eq!(
        field(service_req("vip", vec![port("tcp", 80, 70000)])),
        "ports.target_port"
    );
    assert_eq!(
        field(service_req(
            "vip",
            vec![port("tcp", 80, 0), port("", 80, 81)]
        )),
        "ports"
    );
    assert_eq!(
        field(service_req("dnsrr", vec![port("tcp", 80, 0)])),
        "ports"
    );
    let mut r = service_req("vip", vec![]);
    r.networks.clear();
    assert_eq!(field(r), "networks");
    let mut r = service_req("vip", vec![]);
    r.name = "-bad".into();
    assert_eq!(field(r), "name");
}

fn key(tag: u64, len: usize, fill: u8) -> pb::Key {
    pb::Key {
        tag,
        key: vec![fill; len],
    }
}

fn keys_err(gossip: Option<Vec<pb::Key>>, dataplane: Option<Vec<pb::Key>>) -> String {
    KeysRequest::try_from(pb::SetKeysRequest {
        gossip: gossip.map(|keys| pb::KeyRing { keys }),
        dataplane: dataplane.map(|keys| pb::KeyRing { keys }),
    })
    .unwrap_err()
    .to_string()
}

#[test]
fn key_rings_are_sorted_by_tag_and_their_primary_is_the_second_newest() {
    let r = KeysRequest::try_from(pb::SetKeysRequest {
        gossip: None,
        dataplane: Some(pb::KeyRing {
            keys: vec![key(9, 16, 3), key(2, 32, 1), key(5, 16, 2)],
        }),
    })
    .unwrap();
    assert!(r.gossip.is_none());
    let ring = r.dataplane.as_ref().unwrap();
    let tags: Vec<u64> = ring.iter().map(|k| k.tag).collect();
    assert_eq!(tags, [2, 5, 9]);
    assert_eq!(ring_primary(ring).unwrap().tag, 5);
    assert_eq!(ring_primary(&ring[..1]).unwrap().tag, 2);
    assert_eq!(ring_primary(&[]), None);
    assert!(
        !format!("{r:?}").contains("[3, 3"),
        "key bytes never printed: {r:?}"
    );
    let back = KeysRequest::try_from(pb::SetKeysRequest::from(&r)).unwrap();
    assert_eq!(back, r);
}

#[test]
fn invalid_key_rings_are_refused_naming_the_ring_and_the_key() {
    assert_eq!(
        keys_err(None, Some(vec![key(1, 16, 1), key(2, 20, 2)])),
        "dataplane: keys[1].key: must be 16 or 32 bytes (got 20)"
    );
    assert_eq!(
        keys_err(Some(vec![]), None),
        "gossip: the ring is empty: give 1 to 3 keys"
    );
    assert!(
        keys_err(Some((1..=4).map(|t| key(t, 16, t as u8)).collect()), None)
            .starts_with("gossip: 4 keys: a ring holds at most 3")
    );
    assert_eq!(
        keys_err(None, Some(vec![key(1, 16, 1), key(1, 16, 2)])),
        "dataplane: keys[1].tag: 1 is used twice"
    );
    assert_eq!(
        keys_err(None, Some(vec![key(1, 16, 1), key(2, 16, 1)])),
        "dataplane: keys[1].key: the same key is in the ring twice"
    );
    assert_eq!(
        keys_err(Some(vec![key(1, 16, 0)]), None),
        "gossip: keys[0].key: is all zeros"
    );
    assert!(keys_err(None, None).contains("nothing to set"));
}
