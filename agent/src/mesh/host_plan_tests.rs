use super::*;

fn port(proto: Protocol, port: u16, target: u16, backends: &[[u8; 4]]) -> PortSpec {
    PortSpec {
        protocol: proto,
        port,
        target,
        backends: backends.iter().map(|b| Ipv4Addr::from(*b)).collect(),
    }
}

fn spec() -> HostSpec {
    let web = port(Protocol::Tcp, 8080, 80, &[[10, 0, 0, 3], [10, 0, 0, 4]]);
    let dns = port(Protocol::Udp, 5353, 53, &[[10, 0, 0, 3]]);
    HostSpec {
        ports: BTreeMap::from([((Protocol::Tcp, 8080), web), ((Protocol::Udp, 5353), dns)]),
        ingress: BTreeSet::from(["swni001000".to_string()]),
        snat: BTreeSet::new(),
        members: BTreeSet::from([
            (Protocol::Tcp, 8080, Ipv4Addr::new(10, 0, 0, 3)),
            (Protocol::Tcp, 8080, Ipv4Addr::new(10, 0, 0, 4)),
            (Protocol::Udp, 5353, Ipv4Addr::new(10, 0, 0, 3)),
        ]),
        addrs: BTreeSet::new(),
        ifaces: BTreeSet::new(),
        idle_timeout: 432_000,
        lease_until: 1_900_000_000,
    }
}

/// The table as if `spec` had been applied.
fn applied(spec: &HostSpec) -> Actual {
    Actual {
        skeleton: Some(skeleton_of(spec)),
        state: desired(spec),
    }
}

#[test]
fn nothing_published_means_no_table_and_a_table_left_over_is_deleted() {
    let empty = HostSpec::default();
    assert_eq!(plan(&empty, None).script, "");
    let p = plan(&empty, Some(&applied(&spec())));
    assert_eq!(p.script, "delete table ip swarmnet_mesh\n");
    assert_eq!(p.changes, 1);
    assert_eq!(
        p.sweep.keys().copied().collect::<Vec<_>>(),
        vec![(Protocol::Tcp, 8080), (Protocol::Udp, 5353)],
        "every port's flows go with the table"
    );
}

#[test]
fn a_new_table_holds_the_lease_the_idle_timeout_the_guards_and_a_hashed_dnat_per_port() {
    let s = spec();
    let p = plan(&s, None);
    let t = &p.script;
    assert!(t.starts_with("add table ip swarmnet_mesh\n"), "{t}");
    assert!(t.contains("add ct timeout ip swarmnet_mesh idle_432000 { protocol tcp; l3proto ip; policy = { established: 432000 }; }"), "{t}");
    assert!(t.contains("type nat hook prerouting priority -110"), "{t}");
    assert!(t.contains("add rule ip swarmnet_mesh prerouting meta time < 1900000000 fib daddr type local meta l4proto . th dport vmap @published comment \"swarmnet-mesh v1 in until=1900000000\""), "{t}");
    assert!(
        t.contains("ip daddr != 127.0.0.0/8 fib daddr type local"),
        "{t}"
    );
    assert!(t.contains("ct mark set 0x53530001 ct timeout set \"idle_432000\" dnat ip to jhash ip saddr . tcp sport mod 2 seed 0x5353 map { 0 : 10.0.0.3 . 80, 1 : 10.0.0.4 . 80 }"), "{t}");
    assert!(t.contains("ct mark set 0x53530001 dnat ip to jhash ip saddr . udp sport mod 1 seed 0x5353 map { 0 : 10.0.0.3 . 53 }"), "UDP has no idle timeout object: {t}");
    assert!(t.contains("add element ip swarmnet_mesh published { tcp . 8080 : goto p_t8080, udp . 5353 : goto p_u5353 }"), "{t}");
    assert!(t.contains("iifname @ingress_ifs drop"), "{t}");
    assert!(t.contains("oifname @ingress_ifs drop"), "{t}");
    // The map's elements come after the chains they jump to.
    assert!(
        t.find("add chain ip swarmnet_mesh p_t8080").unwrap() < t.find("goto p_t8080").unwrap()
    );
    assert!(p.sweep.is_empty());
}

#[test]
fn an_applied_table_plans_nothing() {
    let s = spec();
    let p = plan(&s, Some(&applied(&s)));
    assert_eq!((p.script.as_str(), p.changes), ("", 0));
}

#[test]
fn a_backend_leaving_rewrites_only_its_port_chain_and_sweeps_that_port() {
    let s = spec();
    let mut next = s.clone();
    next.ports
        .get_mut(&(Protocol::Tcp, 8080))
        .unwrap()
        .backends
        .pop();
    next.members
        .remove(&(Protocol::Tcp, 8080, Ipv4Addr::new(10, 0, 0, 4)));
    let p = plan(&next, Some(&applied(&s)));
    assert_eq!(
        p.script,
        "flush chain ip swarmnet_mesh p_t8080\n\
         add rule ip swarmnet_mesh p_t8080 ct mark set 0x53530001 ct timeout set \"idle_432000\" dnat ip to jhash ip saddr . tcp sport mod 1 seed 0x5353 map { 0 : 10.0.0.3 . 80 } comment \"h="
            .to_string()
            + &format!("{:016x}\"\n", digest(&next.ports[&(Protocol::Tcp, 8080)], "idle_432000"))
            + "delete element ip swarmnet_mesh members { tcp . 8080 . 10.0.0.4 }\n"
    );
    assert_eq!(p.changes, 2);
    assert_eq!(
        p.sweep,
        BTreeMap::from([(
            (Protocol::Tcp, 8080),
            BTreeSet::from([Ipv4Addr::new(10, 0, 0, 3)])
        )])
    );
}

#[test]
fn a_port_without_backends_refuses_and_a_draining_one_stays_a_member() {
    let mut s = spec();
    s.ports
        .get_mut(&(Protocol::Tcp, 8080))
        .unwrap()
        .backends
        .clear();
    s.ports
        .get_mut(&(Protocol::Udp, 5353))
        .unwrap()
        .backends
        .clear();
    let t = plan(&s, None).script;
    assert!(
        t.contains(
            "add rule ip swarmnet_mesh p_t8080 meta l4proto tcp reject with tcp reset comment"
        ),
        "{t}"
    );
    assert!(
        t.contains("add rule ip swarmnet_mesh p_u5353 meta l4proto udp reject comment"),
        "{t}"
    );
    assert!(
        t.contains("tcp . 8080 . 10.0.0.4"),
        "draining backends keep their flows: {t}"
    );
}

#[test]
fn a_renewed_lease_rewrites_only_the_entry_chains() {
    let s = spec();
    let mut next = s.clone();
    next.lease_until += 10;
    let p = plan(&next, Some(&applied(&s)));
    assert_eq!(p.changes, 2, "{}", p.script);
    assert!(
        p.script
            .contains("flush chain ip swarmnet_mesh prerouting\n")
    );
    assert!(p.script.contains("flush chain ip swarmnet_mesh output\n"));
    assert!(p.script.contains("until=1900000010"));
    assert!(!p.script.contains("forward"), "{}", p.script);
    assert_eq!(actual_lease(&applied(&next)), Some(1_900_000_010));
}

#[test]
fn a_new_idle_timeout_or_address_list_rebuilds_the_table_in_one_transaction() {
    let s = spec();
    let mut next = s.clone();
    next.idle_timeout = 3600;
    let p = plan(&next, Some(&applied(&s)));
    assert!(
        p.script
            .starts_with("delete table ip swarmnet_mesh\nadd table ip swarmnet_mesh\n")
    );
    assert!(p.script.contains("idle_3600"));
    let mut addrs = s.clone();
    addrs.addrs.insert(Ipv4Addr::new(192, 168, 1, 1));
    addrs.ifaces.insert("eth0".into());
    let p = plan(&addrs, Some(&applied(&s)));
    assert!(p.script.starts_with("delete table"), "{}", p.script);
    assert!(
        p.script
            .contains("add set ip swarmnet_mesh pub_addrs { type ipv4_addr; }")
    );
    assert!(
        p.script
            .contains("iifname @pub_ifs ip daddr @pub_addrs meta l4proto")
    );
    assert!(
        p.script
            .contains("add element ip swarmnet_mesh pub_addrs { 192.168.1.1 }")
    );
    assert!(
        p.script
            .contains("add element ip swarmnet_mesh pub_ifs { \"eth0\" }")
    );
}

#[test]
fn a_hand_edited_chain_is_rewritten_and_a_foreign_chain_deleted() {
    let s = spec();
    let mut a = applied(&s);
    a.state
        .chains
        .insert("p_t8080".into(), ChainContent::Unrecognized);
    a.state
        .chains
        .insert("p_t9999".into(), ChainContent::Rule(1));
    a.state
        .ports
        .insert((Protocol::Tcp, 9999), "p_t9999".into());
    a.state.base.get_mut("forward").unwrap().pop();
    let p = plan(&s, Some(&a));
    assert!(p.script.contains("flush chain ip swarmnet_mesh p_t8080\n"));
    assert!(
        p.script
            .contains("delete element ip swarmnet_mesh published { tcp . 9999 }\n")
    );
    assert!(p.script.contains("delete chain ip swarmnet_mesh p_t9999\n"));
    assert!(p.script.contains("flush chain ip swarmnet_mesh forward\n"));
    assert!(
        p.script.find("delete element").unwrap() < p.script.find("delete chain").unwrap(),
        "elements go before the chains they jump to"
    );
}

#[test]
fn a_broken_skeleton_is_rebuilt() {
    let s = spec();
    let mut a = applied(&s);
    a.skeleton = None;
    let p = plan(&s, Some(&a));
    assert!(
        p.script
            .starts_with("delete table ip swarmnet_mesh\nadd table")
    );
    assert_eq!(rebuild(&s, true).script, p.script);
}
