use super::*;
use crate::lb::nft_plan::{self, desired, plan};
use crate::lb::{Backend, LbSpec, VipService};
use crate::records::ServicePort;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The spec whose planned script produced `testdata/nft_list_v1.json` (listed by nft 1.0.6
/// on Linux 6.18 after `nft -f` of `plan(desired(fixture_spec(), SEED), None).script`).
fn fixture_spec() -> LbSpec {
    let b = |s: &str, enabled: bool| Backend { ip: ip(s), enabled };
    let p = |protocol, port, target| ServicePort {
        protocol,
        port,
        target,
    };
    LbSpec {
        services: vec![
            VipService {
                id: "web".into(),
                vip: ip("10.77.0.100"),
                ports: vec![p(Protocol::Tcp, 80, 8080), p(Protocol::Udp, 53, 5353)],
                backends: vec![
                    b("10.77.0.11", true),
                    b("10.77.0.12", true),
                    b("10.77.0.13", false),
                ],
            },
            VipService {
                id: "db".into(),
                vip: ip("10.77.0.101"),
                ports: vec![],
                backends: vec![b("10.77.0.11", true), b("10.77.0.12", true)],
            },
            VipService {
                id: "api".into(),
                vip: ip("10.77.0.102"),
                ports: vec![p(Protocol::Tcp, 443, 8443)],
                backends: vec![b("10.77.0.12", false)],
            },
            VipService {
                id: "one".into(),
                vip: ip("10.77.0.103"),
                ports: vec![p(Protocol::Tcp, 9000, 9000)],
                backends: vec![b("10.77.0.13", true)],
            },
        ],
    }
}

const SEED: u64 = 42;
const FIXTURE: &str = include_str!("testdata/nft_list_v1.json");

fn fixture_value() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

/// Parses a modified fixture.
fn parse_with(edit: impl FnOnce(&mut Vec<Value>)) -> Actual {
    let mut v = fixture_value();
    edit(v["nftables"].as_array_mut().unwrap());
    parse(&v.to_string()).unwrap()
}

/// The object of `kind` named `name` (rules: by chain).
fn find<'a>(objs: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    objs.iter_mut()
        .find(|o| {
            o.get(kind).is_some_and(|b| {
                b.get(if kind == "rule" { "chain" } else { "name" }) == Some(&Value::from(name))
            })
        })
        .map(|o| o.get_mut(kind).unwrap())
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn chain_of(id: &str, vip: &str, what: &str) -> String {
    nft_plan::chain_name(id, ip(vip), what)
}

#[test]
fn the_kernel_listing_of_a_planned_table_reads_back_as_the_desired_state() {
    let (want, _) = desired(&fixture_spec(), SEED);
    let got = parse(FIXTURE).unwrap();
    assert!(got.skeleton_ok);
    assert_eq!(got.state, want);
    let p = plan(&want, Some(&got));
    assert_eq!((p.changes, p.script.as_str()), (0, ""));
}

#[test]
fn empty_and_single_backend_chains_read_back_exactly() {
    let got = parse(FIXTURE).unwrap();
    assert_eq!(
        got.state.chains[&chain_of("api", "10.77.0.102", "t443")],
        ChainContent::Empty
    );
    assert_eq!(
        got.state.chains[&chain_of("one", "10.77.0.103", "t9000")],
        ChainContent::Balance(Balance {
            traffic: Traffic::Tcp,
            port: Some(9000),
            backends: vec![ip("10.77.0.13")],
        })
    );
    let all = &got.state.chains[&chain_of("db", "10.77.0.101", "all")];
    assert!(
        matches!(all, ChainContent::Balance(b) if b.traffic == Traffic::All && b.port.is_none())
    );
}

#[test]
fn a_hand_added_rule_makes_its_chain_unrecognized() {
    let t80 = chain_of("web", "10.77.0.100", "t80");
    let got = parse_with(|objs| {
        let rule = find(objs, "rule", &t80).clone();
        objs.push(serde_json::json!({ "rule": rule }));
    });
    assert!(got.skeleton_ok);
    assert_eq!(got.state.chains[&t80], ChainContent::Unrecognized);
}

#[test]
fn a_changed_modulus_offset_or_mode_makes_the_chain_unrecognized() {
    let t80 = chain_of("web", "10.77.0.100", "t80");
    for (field, value) in [
        ("mod", Value::from(3)),
        ("offset", Value::from(1)),
        ("mode", Value::from("random")),
    ] {
        let got = parse_with(|objs| {
            let r = find(objs, "rule", &t80);
            r["expr"][1]["dnat"]["addr"]["map"]["key"]["numgen"][field] = value;
        });
        assert_eq!(
            got.state.chains[&t80],
            ChainContent::Unrecognized,
            "{field}"
        );
    }
}

#[test]
fn a_rule_with_a_comment_or_other_match_is_unrecognized() {
    let t80 = chain_of("web", "10.77.0.100", "t80");
    let got = parse_with(|objs| {
        find(objs, "rule", &t80)["comment"] = Value::from("mine");
    });
    assert_eq!(got.state.chains[&t80], ChainContent::Unrecognized);
    let got = parse_with(|objs| {
        find(objs, "rule", &t80)["expr"][0]["match"]["right"] = Value::from("sctp");
    });
    assert_eq!(got.state.chains[&t80], ChainContent::Unrecognized);
}

#[test]
fn a_tcp_chain_without_target_ports_is_unrecognized() {
    let t80 = chain_of("web", "10.77.0.100", "t80");
    let got = parse_with(|objs| {
        let set = &mut find(objs, "rule", &t80)["expr"][1]["dnat"]["addr"]["map"]["data"]["set"];
        for pair in set.as_array_mut().unwrap() {
            pair[1] = pair[1]["concat"][0].clone();
        }
    });
    assert_eq!(got.state.chains[&t80], ChainContent::Unrecognized);
}

#[test]
fn a_foreign_set_or_a_missing_map_breaks_the_skeleton() {
    let got = parse_with(|objs| {
        objs.push(serde_json::json!({"set": {"family": "ip", "name": "x", "table": TABLE, "type": "ipv4_addr"}}));
    });
    assert!(!got.skeleton_ok);
    let got =
        parse_with(|objs| objs.retain(|o| o.get("map").is_none_or(|m| m["name"] != "vip_any")));
    assert!(!got.skeleton_ok);
}

#[test]
fn a_base_chain_with_another_priority_or_a_missing_rule_breaks_the_skeleton() {
    let got = parse_with(|objs| find(objs, "chain", NAT_CHAIN)["prio"] = Value::from(0));
    assert!(!got.skeleton_ok);
    let got = parse_with(|objs| {
        objs.retain(|o| {
            o.get("rule")
                .is_none_or(|r| r["comment"] != "swarmnet-lb v1 refuse")
        })
    });
    assert!(!got.skeleton_ok);
    let got = parse_with(|objs| {
        find(objs, "rule", FILTER_CHAIN)["comment"] = Value::from("swarmnet-lb v0 refuse tcp")
    });
    assert!(!got.skeleton_ok, "another layout version is rebuilt");
}

#[test]
fn a_service_chain_turned_into_a_base_chain_breaks_the_skeleton() {
    let t80 = chain_of("web", "10.77.0.100", "t80");
    let got = parse_with(|objs| find(objs, "chain", &t80)["hook"] = Value::from("output"));
    assert!(!got.skeleton_ok);
}

#[test]
fn objects_of_other_tables_are_ignored() {
    let got = parse_with(|objs| {
        objs.push(serde_json::json!({"chain": {"family": "ip", "table": "swarmnet_dns", "name": "x", "hook": "output"}}));
        objs.push(serde_json::json!({"set": {"family": "ip", "table": "swarmnet_ipvs", "name": "y", "type": "ipv4_addr"}}));
    });
    assert!(got.skeleton_ok);
    assert!(!got.state.chains.contains_key("x"));
}

#[test]
fn elements_with_numeric_protocols_or_wrapped_values_are_read() {
    let got = parse_with(|objs| {
        let m = find(objs, "map", PORTS_MAP);
        for e in m["elem"].as_array_mut().unwrap() {
            let c = &mut e[0]["concat"];
            c[1] = Value::from(if c[1] == "tcp" { 6 } else { 17 });
            e[0] = serde_json::json!({"elem": {"val": e[0].clone(), "comment": "x"}});
        }
    });
    assert!(got.skeleton_ok);
    assert_eq!(got.state, desired(&fixture_spec(), SEED).0);
}

#[test]
fn an_element_that_cannot_be_read_breaks_the_skeleton() {
    let got = parse_with(|objs| {
        find(objs, "set", MEMBERS_SET)["elem"][0] = Value::from("not an address");
    });
    assert!(!got.skeleton_ok);
    // What could be read is still there for the conntrack sweep.
    assert!(!got.state.members.is_empty());
}

#[test]
fn output_that_is_not_nft_json_is_an_error_and_an_empty_listing_a_broken_table() {
    assert!(parse("nope").is_err());
    assert!(parse("{}").is_err());
    let got = parse(r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}]}"#).unwrap();
    assert!(!got.skeleton_ok);
    assert_eq!(got.state, TableState::default());
}

/// `LB_PRINT_FIXTURE=1 cargo test -p agent --lib fixture_script -- --nocapture` prints the
/// script to regenerate `testdata/nft_list_v1.json` with (apply it in an empty namespace,
/// then `nft -j list table ip swarmnet_lb`).
#[test]
fn the_fixture_script_creates_the_table_from_nothing() {
    let (t, _) = desired(&fixture_spec(), SEED);
    let p = plan(&t, None);
    assert!(p.script.starts_with("add table ip swarmnet_lb\n"));
    if std::env::var_os("LB_PRINT_FIXTURE").is_some() {
        println!("{}", p.script);
    }
}
