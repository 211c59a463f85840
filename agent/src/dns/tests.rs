//! Unit tests of the pure DNS core: names against tables, the query path, resolv.conf.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use networkdb::NodeId;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::query::{ForwardRequest, forwarded_reply};
use super::*;
use crate::records::{EndpointRecord, NetworkDef, ServiceDef, ServiceMode};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(id: &str, name: &str, subnet: &str) -> NetworkDef {
    let (addr, prefix) = subnet.split_once('/').unwrap();
    NetworkDef {
        id: id.into(),
        name: name.into(),
        vni: 4096,
        subnet_addr: ip(addr),
        subnet_prefix: prefix.parse().unwrap(),
        gateway: ip(addr),
        mtu: 0,
        encrypted: false,
        creator: NodeId(1),
        created: 1,
        revision: 0,
        note: String::new(),
    }
}

fn ep(
    name: &str,
    aliases: &[&str],
    addr: &str,
    network: &str,
    svc: Option<&str>,
) -> EndpointRecord {
    EndpointRecord {
        name: name.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        ip: ip(addr),
        prefix: 24,
        mac: [2, 0, 0, 0, 0, 1],
        network: network.into(),
        node: NodeId(1),
        disabled: false,
        service: svc.map(str::to_string),
    }
}

fn svc(
    id: &str,
    name: &str,
    aliases: &[&str],
    mode: ServiceMode,
    vips: &[(&str, &str)],
) -> ServiceDef {
    ServiceDef {
        id: id.into(),
        name: name.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        mode,
        ports: Vec::new(),
        networks: vips.iter().map(|(n, _)| n.to_string()).collect(),
        vips: vips
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_string(), ip(v)))
            .collect::<BTreeMap<_, _>>(),
        creator: NodeId(1),
        created: 1,
        published: Vec::new(),
    }
}

/// Two networks: blue (10.1.0.0/24) and red (10.2.0.0/24).
/// * blue: web (VIP 10.1.0.100) backed by web.1 (10.1.0.11), web.2 (10.1.0.12, draining),
///   web.3 (10.1.0.13); plain container `db` with alias `database` (10.1.0.20);
///   dnsrr service `cache` backed by cache.1 (10.1.0.31) and cache.2 (10.1.0.32).
/// * red: container `tool` (10.2.0.5); web is also on red (VIP 10.2.0.100), no backend there.
fn tables() -> (
    Vec<NetworkDef>,
    Vec<(String, EndpointRecord)>,
    Vec<ServiceDef>,
) {
    let nets = vec![
        net("n-blue", "blue", "10.1.0.0/24"),
        net("n-red", "red", "10.2.0.0/24"),
    ];
    let mut web2 = ep("web.2", &[], "10.1.0.12", "n-blue", Some("s-web"));
    web2.disabled = true;
    let eps = vec![
        (
            "e1".to_string(),
            ep("web.1", &[], "10.1.0.11", "n-blue", Some("s-web")),
        ),
        ("e2".to_string(), web2),
        (
            "e3".to_string(),
            ep("web.3", &[], "10.1.0.13", "n-blue", Some("s-web")),
        ),
        (
            "e4".to_string(),
            ep("db", &["database"], "10.1.0.20", "n-blue", None),
        ),
        (
            "e5".to_string(),
            ep("cache.1", &[], "10.1.0.31", "n-blue", Some("s-cache")),
        ),
        (
            "e6".to_string(),
            ep("cache.2", &[], "10.1.0.32", "n-blue", Some("s-cache")),
        ),
        ("e7".to_string(), ep("tool", &[], "10.2.0.5", "n-red", None)),
    ];
    let svcs = vec![
        svc(
            "s-web",
            "web",
            &["www"],
            ServiceMode::Vip,
            &[("n-blue", "10.1.0.100"), ("n-red", "10.2.0.100")],
        ),
        svc(
            "s-cache",
            "cache",
            &[],
            ServiceMode::Dnsrr,
            &[("n-blue", "")],
        ),
    ];
    (nets, eps, svcs)
}

fn zone() -> Zone {
    let (n, e, s) = tables();
    Zone::build(&n, &e, &s)
}

fn blue() -> Vec<String> {
    vec!["n-blue".into()]
}

fn red() -> Vec<String> {
    vec!["n-red".into()]
}

fn found(z: &Zone, nets: &[String], name: &str) -> Option<Vec<Ipv4Addr>> {
    match z.lookup(nets, &zone::key_of(name).unwrap()) {
        Lookup::Found(ips) => Some(ips.to_vec()),
        Lookup::Missing => None,
    }
}

fn ips(list: &[&str]) -> Option<Vec<Ipv4Addr>> {
    Some(list.iter().map(|s| ip(s)).collect())
}

#[test]
fn an_endpoint_name_and_its_aliases_resolve_to_its_address() {
    let z = zone();
    assert_eq!(found(&z, &blue(), "db"), ips(&["10.1.0.20"]));
    assert_eq!(found(&z, &blue(), "database"), ips(&["10.1.0.20"]));
    assert_eq!(found(&z, &blue(), "web.1"), ips(&["10.1.0.11"]));
}

#[test]
fn names_qualified_with_the_network_name_resolve() {
    let z = zone();
    assert_eq!(found(&z, &blue(), "db.blue"), ips(&["10.1.0.20"]));
    assert_eq!(found(&z, &blue(), "database.blue"), ips(&["10.1.0.20"]));
    assert_eq!(found(&z, &blue(), "web.blue"), ips(&["10.1.0.100"]));
    assert_eq!(
        found(&z, &blue(), "tasks.web.blue"),
        ips(&["10.1.0.11", "10.1.0.13"])
    );
    assert_eq!(found(&z, &blue(), "db.red"), None);
}

#[test]
fn a_vip_service_name_and_alias_resolve_to_the_vip_of_the_clients_network() {
    let z = zone();
    assert_eq!(found(&z, &blue(), "web"), ips(&["10.1.0.100"]));
    assert_eq!(found(&z, &blue(), "www"), ips(&["10.1.0.100"]));
    assert_eq!(found(&z, &red(), "web"), ips(&["10.2.0.100"]));
}

#[test]
fn tasks_of_a_service_are_its_enabled_backends_and_draining_ones_are_left_out() {
    let z = zone();
    assert_eq!(
        found(&z, &blue(), "tasks.web"),
        ips(&["10.1.0.11", "10.1.0.13"])
    );
    assert_eq!(
        found(&z, &blue(), "tasks.www"),
        ips(&["10.1.0.11", "10.1.0.13"])
    );
    // The draining task's own name does not resolve either; the service still has its VIP.
    assert_eq!(found(&z, &blue(), "web.2"), None);
    assert_eq!(found(&z, &blue(), "web"), ips(&["10.1.0.100"]));
}

#[test]
fn a_dnsrr_service_resolves_to_its_backends_and_has_no_vip() {
    let z = zone();
    assert_eq!(
        found(&z, &blue(), "cache"),
        ips(&["10.1.0.31", "10.1.0.32"])
    );
    assert_eq!(
        found(&z, &blue(), "tasks.cache"),
        ips(&["10.1.0.31", "10.1.0.32"])
    );
}

#[test]
fn a_service_whose_backends_all_drain_exists_without_addresses() {
    let (n, mut e, s) = tables();
    for (_, r) in e.iter_mut() {
        if r.service.as_deref() == Some("s-cache") {
            r.disabled = true;
        }
    }
    let z = Zone::build(&n, &e, &s);
    assert_eq!(found(&z, &blue(), "cache"), Some(vec![]));
    assert_eq!(found(&z, &blue(), "tasks.cache"), Some(vec![]));
}

#[test]
fn a_container_sees_only_the_names_of_its_own_networks() {
    let z = zone();
    assert_eq!(found(&z, &red(), "db"), None);
    assert_eq!(found(&z, &red(), "tasks.web"), Some(vec![]));
    assert_eq!(found(&z, &blue(), "tool"), None);
    assert_eq!(found(&z, &red(), "tool"), ips(&["10.2.0.5"]));
    let both: Vec<String> = vec!["n-red".into(), "n-blue".into()];
    assert_eq!(found(&z, &both, "db"), ips(&["10.1.0.20"]));
    assert_eq!(found(&z, &both, "tool"), ips(&["10.2.0.5"]));
    // The first network (in the container's order) with addresses wins.
    assert_eq!(found(&z, &both, "web"), ips(&["10.2.0.100"]));
    assert_eq!(
        found(&z, &both, "tasks.web"),
        ips(&["10.1.0.11", "10.1.0.13"])
    );
    assert_eq!(found(&z, &["n-unknown".to_string()], "db"), None);
}

#[test]
fn a_service_name_wins_over_an_endpoint_with_the_same_name() {
    let (n, mut e, s) = tables();
    e.push((
        "e9".into(),
        ep("web", &["cache"], "10.1.0.99", "n-blue", None),
    ));
    let z = Zone::build(&n, &e, &s);
    assert_eq!(found(&z, &blue(), "web"), ips(&["10.1.0.100"]));
    assert_eq!(
        found(&z, &blue(), "cache"),
        ips(&["10.1.0.31", "10.1.0.32"])
    );
    // In whichever order the tables come.
    e.reverse();
    let z = Zone::build(&n, &e, &s);
    assert_eq!(found(&z, &blue(), "web"), ips(&["10.1.0.100"]));
}

#[test]
fn two_endpoints_with_one_name_answer_both_addresses() {
    let (n, mut e, s) = tables();
    e.push(("e9".into(), ep("db", &[], "10.1.0.21", "n-blue", None)));
    let z = Zone::build(&n, &e, &s);
    assert_eq!(found(&z, &blue(), "db"), ips(&["10.1.0.20", "10.1.0.21"]));
}

#[test]
fn names_are_case_insensitive_and_a_trailing_dot_does_not_matter() {
    let (n, mut e, s) = tables();
    e.push((
        "e9".into(),
        ep("MixedCase", &[], "10.1.0.40", "n-blue", None),
    ));
    let z = Zone::build(&n, &e, &s);
    assert_eq!(found(&z, &blue(), "DB"), ips(&["10.1.0.20"]));
    assert_eq!(
        found(&z, &blue(), "Tasks.WEB.Blue."),
        ips(&["10.1.0.11", "10.1.0.13"])
    );
    assert_eq!(found(&z, &blue(), "mixedcase."), ips(&["10.1.0.40"]));
}

#[test]
fn a_coalesced_update_that_renames_an_endpoint_and_changes_its_service_drops_the_old_names() {
    let (n, mut e, s) = tables();
    // One write: web.3 becomes api.1, backing no service.
    e[2].1.name = "api.1".into();
    e[2].1.service = None;
    let z = Zone::build(&n, &e, &s);
    assert_eq!(found(&z, &blue(), "web.3"), None);
    assert_eq!(found(&z, &blue(), "api.1"), ips(&["10.1.0.13"]));
    assert_eq!(found(&z, &blue(), "tasks.web"), ips(&["10.1.0.11"]));
    let ptr = z.reverse(&blue(), ip("10.1.0.13")).unwrap().to_ascii();
    assert_eq!(ptr, "api.1.blue.");
}

#[test]
fn ptr_names_exist_for_endpoints_and_vips() {
    let z = zone();
    assert_eq!(
        z.reverse(&blue(), ip("10.1.0.20")).unwrap().to_ascii(),
        "db.blue."
    );
    assert_eq!(
        z.reverse(&blue(), ip("10.1.0.100")).unwrap().to_ascii(),
        "web.blue."
    );
    assert_eq!(
        z.reverse(&red(), ip("10.2.0.100")).unwrap().to_ascii(),
        "web.red."
    );
    // A draining endpoint keeps its reverse name.
    assert_eq!(
        z.reverse(&blue(), ip("10.1.0.12")).unwrap().to_ascii(),
        "web.2.blue."
    );
    assert!(z.reverse(&red(), ip("10.1.0.20")).is_none());
    assert!(z.owns_address(&blue(), ip("10.1.0.250")));
    assert!(!z.owns_address(&blue(), ip("10.2.0.250")));
}

#[test]
fn invalid_names_in_the_tables_are_skipped_without_panicking() {
    let (n, mut e, s) = tables();
    e.push(("e9".into(), ep("", &[], "10.1.0.50", "n-blue", None)));
    e.push((
        "e10".into(),
        ep("a..b", &["ok"], "10.1.0.51", "n-blue", None),
    ));
    e.push((
        "e11".into(),
        ep(&"x".repeat(300), &[], "10.1.0.52", "n-blue", None),
    ));
    let z = Zone::build(&n, &e, &s);
    assert_eq!(found(&z, &blue(), "ok"), ips(&["10.1.0.51"]));
}

// ---- the query path ----

fn query(name: &str, t: RecordType) -> Message {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    m
}

fn run(z: &Zone, nets: &[String], q: &Message, t: Transport) -> Handled {
    let mut rng = StdRng::seed_from_u64(7);
    handle_query(
        &q.to_vec().unwrap(),
        z,
        nets,
        t,
        Limits::default(),
        &mut rng,
    )
}

fn reply(h: Handled) -> (Message, Outcome) {
    match h {
        Handled::Reply { bytes, outcome, .. } => (Message::from_vec(&bytes).unwrap(), outcome),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = m
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[test]
fn an_a_query_for_an_internal_name_is_answered_with_the_configured_ttl() {
    let z = zone();
    let q = query("tasks.web.", RecordType::A);
    let mut rng = StdRng::seed_from_u64(1);
    let limits = Limits {
        ttl: 17,
        ..Limits::default()
    };
    let h = handle_query(
        &q.to_vec().unwrap(),
        &z,
        &blue(),
        Transport::Udp,
        limits,
        &mut rng,
    );
    let (m, o) = reply(h);
    assert_eq!(o, Outcome::Answered);
    assert_eq!(m.id, 0x1234);
    assert_eq!(m.message_type, MessageType::Response);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative && m.recursion_available && m.recursion_desired);
    assert_eq!(m.queries, q.queries);
    assert_eq!(a_records(&m), vec![ip("10.1.0.11"), ip("10.1.0.13")]);
    assert!(m.answers.iter().all(|r| r.ttl == 17));
    assert!(m.edns.is_none(), "no OPT without one in the query");
}

#[test]
fn answers_are_shuffled() {
    let (n, mut e, s) = tables();
    for i in 0..8 {
        e.push((
            format!("x{i}"),
            ep(
                &format!("t{i}"),
                &[],
                &format!("10.1.0.{}", 60 + i),
                "n-blue",
                Some("s-web"),
            ),
        ));
    }
    let z = Zone::build(&n, &e, &s);
    let q = query("tasks.web", RecordType::A).to_vec().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut orders = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let h = handle_query(&q, &z, &blue(), Transport::Udp, Limits::default(), &mut rng);
        let (m, _) = reply(h);
        let order: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(order.len(), 10);
        orders.insert(order);
    }
    assert!(orders.len() > 1, "20 answers all in one order");
}

#[test]
fn an_aaaa_query_for_an_internal_name_is_an_empty_noerror_and_not_forwarded() {
    let z = zone();
    for t in [
        RecordType::AAAA,
        RecordType::MX,
        RecordType::TXT,
        RecordType::SRV,
    ] {
        let (m, o) = reply(run(&z, &blue(), &query("web", t), Transport::Udp));
        assert_eq!(o, Outcome::NoData);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }
}

#[test]
fn ptr_queries_answer_endpoints_and_vips_and_nxdomain_inside_our_subnets() {
    let z = zone();
    let (m, o) = reply(run(
        &z,
        &blue(),
        &query("20.0.1.10.in-addr.arpa.", RecordType::PTR),
        Transport::Udp,
    ));
    assert_eq!(o, Outcome::Answered);
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_ascii(), "db.blue."),
        other => panic!("{other:?}"),
    }
    let (m, _) = reply(run(
        &z,
        &blue(),
        &query("100.0.1.10.in-addr.arpa.", RecordType::PTR),
        Transport::Udp,
    ));
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_ascii(), "web.blue."),
        other => panic!("{other:?}"),
    }
    let (m, o) = reply(run(
        &z,
        &blue(),
        &query("250.0.1.10.in-addr.arpa.", RecordType::PTR),
        Transport::Udp,
    ));
    assert_eq!(
        (o, m.response_code),
        (Outcome::NxDomain, ResponseCode::NXDomain)
    );
    // Outside our subnets: forwarded.
    let h = run(
        &z,
        &blue(),
        &query("1.1.168.192.in-addr.arpa.", RecordType::PTR),
        Transport::Udp,
    );
    assert!(matches!(h, Handled::Forward(_)));
    let h = run(
        &z,
        &blue(),
        &query("0.1.10.in-addr.arpa.", RecordType::PTR),
        Transport::Udp,
    );
    assert!(matches!(h, Handled::Forward(_)));
}

#[test]
fn unknown_names_are_forwarded_with_the_clients_limit() {
    let z = zone();
    let q = query("example.org.", RecordType::A);
    match run(&z, &blue(), &q, Transport::Udp) {
        Handled::Forward(req) => {
            assert_eq!(req.query.queries, q.queries);
            assert_eq!(req.reply_limit, 512);
        }
        other => panic!("{other:?}"),
    }
    match run(&z, &blue(), &q, Transport::Tcp) {
        Handled::Forward(req) => assert_eq!(req.reply_limit, 65535),
        other => panic!("{other:?}"),
    }
    // A name of another network is not ours from here.
    assert!(matches!(
        run(&z, &red(), &query("db", RecordType::A), Transport::Udp),
        Handled::Forward(_)
    ));
}

fn big_zone(n: usize) -> Zone {
    let (nets, mut e, s) = tables();
    for i in 0..n {
        e.push((
            format!("b{i:04}"),
            ep(
                &format!("b{i}"),
                &[],
                &format!("10.1.{}.{}", 1 + i / 250, 1 + i % 250),
                "n-blue",
                Some("s-web"),
            ),
        ));
    }
    Zone::build(&nets, &e, &s)
}

#[test]
fn a_udp_answer_over_512_bytes_is_truncated_and_tcp_carries_all_of_it() {
    let z = big_zone(100);
    let q = query("tasks.web", RecordType::A);
    let h = run(&z, &blue(), &q, Transport::Udp);
    let Handled::Reply { bytes, .. } = &h else {
        panic!()
    };
    assert!(bytes.len() <= 512);
    let (m, _) = reply(h);
    assert!(m.truncation);
    assert!(!m.answers.is_empty() && m.answers.len() < 102);
    let (m, _) = reply(run(&z, &blue(), &q, Transport::Tcp));
    assert!(!m.truncation);
    assert_eq!(m.answers.len(), 102);
}

#[test]
fn edns_is_answered_with_opt_and_the_advertised_size_is_honoured() {
    let z = big_zone(100);
    let mut q = query("tasks.web", RecordType::A);
    let mut e = Edns::new();
    e.set_max_payload(4096);
    q.set_edns(e);
    let h = run(&z, &blue(), &q, Transport::Udp);
    let (m, _) = reply(h);
    assert!(!m.truncation, "102 A records fit in 4096 bytes");
    assert_eq!(m.answers.len(), 102);
    assert!(m.edns.is_some());
    // A smaller advertised size truncates, and the OPT record stays.
    let mut e = Edns::new();
    e.set_max_payload(1232);
    q.set_edns(e);
    let h = run(&z, &blue(), &q, Transport::Udp);
    let Handled::Reply { bytes, .. } = &h else {
        panic!()
    };
    assert!(bytes.len() <= 1232);
    let (m, _) = reply(h);
    assert!(m.truncation && m.edns.is_some());
    // Below 512 counts as 512.
    let mut e = Edns::new();
    e.set_max_payload(100);
    q.set_edns(e);
    let Handled::Reply { bytes, .. } = run(&z, &blue(), &q, Transport::Udp) else {
        panic!()
    };
    assert!(bytes.len() > 100 && bytes.len() <= 512);
}

#[test]
fn an_unsupported_edns_version_gets_badvers() {
    let z = zone();
    let mut q = query("web", RecordType::A);
    let mut e = Edns::new();
    e.set_version(1);
    q.set_edns(e);
    let (m, _) = reply(run(&z, &blue(), &q, Transport::Udp));
    // 16 is BADVERS in an OPT context (hickory decodes the shared code as BADSIG).
    assert_eq!(u16::from(m.response_code), u16::from(ResponseCode::BADVERS));
}

#[test]
fn malformed_and_odd_queries_get_errors_and_responses_are_dropped() {
    let z = zone();
    let mut q = query("web", RecordType::A);
    q.add_query(Query::query(Name::from_ascii("db").unwrap(), RecordType::A));
    assert_eq!(
        reply(run(&z, &blue(), &q, Transport::Udp)).1,
        Outcome::FormErr
    );
    let mut q = query("web", RecordType::A);
    q.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        reply(run(&z, &blue(), &q, Transport::Udp)).1,
        Outcome::Refused
    );
    let mut q = query("web", RecordType::A);
    q.metadata.op_code = OpCode::Status;
    assert_eq!(
        reply(run(&z, &blue(), &q, Transport::Udp)).1,
        Outcome::NotImp
    );
    let mut q = query("web", RecordType::A);
    q.metadata.message_type = MessageType::Response;
    assert_eq!(run(&z, &blue(), &q, Transport::Udp), Handled::Drop);
    let mut rng = StdRng::seed_from_u64(1);
    // A header and garbage: FORMERR with the id.
    let mut bytes = query("web", RecordType::A).to_vec().unwrap();
    bytes.truncate(14);
    let (m, o) = reply(handle_query(
        &bytes,
        &z,
        &blue(),
        Transport::Udp,
        Limits::default(),
        &mut rng,
    ));
    assert_eq!((m.id, o), (0x1234, Outcome::FormErr));
    assert_eq!(
        handle_query(
            &[1, 2, 3],
            &z,
            &blue(),
            Transport::Udp,
            Limits::default(),
            &mut rng
        ),
        Handled::Drop
    );
}

#[test]
fn a_forwarded_answer_gets_the_clients_id_and_is_truncated_to_its_limit() {
    let q = query("example.org", RecordType::A);
    let req = ForwardRequest {
        query: q.clone(),
        reply_limit: 512,
    };
    let mut up = Message::response(999, OpCode::Query);
    up.queries = q.queries.clone();
    for i in 0..60u8 {
        up.add_answer(hickory_proto::rr::Record::from_rdata(
            q.queries[0].name().clone(),
            60,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, i))),
        ));
    }
    let bytes = forwarded_reply(&req, up).unwrap();
    assert!(bytes.len() <= 512);
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.id, 0x1234);
    assert!(m.truncation);
}

// ---- resolv.conf ----

#[test]
fn a_containers_resolv_conf_names_us_and_keeps_the_hosts_search_and_options() {
    let host = parse_resolv_conf(
        "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # x\nnameserver bad\nsearch corp.example lab\noptions edns0 ndots:5 timeout:2\n",
    );
    assert_eq!(host.nameservers.len(), 2);
    let text = render_resolv_conf(&host, &["svc.local".to_string(), "lab".to_string()], 0);
    assert!(text.contains("nameserver 127.0.0.11\n"));
    assert_eq!(text.matches("nameserver").count(), 1);
    assert!(text.contains("search corp.example lab svc.local\n"));
    assert!(text.contains("options edns0 timeout:2 ndots:0\n"));
}

#[test]
fn host_upstreams_keep_at_most_three_nameservers_on_port_53() {
    let up = host_upstreams(
        "nameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver 10.0.0.3\n",
    );
    let shown: Vec<String> = up.iter().map(|a| a.to_string()).collect();
    assert_eq!(shown, vec!["127.0.0.53:53", "10.0.0.2:53", "[::1]:53"]);
    assert!(host_upstreams("").is_empty());
}

#[test]
fn resolv_conf_is_written_atomically_and_removed_without_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    write_resolv_conf(&path, "nameserver 127.0.0.11\n").unwrap();
    write_resolv_conf(&path, "nameserver 127.0.0.11\noptions ndots:0\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "nameserver 127.0.0.11\noptions ndots:0\n"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    // A leftover temporary file (a crash between write and rename) goes with the removal.
    std::fs::write(dir.path().join(".resolv.conf.swarmnet-tmp.1"), "x").unwrap();
    remove_resolv_conf(&path).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    remove_resolv_conf(&path).unwrap();
    assert!(write_resolv_conf(&dir.path().join("missing/resolv.conf"), "x").is_err());
}

#[test]
fn the_dnat_script_redirects_udp_and_tcp_port_53_of_127_0_0_11() {
    let s = netns::dnat_script(40001, 40002);
    assert!(s.contains("ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:40001"));
    assert!(s.contains("ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:40002"));
    assert!(s.contains("delete table ip swarmnet_dns"));
}

#[test]
fn metrics_register_and_render() {
    let m = DnsMetrics::default();
    let mut r = prometheus_client::registry::Registry::with_prefix("swarmnet");
    m.register(&mut r);
    m.query(Some(RecordType::A), Outcome::Answered, Transport::Udp);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    assert!(
        out.contains(
            "swarmnet_dns_queries_total{type=\"A\",outcome=\"answered\",transport=\"udp\"} 1"
        ),
        "{out}"
    );
}
