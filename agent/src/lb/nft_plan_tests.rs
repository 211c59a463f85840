use super::*;
use crate::lb::{Backend, VipService};
use crate::records::ServicePort;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn svc(
    id: &str,
    vip: &str,
    ports: &[(Protocol, u16, u16)],
    backends: &[(&str, bool)],
) -> VipService {
    VipService {
        id: id.into(),
        vip: ip(vip),
        ports: ports
            .iter()
            .map(|&(protocol, port, target)| ServicePort {
                protocol,
                port,
                target,
            })
            .collect(),
        backends: backends
            .iter()
            .map(|&(b, enabled)| Backend { ip: ip(b), enabled })
            .collect(),
    }
}

fn spec(services: Vec<VipService>) -> LbSpec {
    LbSpec { services }
}

const SEED: u64 = 7;
const WEB: &[(Protocol, u16, u16)] = &[(Protocol::Tcp, 80, 8080), (Protocol::Udp, 53, 5353)];
const B3: &[(&str, bool)] = &[("10.0.0.3", true), ("10.0.0.4", true), ("10.0.0.5", true)];

fn want(s: &LbSpec) -> TableState {
    let (t, w) = desired(s, SEED);
    assert!(w.is_empty(), "{w:?}");
    t
}

/// The kernel state after `t` was applied successfully.
fn applied(t: &TableState) -> Actual {
    Actual {
        skeleton_ok: true,
        state: t.clone(),
    }
}

/// Plans `to` in a namespace where `from` was applied (an empty spec leaves no table).
fn step(from: &LbSpec, to: &LbSpec) -> Plan {
    let before = want(from);
    let actual = (!before.is_empty()).then(|| applied(&before));
    plan(&want(to), actual.as_ref())
}

fn lines(p: &Plan) -> Vec<&str> {
    p.script.lines().collect()
}

/// Index of the first line containing `needle`.
fn at(p: &Plan, needle: &str) -> usize {
    lines(p)
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", p.script))
}

fn web() -> LbSpec {
    spec(vec![svc("web", "10.0.0.100", WEB, B3)])
}

fn balance(t: &TableState, chain: &str) -> Balance {
    match &t.chains[chain] {
        ChainContent::Balance(b) => b.clone(),
        other => panic!("{chain}: {other:?}"),
    }
}

#[test]
fn an_empty_spec_without_a_table_plans_nothing() {
    let p = plan(&want(&LbSpec::default()), None);
    assert_eq!(p, Plan::default());
}

#[test]
fn the_first_program_creates_the_whole_table_in_one_script() {
    let p = plan(&want(&web()), None);
    let l = lines(&p);
    assert_eq!(l[0], "add table ip swarmnet_lb");
    assert!(!p.script.contains("delete"), "{}", p.script);
    for needle in [
        "add map ip swarmnet_lb vip_ports { type ipv4_addr . inet_proto . inet_service : verdict; }",
        "add map ip swarmnet_lb vip_any { type ipv4_addr : verdict; }",
        "add set ip swarmnet_lb vips { type ipv4_addr; }",
        "add set ip swarmnet_lb members { type ipv4_addr . ipv4_addr; }",
        "add chain ip swarmnet_lb nat_out { type nat hook output priority -100; policy accept; }",
        "add chain ip swarmnet_lb filter_out { type filter hook output priority 0; policy accept; }",
        "vmap @vip_ports comment \"swarmnet-lb v1 ports\"",
        "ip daddr @vips reject comment \"swarmnet-lb v1 refuse\"",
    ] {
        at(&p, needle);
    }
    let t80 = chain_name("web", ip("10.0.0.100"), "t80");
    let u53 = chain_name("web", ip("10.0.0.100"), "u53");
    let icmp = chain_name("web", ip("10.0.0.100"), "icmp");
    assert!(
        at(&p, &format!("add chain ip swarmnet_lb {t80}"))
            < at(&p, "add element ip swarmnet_lb vip_ports")
    );
    at(&p, &format!("10.0.0.100 . tcp . 80 : goto {t80}"));
    at(&p, &format!("10.0.0.100 . udp . 53 : goto {u53}"));
    at(&p, &format!("10.0.0.100 : goto {icmp}"));
    at(&p, "add element ip swarmnet_lb vips { 10.0.0.100 }");
    at(
        &p,
        "add element ip swarmnet_lb members { 10.0.0.100 . 10.0.0.3, 10.0.0.100 . 10.0.0.4, 10.0.0.100 . 10.0.0.5 }",
    );
    // table + 3 chains + 2 port elements + 1 any element + 1 vip + 3 members
    assert_eq!(p.changes, 1 + 3 + 2 + 1 + 1 + 3);
    assert!(p.sweep.is_empty());
}

#[test]
fn the_same_spec_against_its_own_result_plans_zero_changes() {
    let specs = [
        web(),
        spec(vec![svc("db", "10.0.0.101", &[], B3)]),
        spec(vec![svc("web", "10.0.0.100", WEB, &[("10.0.0.3", false)])]),
        spec(vec![svc("web", "10.0.0.100", WEB, &[])]),
        LbSpec::default(),
    ];
    for s in specs {
        let p = step(&s, &s);
        assert_eq!(p.changes, 0, "{s:?}: {}", p.script);
        assert!(p.script.is_empty());
        assert!(p.sweep.is_empty());
    }
}

#[test]
fn adding_a_backend_refills_only_the_chains_of_that_service() {
    let before = spec(vec![
        svc("web", "10.0.0.100", WEB, B3),
        svc(
            "db",
            "10.0.0.101",
            &[(Protocol::Tcp, 5432, 5432)],
            &[("10.0.0.9", true)],
        ),
    ]);
    let mut after = before.clone();
    after.services[0].backends.push(Backend {
        ip: ip("10.0.0.6"),
        enabled: true,
    });
    let p = step(&before, &after);
    assert!(
        !p.script.contains("_db_") && !p.script.contains("s_db"),
        "{}",
        p.script
    );
    // 3 chains of web refilled + 1 member
    assert_eq!(p.changes, 4, "{}", p.script);
    assert_eq!(p.script.matches("flush chain").count(), 3);
    at(
        &p,
        "add element ip swarmnet_lb members { 10.0.0.100 . 10.0.0.6 }",
    );
    assert!(p.sweep.is_empty());
    let t80 = chain_name("web", ip("10.0.0.100"), "t80");
    assert!(
        at(&p, &format!("flush chain ip swarmnet_lb {t80}"))
            < at(&p, &format!("add rule ip swarmnet_lb {t80}"))
    );
    assert!(p.script.contains("numgen inc mod 4"));
}

#[test]
fn draining_a_backend_takes_it_out_of_the_map_but_keeps_it_a_member_without_a_sweep() {
    let mut drained = web();
    drained.services[0].backends[1].enabled = false;
    let p = step(&web(), &drained);
    assert_eq!(p.changes, 3, "{}", p.script);
    assert!(!p.script.contains("members"), "{}", p.script);
    assert!(p.sweep.is_empty(), "draining must keep established flows");
    let t = want(&drained);
    let b = balance(&t, &chain_name("web", ip("10.0.0.100"), "t80"));
    assert_eq!(b.backends.len(), 2);
    assert!(!b.backends.contains(&ip("10.0.0.4")));
    assert!(t.members.contains(&(ip("10.0.0.100"), ip("10.0.0.4"))));
}

#[test]
fn removing_a_backend_sweeps_its_vip_keeping_the_others_including_draining_ones() {
    let mut before = web();
    before.services[0].backends[2].enabled = false; // .5 draining
    let mut after = before.clone();
    after.services[0].backends.remove(0); // .3 removed
    let p = step(&before, &after);
    assert_eq!(
        p.sweep,
        BTreeMap::from([(
            ip("10.0.0.100"),
            BTreeSet::from([ip("10.0.0.4"), ip("10.0.0.5")])
        )])
    );
    at(
        &p,
        "delete element ip swarmnet_lb members { 10.0.0.100 . 10.0.0.3 }",
    );
}

#[test]
fn removing_a_draining_backend_also_sweeps() {
    let mut before = web();
    before.services[0].backends[0].enabled = false;
    let mut after = before.clone();
    after.services[0].backends.remove(0);
    let p = step(&before, &after);
    // Chains do not change (.3 was not in them), only the member goes.
    assert_eq!(p.changes, 1, "{}", p.script);
    assert_eq!(
        p.sweep.keys().copied().collect::<Vec<_>>(),
        vec![ip("10.0.0.100")]
    );
}

#[test]
fn a_vip_whose_backends_are_all_drained_keeps_an_empty_chain_and_stays_refused() {
    let drained = spec(vec![svc(
        "web",
        "10.0.0.100",
        WEB,
        &[("10.0.0.3", false), ("10.0.0.4", false)],
    )]);
    let t = want(&drained);
    assert!(t.chains.values().all(|c| *c == ChainContent::Empty));
    assert!(t.vips.contains(&ip("10.0.0.100")));
    assert_eq!(t.ports.len(), 2, "the dispatch elements stay");
    let p = plan(&t, None);
    assert!(!p.script.contains("numgen"), "{}", p.script);
    let p = step(&web(), &drained);
    assert_eq!(p.script.matches("flush chain").count(), 3);
    assert!(!p.script.contains("add rule"));
}

#[test]
fn a_vip_with_no_backends_at_all_is_refused_and_has_no_members() {
    let t = want(&spec(vec![svc("web", "10.0.0.100", WEB, &[])]));
    assert!(t.members.is_empty());
    assert!(t.vips.contains(&ip("10.0.0.100")));
    assert!(t.chains.values().all(|c| *c == ChainContent::Empty));
}

#[test]
fn a_service_without_ports_gets_one_chain_for_all_ports_and_ping() {
    let t = want(&spec(vec![svc("db", "10.0.0.101", &[], B3)]));
    assert!(t.ports.is_empty());
    let all = chain_name("db", ip("10.0.0.101"), "all");
    assert_eq!(t.any, BTreeMap::from([(ip("10.0.0.101"), all.clone())]));
    let b = balance(&t, &all);
    assert_eq!(b.traffic, Traffic::All);
    assert_eq!(b.port, None);
    let rule = rule_text(&t.chains[&all]).unwrap();
    assert!(
        rule.starts_with("meta l4proto { icmp, tcp, udp } dnat ip to numgen inc mod 3 map { 0 : "),
        "{rule}"
    );
    assert!(!rule.contains(" . "), "ports stay unchanged: {rule}");
}

#[test]
fn a_service_with_ports_gets_a_chain_per_port_and_one_for_ping() {
    let t = want(&web());
    assert_eq!(t.chains.len(), 3);
    let t80 = chain_name("web", ip("10.0.0.100"), "t80");
    let u53 = chain_name("web", ip("10.0.0.100"), "u53");
    assert_eq!(t.ports[&(ip("10.0.0.100"), Protocol::Tcp, 80)], t80);
    assert_eq!(t.ports[&(ip("10.0.0.100"), Protocol::Udp, 53)], u53);
    assert_eq!(balance(&t, &t80).port, Some(8080));
    assert_eq!(balance(&t, &u53).port, Some(5353));
    assert_eq!(balance(&t, &u53).traffic, Traffic::Udp);
    let icmp = &t.any[&ip("10.0.0.100")];
    assert_eq!(balance(&t, icmp).traffic, Traffic::IcmpEcho);
    let rule = rule_text(&t.chains[&t80]).unwrap();
    assert!(
        rule.starts_with("meta l4proto tcp dnat ip to numgen inc mod 3 map { 0 : 10.0.0."),
        "{rule}"
    );
    assert!(rule.contains(" . 8080, 1 : "), "{rule}");
    assert!(
        rule_text(&t.chains[icmp])
            .unwrap()
            .starts_with("icmp type echo-request dnat ip to numgen")
    );
}

#[test]
fn changing_a_target_port_refills_only_that_chain() {
    let after = spec(vec![svc(
        "web",
        "10.0.0.100",
        &[(Protocol::Tcp, 80, 9090), (Protocol::Udp, 53, 5353)],
        B3,
    )]);
    let p = step(&web(), &after);
    assert_eq!(p.changes, 1, "{}", p.script);
    let t80 = chain_name("web", ip("10.0.0.100"), "t80");
    at(&p, &format!("flush chain ip swarmnet_lb {t80}"));
    assert!(p.script.contains(". 9090"));
}

#[test]
fn changing_a_published_port_swaps_the_element_and_the_chain_in_a_valid_order() {
    let after = spec(vec![svc(
        "web",
        "10.0.0.100",
        &[(Protocol::Tcp, 81, 8080), (Protocol::Udp, 53, 5353)],
        B3,
    )]);
    let p = step(&web(), &after);
    let t80 = chain_name("web", ip("10.0.0.100"), "t80");
    let t81 = chain_name("web", ip("10.0.0.100"), "t81");
    let add_chain = at(&p, &format!("add chain ip swarmnet_lb {t81}"));
    let del_elem = at(
        &p,
        "delete element ip swarmnet_lb vip_ports { 10.0.0.100 . tcp . 80 }",
    );
    let add_elem = at(
        &p,
        &format!("add element ip swarmnet_lb vip_ports {{ 10.0.0.100 . tcp . 81 : goto {t81} }}"),
    );
    let del_chain = at(&p, &format!("delete chain ip swarmnet_lb {t80}"));
    assert!(add_chain < add_elem && del_elem < del_chain, "{}", p.script);
    assert_eq!(p.changes, 4);
    assert!(p.sweep.is_empty());
}

#[test]
fn a_vip_taken_over_by_another_service_id_replaces_the_verdicts() {
    let after = spec(vec![svc("web2", "10.0.0.100", WEB, B3)]);
    let p = step(&web(), &after);
    let del = at(
        &p,
        "delete element ip swarmnet_lb vip_ports { 10.0.0.100 . tcp . 80, 10.0.0.100 . udp . 53 }",
    );
    let add = at(&p, "add element ip swarmnet_lb vip_ports");
    assert!(del < add);
    at(&p, "delete element ip swarmnet_lb vip_any { 10.0.0.100 }");
    assert_eq!(p.script.matches("delete chain").count(), 3);
    assert_eq!(p.script.matches("add chain").count(), 3);
    assert!(
        !p.script.contains("vips"),
        "the VIP stays refused-when-empty throughout"
    );
}

#[test]
fn removing_a_service_deletes_its_elements_then_its_chains_and_sweeps_its_vip() {
    let both = spec(vec![
        svc("web", "10.0.0.100", WEB, B3),
        svc("db", "10.0.0.101", &[], &[("10.0.0.9", true)]),
    ]);
    let p = step(&both, &web());
    let all = chain_name("db", ip("10.0.0.101"), "all");
    assert!(
        at(&p, "delete element ip swarmnet_lb vip_any { 10.0.0.101 }")
            < at(&p, &format!("delete chain ip swarmnet_lb {all}"))
    );
    at(&p, "delete element ip swarmnet_lb vips { 10.0.0.101 }");
    at(
        &p,
        "delete element ip swarmnet_lb members { 10.0.0.101 . 10.0.0.9 }",
    );
    assert_eq!(
        p.sweep,
        BTreeMap::from([(ip("10.0.0.101"), BTreeSet::new())])
    );
    assert!(!p.script.contains("10.0.0.100"));
}

#[test]
fn an_empty_spec_deletes_the_table_and_sweeps_every_vip() {
    let p = step(&web(), &LbSpec::default());
    assert_eq!(p.script, "delete table ip swarmnet_lb\n");
    assert_eq!(p.changes, 1);
    assert_eq!(
        p.sweep,
        BTreeMap::from([(ip("10.0.0.100"), BTreeSet::new())])
    );
}

#[test]
fn a_table_with_a_broken_skeleton_is_deleted_and_rebuilt_in_one_script() {
    let mut a = applied(&want(&web()));
    a.skeleton_ok = false;
    let p = plan(&want(&web()), Some(&a));
    let l = lines(&p);
    assert_eq!(l[0], "delete table ip swarmnet_lb");
    assert_eq!(l[1], "add table ip swarmnet_lb");
    assert!(p.script.contains("add element ip swarmnet_lb vip_ports"));
    assert!(!p.script.contains("delete element") && !p.script.contains("delete chain"));
}

#[test]
fn an_unrecognized_chain_is_flushed_and_refilled_and_a_foreign_chain_deleted() {
    let mut a = applied(&want(&web()));
    let t80 = chain_name("web", ip("10.0.0.100"), "t80");
    a.state
        .chains
        .insert(t80.clone(), ChainContent::Unrecognized);
    a.state
        .chains
        .insert("handmade".into(), ChainContent::Empty);
    let p = plan(&want(&web()), Some(&a));
    assert_eq!(p.changes, 2, "{}", p.script);
    at(&p, &format!("flush chain ip swarmnet_lb {t80}"));
    at(&p, "delete chain ip swarmnet_lb handmade");
}

#[test]
fn hand_deleted_elements_are_added_back() {
    let mut a = applied(&want(&web()));
    a.state.ports.clear();
    a.state.vips.clear();
    let p = plan(&want(&web()), Some(&a));
    assert_eq!(p.changes, 3, "{}", p.script);
    assert!(p.sweep.is_empty());
}

#[test]
fn a_table_that_is_missing_is_created_without_a_sweep() {
    let p = plan(&want(&web()), None);
    assert!(p.sweep.is_empty());
    let p = rebuild(&want(&web()), true);
    assert!(
        p.script
            .starts_with("delete table ip swarmnet_lb\nadd table ip swarmnet_lb\n")
    );
    assert_eq!(rebuild(&TableState::default(), false), Plan::default());
}

#[test]
fn chain_names_are_short_valid_and_distinct_per_service_vip_and_port() {
    let v = ip("10.0.0.100");
    let names = [
        chain_name("web", v, "t80"),
        chain_name("web", v, "u80"),
        chain_name("web", v, "icmp"),
        chain_name("web", ip("10.0.1.100"), "t80"),
        chain_name("web2", v, "t80"),
        chain_name("abcdefghijklmnopqrstuvwxyz0123", v, "t65535"),
        chain_name("abcdefghijklmnopqrstuvwxyz0124", v, "t65535"),
        chain_name("", v, "all"),
        chain_name("--ünï cödé!!", v, "all"),
        chain_name("UPPER", v, "all"),
    ];
    let uniq: BTreeSet<_> = names.iter().collect();
    assert_eq!(uniq.len(), names.len(), "{names:?}");
    for n in &names {
        assert!(n.len() <= 30, "{n}");
        assert!(n.starts_with("s_"), "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{n}"
        );
    }
    assert_eq!(
        chain_name("web", v, "t80"),
        chain_name("web", v, "t80"),
        "stable"
    );
    assert!(chain_name("web", v, "t80").starts_with("s_web_"));
    assert!(chain_name("", v, "all").starts_with("s_x_"));
}

#[test]
fn a_repeated_vip_is_skipped_with_a_warning() {
    let s = spec(vec![
        svc("a", "10.0.0.100", WEB, B3),
        svc("b", "10.0.0.100", &[], B3),
    ]);
    let (t, w) = desired(&s, SEED);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("10.0.0.100"));
    assert_eq!(t.chains.len(), 3, "only service a");
    assert!(t.chains.keys().all(|c| c.starts_with("s_a_")));
}

#[test]
fn a_repeated_port_keeps_the_first_and_port_zero_is_skipped() {
    let s = spec(vec![svc(
        "web",
        "10.0.0.100",
        &[
            (Protocol::Tcp, 80, 8080),
            (Protocol::Tcp, 80, 9090),
            (Protocol::Udp, 0, 53),
            (Protocol::Udp, 53, 0),
        ],
        B3,
    )]);
    let (t, w) = desired(&s, SEED);
    assert_eq!(w.len(), 3, "{w:?}");
    assert_eq!(t.ports.len(), 1);
    let c = &t.ports[&(ip("10.0.0.100"), Protocol::Tcp, 80)];
    assert_eq!(balance(&t, c).port, Some(8080));
}

#[test]
fn repeated_backends_count_once_and_a_backend_listed_enabled_and_draining_is_enabled() {
    let t = want(&spec(vec![svc(
        "db",
        "10.0.0.101",
        &[],
        &[
            ("10.0.0.3", true),
            ("10.0.0.3", true),
            ("10.0.0.4", false),
            ("10.0.0.4", true),
        ],
    )]));
    let b = balance(&t, &chain_name("db", ip("10.0.0.101"), "all"));
    let mut got = b.backends.clone();
    got.sort();
    assert_eq!(got, vec![ip("10.0.0.3"), ip("10.0.0.4")]);
    assert_eq!(t.members.len(), 2);
}

#[test]
fn backend_order_is_rotated_per_namespace_and_stable_for_one() {
    let s = web();
    let t80 = chain_name("web", ip("10.0.0.100"), "t80");
    let first = |seed: u64| balance(&desired(&s, seed).0, &t80).backends[0];
    assert_eq!(first(1), first(1));
    let firsts: BTreeSet<_> = (0..32)
        .map(|n| first(seed_for(&format!("/var/run/netns/c{n}"))))
        .collect();
    assert_eq!(
        firsts.len(),
        3,
        "32 namespaces start on every backend: {firsts:?}"
    );
    // A rotation keeps the cyclic order of the sorted list.
    let b = balance(&desired(&s, 5).0, &t80).backends;
    let mut sorted = b.clone();
    sorted.sort();
    let r = sorted.iter().position(|x| *x == b[0]).unwrap();
    sorted.rotate_left(r);
    assert_eq!(b, sorted);
}

#[test]
fn services_are_planned_in_vip_order_whatever_the_input_order() {
    let a = svc("a", "10.0.0.100", WEB, B3);
    let b = svc("b", "10.0.0.101", &[], B3);
    assert_eq!(
        want(&spec(vec![a.clone(), b.clone()])),
        want(&spec(vec![b, a]))
    );
}

#[test]
fn long_element_lists_are_split_across_lines() {
    let many: Vec<VipService> = (0..300u32)
        .map(|i| {
            svc(
                &format!("s{i}"),
                &Ipv4Addr::from(0x0a64_0000 + i).to_string(),
                &[],
                &[("10.0.0.3", true)],
            )
        })
        .collect();
    let p = plan(&want(&spec(many)), None);
    assert_eq!(
        p.script.matches("add element ip swarmnet_lb vips").count(),
        2
    );
    assert!(p.script.lines().all(|l| l.len() < 16_384));
}

#[test]
fn fnv_hash_separates_parts() {
    assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
    assert_eq!(fnv1a(&[b"x"]), fnv1a(&[b"x"]));
}
