//! Tier-4 tests of published ports (the routing mesh): three real agents, backends on the
//! hosts serving with the `probe` binary, and a real client in an outside namespace on the
//! underlay (as on the hosts' own network) connecting to the hosts' own addresses.
//!
//! Every test needs root and the lab tools (installed if missing); otherwise it prints
//! "skipped: <reason>" and passes. Named `serial_*`: nextest runs them one at a time.
//! Timings are printed, never asserted beyond generous bounds. Per the project's rule, each
//! feature's test kills the host that did the work (the agent that created the service).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_tests::harness::cluster_with;
use lab::LabProcess;
use lab::testbed::{AgentCluster, Container};
use serde_json::Value;

/// Gossip of a change, a reconcile on every host, a block claim: generous.
const PROPAGATION: Duration = Duration::from_secs(20);
/// Failure detection plus one reconcile: generous.
const FAILURE_BOUND: Duration = Duration::from_secs(20);
/// The agents' `--publish-lease-secs` in these tests.
const LEASE_SECS: u64 = 6;

const PROBE: &str = env!("CARGO_BIN_EXE_probe");

/// A 3-host cluster whose agents renew the published ports' lease every 2 s and serve
/// `/metrics` (and the published-port health) on 127.0.0.1:9323 of their host.
fn mesh_cluster(name: &str) -> Option<AgentCluster> {
    cluster_with(name, |o| {
        o.agent_args.extend(
            [
                "--publish-lease-secs",
                &LEASE_SECS.to_string(),
                "--metrics-addr",
                "9323",
            ]
            .map(String::from),
        );
    })
}

macro_rules! cluster_or_skip {
    ($name:expr) => {
        match mesh_cluster($name) {
            Some(c) => c,
            None => return,
        }
    };
}

/// The outside client: a namespace on the underlay bridge.
struct Client {
    netns: PathBuf,
    ip: Ipv4Addr,
}

fn client(c: &mut AgentCluster) -> Client {
    let (netns, ip) = c
        .lab
        .add_underlay_client("client", 200)
        .expect("client namespace");
    Client { netns, ip }
}

/// A `probe serve` in the container: TCP 80 and UDP 5353.
fn serve(c: &mut AgentCluster, ct: &Container) -> LabProcess {
    let p = c
        .lab
        .spawn(
            &ct.netns,
            &[
                PROBE, "serve", "--name", &ct.name, "--tcp", "80", "--udp", "5353",
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

fn probe(c: &AgentCluster, from: &Path, args: &[&str]) -> Tally {
    let mut cmd = vec![PROBE];
    cmd.extend_from_slice(args);
    let out = c.lab.exec_ok(from, &cmd).expect("probe runs");
    tally(serde_json::from_str(out.trim()).expect("probe prints JSON"))
}

/// `count` short HTTP connections from the client to `port` of host `h`.
fn http(c: &AgentCluster, cl: &Client, h: usize, port: u16, count: usize) -> Tally {
    let (addr, port, count) = (
        c.lab.host_addr(h).to_string(),
        port.to_string(),
        count.to_string(),
    );
    probe(
        c,
        &cl.netns,
        &[
            "http",
            &addr,
            &port,
            "--count",
            &count,
            "--timeout-ms",
            "1500",
        ],
    )
}

/// Until host `h`'s `port` answers the client from exactly `names`, every time, with the
/// client's own address (30 connections).
fn wait_answers(
    c: &AgentCluster,
    cl: &Client,
    h: usize,
    port: u16,
    names: &[&str],
    within: Duration,
) -> Duration {
    let mut last = None;
    let what = format!("host {}:{port} answers from exactly {names:?}", h + 1);
    c.wait_until(within, &what, || {
        let t = http(c, cl, h, port, 30);
        let got: Vec<&str> = t.by_name.keys().map(String::as_str).collect();
        let peers: Vec<&str> = t.peers.keys().map(String::as_str).collect();
        let done = t.failed == 0 && got == names && peers == [cl.ip.to_string().as_str()];
        last = Some(t);
        Ok(done)
    })
    .unwrap_or_else(|e| panic!("{e:#}; last: {last:?}"))
}

/// Until host `h`'s `port` refuses at once (connection refused, no answer).
fn wait_refused(c: &AgentCluster, cl: &Client, h: usize, port: u16, within: Duration) -> Duration {
    let mut last = None;
    let what = format!("host {}:{port} refuses", h + 1);
    c.wait_until(within, &what, || {
        let t = http(c, cl, h, port, 3);
        let refused = t.ok == 0
            && t.raw["errors"]
                .as_object()
                .is_some_and(|e| e.keys().all(|k| k.contains("refused")));
        last = Some(t);
        Ok(refused)
    })
    .unwrap_or_else(|e| panic!("{e:#}; last: {last:?}"))
}

/// Status code and body of `GET path` on host `h`'s metrics listener.
fn health(c: &AgentCluster, h: usize, path: &str) -> (u16, String) {
    let url = format!("http://127.0.0.1:9323{path}");
    let out = c
        .lab
        .exec(
            &c.lab.host_netns(h),
            &["curl", "-s", "-m", "2", "-w", "\n%{http_code}", &url],
        )
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn backends(
    c: &mut AgentCluster,
    service: &str,
    hosts: &[usize],
) -> (Vec<Container>, Vec<LabProcess>) {
    let mut cts = Vec::new();
    let mut servers = Vec::new();
    for &h in hosts {
        let b = c
            .attach_with(
                h,
                "blue",
                &format!("{service}{}", h + 1),
                &["--service", service],
            )
            .expect("attach backend");
        servers.push(serve(c, &b));
        cts.push(b);
    }
    (cts, servers)
}

#[test]
fn serial_a_published_port_answers_on_every_host_from_all_backends_with_the_client_address_and_outlives_its_creator()
 {
    let mut c = cluster_or_skip!("pub-mesh");
    lab::ensure_tools(&["curl"]).expect("curl");
    let cl = client(&mut c);
    c.create_network(0, "blue", &[]).expect("network create");
    let t0 = Instant::now();
    let v = c
        .cli_json(
            0,
            &[
                "service",
                "create",
                "web",
                "--network",
                "blue",
                "--publish",
                "8080:80/tcp",
                "--publish",
                "5353/udp",
            ],
        )
        .expect("service create");
    println!("service web: {v}");
    assert_eq!(v["published"][1]["published_port"], 5353, "{v}");
    let (_bs, _servers) = backends(&mut c, "web", &[0, 1, 2]);
    let names = ["web1", "web2", "web3"];
    for h in 0..3 {
        let took = wait_answers(&c, &cl, h, 8080, &names, PROPAGATION);
        println!(
            "host {}:8080 answers from web1-3 with the client's address {took:?} (since create {:?})",
            h + 1,
            t0.elapsed()
        );
    }
    for h in 0..3 {
        let t = http(&c, &cl, h, 8080, 60);
        println!("host {}:8080, 60 connections: {}", h + 1, t.raw);
        assert_eq!((t.ok, t.failed), (60, 0), "{t:?}");
        assert_eq!(
            t.by_name.len(),
            3,
            "every backend answers through every host: {t:?}"
        );
        assert_eq!(
            t.peers.keys().collect::<Vec<_>>(),
            vec![&cl.ip.to_string()],
            "backends must see the client's own address"
        );
    }
    // UDP: replies come back from the host the client sent to.
    for h in 0..3 {
        let addr = c.lab.host_addr(h).to_string();
        let u = probe(
            &c,
            &cl.netns,
            &["udp", &addr, "5353", "--count", "30", "--fresh"],
        );
        println!("host {}:5353/udp, 30 datagrams: {}", h + 1, u.raw);
        assert_eq!((u.ok, u.failed), (30, 0), "{u:?}");
        assert_eq!(
            u.peers.keys().collect::<Vec<_>>(),
            vec![&cl.ip.to_string()],
            "{u:?}"
        );
        assert!(u.by_name.len() >= 2, "UDP flows spread: {u:?}");
    }
    // The health endpoint of a mesh port and the per-node status in Inspect.
    let (code, body) = health(&c, 1, "/published/tcp/8080");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    let inspect = c
        .cli_ok(1, &["service", "inspect", "web"])
        .expect("inspect");
    println!("{inspect}");
    assert!(
        inspect.contains("Published:") && inspect.contains("8080:80/tcp (mesh)"),
        "{inspect}"
    );

    // Kill -9 the agent that created the service (and did the work): the definition and
    // the mesh live on; its host stops answering within the lease; the others drop its
    // backend within failure detection and keep answering from the others.
    let t0 = Instant::now();
    c.kill_agent(0).expect("kill the creator");
    let took = wait_refused(&c, &cl, 0, 8080, Duration::from_secs(LEASE_SECS * 3));
    println!(
        "host 1 (agent killed) refuses new connections {took:?} after the kill (lease {LEASE_SECS} s)"
    );
    for h in 1..3 {
        let took = wait_answers(&c, &cl, h, 8080, &["web2", "web3"], FAILURE_BOUND);
        println!(
            "host {}:8080 answers from web2 and web3 only, {took:?} after the kill ({:?})",
            h + 1,
            t0.elapsed()
        );
    }
    let ls = c.cli_ok(1, &["service", "ls"]).expect("service ls");
    assert!(ls.contains("web") && ls.contains("8080"), "{ls}");
}
