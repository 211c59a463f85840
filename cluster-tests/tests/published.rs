//! Tier-4 tests of published ports (the routing mesh): three real agents, backends on the
//! hosts serving with the `probe` binary, and a real client in an outside namespace on the
//! underlay (as on the hosts' own network) connecting to the hosts' own addresses. One backend
//! container has a default route of its own (as with an orchestrator's bridge network):
//! replies to published-port clients must still go back through the overlay.
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
    let (bs, _servers) = backends(&mut c, "web", &[0, 1, 2]);
    let names = ["web1", "web2", "web3"];
    // web3's container has its own default route (an orchestrator's bridge network, here a
    // dead end): replies to published-port clients must not take it.
    let gw = c.lab.add_container(2, "gw").expect("gateway namespace");
    let name = |p: &Path| {
        p.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let (web3, gwn) = (name(&bs[2].netns), name(&gw));
    for cmd in [
        vec![
            "ip", "link", "add", "eth9", "netns", &web3, "type", "veth", "peer", "name", "eth0",
            "netns", &gwn,
        ],
        vec![
            "ip",
            "-n",
            &web3,
            "addr",
            "add",
            "172.31.0.2/24",
            "dev",
            "eth9",
        ],
        vec!["ip", "-n", &web3, "link", "set", "eth9", "up"],
        vec![
            "ip",
            "-n",
            &gwn,
            "addr",
            "add",
            "172.31.0.1/24",
            "dev",
            "eth0",
        ],
        vec!["ip", "-n", &gwn, "link", "set", "eth0", "up"],
        vec![
            "ip",
            "-n",
            &web3,
            "route",
            "add",
            "default",
            "via",
            "172.31.0.1",
        ],
    ] {
        let o = std::process::Command::new(cmd[0])
            .args(&cmd[1..])
            .output()
            .expect("ip");
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
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

    // With SWARMNET_TEST_LB (vm_published.rs: ipvs), the agents balance VIPs with it and
    // still publish ports through the nftables mesh.
    if let Some(lb) = cluster_tests::harness::test_lb().filter(|lb| lb != "auto") {
        let status = c.cli_ok(1, &["cluster", "status"]).expect("status");
        let chosen = status
            .lines()
            .find_map(|l| l.split("Load balancer:").nth(1))
            .unwrap_or_default()
            .trim()
            .to_string();
        println!("Load balancer: {chosen}");
        assert!(chosen.starts_with(&lb), "want the {lb} balancer: {chosen}");
    }

    // A restarted agent adopts what it programmed: its host keeps its table (the port's
    // chain keeps its kernel handle) and answers again from every backend.
    let handle = |c: &AgentCluster| -> String {
        c.lab
            .exec_ok(
                &c.lab.host_netns(2),
                &[
                    "nft",
                    "-a",
                    "list",
                    "chain",
                    "ip",
                    "swarmnet_mesh",
                    "p_t8080",
                ],
            )
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.split("# handle ").nth(1).map(str::to_string))
            .unwrap_or_default()
    };
    let before = handle(&c);
    let t0 = Instant::now();
    c.stop_agent(2).expect("stop host 3's agent");
    c.start_agent(2).expect("restart host 3's agent");
    let took = wait_answers(&c, &cl, 2, 8080, &names, PROPAGATION);
    println!(
        "host 3's agent restarted: answering from web1-3 {took:?} after its start ({:?} after the stop)",
        t0.elapsed()
    );
    assert!(
        !before.is_empty() && handle(&c) == before,
        "the chain was adopted, not rebuilt: {before} vs {}",
        handle(&c)
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

/// Writes `value` to `/proc/sys/<key>` inside `netns`.
fn sysctl(c: &AgentCluster, netns: &Path, key: &str, value: &str) {
    let cmd = format!("echo {value} > /proc/sys/{key}");
    c.lab
        .exec_ok(netns, &["sh", "-c", &cmd])
        .unwrap_or_else(|e| panic!("sysctl {key} in {}: {e:#}", netns.display()));
}

#[test]
fn serial_a_local_port_answers_only_with_the_hosts_own_backends_and_its_health_flips_when_the_last_one_drains()
 {
    let mut c = cluster_or_skip!("pub-local");
    lab::ensure_tools(&["curl"]).expect("curl");
    let cl = client(&mut c);
    c.create_network(1, "blue", &[]).expect("network create");
    let v = c
        .cli_json(
            1,
            &[
                "service",
                "create",
                "loc",
                "--network",
                "blue",
                "--publish",
                "8081:80",
                "--publish-mode",
                "local",
            ],
        )
        .expect("service create");
    assert_eq!(v["published"][0]["mode"], "local", "{v}");
    // Backends on hosts 2 and 3 (indices 1, 2); none on host 1.
    let (bs, _servers) = backends(&mut c, "loc", &[1, 2]);
    for (h, name) in [(1, "loc2"), (2, "loc3")] {
        let took = wait_answers(&c, &cl, h, 8081, &[name], PROPAGATION);
        println!(
            "host {}:8081 answers only from its own {name}, with the client's address ({took:?})",
            h + 1
        );
        let (code, body) = health(&c, h, "/published/tcp/8081");
        assert_eq!(code, 200, "host {}: {body}", h + 1);
        assert!(body.contains("\"local_backends\":1"), "{body}");
    }
    // Host 1 has no backend: it refuses at once and says why.
    wait_refused(&c, &cl, 0, 8081, PROPAGATION);
    let (code, body) = health(&c, 0, "/published/tcp/8081");
    println!("host 1 health: {code} {body}");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no enabled backend on this node"), "{body}");
    assert_eq!(health(&c, 0, "/published/tcp/9").0, 404);

    // A held connection through host 2 survives the drain of its (only local) backend; new
    // connections are refused and the health flips to 503.
    let addr = c.lab.host_addr(1).to_string();
    let hold = c
        .lab
        .spawn(
            &cl.netns,
            &[
                PROBE,
                "hold",
                &addr,
                "8081",
                "--secs",
                "15",
                "--interval-ms",
                "100",
            ],
        )
        .expect("probe hold");
    c.wait_until(
        Duration::from_secs(5),
        "the held connection answers",
        || Ok(hold.log().contains("loc2")),
    )
    .expect("held connection");
    let t0 = Instant::now();
    c.cli_ok(1, &["endpoint", "disable", &bs[0].name])
        .expect("endpoint disable");
    let took = c
        .wait_until(PROPAGATION, "host 2's health flips to 503", || {
            Ok(health(&c, 1, "/published/tcp/8081").0 == 503)
        })
        .expect("health flips");
    println!("last local backend drained: health 503 after {took:?}");
    wait_refused(&c, &cl, 1, 8081, PROPAGATION);
    println!(
        "host 2:8081 refuses new connections {:?} after the drain",
        t0.elapsed()
    );
    let before = hold.log().lines().count();
    std::thread::sleep(Duration::from_secs(1));
    let log = hold.log();
    let after: Vec<&str> = log.lines().skip(before).collect();
    assert!(
        after.len() >= 5 && after.iter().all(|l| l.contains("loc2")),
        "the held connection keeps its backend after the drain: {log}"
    );
    // Host 3 is unaffected.
    wait_answers(&c, &cl, 2, 8081, &["loc3"], PROPAGATION);

    // The host that did the work (the service's creator, host 2) dies: its health endpoint
    // goes with it (an external balancer skips it); host 3 keeps answering.
    c.kill_agent(1).expect("kill host 2's agent");
    assert_eq!(
        health(&c, 1, "/published/tcp/8081").0,
        0,
        "no agent, no answer"
    );
    let took = wait_answers(&c, &cl, 2, 8081, &["loc3"], FAILURE_BOUND);
    println!("creator killed: host 3 keeps answering ({took:?})");
    assert_eq!(health(&c, 2, "/published/tcp/8081").0, 200);
}

#[test]
fn serial_an_idle_connection_outlives_the_hosts_conntrack_established_timeout() {
    let mut c = cluster_or_skip!("pub-idle");
    lab::ensure_tools(&["conntrack"]).expect("conntrack");
    let cl = client(&mut c);
    c.create_network(0, "blue", &[]).expect("network create");
    c.cli_ok(
        0,
        &[
            "service",
            "create",
            "idle",
            "--network",
            "blue",
            "--publish",
            "8082:80",
        ],
    )
    .expect("service create");
    // One backend, on host 3; the client goes through host 2: a remote backend.
    let (bs, _servers) = backends(&mut c, "idle", &[2]);
    wait_answers(&c, &cl, 1, 8082, &["idle3"], PROPAGATION);
    // Conntrack forgets an idle established connection after 3 s, in every namespace
    // involved: the hosts, the sandboxes, the backend.
    let key = "net/netfilter/nf_conntrack_tcp_timeout_established";
    let mut spaces: Vec<PathBuf> = (0..3).map(|h| c.lab.host_netns(h)).collect();
    spaces.push(bs[0].netns.clone());
    for ns in &spaces {
        sysctl(&c, ns, key, "3");
    }
    // The creator (host 1) dies: nothing of the held connection depends on it.
    c.kill_agent(0).expect("kill the creator");
    let addr = c.lab.host_addr(1).to_string();
    let t0 = Instant::now();
    let idle = c
        .lab
        .spawn(
            &cl.netns,
            &[PROBE, "idle", &addr, "8082", "--idle-ms", "8000"],
        )
        .expect("probe idle");
    // Midway through the idle period, the ingress host's entry is still there, with the
    // port's own timeout; the backend's own entry (its sysctl, 3 s) is gone: TCP replies
    // need none.
    std::thread::sleep(Duration::from_secs(5));
    let established = |ns: &Path| -> Vec<u64> {
        c.lab
            .exec_ok(
                ns,
                &["conntrack", "-L", "-p", "tcp", "--state", "ESTABLISHED"],
            )
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("sport=80 ") || l.contains("dport=8082 "))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
            .collect()
    };
    let host = established(&c.lab.host_netns(1));
    let backend = established(&bs[0].netns);
    println!(
        "5 s into the idle period: host 2's entry expires in {host:?} s, the backend's: {backend:?}"
    );
    assert!(
        host.len() == 1 && host[0] > 3600,
        "the port's idle timeout holds the entry: {host:?}"
    );
    assert!(
        backend.is_empty(),
        "the backend's own entry expired: {backend:?}"
    );
    c.wait_until(Duration::from_secs(10), "probe idle ends", || {
        Ok(!idle.is_running())
    })
    .expect("probe idle ends");
    let v: Value = serde_json::from_str(idle.log().trim()).expect("JSON");
    println!(
        "idle 8 s with a 3 s established timeout, server speaks first: {v} ({:?})",
        t0.elapsed()
    );
    assert!(
        v["after_idle"]
            .as_str()
            .is_some_and(|s| s.starts_with("idle3 ")),
        "the connection must survive the idle period: {v}"
    );
    assert_eq!(
        v["after_idle"]
            .as_str()
            .and_then(|s| s.split_whitespace().nth(1)),
        Some(cl.ip.to_string().as_str())
    );
}

#[test]
fn serial_a_published_port_taken_by_another_service_or_bound_on_the_host_is_refused_and_a_deleted_service_takes_its_rules_away()
 {
    let mut c = cluster_or_skip!("pub-refuse");
    let t0 = Instant::now();
    let cl = client(&mut c);
    c.create_network(0, "blue", &[]).expect("network create");
    c.cli_ok(
        0,
        &[
            "service",
            "create",
            "web",
            "--network",
            "blue",
            "--publish",
            "8080:80",
        ],
    )
    .expect("service create");
    let (_bs, _servers) = backends(&mut c, "web", &[2]);
    // Another service cannot take 8080 (through any agent).
    let o = c
        .cli(
            1,
            &[
                "service",
                "create",
                "other",
                "--network",
                "blue",
                "--publish",
                "8080:80",
            ],
        )
        .expect("cli runs");
    let err = String::from_utf8_lossy(&o.stderr);
    println!("second publish of 8080: {err}");
    assert!(
        !o.status.success() && err.contains("8080 is already published by service web"),
        "{err}"
    );
    // A process of host 2 listens on 9090: publishing it through host 2 is refused.
    let hostproc = c
        .lab
        .spawn(
            &c.lab.host_netns(1),
            &[PROBE, "serve", "--name", "hostproc", "--tcp", "9090"],
        )
        .expect("host process");
    c.wait_until(Duration::from_secs(5), "the host process listens", || {
        Ok(hostproc.log().contains("serving"))
    })
    .expect("host process");
    let o = c
        .cli(
            1,
            &[
                "service",
                "create",
                "nine",
                "--network",
                "blue",
                "--publish",
                "9090:80",
            ],
        )
        .expect("cli runs");
    let err = String::from_utf8_lossy(&o.stderr);
    println!("publish of a port bound on the host: {err}");
    assert!(
        !o.status.success() && err.contains("tcp/9090 is already bound on this host"),
        "{err}"
    );
    // A port another table DNATs on host 2 (Docker without its userland proxy holds no
    // socket) is refused too.
    c.lab
        .exec_ok(
            &c.lab.host_netns(1),
            &[
                "nft",
                "add table ip dockerlike; add chain ip dockerlike pre { type nat hook prerouting priority -100; }; add rule ip dockerlike pre tcp dport 7070 dnat to 172.17.0.2:80",
            ],
        )
        .expect("a foreign DNAT");
    let o = c
        .cli(
            1,
            &[
                "service",
                "create",
                "seven",
                "--network",
                "blue",
                "--publish",
                "7070",
            ],
        )
        .expect("cli runs");
    let err = String::from_utf8_lossy(&o.stderr);
    println!("publish of a port another table DNATs: {err}");
    assert!(
        !o.status.success()
            && err.contains("tcp/7070 is DNATed by chain pre of table ip dockerlike"),
        "{err}"
    );
    // Through host 1 it is accepted: the other hosts answer it, host 2 leaves its own
    // process alone and says why.
    c.cli_ok(
        0,
        &[
            "service",
            "create",
            "nine",
            "--network",
            "blue",
            "--publish",
            "9090:80",
        ],
    )
    .expect("service create through host 1");
    let (_nine, _nine_servers) = backends(&mut c, "nine", &[2]);
    wait_answers(&c, &cl, 0, 9090, &["nine3"], PROPAGATION);
    println!(
        "refusals checked, nine answers on host 1 ({:?})",
        t0.elapsed()
    );
    let t = http(&c, &cl, 1, 9090, 5);
    assert_eq!(
        t.by_name.keys().collect::<Vec<_>>(),
        vec!["hostproc"],
        "host 2's own process keeps its port: {t:?}"
    );
    let inspect = c
        .wait_until(PROPAGATION, "host 2 reports the clash", || {
            Ok(c.cli_ok(0, &["service", "inspect", "nine"])?
                .contains("already bound"))
        })
        .map(|_| {
            c.cli_ok(0, &["service", "inspect", "nine"])
                .unwrap_or_default()
        })
        .expect("inspect");
    println!("{inspect}");

    // Deleting the services takes their rules, reservations and ingress endpoints away.
    c.cli_ok(0, &["service", "rm", "nine"]).expect("rm nine");
    c.cli_ok(0, &["service", "rm", "web"]).expect("rm web");
    wait_refused(&c, &cl, 0, 9090, PROPAGATION);
    wait_refused(&c, &cl, 0, 8080, PROPAGATION);
    for h in [0, 1] {
        c.wait_until(
            PROPAGATION,
            "the mesh table and the ingress endpoint are gone",
            || {
                let table = c.lab.exec(
                    &c.lab.host_netns(h),
                    &["nft", "list", "table", "ip", "swarmnet_mesh"],
                )?;
                let links = c.links(&c.lab.host_netns(h))?;
                let ingress = format!("{}i", c.hosts[h].prefix);
                Ok(!table.status.success() && !links.iter().any(|l| l.starts_with(&ingress)))
            },
        )
        .unwrap_or_else(|e| panic!("host {}: {e:#}", h + 1));
    }
    println!(
        "deleted: rules and ingress endpoints gone ({:?})",
        t0.elapsed()
    );
    // The port is free again on every host (its reservation is gone too).
    let probe_bind = c
        .lab
        .exec(
            &c.lab.host_netns(0),
            &[
                PROBE,
                "serve",
                "--name",
                "x",
                "--tcp",
                "8080",
                "--max-secs",
                "1",
            ],
        )
        .expect("bind 8080");
    assert!(
        probe_bind.status.success(),
        "{}",
        String::from_utf8_lossy(&probe_bind.stderr)
    );
    // The host that created them dies; the definitions it deleted stay deleted.
    c.kill_agent(0).expect("kill the creator");
    let ls = c.cli_ok(1, &["service", "ls"]).expect("ls");
    assert!(!ls.contains("nine") && !ls.contains("web"), "{ls}");
}
