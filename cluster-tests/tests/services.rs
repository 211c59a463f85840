//! Tier-4 service tests: three real agents, backends on every host serving TCP and UDP with
//! the `probe` binary, clients in containers reaching the VIP. The balancer is the agents'
//! choice (nftables on the CI kernel); with `SWARMNET_TEST_LB=ipvs` every agent runs
//! `--lb ipvs`: `vm_services.rs` runs these tests that way inside a kernel VM.
//!
//! Every test needs root and the lab tools (installed if missing); otherwise it prints
//! "skipped: <reason>" and passes. Named `serial_*`: nextest runs them one at a time.
//! Timings are printed; only generous bounds are asserted.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use cluster_tests::harness::cluster;
use lab::LabProcess;
use lab::testbed::{AgentCluster, Container};
use serde_json::Value;

/// Gossip of a change to every container's balancer: generous.
const PROPAGATION: Duration = Duration::from_secs(10);
/// Failure detection plus one reconcile: generous.
const FAILURE_BOUND: Duration = Duration::from_secs(15);

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

macro_rules! cluster_or_skip {
    ($name:expr) => {
        match cluster($name, None) {
            Some(c) => c,
            None => return,
        }
    };
}

/// A `probe serve` in the container: TCP 8080 and UDP 5353.
fn serve(c: &mut AgentCluster, ct: &Container) -> LabProcess {
    let p = c
        .lab
        .spawn(
            &ct.netns,
            &[
                PROBE, "serve", "--name", &ct.name, "--tcp", "8080", "--udp", "5353",
            ],
        )
        .expect("probe serve");
    let t0 = Instant::now();
    while !p.log().contains("serving") && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// Answers per backend name, failures, and client addresses seen.
#[derive(Debug)]
struct Tally {
    ok: u64,
    failed: u64,
    by_name: BTreeMap<String, u64>,
    peers: BTreeMap<String, u64>,
    raw: Value,
}

fn tally(v: Value) -> Tally {
    let map = |k: &str| -> BTreeMap<String, u64> {
        v.get(k)
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    Tally {
        ok: v.get("ok").and_then(Value::as_u64).unwrap_or(0),
        failed: v.get("failed").and_then(Value::as_u64).unwrap_or(0),
        by_name: map("by_name"),
        peers: map("peers"),
        raw: v,
    }
}

fn probe(c: &AgentCluster, from: &Container, args: &[&str]) -> Tally {
    let mut cmd = vec![PROBE];
    cmd.extend_from_slice(args);
    let out = c.lab.exec_ok(&from.netns, &cmd).expect("probe runs");
    tally(serde_json::from_str(out.trim()).expect("probe prints JSON"))
}

fn http(c: &AgentCluster, from: &Container, vip: Ipv4Addr, count: usize) -> Tally {
    let (vip, count) = (vip.to_string(), count.to_string());
    probe(
        c,
        from,
        &[
            "http",
            &vip,
            "80",
            "--count",
            &count,
            "--timeout-ms",
            "1000",
        ],
    )
}

/// The service's VIP on its first network.
fn create_service(c: &AgentCluster, host: usize, name: &str, extra: &[&str]) -> Ipv4Addr {
    let mut args = vec!["service", "create", name, "--network", "blue"];
    args.extend_from_slice(extra);
    let v = c.cli_json(host, &args).expect("service create");
    v["vips"][0]["vip"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no VIP in {v}"))
}

/// Until `from` gets answers from exactly `names` (and no failures) over 30 requests.
fn wait_backends(
    c: &AgentCluster,
    from: &Container,
    vip: Ipv4Addr,
    names: &[&str],
    within: Duration,
) -> Duration {
    let mut last = None;
    c.wait_until(
        within,
        "the VIP reaches exactly the expected backends",
        || {
            let t = http(c, from, vip, 30);
            let got: Vec<&str> = t.by_name.keys().map(String::as_str).collect();
            let done = t.failed == 0 && got == names;
            last = Some(t);
            Ok(done)
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}; last: {last:?}"))
}

fn setup(c: &mut AgentCluster) -> (Ipv4Addr, Vec<Container>, Container, Vec<LabProcess>) {
    c.create_network(0, "blue", &[]).expect("network create");
    let vip = create_service(
        c,
        0,
        "web",
        &["--port", "80:8080/tcp", "--port", "53:5353/udp"],
    );
    println!("service web: VIP {vip}");
    let mut backends = Vec::new();
    let mut servers = Vec::new();
    for h in 0..3 {
        let b = c
            .attach_with(h, "blue", &format!("web{}", h + 1), &["--service", "web"])
            .expect("attach backend");
        servers.push(serve(c, &b));
        backends.push(b);
    }
    let client = c.attach(0, "blue", "client").expect("attach client");
    let t = wait_backends(c, &client, vip, &["web1", "web2", "web3"], PROPAGATION);
    println!("client reaches all 3 backends through the VIP {t:?} after the last attach");
    (vip, backends, client, servers)
}

#[test]
fn serial_a_vip_balances_tcp_and_udp_over_three_hosts_keeps_the_client_ip_and_answers_ping() {
    let mut c = cluster_or_skip!("svc-bal");
    let (vip, _backends, client, _servers) = setup(&mut c);

    let t = http(&c, &client, vip, 200);
    println!("200 requests: {}", t.raw);
    assert_eq!((t.ok, t.failed), (200, 0), "{t:?}");
    for name in ["web1", "web2", "web3"] {
        let n = t.by_name.get(name).copied().unwrap_or(0);
        assert!(n >= 40, "{name} got {n} of 200 (< 20%): {t:?}");
    }
    let client_ip = client.ip.to_string();
    assert_eq!(
        t.peers.keys().collect::<Vec<_>>(),
        vec![&client_ip],
        "backends must see the client's own address"
    );

    let vip_s = vip.to_string();
    let u = probe(
        &c,
        &client,
        &["udp", &vip_s, "53", "--count", "60", "--fresh"],
    );
    println!("60 UDP datagrams from fresh sockets: {}", u.raw);
    assert_eq!((u.ok, u.failed), (60, 0), "{u:?}");
    assert_eq!(u.by_name.len(), 3, "UDP flows reach every backend: {u:?}");
    assert_eq!(u.peers.keys().collect::<Vec<_>>(), vec![&client_ip]);

    assert!(c.ping(&client, vip, 3), "ping to the VIP {vip}");

    // A second client on another host balances too (its own namespace's rules).
    let other = c.attach(2, "blue", "client2").expect("attach client2");
    wait_backends(&c, &other, vip, &["web1", "web2", "web3"], PROPAGATION);
    let status = c.cli_ok(0, &["cluster", "status"]).expect("status");
    assert!(status.contains("Load balancer:"), "{status}");
    if let Some(lb) = cluster_tests::harness::test_lb().filter(|lb| lb != "auto") {
        let chosen = status
            .lines()
            .find_map(|l| l.split("Load balancer:").nth(1))
            .unwrap_or_default()
            .trim();
        assert!(chosen.starts_with(&lb), "want the {lb} balancer: {chosen}");
    }
    println!("{status}");
}

#[test]
fn serial_draining_keeps_open_connections_and_removal_or_a_dead_host_takes_backends_out() {
    let mut c = cluster_or_skip!("svc-drain");
    let (vip, backends, client, _servers) = setup(&mut c);
    let vip_s = vip.to_string();

    // A long-lived connection, then drain the backend it landed on.
    let hold = c
        .lab
        .spawn(
            &client.netns,
            &[
                PROBE,
                "hold",
                &vip_s,
                "80",
                "--secs",
                "20",
                "--interval-ms",
                "100",
            ],
        )
        .expect("probe hold");
    let mut pinned = String::new();
    c.wait_until(
        Duration::from_secs(5),
        "the held connection answers",
        || {
            pinned = hold
                .log()
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_default()
                .to_string();
            Ok(!pinned.is_empty())
        },
    )
    .expect("held connection");
    let drained = backends
        .iter()
        .find(|b| b.name == pinned)
        .unwrap_or_else(|| panic!("held connection answered by {pinned:?}"))
        .clone();
    let lines_before = hold.log().lines().count();
    let t0 = Instant::now();
    let out = c
        .cli_ok(drained.host, &["endpoint", "disable", &drained.name])
        .expect("endpoint disable");
    assert!(out.contains("draining"), "{out}");
    let others: Vec<&str> = ["web1", "web2", "web3"]
        .into_iter()
        .filter(|n| *n != drained.name)
        .collect();
    let took = wait_backends(&c, &client, vip, &others, PROPAGATION);
    println!(
        "{} drained: out of new connections in {:?} (wait {took:?})",
        drained.name,
        t0.elapsed()
    );
    let t = http(&c, &client, vip, 60);
    assert!(
        !t.by_name.contains_key(&drained.name) && t.failed == 0,
        "{t:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = hold.log();
    let after: Vec<&str> = log.lines().skip(lines_before).collect();
    assert!(
        after.len() >= 5 && after.iter().all(|l| l.contains(&drained.name)),
        "the held connection must keep being answered by {} after the drain: {log}",
        drained.name
    );
    println!(
        "held connection: {} more replies from {} after the drain",
        after.len(),
        drained.name
    );

    // Back into rotation.
    c.cli_ok(drained.host, &["endpoint", "enable", &drained.name])
        .expect("endpoint enable");
    wait_backends(&c, &client, vip, &["web1", "web2", "web3"], PROPAGATION);

    // Removal flushes conntrack: a UDP flow (fixed source port) pinned to a backend that
    // detaches moves to a live one at once instead of black-holing until the UDP timeout.
    let mut pinned_flow = None;
    for sport in 40000..40030u16 {
        let sp = sport.to_string();
        let u = probe(
            &c,
            &client,
            &["udp", &vip_s, "53", "--count", "1", "--sport", &sp],
        );
        if let Some(name) = u.by_name.keys().next()
            && name != "web1"
        {
            pinned_flow = Some((sp, name.clone()));
            break;
        }
    }
    let (sport, flow_backend) = pinned_flow.expect("a UDP flow on web2 or web3");
    let victim = backends
        .iter()
        .find(|b| b.name == flow_backend)
        .expect("backend")
        .clone();
    c.detach(&victim).expect("detach");
    let remaining: Vec<&str> = ["web1", "web2", "web3"]
        .into_iter()
        .filter(|n| *n != victim.name)
        .collect();
    wait_backends(&c, &client, vip, &remaining, PROPAGATION);
    let u = probe(
        &c,
        &client,
        &["udp", &vip_s, "53", "--count", "3", "--sport", &sport],
    );
    println!(
        "UDP flow on sport {sport} was on {}; after its detach: {}",
        victim.name, u.raw
    );
    assert_eq!(
        u.ok, 3,
        "the flow must re-balance after its backend left: {u:?}"
    );
    assert!(!u.by_name.contains_key(&victim.name), "{u:?}");

    // A dead host's backends leave every client's balancer within failure detection.
    let dead = backends
        .iter()
        .find(|b| b.host != 0 && b.name != victim.name)
        .expect("a backend on host 2 or 3 is still attached")
        .clone();
    let survivors: Vec<&str> = remaining
        .iter()
        .copied()
        .filter(|n| *n != dead.name)
        .collect();
    let t0 = Instant::now();
    c.kill_agent(dead.host).expect("kill agent");
    wait_backends(&c, &client, vip, &survivors, FAILURE_BOUND);
    println!(
        "host {}'s agent killed (kill -9): {} out of the client's VIP in {:?}",
        dead.host + 1,
        dead.name,
        t0.elapsed()
    );
}

#[test]
fn serial_a_service_without_ports_balances_every_port_and_a_deleted_service_stops_answering() {
    let mut c = cluster_or_skip!("svc-any");
    c.create_network(0, "blue", &[]).expect("network create");
    let vip = create_service(&c, 1, "any", &[]);
    let mut servers = Vec::new();
    for h in 0..2 {
        let b = c
            .attach_with(h, "blue", &format!("any{}", h + 1), &["--service", "any"])
            .expect("attach");
        servers.push(serve(&mut c, &b));
    }
    let client = c.attach(2, "blue", "client").expect("attach client");
    let vip_s = vip.to_string();
    c.wait_until(PROPAGATION, "port 8080 of the VIP answers", || {
        let t = probe(
            &c,
            &client,
            &[
                "http",
                &vip_s,
                "8080",
                "--count",
                "20",
                "--timeout-ms",
                "500",
            ],
        );
        Ok(t.failed == 0 && t.by_name.len() == 2)
    })
    .expect("any-port VIP");
    let u = probe(
        &c,
        &client,
        &["udp", &vip_s, "5353", "--count", "20", "--fresh"],
    );
    assert_eq!(u.ok, 20, "{u:?}");
    assert!(c.ping(&client, vip, 2), "ping to the any-port VIP");

    let inspect = c
        .cli_ok(0, &["service", "inspect", "any"])
        .expect("inspect");
    println!("{inspect}");
    c.cli_ok(0, &["service", "rm", "any"]).expect("service rm");
    c.wait_until(PROPAGATION, "the deleted VIP stops answering", || {
        let t = probe(
            &c,
            &client,
            &[
                "http",
                &vip_s,
                "8080",
                "--count",
                "1",
                "--timeout-ms",
                "300",
            ],
        );
        Ok(t.ok == 0)
    })
    .expect("deleted service");
    let ls = c.cli_ok(2, &["service", "ls"]).expect("service ls");
    assert!(!ls.contains("any"), "{ls}");
}
