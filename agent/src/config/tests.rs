use super::*;

fn args() -> AgentArgs {
    AgentArgs {
        listen_addr: Some("127.0.0.1".parse().unwrap()),
        ..AgentArgs::default()
    }
}

fn field_of(a: &AgentArgs, f: FileConfig) -> String {
    AgentConfig::merge(a, f).unwrap_err().field
}

#[test]
fn defaults_give_a_working_configuration() {
    let c = AgentConfig::merge(&args(), FileConfig::default()).unwrap();
    assert_eq!(c.gossip_port, 7946);
    assert_eq!(c.vxlan_port, 4789);
    assert_eq!(c.prefix, "swn");
    assert_eq!(
        c.api,
        vec![ApiEndpoint::Unix("/run/swarmnet/api.sock".into())]
    );
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/swarmnet"));
    assert_eq!(c.advertise_addr, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(c.data_path_addr, Ipv4Addr::new(127, 0, 0, 1));
    assert_eq!(c.metrics_addr, None);
    assert_eq!(c.dataplane, DataplaneKind::Kernel);
    assert_eq!(c.settle, Duration::from_secs(1));
    assert_eq!(c.reconcile_interval, Duration::from_secs(10));
    assert_eq!(c.pools, Pools::default());
    assert_eq!(c.block_prefix, 28);
    assert!(c.tls.is_none());
}

#[test]
fn the_file_is_read_and_flags_override_it() {
    let f = FileConfig::parse(
        r#"
node_name = "h1"
listen_addr = "0.0.0.0"
advertise_addr = "192.0.2.10"
data_path_addr = "192.0.2.11"
gossip_port = 8000
join = ["192.0.2.1:7946", "seed.example:7946"]
gossip_keys = ["000102030405060708090a0b0c0d0e0f"]
prefix = "swx"
metrics_addr = "9999"
dataplane = "none"
subnet_pool = "10.200.0.0/16"
subnet_prefix = 26
vni_pool = "100-200"
settle_ms = 250
"#,
    )
    .unwrap();
    let a = AgentArgs {
        node_name: Some("from-flag".into()),
        gossip_port: Some(9000),
        ..AgentArgs::default()
    };
    let c = AgentConfig::merge(&a, f).unwrap();
    assert_eq!(c.node_name, "from-flag");
    assert_eq!(c.gossip_port, 9000);
    assert_eq!(c.advertise_addr.to_string(), "192.0.2.10");
    assert_eq!(c.data_path_addr.to_string(), "192.0.2.11");
    assert_eq!(c.join.len(), 2);
    assert_eq!(c.gossip_keys, vec![(0u8..16).collect::<Vec<u8>>()]);
    assert_eq!(c.prefix, "swx");
    assert_eq!(c.metrics_addr, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(c.dataplane, DataplaneKind::None);
    assert_eq!(c.pools.subnet_pool.to_string(), "10.200.0.0/16");
    assert_eq!(c.pools.subnet_prefix, 26);
    assert_eq!(c.pools.vni, 100..=200);
    assert_eq!(c.settle, Duration::from_millis(250));
}

#[test]
fn unknown_and_mistyped_keys_in_the_file_name_the_key() {
    let e = FileConfig::parse("gossip_prot = 1").unwrap_err();
    assert_eq!(e.field, "gossip_prot", "{e}");
    let e = FileConfig::parse("gossip_port = \"x\"").unwrap_err();
    assert!(
        e.to_string().contains("gossip_port") || e.field == "config",
        "{e}"
    );
}

#[test]
fn every_invalid_value_names_its_field() {
    let f = FileConfig::default;
    let mut a = AgentArgs::default();
    assert_eq!(field_of(&a, f()), "advertise_addr");
    a = args();
    a.prefix = Some("Swn".into());
    assert_eq!(field_of(&a, f()), "prefix");
    a = args();
    a.prefix = Some("toolongpx".into());
    assert_eq!(field_of(&a, f()), "prefix");
    a = args();
    a.gossip_key = vec!["abcd".into()];
    assert_eq!(field_of(&a, f()), "gossip_keys");
    a = args();
    a.gossip_key = vec!["zz".repeat(16)];
    assert_eq!(field_of(&a, f()), "gossip_keys");
    a = args();
    a.join = vec!["no-port".into()];
    assert_eq!(field_of(&a, f()), "join");
    a = args();
    a.api_listen = vec!["http://x".into()];
    assert_eq!(field_of(&a, f()), "api_listen");
    a = args();
    a.api_listen = vec!["unix://relative.sock".into()];
    assert_eq!(field_of(&a, f()), "api_listen");
    a = args();
    a.api_listen = vec!["tcp://127.0.0.1:4243".into()];
    assert_eq!(field_of(&a, f()), "api_listen");
    a = args();
    a.api_tls_cert = Some("/c".into());
    assert_eq!(field_of(&a, f()), "api_tls_key");
    a = args();
    a.data_path_addr = Some("::1".parse().unwrap());
    assert_eq!(field_of(&a, f()), "data_path_addr");
    a = args();
    a.metrics_addr = Some("x:y".into());
    assert_eq!(field_of(&a, f()), "metrics_addr");
    a = args();
    a.subnet_pool = Some("10.0.0.1/8".into());
    assert_eq!(field_of(&a, f()), "subnet_pool");
    a = args();
    a.subnet_prefix = Some(31);
    assert_eq!(field_of(&a, f()), "subnet_prefix");
    a = args();
    a.vni_pool = Some("200-100".into());
    assert_eq!(field_of(&a, f()), "vni_pool");
    a = args();
    a.block_prefix = Some(31);
    assert_eq!(field_of(&a, f()), "block_prefix");
    a = args();
    a.reconcile_interval_secs = Some(0);
    assert_eq!(field_of(&a, f()), "reconcile_interval_secs");
    a = args();
    a.state_dir = Some("relative".into());
    assert_eq!(field_of(&a, f()), "state_dir");
    a = args();
    a.node_name = Some("bad name".into());
    assert_eq!(field_of(&a, f()), "node_name");
    a = args();
    a.log_level = Some("info,[".into());
    assert_eq!(field_of(&a, f()), "log_level");
    a = args();
    a.vxlan_port = Some(0);
    assert_eq!(field_of(&a, f()), "vxlan_port");
}

#[test]
fn errors_read_field_colon_message() {
    let mut a = args();
    a.subnet_pool = Some("10.0.0.0/33".into());
    let e = AgentConfig::merge(&a, FileConfig::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "subnet_pool: 10.0.0.0/33 is not a valid IPv4 CIDR without host bits"
    );
}

#[test]
fn a_tcp_endpoint_with_tls_is_accepted() {
    let mut a = args();
    a.api_listen = vec!["unix:///run/x.sock".into(), "tcp://0.0.0.0:4243".into()];
    a.api_tls_cert = Some("/c.pem".into());
    a.api_tls_key = Some("/k.pem".into());
    a.api_tls_ca = Some("/ca.pem".into());
    let c = AgentConfig::merge(&a, FileConfig::default()).unwrap();
    assert_eq!(c.api.len(), 2);
    assert_eq!(c.api[1].to_string(), "tcp://0.0.0.0:4243");
    assert!(c.tls.is_some());
}

#[test]
fn dns_settings_are_checked_and_name_the_field() {
    let f = FileConfig::default;
    let mut a = AgentArgs {
        dns_upstreams: vec!["10.0.0.1".into(), "10.0.0.2:5353".into()],
        dns_ttl_secs: Some(30),
        ..args()
    };
    let c = AgentConfig::merge(&a, f()).unwrap();
    assert_eq!(
        c.dns.upstreams,
        vec![
            "10.0.0.1:53".parse().unwrap(),
            "10.0.0.2:5353".parse().unwrap()
        ]
    );
    assert_eq!(c.dns.ttl, Duration::from_secs(30));
    a.dns_upstreams = vec!["nope".into()];
    assert_eq!(field_of(&a, f()), "dns_upstreams");
    a.dns_upstreams.clear();
    a.dns_timeout_ms = Some(0);
    assert_eq!(field_of(&a, f()), "dns_timeout_ms");
    a.dns_timeout_ms = None;
    a.dns_max_forwards = Some(0);
    assert_eq!(field_of(&a, f()), "dns_max_forwards");
}
