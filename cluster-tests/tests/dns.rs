//! Tier-4 DNS test: three real agents; a container on host 1 whose resolv.conf the agent
//! wrote (`/etc/netns/<ns>/resolv.conf`, which `ip netns exec` bind-mounts) resolves, with
//! glibc (`getent hosts`) and `dig`, containers on other hosts, aliases, services, `tasks.`,
//! PTR records; forwarding goes to a dnsmasq the test runs on host 1's namespace (the
//! agents' configured upstream), and SERVFAIL comes back quickly once it is killed.
//!
//! Needs root, the lab tools, `dig` and `dnsmasq` (installed if missing); otherwise it
//! prints "skipped: <reason>". Named `serial_*`: nextest runs it alone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cluster_tests::harness::cluster;
use lab::testbed::{AgentCluster, Container};
use lab::{ensure_tools, netns_resolv_conf};

const PROPAGATION: Duration = Duration::from_secs(10);

/// `dig +short` answers (one per line), via the container's resolver.
fn dig(c: &AgentCluster, from: &Container, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["dig", "@127.0.0.11", "+short", "+time=2", "+tries=1"];
    cmd.extend_from_slice(args);
    let out = c.lab.exec(&from.netns, &cmd).expect("dig runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect()
}

/// The status word of a full `dig` answer (NOERROR, NXDOMAIN, SERVFAIL...).
fn dig_status(c: &AgentCluster, from: &Container, args: &[&str]) -> (String, String) {
    let mut cmd = vec!["dig", "@127.0.0.11", "+time=5", "+tries=1"];
    cmd.extend_from_slice(args);
    let out = c.lab.exec(&from.netns, &cmd).expect("dig runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_string();
    (status, text)
}

fn getent(c: &AgentCluster, from: &Container, name: &str) -> Option<Ipv4Addr> {
    let out = c
        .lab
        .exec(&from.netns, &["getent", "hosts", name])
        .expect("getent runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

#[test]
fn serial_containers_resolve_peers_services_tasks_and_ptr_and_upstream_failures_give_servfail() {
    let mut c = match cluster("dns", None) {
        Some(c) => c,
        None => return,
    };
    if let Err(e) = ensure_tools(&["dig", "dnsmasq"]) {
        println!("skipped: {e:#}");
        return;
    }
    c.create_network(0, "blue", &[]).expect("network create");
    let web = c
        .cli_json(
            0,
            &[
                "service",
                "create",
                "web",
                "--network",
                "blue",
                "--port",
                "80",
                "--alias",
                "www",
            ],
        )
        .expect("service web");
    let vip = web["vips"][0]["vip"].as_str().expect("VIP").to_string();
    c.cli_json(
        1,
        &[
            "service",
            "create",
            "rr",
            "--network",
            "blue",
            "--mode",
            "dnsrr",
        ],
    )
    .expect("service rr");

    // The upstream: dnsmasq on host 1's underlay address (the agents' --dns-upstream).
    let h0 = c.hosts[0].addr.to_string();
    let h0_ns = c.hosts[0].netns.clone();
    let upstream = c
        .lab
        .spawn(
            &h0_ns,
            &[
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={h0}"),
                "--port=53",
                "--pid-file=",
                "--user=root",
                "--address=/upstream.test/203.0.113.7",
            ],
        )
        .expect("dnsmasq");

    let client_ns = c.lab.container_path(0, "client");
    let rc = netns_resolv_conf(&client_ns).expect("resolv.conf dir");
    let rc_s = rc.display().to_string();
    let client = c
        .attach_with(
            0,
            "blue",
            "client",
            &["--resolv-conf", &rc_s, "--dns-search", "blue"],
        )
        .expect("attach client");
    let written = std::fs::read_to_string(&rc).expect("the agent wrote resolv.conf");
    println!("resolv.conf written by the agent:\n{written}");
    assert!(written.contains("nameserver 127.0.0.11"), "{written}");

    let x3 = c
        .attach_with(2, "blue", "x3", &["--alias", "db"])
        .expect("attach x3");
    let mut tasks_web = BTreeSet::new();
    for (h, n) in [(1, "web1"), (2, "web2")] {
        let b = c
            .attach_with(h, "blue", n, &["--service", "web"])
            .expect("attach web");
        tasks_web.insert(b.ip.to_string());
    }
    let mut tasks_rr = BTreeSet::new();
    let mut web1 = None;
    for (h, n) in [(0, "rr1"), (1, "rr2")] {
        let b = c
            .attach_with(h, "blue", n, &["--service", "rr"])
            .expect("attach rr");
        tasks_rr.insert(b.ip.to_string());
        if n == "rr1" {
            web1 = Some(b);
        }
    }
    let rr1 = web1.expect("rr1");

    let t0 = Instant::now();
    c.wait_until(PROPAGATION, "every name resolves from host 1", || {
        Ok(dig(&c, &client, &["x3"]) == vec![x3.ip.to_string()]
            && set(&dig(&c, &client, &["tasks.web"])) == tasks_web
            && set(&dig(&c, &client, &["rr"])) == tasks_rr)
    })
    .expect("names resolve");
    println!(
        "all names resolvable {:?} after the last attach",
        t0.elapsed()
    );

    // glibc, through the resolv.conf the agent wrote.
    assert_eq!(getent(&c, &client, "x3"), Some(x3.ip), "getent hosts x3");
    assert_eq!(
        getent(&c, &client, "db"),
        Some(x3.ip),
        "getent hosts db (alias)"
    );
    assert_eq!(
        getent(&c, &client, "x3.blue"),
        Some(x3.ip),
        "getent hosts x3.blue"
    );
    assert_eq!(
        getent(&c, &client, "web").map(|i| i.to_string()),
        Some(vip.clone()),
        "getent hosts web (VIP)"
    );
    assert_eq!(getent(&c, &client, "nosuch"), None);

    // dig: names, aliases, services, tasks, TCP, AAAA, PTR.
    assert_eq!(dig(&c, &client, &["db"]), vec![x3.ip.to_string()]);
    assert_eq!(dig(&c, &client, &["web"]), vec![vip.clone()]);
    assert_eq!(dig(&c, &client, &["www"]), vec![vip.clone()]);
    assert_eq!(set(&dig(&c, &client, &["tasks.web"])), tasks_web);
    assert_eq!(
        set(&dig(&c, &client, &["rr"])),
        tasks_rr,
        "dnsrr: the backends"
    );
    assert_eq!(
        dig(&c, &client, &["+tcp", "x3"]),
        vec![x3.ip.to_string()],
        "over TCP"
    );
    let (st, text) = dig_status(&c, &client, &["AAAA", "x3"]);
    assert!(
        st == "NOERROR" && text.contains("ANSWER: 0"),
        "AAAA of an internal name: {text}"
    );
    let ptr = dig(&c, &client, &["-x", &x3.ip.to_string()]);
    assert!(
        ptr.iter().any(|p| p.starts_with("x3")),
        "PTR of x3: {ptr:?}"
    );
    let ptr = dig(&c, &client, &["-x", &vip]);
    assert!(
        ptr.iter().any(|p| p.starts_with("web")),
        "PTR of the VIP: {ptr:?}"
    );

    // Draining leaves tasks. / dnsrr answers.
    c.cli_ok(0, &["endpoint", "disable", "rr1"])
        .expect("disable");
    c.wait_until(
        PROPAGATION,
        "a drained backend leaves the dnsrr answer",
        || Ok(!dig(&c, &client, &["rr"]).contains(&rr1.ip.to_string())),
    )
    .expect("drain");

    // A detached endpoint stops resolving within a second.
    c.detach(&x3).expect("detach x3");
    let t0 = Instant::now();
    let took = c
        .wait_until(Duration::from_secs(5), "x3 stops resolving", || {
            Ok(dig(&c, &client, &["x3"]).is_empty())
        })
        .expect("x3 gone");
    println!("x3 detached: stops resolving after {:?}", t0.elapsed());
    assert!(
        took < Duration::from_secs(1),
        "x3 resolved for {took:?} after its detach"
    );
    // (Now not internal, x3 is forwarded; this upstream refuses it, so SERVFAIL.)

    // Forwarding, then the upstream dies: SERVFAIL, quickly.
    c.wait_until(
        Duration::from_secs(5),
        "the upstream name is forwarded",
        || Ok(dig(&c, &client, &["upstream.test"]) == vec!["203.0.113.7".to_string()]),
    )
    .expect("forwarding");
    assert_eq!(
        getent(&c, &client, "upstream.test"),
        Some(Ipv4Addr::new(203, 0, 113, 7))
    );
    upstream.kill().expect("kill dnsmasq");
    let t0 = Instant::now();
    let (st, text) = dig_status(&c, &client, &["upstream.test"]);
    let took = t0.elapsed();
    println!("upstream killed: {st} in {took:?}");
    assert_eq!(st, "SERVFAIL", "{text}");
    assert!(took < Duration::from_secs(4), "SERVFAIL took {took:?}");

    // Detaching the client removes the resolv.conf the agent wrote.
    c.detach(&client).expect("detach client");
    assert!(!rc.exists(), "{} left behind after detach", rc.display());
}
