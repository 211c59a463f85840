//! Kernel tests of the executor: real namespaces, veths, bridges and VXLAN devices. Every
//! test is named `serial_*` (nextest runs them one at a time), checks first that it can run
//! (root, netns + veth + vxlan creatable) and otherwise prints "skipped: <reason>", and
//! tears down everything it made, even on panic.

mod common;

use std::net::Ipv4Addr;
use std::time::Instant;

use common::{Lab, VNI, current_netns, exec_in, must, network, one_container_per_host, ping, run};
use overlay::{Desired, Nud, Op};

fn ip_in(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    must(&v)
}

fn bridge_in(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["bridge", "-n", ns];
    v.extend_from_slice(args);
    must(&v)
}

/// Whether `bridge fdb show` output has `<mac> dst <dst> ... self permanent`.
fn fdb_line(fdb: &str, mac: &str, dst: &str) -> bool {
    fdb.lines().any(|l| {
        l.starts_with(&format!("{mac} dst {dst} ")) && l.trim_end().ends_with("self permanent")
    })
}

fn mac_s(m: &[u8; 6]) -> String {
    overlay::mac::format(m)
}

#[test]
fn serial_two_hosts_reconcile_then_containers_ping_each_other_over_the_overlay() {
    let _serial = preflight_or_skip!(true);
    let started = Instant::now();
    let root_ns = current_netns();
    let net = network("n1", VNI, 10);
    let mut lab = Lab::new("ping", 'a', 2);
    let (desired, eps) = one_container_per_host(&mut lab, &net);
    let (x1, x2) = (lab.executor(1), lab.executor(2));

    let r1 = x1.reconcile_blocking(&desired[0]).unwrap();
    let r2 = x2.reconcile_blocking(&desired[1]).unwrap();
    assert!(r1.is_ok() && r2.is_ok(), "{r1:?} {r2:?}");
    // sandbox, bridge, vxlan, attach, 1 fdb, 1 neighbour (the own peer record is skipped)
    assert_eq!(r1.ops(), 6, "{:#?}", r1.applied);
    println!("first reconcile: {:?} / {:?}", r1.elapsed, r2.elapsed);

    // The process (this thread) never left the root namespace.
    assert_eq!(current_netns(), root_ns);

    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2 over the overlay");
    ping(&eps[1].netns, eps[0].ip, None, 3).expect("c2 -> c1 over the overlay");
    ping(&eps[0].netns, net.gateway, None, 3).expect("c1 -> its sandbox's br0");

    // The kernel objects are what the recipe says.
    let sb1 = lab.sandbox(1, VNI);
    let vx = ip_in(&sb1, &["-d", "link", "show", "vxlan0"]);
    for needle in [
        &format!("vxlan id {VNI}"),
        "local 192.168.77.1",
        "dstport 4789",
        "nolearning",
        "proxy",
        "master br0",
        "mtu 1450",
    ] {
        assert!(vx.contains(needle), "{needle:?} missing in {vx}");
    }
    let fdb = bridge_in(&sb1, &["fdb", "show", "dev", "vxlan0"]);
    assert!(fdb_line(&fdb, &mac_s(&eps[1].mac), "192.168.77.2"), "{fdb}");
    let neigh = ip_in(&sb1, &["neigh", "show", "dev", "vxlan0"]);
    assert!(
        neigh.contains(&format!(
            "{} lladdr {} PERMANENT",
            eps[1].ip,
            mac_s(&eps[1].mac)
        )),
        "{neigh}"
    );
    // The VXLAN socket is in the host namespace, not in the sandbox.
    let host_ss = exec_in(&lab.hosts[0].ns, &["ss", "-Hluna"]);
    let sb_ss = exec_in(&sb1, &["ss", "-Hluna"]);
    assert!(String::from_utf8_lossy(&host_ss.stdout).contains(":4789"));
    assert!(!String::from_utf8_lossy(&sb_ss.stdout).contains(":4789"));
    // Container side: eth0 with the MAC, MTU and address, and only the subnet route.
    let c1 = eps[0]
        .netns
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let eth0 = ip_in(&c1, &["addr", "show", "eth0"]);
    assert!(
        eth0.contains(&mac_s(&eps[0].mac))
            && eth0.contains("mtu 1450")
            && eth0.contains("10.10.10.2/24"),
        "{eth0}"
    );
    let routes = ip_in(&c1, &["route", "show"]);
    assert_eq!(
        routes.trim(),
        "10.10.10.0/24 dev eth0 proto kernel scope link src 10.10.10.2",
        "{routes}"
    );
    // IPv6 is off in the sandbox and untouched in the host.
    let sysctl = |ns: &str| {
        String::from_utf8_lossy(
            &exec_in(ns, &["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"]).stdout,
        )
        .trim()
        .to_string()
    };
    assert_eq!(sysctl(&sb1), "1");
    assert_eq!(sysctl(&lab.hosts[0].ns), "0");

    drop((x1, x2));
    drop(lab);
    println!("test took {:?}", started.elapsed());
}

#[test]
fn serial_overlay_mtu_1450_carries_a_1422_byte_df_payload_but_not_1423() {
    let _serial = preflight_or_skip!(true);
    let net = network("n1", VNI, 11);
    let mut lab = Lab::new("mtu", 'b', 2);
    let (desired, eps) = one_container_per_host(&mut lab, &net);
    let (x1, x2) = (lab.executor(1), lab.executor(2));
    assert!(x1.reconcile_blocking(&desired[0]).unwrap().is_ok());
    assert!(x2.reconcile_blocking(&desired[1]).unwrap().is_ok());
    assert!(
        ip_in(&lab.hosts[0].ns, &["link", "show", "eth0"]).contains("mtu 1500"),
        "underlay MTU"
    );
    ping(&eps[0].netns, eps[1].ip, Some(1422), 3).expect("1422 bytes + 28 = 1450 fits");
    let err = ping(&eps[0].netns, eps[1].ip, Some(1423), 1).expect_err("1423 bytes must not fit");
    assert!(
        err.contains("message too long") || err.contains("100% packet loss"),
        "{err}"
    );
}

#[test]
fn serial_removing_a_peer_from_desired_deletes_its_fdb_and_neighbour_entries() {
    let _serial = preflight_or_skip!(true);
    let net = network("n1", VNI, 12);
    let mut lab = Lab::new("peerdel", 'c', 3);
    let (mut desired, eps) = one_container_per_host(&mut lab, &net);
    let xs: Vec<_> = (1..=3).map(|i| lab.executor(i)).collect();
    for (x, d) in xs.iter().zip(&desired) {
        assert!(x.reconcile_blocking(d).unwrap().is_ok());
    }
    ping(&eps[0].netns, eps[2].ip, None, 3).expect("c1 -> c3");
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2");

    desired[0].peers.retain(|p| p.endpoint != "ep3");
    let r = xs[0].reconcile_blocking(&desired[0]).unwrap();
    assert_eq!(
        r.applied,
        vec![
            Op::DeleteNeighbour {
                vni: VNI,
                ip: eps[2].ip
            },
            Op::DeleteFdb {
                vni: VNI,
                mac: eps[2].mac
            }
        ]
    );
    let sb1 = lab.sandbox(1, VNI);
    assert!(!bridge_in(&sb1, &["fdb", "show", "dev", "vxlan0"]).contains(&mac_s(&eps[2].mac)));
    assert!(!ip_in(&sb1, &["neigh", "show", "dev", "vxlan0"]).contains(&eps[2].ip.to_string()));
    assert!(
        ping(&eps[0].netns, eps[2].ip, None, 1).is_err(),
        "c3 must be unreachable from c1 now"
    );
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2 unaffected");
}

#[test]
fn serial_an_fdb_entry_deleted_by_hand_is_restored_by_the_next_reconcile() {
    let _serial = preflight_or_skip!(true);
    let net = network("n1", VNI, 13);
    let mut lab = Lab::new("fdbdel", 'd', 2);
    let (desired, eps) = one_container_per_host(&mut lab, &net);
    let (x1, x2) = (lab.executor(1), lab.executor(2));
    assert!(x1.reconcile_blocking(&desired[0]).unwrap().is_ok());
    assert!(x2.reconcile_blocking(&desired[1]).unwrap().is_ok());
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2");

    let sb1 = lab.sandbox(1, VNI);
    bridge_in(
        &sb1,
        &["fdb", "del", &mac_s(&eps[1].mac), "dev", "vxlan0", "self"],
    );
    assert!(
        ping(&eps[0].netns, eps[1].ip, None, 1).is_err(),
        "without the fdb entry c2 is unreachable"
    );

    let r = x1.reconcile_blocking(&desired[0]).unwrap();
    assert_eq!(
        r.applied,
        vec![Op::ReplaceFdb {
            vni: VNI,
            mac: eps[1].mac,
            vtep: lab.hosts[1].vtep
        }]
    );
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2 after repair");
}

#[test]
fn serial_learned_and_wrong_entries_are_replaced_and_stale_ones_deleted() {
    let _serial = preflight_or_skip!(true);
    let net = network("n1", VNI, 14);
    let mut lab = Lab::new("learned", 'e', 2);
    let (desired, eps) = one_container_per_host(&mut lab, &net);
    let (x1, x2) = (lab.executor(1), lab.executor(2));
    assert!(x1.reconcile_blocking(&desired[0]).unwrap().is_ok());
    assert!(x2.reconcile_blocking(&desired[1]).unwrap().is_ok());

    let sb1 = lab.sandbox(1, VNI);
    let peer_mac = mac_s(&eps[1].mac);
    // A learned-looking (dynamic) entry pointing at a wrong VTEP, a neighbour with a wrong
    // MAC, and entries nobody desires.
    bridge_in(
        &sb1,
        &[
            "fdb",
            "replace",
            &peer_mac,
            "dev",
            "vxlan0",
            "dst",
            "192.168.77.99",
            "self",
            "dynamic",
        ],
    );
    ip_in(
        &sb1,
        &[
            "neigh",
            "replace",
            &eps[1].ip.to_string(),
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "vxlan0",
            "nud",
            "permanent",
        ],
    );
    bridge_in(
        &sb1,
        &[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "vxlan0",
            "dst",
            "192.168.77.2",
        ],
    );
    ip_in(
        &sb1,
        &[
            "neigh",
            "add",
            "10.10.14.200",
            "lladdr",
            "02:00:00:00:00:c8",
            "dev",
            "vxlan0",
            "nud",
            "permanent",
        ],
    );

    let actual = x1.read_actual_blocking(&desired[0]).unwrap();
    let sb = &actual.sandboxes[&VNI];
    let learned = sb.fdb.iter().find(|e| e.mac == eps[1].mac).unwrap();
    assert_ne!(learned.state, Nud::Permanent, "{learned:?}");
    assert_eq!(learned.dst, Some(Ipv4Addr::new(192, 168, 77, 99)));

    let r = x1.reconcile_blocking(&desired[0]).unwrap();
    assert!(r.is_ok(), "{r:?}");
    let mut got: Vec<String> = r.applied.iter().map(|o| o.to_string()).collect();
    got.sort();
    let mut want = vec![
        format!("[{VNI}] delete neighbour 10.10.14.200"),
        format!("[{VNI}] delete fdb 00:00:00:00:00:00"),
        format!("[{VNI}] fdb {peer_mac} -> 192.168.77.2"),
        format!("[{VNI}] neighbour {} -> {peer_mac}", eps[1].ip),
    ];
    want.sort();
    assert_eq!(got, want);

    let fdb = bridge_in(&sb1, &["fdb", "show", "dev", "vxlan0"]);
    assert!(fdb_line(&fdb, &peer_mac, "192.168.77.2"), "{fdb}");
    assert!(!fdb.contains("00:00:00:00:00:00"), "{fdb}");
    let neigh = ip_in(&sb1, &["neigh", "show", "dev", "vxlan0"]);
    assert_eq!(
        neigh.trim(),
        format!("{} lladdr {peer_mac} PERMANENT", eps[1].ip)
    );
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2 after repair");
}

#[test]
fn serial_reconciling_twice_applies_zero_ops_the_second_time() {
    let _serial = preflight_or_skip!(false);
    let net = network("n1", VNI, 15);
    let mut lab = Lab::new("twice", 'f', 3);
    let (desired, _eps) = one_container_per_host(&mut lab, &net);
    let xs: Vec<_> = (1..=3).map(|i| lab.executor(i)).collect();
    for (x, d) in xs.iter().zip(&desired) {
        let first = x.reconcile_blocking(d).unwrap();
        assert!(first.is_ok() && first.ops() == 8, "{first:?}");
    }
    for (x, d) in xs.iter().zip(&desired) {
        let second = x.reconcile_blocking(d).unwrap();
        assert_eq!(second.ops(), 0, "{:#?}", second.applied);
        println!("idempotent reconcile took {:?}", second.elapsed);
    }
    // The async API gives the same answer.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let third = rt.block_on(xs[0].reconcile(&desired[0])).unwrap();
    assert_eq!(third.ops(), 0);
}

#[test]
fn serial_vxlan_with_learning_turned_on_by_hand_is_recreated_and_its_learned_entry_replaced() {
    let _serial = preflight_or_skip!(true);
    let net = network("n1", VNI, 16);
    let mut lab = Lab::new("learnon", 'g', 2);
    let (desired, eps) = one_container_per_host(&mut lab, &net);
    let (x1, x2) = (lab.executor(1), lab.executor(2));
    assert!(x1.reconcile_blocking(&desired[0]).unwrap().is_ok());
    assert!(x2.reconcile_blocking(&desired[1]).unwrap().is_ok());
    let sb1 = lab.sandbox(1, VNI);
    ip_in(
        &sb1,
        &["link", "set", "vxlan0", "type", "vxlan", "learning"],
    );
    // Let the kernel learn c2's MAC: drop the permanent entry, then c2 pings c1 (h2 still
    // has its entries); h1's vxlan0 learns c2's MAC from the request's outer source.
    let c2_mac = mac_s(&eps[1].mac);
    bridge_in(&sb1, &["fdb", "del", &c2_mac, "dev", "vxlan0", "self"]);
    ping(&eps[1].netns, eps[0].ip, None, 3).expect("c2 -> c1 via a learned entry");
    let actual = x1.read_actual_blocking(&desired[0]).unwrap();
    let learned = actual.sandboxes[&VNI]
        .fdb
        .iter()
        .find(|e| e.mac == eps[1].mac)
        .cloned();
    let learned = learned.expect("the kernel learned c2's MAC");
    assert_ne!(learned.state, Nud::Permanent, "{learned:?}");
    assert_eq!(learned.dst, Some(lab.hosts[1].vtep));
    println!("learned entry as read back: {learned:?}");

    let r = x1.reconcile_blocking(&desired[0]).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.applied[0], Op::DeleteVxlan { vni: VNI });
    assert!(matches!(r.applied[1], Op::CreateVxlan { vni: VNI, .. }));
    assert_eq!(r.ops(), 4, "{:#?}", r.applied);
    assert!(ip_in(&sb1, &["-d", "link", "show", "vxlan0"]).contains("nolearning"));
    let fdb = bridge_in(&sb1, &["fdb", "show", "dev", "vxlan0"]);
    assert!(fdb_line(&fdb, &c2_mac, "192.168.77.2"), "{fdb}");
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2 after recreation");
    assert_eq!(x1.reconcile_blocking(&desired[0]).unwrap().ops(), 0);
}

#[test]
fn serial_detach_removes_the_veth_from_the_sandbox_and_the_container() {
    let _serial = preflight_or_skip!(false);
    let net = network("n1", VNI, 17);
    let mut lab = Lab::new("detach", 'h', 1);
    let c1 = lab.container("c1");
    let c2 = lab.container("c2");
    let e1 = common::endpoint("ep1", &net, &c1, 1);
    let e2 = common::endpoint("ep2", &net, &c2, 2);
    let mut d = Desired {
        networks: vec![net.clone()],
        endpoints: vec![e1.clone(), e2.clone()],
        peers: vec![],
    };
    let x = lab.executor(1);
    assert!(x.reconcile_blocking(&d).unwrap().is_ok());
    let names = &lab.hosts[0].names;
    let sb = lab.sandbox(1, VNI);
    let veth1 = names.veth("ep1");
    assert!(ip_in(&sb, &["link", "show", "master", "br0"]).contains(&veth1));
    let alias = ip_in(&sb, &["link", "show", &veth1]);
    assert!(alias.contains("alias ep1"), "{alias}");

    d.endpoints.retain(|e| e.id != "ep1");
    let r = x.reconcile_blocking(&d).unwrap();
    assert_eq!(
        r.applied,
        vec![Op::DetachEndpoint {
            vni: VNI,
            veth: veth1.clone()
        }]
    );
    assert!(
        !run(&["ip", "-n", &sb, "link", "show", &veth1])
            .status
            .success()
    );
    let c1n = c1.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !run(&["ip", "-n", &c1n, "link", "show", "eth0"])
            .status
            .success(),
        "eth0 left in c1"
    );
    // The other endpoint is untouched; the sandbox stays.
    assert!(ip_in(&sb, &["link", "show", "master", "br0"]).contains(&names.veth("ep2")));
    assert_eq!(x.reconcile_blocking(&d).unwrap().ops(), 0);
}

#[test]
fn serial_the_sandbox_goes_when_its_last_endpoint_leaves_and_the_network_is_not_desired() {
    let _serial = preflight_or_skip!(false);
    let net = network("n1", VNI, 18);
    let mut lab = Lab::new("sbgone", 'i', 1);
    let c1 = lab.container("c1");
    let e1 = common::endpoint("ep1", &net, &c1, 1);
    let x = lab.executor(1);
    let sb = lab.sandbox(1, VNI);
    let d = Desired {
        networks: vec![net.clone()],
        endpoints: vec![e1],
        peers: vec![],
    };
    assert!(x.reconcile_blocking(&d).unwrap().is_ok());

    // Endpoint gone but the network still desired: the sandbox stays.
    let pre = Desired {
        networks: vec![net.clone()],
        endpoints: vec![],
        peers: vec![],
    };
    let r = x.reconcile_blocking(&pre).unwrap();
    assert!(
        matches!(r.applied.as_slice(), [Op::DetachEndpoint { .. }]),
        "{r:?}"
    );
    assert!(must(&["ip", "netns", "list"]).contains(&sb));

    // Network not desired either: the sandbox and its vxlan go.
    let r = x.reconcile_blocking(&Desired::default()).unwrap();
    assert_eq!(r.applied, vec![Op::DeleteSandbox { vni: VNI }]);
    assert!(!must(&["ip", "netns", "list"]).contains(&sb));
    assert!(!std::path::Path::new(&format!("/var/run/netns/{sb}")).exists());
    assert!(!ip_in(&lab.hosts[0].ns, &["-d", "link"]).contains("vxlan"));
    // The VNI is free again in the host namespace: the network can come straight back.
    assert!(x.reconcile_blocking(&d).unwrap().is_ok());
    assert_eq!(x.reconcile_blocking(&d).unwrap().ops(), 0);
}

#[test]
fn serial_a_fresh_executor_adopts_existing_objects_and_removes_its_leftovers() {
    let _serial = preflight_or_skip!(true);
    let net = network("n1", VNI, 19);
    let old_net = network("n2", VNI + 1, 20);
    let mut lab = Lab::new("restart", 'j', 2);
    let (mut desired, eps) = one_container_per_host(&mut lab, &net);
    let extra_c = lab.container("extra");
    let extra = common::endpoint("ep-extra", &net, &extra_c, 9);
    let old = common::endpoint("ep-old", &old_net, &extra_c, 3);
    let x2 = lab.executor(2);
    assert!(x2.reconcile_blocking(&desired[1]).unwrap().is_ok());

    // The "old agent" on host 1 had an extra endpoint and another network.
    let mut before = desired[0].clone();
    before.networks.push(old_net.clone());
    before.endpoints.push(extra.clone());
    let mut old_e = old.clone();
    old_e.ifname = "eth1".into();
    before.endpoints.push(old_e);
    {
        let x1 = lab.executor(1);
        assert!(x1.reconcile_blocking(&before).unwrap().is_ok());
    } // agent stops; kernel objects stay
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("dataplane survives the agent");

    // Restart with the same desired state: everything is adopted.
    let x1 = lab.executor(1);
    let r = x1.reconcile_blocking(&before).unwrap();
    assert_eq!(r.ops(), 0, "{:#?}", r.applied);

    // Restart with a smaller desired state: leftovers of the prefix are removed.
    drop(x1);
    let x1 = lab.executor(1);
    desired[0].peers.sort();
    let r = x1.reconcile_blocking(&desired[0]).unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        r.applied,
        vec![
            Op::DeleteSandbox { vni: VNI + 1 },
            Op::DetachEndpoint {
                vni: VNI,
                veth: lab.hosts[0].names.veth("ep-extra")
            },
        ]
    );
    assert!(!must(&["ip", "netns", "list"]).contains(&lab.sandbox(1, VNI + 1)));
    let extra_ns = extra_c.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        ip_in(&extra_ns, &["-br", "link"]).lines().count(),
        1,
        "only lo is left in the container"
    );
    ping(&eps[0].netns, eps[1].ip, None, 3).expect("c1 -> c2 after cleanup");
    assert_eq!(x1.reconcile_blocking(&desired[0]).unwrap().ops(), 0);
}

#[test]
fn serial_a_missing_container_fails_its_attach_without_stopping_the_rest() {
    let _serial = preflight_or_skip!(false);
    let net = network("n1", VNI, 21);
    let mut lab = Lab::new("nocont", 'k', 1);
    let c1 = lab.container("c1");
    let good = common::endpoint("ep-good", &net, &c1, 1);
    let gone = std::path::PathBuf::from(format!("/var/run/netns/{}-nosuch", lab.tag));
    let bad = common::endpoint("ep-bad", &net, &gone, 2);
    let x = lab.executor(1);
    let d = Desired {
        networks: vec![net],
        endpoints: vec![bad, good],
        peers: vec![],
    };
    let r = x.reconcile_blocking(&d).unwrap();
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(
        matches!(&r.failed[0].op, Op::AttachEndpoint { endpoint, .. } if endpoint.id == "ep-bad")
    );
    let msg = r.failed[0].error.to_string();
    assert!(msg.contains("nosuch"), "{msg}");
    assert_eq!(r.applied.len(), 4, "{r:?}");
    // Nothing half-made was left in the sandbox, and the retry fails the same way.
    let sb = lab.sandbox(1, VNI);
    assert!(!ip_in(&sb, &["link"]).contains(&lab.hosts[0].names.veth("ep-bad")));
    let again = x.reconcile_blocking(&d).unwrap();
    assert_eq!((again.applied.len(), again.failed.len()), (0, 1));
}

#[test]
fn serial_invalid_desired_state_is_rejected_before_touching_the_kernel() {
    let _serial = preflight_or_skip!(false);
    let net = network("n1", VNI, 22);
    let mut lab = Lab::new("invalid", 'l', 1);
    let c1 = lab.container("c1");
    let mut e = common::endpoint("ep1", &net, &c1, 1);
    e.ip = Ipv4Addr::new(10, 99, 0, 2);
    let x = lab.executor(1);
    let d = Desired {
        networks: vec![net],
        endpoints: vec![e],
        peers: vec![],
    };
    let err = x.reconcile_blocking(&d).unwrap_err().to_string();
    assert!(err.contains("endpoint \"ep1\""), "{err}");
    assert!(!must(&["ip", "netns", "list"]).contains(&lab.sandbox(1, VNI)));
}
