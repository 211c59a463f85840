//! Kernel tests of the published-port mesh's executors in network namespaces made here
//! (`mkt-<pid>-<tag>`): the host table (created, adopted by a fresh executor, repaired after
//! hand edits, changed incrementally, removed), a backend container (marks, policy routing,
//! sysctls; repaired; removed) and the detection of another table's forward drop (iptables).
//! No traffic: the cluster tests (`cluster-tests/tests/published.rs`) carry it.
//!
//! Named `serial_*`; each checks that it can run (root, ip, nft; iptables for the last) and
//! otherwise prints "skipped: <reason>". Namespaces are removed on drop, also on panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agent::mesh::backend::{self, BackendMesh, ContainerSpec, IfaceSpec, mark_of, slot_of};
use agent::mesh::host::{HostMesh, read};
use agent::mesh::host_plan::{self, HostSpec};
use agent::mesh::{PortSpec, firewall};
use agent::records::Protocol;
use nix::sched::{CloneFlags, setns};

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn preflight(tools: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for tool in tools {
        if lab::find_tool(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

macro_rules! skip_unless {
    ($($tool:expr),*) => {
        if let Some(why) = preflight(&[$($tool),*]) {
            println!("skipped: {why}");
            return;
        }
    };
}

/// A namespace, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("mkt-{}-{tag}", std::process::id());
        ok(&["ip", "netns", "add", &name]);
        ok(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Ns(name)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.0))
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.0];
        all.extend_from_slice(args);
        ok(&all)
    }

    /// Runs `f` on a thread inside the namespace (as the agent's threads are in its host's).
    fn within<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = File::open(self.path()).expect("open netns");
        std::thread::scope(|s| {
            s.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("thread")
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.0]);
    }
}

fn spec() -> HostSpec {
    let ip = |l: u8| Ipv4Addr::new(10, 9, 0, l);
    HostSpec {
        ports: BTreeMap::from([
            (
                (Protocol::Tcp, 8080),
                PortSpec {
                    protocol: Protocol::Tcp,
                    port: 8080,
                    target: 80,
                    backends: vec![ip(3), ip(4)],
                },
            ),
            (
                (Protocol::Udp, 5353),
                PortSpec {
                    protocol: Protocol::Udp,
                    port: 5353,
                    target: 53,
                    backends: vec![],
                },
            ),
        ]),
        ingress: BTreeSet::from(["swni001000".to_string()]),
        snat: BTreeSet::from([ip(4)]),
        members: BTreeSet::from([(Protocol::Tcp, 8080, ip(3)), (Protocol::Tcp, 8080, ip(4))]),
        idle_timeout: 432_000,
        ..HostSpec::default()
    }
}

const LEASE: Option<Duration> = Some(Duration::from_secs(30));

#[test]
fn serial_the_host_table_is_created_adopted_repaired_changed_and_removed() {
    skip_unless!("ip", "nft");
    let ns = Ns::new("host");
    let s = spec();
    ns.within(|| {
        let mesh = HostMesh::new();
        let first = mesh.program(s.clone(), LEASE).expect("create");
        assert!(first.changes > 0 && first.lease_until > 0, "{first:?}");
        // What the kernel lists is what was planned: nothing left to do.
        let actual = read().expect("read").expect("table");
        assert!(actual.skeleton.is_some(), "{actual:?}");
        let mut again = s.clone();
        again.lease_until = first.lease_until;
        let p = host_plan::plan(&again, Some(&actual));
        assert_eq!(p.script, "", "the listing parses back to what was written");
        // A restarted agent (a fresh executor) adopts it as it is.
        let adopt = HostMesh::new().program(s.clone(), LEASE).expect("adopt");
        assert_eq!(adopt.changes, 0, "{adopt:?}");
        assert_eq!(adopt.lease_until, first.lease_until);
    });
    // Hand edits: a port chain emptied, a rule added to a guard chain.
    ns.exec(&["nft", "flush", "chain", "ip", "swarmnet_mesh", "p_t8080"]);
    ns.exec(&[
        "nft",
        "add",
        "rule",
        "ip",
        "swarmnet_mesh",
        "forward",
        "counter",
        "accept",
    ]);
    ns.within(|| {
        let mesh = HostMesh::new();
        let fix = mesh.program(s.clone(), LEASE).expect("repair");
        assert_eq!(
            fix.changes, 2,
            "the port chain and the forward chain: {fix:?}"
        );
        assert_eq!(mesh.program(s.clone(), LEASE).expect("again").changes, 0);
        // One backend leaves: its chain and its member only.
        let mut next = s.clone();
        next.ports
            .get_mut(&(Protocol::Tcp, 8080))
            .expect("port")
            .backends
            .pop();
        next.members
            .remove(&(Protocol::Tcp, 8080, Ipv4Addr::new(10, 9, 0, 4)));
        let r = mesh.program(next, LEASE).expect("change");
        assert_eq!(r.changes, 2, "{r:?}");
    });
    let listing = ns.exec(&["nft", "list", "table", "ip", "swarmnet_mesh"]);
    println!("{listing}");
    assert!(
        listing.contains(
            "dnat ip to jhash ip saddr . tcp sport mod 1 seed 0x00005353 map { 0 : 10.9.0.3 . 80 }"
        ) || listing.contains(
            "dnat ip to jhash ip saddr . tcp sport mod 1 seed 0x5353 map { 0 : 10.9.0.3 . 80 }"
        ),
        "{listing}"
    );
    assert!(
        listing.contains("reject"),
        "a port without backends refuses: {listing}"
    );
    assert!(listing.contains("meta time <"), "the lease: {listing}");
    ns.within(|| {
        let r = HostMesh::new()
            .program(HostSpec::default(), LEASE)
            .expect("remove");
        assert_eq!(r.changes, 1);
        assert!(read().expect("read").is_none(), "the table is gone");
    });
}

#[test]
fn serial_a_backend_container_gets_marks_policy_routing_and_sysctls_and_loses_them_when_it_backs_nothing()
 {
    skip_unless!("ip", "nft");
    let ns = Ns::new("be");
    ns.exec(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    ns.exec(&["ip", "link", "set", "eth0p", "up"]);
    ns.exec(&["ip", "addr", "add", "10.9.0.5/24", "dev", "eth0"]);
    ns.exec(&["ip", "link", "set", "eth0", "up"]);
    if let Err(why) = ns.within(backend::egress_supported) {
        println!("skipped: {why}");
        return;
    }
    let slot = slot_of("eth0");
    let ingress = Ipv4Addr::new(10, 9, 0, 251);
    let mark = mark_of(slot, ingress);
    let spec = ContainerSpec {
        ifaces: vec![IfaceSpec {
            ifname: "eth0".into(),
            slot,
            ip: Ipv4Addr::new(10, 9, 0, 5),
            subnet: "10.9.0.0/24".parse().expect("subnet"),
            ingress: BTreeMap::from([([2, 0x42, 10, 9, 0, 251], mark)]),
            udp_ports: BTreeSet::from([53]),
        }],
    };
    let table = (backend::TABLE_BASE + u32::from(slot)).to_string();
    let mesh = BackendMesh::new();
    let hour = Duration::from_secs(3600);
    let r = mesh.program(&ns.path(), &spec, hour).expect("program");
    assert!(r.changes > 0);
    let nft = ns.exec(&["nft", "list", "ruleset"]);
    assert!(
        nft.contains("02:42:0a:09:00:fb") && nft.contains("hook egress device \"eth0\""),
        "{nft}"
    );
    let rules = ns.exec(&["ip", "rule", "show"]);
    println!("{rules}");
    assert_eq!(
        rules
            .matches(&format!(
                "fwmark {:#x}/0xffff0000 lookup {table}",
                mark & 0xffff_0000
            ))
            .count(),
        1,
        "{rules}"
    );
    assert!(
        rules.contains(&format!("ipproto udp sport 53 lookup {table}")),
        "{rules}"
    );
    let routes = ns.exec(&["ip", "route", "show", "table", &table]);
    assert!(
        routes.contains("default via 169.254.53.53 dev eth0") && routes.contains("onlink"),
        "{routes}"
    );
    assert!(routes.contains("10.9.0.0/24 dev eth0"), "{routes}");
    assert_eq!(
        ns.exec(&["cat", "/proc/sys/net/ipv4/tcp_fwmark_accept"])
            .trim(),
        "1"
    );
    assert_eq!(
        ns.exec(&["cat", "/proc/sys/net/ipv4/fwmark_reflect"])
            .trim(),
        "1"
    );
    // Unchanged and not due: nothing is done.
    assert_eq!(
        mesh.program(&ns.path(), &spec, hour)
            .expect("again")
            .changes,
        0
    );
    // A deleted rule and a flushed route are repaired when the repair is due, once.
    ns.exec(&["ip", "rule", "del", "pref", "5300"]);
    ns.exec(&["ip", "route", "flush", "table", &table]);
    let fix = mesh
        .program(&ns.path(), &spec, Duration::ZERO)
        .expect("repair");
    assert!(fix.changes >= 2, "{fix:?}");
    let rules = ns.exec(&["ip", "rule", "show"]);
    assert_eq!(
        rules.matches("lookup").count() - 3,
        2,
        "ours once each (+ local, main, default): {rules}"
    );
    assert!(
        ns.exec(&["ip", "route", "show", "table", &table])
            .contains("default via 169.254.53.53")
    );
    // A hand edit of the nft table is seen by its generation and rewritten.
    ns.exec(&["nft", "delete", "table", "netdev", "swarmnet_mesh"]);
    assert!(
        mesh.program(&ns.path(), &spec, hour)
            .expect("nft repair")
            .changes
            > 0
    );
    assert!(ns.exec(&["nft", "list", "ruleset"]).contains("hook egress"));
    // Backing nothing any more: everything goes.
    mesh.program(&ns.path(), &ContainerSpec::default(), hour)
        .expect("remove");
    let nft = ns.exec(&["nft", "list", "ruleset"]);
    assert!(!nft.contains("swarmnet_mesh"), "{nft}");
    let rules = ns.exec(&["ip", "rule", "show"]);
    assert!(
        !rules.contains("5300") && !rules.contains("5301"),
        "{rules}"
    );
    assert_eq!(
        ns.exec(&["ip", "route", "show", "table", &table]).trim(),
        ""
    );
}

#[test]
fn serial_an_iptables_forward_drop_is_found_and_accepted_on_request() {
    skip_unless!("ip", "nft", "iptables");
    let ns = Ns::new("fw");
    assert!(ns.within(firewall::scan).expect("scan").is_empty());
    ns.exec(&["iptables", "-w", "-P", "FORWARD", "DROP"]);
    let found = ns.within(firewall::scan).expect("scan");
    println!("{found:?}");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].is_iptables(), "{found:?}");
    assert!(found[0].describe().contains("policy of chain FORWARD"));
    assert_eq!(
        ns.within(firewall::accept_in_iptables).expect("accept"),
        "FORWARD"
    );
    assert_eq!(
        ns.within(firewall::accept_in_iptables).expect("idempotent"),
        "FORWARD"
    );
    let rules = ns.exec(&["iptables", "-w", "-S", "FORWARD"]);
    assert_eq!(rules.matches("ACCEPT").count(), 1, "{rules}");
    assert!(
        ns.within(firewall::scan).expect("scan").is_empty(),
        "accepted now"
    );
    // A native table dropping by policy is reported, never edited.
    ns.exec(&[
        "nft",
        "add table inet fwlike; add chain inet fwlike filter_fwd { type filter hook forward priority 0; policy drop; }",
    ]);
    let found = ns.within(firewall::scan).expect("scan");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].family.as_str(), found[0].table.as_str()),
        ("inet", "fwlike")
    );
}
