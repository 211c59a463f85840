//! Tier-4 test of the promise that nothing an operator created vanishes because a host died:
//! three real agents; network `blue` created through host 2, service `api` through host 3,
//! backends on every host, a client on host 1 using the embedded DNS. Host 3's agent is
//! killed (`kill -9`): for three failure-detection times the others keep listing both,
//! resolving and balancing `api` over the surviving backends, and attaching to `blue`. It
//! comes back: nothing duplicated or lost. Killed again and left down until the others reap
//! it (`--node-reap-secs` shortened): the definitions stay, and the address block that held
//! the VIP is handed out again without the VIP. It comes back once more.
//!
//! Needs root and the lab tools; otherwise prints "skipped: <reason>".

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cluster_tests::harness::cluster_with;
use lab::testbed::{AgentCluster, Container};
use lab::{LabProcess, ensure_tools, netns_resolv_conf};
use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_probe");
/// foca's failure detection is ~3 s: what must hold while the creator is down is checked for
/// three times that.
const DOWN_WATCH: Duration = Duration::from_secs(10);
const NODE_REAP_SECS: &str = "15";
/// Generous bound of gossip and reconcile after a change.
const PROPAGATION: Duration = Duration::from_secs(20);
/// Generous bound of failure detection, node_reap and a reap pass.
const REAP_BOUND: Duration = Duration::from_secs(45);

fn serve(c: &mut AgentCluster, ct: &Container) -> LabProcess {
    let p = c
        .lab
        .spawn(
            &ct.netns,
            &[PROBE, "serve", "--name", &ct.name, "--tcp", "8080"],
        )
        .expect("probe serve");
    let t0 = Instant::now();
    while !p.log().contains("serving") && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// Names listed by `swarmnet <what> ls` on host `h` (a name listed twice shows twice).
fn listed(c: &AgentCluster, h: usize, what: &str) -> Vec<String> {
    let v = c.cli_json(h, &[what, "ls"]).expect("ls");
    let mut names: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn vip_of(c: &AgentCluster, h: usize, service: &str) -> Option<Ipv4Addr> {
    let v = c.cli_json(h, &["service", "inspect", service]).ok()?;
    v["vips"][0]["vip"].as_str()?.parse().ok()
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

/// `curl http://<name>/` from `from`: the answering backend's name.
fn curl(c: &AgentCluster, from: &Container, name: &str) -> Option<String> {
    let url = format!("http://{name}/");
    let out = c
        .lab
        .exec(&from.netns, &["curl", "-s", "--max-time", "2", &url])
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && !text.is_empty())
        .then(|| text.split_whitespace().next().unwrap_or("").to_string())
}

/// Backend names answering 30 short connections to the VIP (with the failure count).
fn spread(c: &AgentCluster, from: &Container, vip: Ipv4Addr) -> (BTreeMap<String, u64>, u64) {
    let vip = vip.to_string();
    let out = c
        .lab
        .exec_ok(
            &from.netns,
            &[
                PROBE,
                "http",
                &vip,
                "80",
                "--count",
                "30",
                "--timeout-ms",
                "1000",
            ],
        )
        .expect("probe");
    let v: Value = serde_json::from_str(out.trim()).expect("probe prints JSON");
    let by_name = v["by_name"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    (by_name, v["failed"].as_u64().unwrap_or(0))
}

fn wait_backends(c: &AgentCluster, from: &Container, vip: Ipv4Addr, names: &[&str]) {
    let mut last = None;
    c.wait_until(
        PROPAGATION,
        "the VIP reaches exactly the expected backends",
        || {
            let (by_name, failed) = spread(c, from, vip);
            let got: Vec<&str> = by_name.keys().map(String::as_str).collect();
            let ok = failed == 0 && got == names;
            last = Some((by_name.clone(), failed));
            Ok(ok)
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}; last: {last:?}"));
}

/// What the survivors must show while the creator is down (and after it returns).
fn check_definitions(c: &AgentCluster, hosts: &[usize], vip: Ipv4Addr, client: &Container) {
    for &h in hosts {
        assert_eq!(
            listed(c, h, "network"),
            ["blue"],
            "network ls on host {}",
            h + 1
        );
        assert_eq!(
            listed(c, h, "service"),
            ["api"],
            "service ls on host {}",
            h + 1
        );
        assert_eq!(vip_of(c, h, "api"), Some(vip), "the VIP on host {}", h + 1);
    }
    assert_eq!(getent(c, client, "api"), Some(vip), "getent hosts api");
    let answer = curl(c, client, "api");
    assert!(
        answer.as_deref().is_some_and(|n| n.starts_with("web")),
        "curl http://api/ answered {answer:?}"
    );
}

fn wait_reaped(c: &AgentCluster, vip: Ipv4Addr, client: &Container) -> Duration {
    let t0 = Instant::now();
    loop {
        check_definitions(c, &[0, 1], vip, client);
        let dump: Value =
            serde_json::from_str(&c.cli_ok(0, &["debug", "dump"]).expect("dump")).expect("json");
        if dump["stats"]["core"]["nodes_reaped"].as_u64().unwrap_or(0) > 0 {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < REAP_BOUND,
            "host 3 was never reaped on host 1"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn block_of(ip: Ipv4Addr) -> u32 {
    u32::from(ip) & !7
}

#[test]
fn serial_a_network_and_a_service_outlive_the_agent_that_created_them() {
    let Some(mut c) = cluster_with("durable", |o| {
        o.agent_args.extend(
            [
                "--node-reap-secs",
                NODE_REAP_SECS,
                // Four blocks of 8 addresses in a /27: few enough that the block holding the
                // VIP is handed out again once its holder is reaped.
                "--block-prefix",
                "29",
            ]
            .map(String::from),
        );
    }) else {
        return;
    };
    ensure_tools(&["curl", "getent"]).expect("curl and getent");
    c.create_network(1, "blue", &["--subnet", "10.200.0.0/27"])
        .expect("network create through host 2");
    let v = c
        .cli_json(
            2,
            &[
                "service",
                "create",
                "api",
                "--network",
                "blue",
                "--port",
                "80:8080/tcp",
            ],
        )
        .expect("service create through host 3");
    let vip: Ipv4Addr = v["vips"][0]["vip"].as_str().unwrap().parse().unwrap();
    println!("service api: VIP {vip}, created through host 3");
    let mut servers = Vec::new();
    for h in 0..3 {
        let b = c
            .attach_with(h, "blue", &format!("web{}", h + 1), &["--service", "api"])
            .expect("attach backend");
        servers.push(serve(&mut c, &b));
    }
    let rc = netns_resolv_conf(&c.lab.container_path(0, "client")).expect("resolv.conf dir");
    let rc = rc.display().to_string();
    let client = c
        .attach_with(0, "blue", "client", &["--resolv-conf", &rc])
        .expect("attach client");
    wait_backends(&c, &client, vip, &["web1", "web2", "web3"]);
    check_definitions(&c, &[0, 1, 2], vip, &client);

    // 1. The creator of the service dies.
    c.kill_agent(2).expect("kill -9 host 3's agent");
    let killed = Instant::now();
    wait_backends(&c, &client, vip, &["web1", "web2"]);
    println!(
        "host 3's backend left the rotation {:?} after the kill",
        killed.elapsed()
    );
    let late = c
        .attach(0, "blue", "late1")
        .expect("a new attach while the creator is down");
    assert!(c.ping(&client, late.ip, 2), "the new container answers");
    while killed.elapsed() < DOWN_WATCH {
        check_definitions(&c, &[0, 1], vip, &client);
        std::thread::sleep(Duration::from_millis(500));
    }
    let members = c.members(0).expect("members");
    assert!(
        members.iter().any(|m| m.name == "host3" && !m.up),
        "cluster members names the down host: {members:?}"
    );
    c.start_agent(2).expect("restart host 3's agent");
    wait_backends(&c, &client, vip, &["web1", "web2", "web3"]);
    check_definitions(&c, &[0, 1, 2], vip, &client);
    println!("after host 3 came back: nothing duplicated or lost");

    // 2. Killed again and reaped by the others.
    c.kill_agent(2).expect("kill -9 host 3's agent");
    let reaped = wait_reaped(&c, vip, &client);
    println!("host 3 reaped {reaped:?} after the kill (node_reap {NODE_REAP_SECS} s)");
    wait_backends(&c, &client, vip, &["web1", "web2"]);
    check_definitions(&c, &[0, 1], vip, &client);
    // Host 1 takes every free address, the reaped block included: never the VIP.
    let mut extra = Vec::new();
    let exhausted = loop {
        let name = format!("x{}", extra.len() + 1);
        let ns = c.lab.add_container(0, &name).expect("namespace");
        let path = ns.display().to_string();
        let out = c
            .cli(
                0,
                &[
                    "endpoint", "attach", "blue", "--netns", &path, "--name", &name,
                ],
            )
            .expect("cli");
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).to_string();
        }
        let ep = c
            .cli_json(0, &["endpoint", "ls", "--network", "blue"])
            .expect("endpoint ls");
        let ip: Ipv4Addr = ep
            .as_array()
            .and_then(|a| a.iter().find(|e| e["name"] == name.as_str()))
            .and_then(|e| e["ip"].as_str())
            .and_then(|s| s.split('/').next()?.parse().ok())
            .expect("attached endpoint ip");
        assert_ne!(ip, vip, "the VIP was handed out to {name}");
        extra.push((name, ip));
        assert!(extra.len() < 32, "a /27 cannot hold that many");
    };
    println!(
        "host 1 attached {} more: {extra:?}; then: {}",
        extra.len(),
        exhausted.trim()
    );
    assert!(exhausted.contains("no free address"), "{exhausted}");
    assert!(
        extra.iter().any(|(_, ip)| block_of(*ip) == block_of(vip)),
        "the reaped block holding the VIP was handed out again: {extra:?}"
    );
    for (name, _) in &extra {
        c.cli_ok(0, &["endpoint", "detach", name]).expect("detach");
    }
    c.start_agent(2).expect("restart host 3's agent");
    wait_backends(&c, &client, vip, &["web1", "web2", "web3"]);
    check_definitions(&c, &[0, 1, 2], vip, &client);
    println!("after the reaped host 3 came back: nothing duplicated or lost");
    drop(servers);
}
