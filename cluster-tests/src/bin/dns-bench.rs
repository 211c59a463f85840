//! DNS benchmark: the agent's embedded resolver (`agent::dns::Resolver`, the same module the
//! agent runs) against dnsmasq, both serving the same names, measured with dnsperf.
//!
//! Layout, all in namespaces this program creates (prefix `dnb-<pid>-`, removed on exit,
//! also on error or panic):
//! * `dnb-<pid>-h`, the "host": this process's threads run here (the main thread enters it
//!   before the tokio runtime starts). It holds the upstream stub (UDP+TCP on
//!   `127.0.0.1:5300`, serving `ext<i>.bench.test`), and dnsmasq on `127.0.0.12:53`
//!   (`--no-resolv --addn-hosts=<file> --cache-size=0 --server=127.0.0.1#5300`: no cache,
//!   so forwarded names are proxied like ours).
//! * `dnb-<pid>-c`, a container served by the resolver (listeners + nft DNAT of
//!   `127.0.0.11:53`, exactly as in the agent).
//!
//! Zone: one network `bench` (10.10.0.0/16), `--endpoints` endpoints `task<i>` spread over
//! `--services` VIP services `svc<j>`. Query sets: *internal* (every `task<i>`, `svc<j>`
//! and `tasks.svc<j>`, type A) and *forwarded* (`ext<i>.bench.test`, A). For each server and
//! set, two dnsperf runs: **throughput** (as fast as it goes, `-q 100` outstanding) and
//! **latency** (a fixed `--rate` well under saturation, `-v`: dnsperf prints each query's
//! latency, from which p50/p99 are computed; dnsperf itself only reports the average).
//!
//! Run with `scripts/bench-dns.sh` (release build). Needs root, dnsperf, dnsmasq, nft, ip.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::dns::{DnsConfig, DnsMetrics, Resolver, Zone};
use agent::records::{EndpointRecord, NetworkDef, ServiceDef, ServiceMode};
use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use cluster_tests::serf::percentile;
use lab::find_tool;
use lab::stub_dns::Stub;
use networkdb::NodeId;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "embedded resolver vs dnsmasq under dnsperf (needs root)")]
struct Args {
    /// Endpoints in the zone.
    #[arg(long, default_value_t = 1000)]
    endpoints: usize,
    /// VIP services (the endpoints are spread over them).
    #[arg(long, default_value_t = 100)]
    services: usize,
    /// Seconds of each throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of each latency run.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Queries per second of the latency runs.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// Outstanding queries of the throughput runs (dnsperf -q).
    #[arg(long, default_value_t = 100)]
    outstanding: u32,
    /// Tokio worker threads of the runtime serving the resolver (0: tokio's default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// UDP tasks per namespace of the resolver (its `udp_workers`).
    #[arg(long, default_value_t = DnsConfig::default().udp_workers)]
    udp_workers: usize,
    /// Rounds; each runs every server back to back, and the table shows per-round medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Before each run, wait (at most this many seconds) until the machine's CPUs are at
    /// least 85% idle over one second: other jobs on a shared machine skew the figures.
    #[arg(long, default_value_t = 120)]
    wait_idle_secs: u64,
    /// JSON output (default bench-results/dns-<date>.json).
    #[arg(long)]
    out: Option<String>,
}

const UPSTREAM: &str = "127.0.0.1:5300";
const DNSMASQ_IP: &str = "127.0.0.12";

/// Namespaces, processes and files of the run; removed on drop.
struct Bench {
    host: String,
    container: String,
    dir: PathBuf,
    dnsmasq: Option<Child>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.container, &self.host] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(args: &[&str]) -> Result<String> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("{args:?}"))?;
    ensure!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn tables(
    endpoints: usize,
    services: usize,
) -> (NetworkDef, Vec<(String, EndpointRecord)>, Vec<ServiceDef>) {
    let net = NetworkDef {
        id: "n-bench".into(),
        name: "bench".into(),
        vni: 4200,
        subnet_addr: Ipv4Addr::new(10, 10, 0, 0),
        subnet_prefix: 16,
        gateway: Ipv4Addr::new(10, 10, 0, 1),
        mtu: 0,
        encrypted: false,
        creator: NodeId(1),
        created: 1,
        revision: 0,
        note: String::new(),
    };
    let services = services.max(1);
    let eps = (0..endpoints)
        .map(|i| {
            let n = 256 + i as u32;
            (
                format!("e{i:05}"),
                EndpointRecord {
                    name: format!("task{i}"),
                    aliases: vec![],
                    ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 10, 0, 0)) + n),
                    prefix: 16,
                    mac: [2, 0, 0, 0, 0, 1],
                    network: "n-bench".into(),
                    node: NodeId(1),
                    disabled: false,
                    service: Some(format!("s{}", i % services)),
                },
            )
        })
        .collect();
    let svcs = (0..services)
        .map(|j| ServiceDef {
            id: format!("s{j}"),
            name: format!("svc{j}"),
            aliases: vec![],
            mode: ServiceMode::Vip,
            ports: vec![],
            networks: vec!["n-bench".into()],
            vips: [(
                "n-bench".to_string(),
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 10, 200, 0)) + j as u32),
            )]
            .into(),
            creator: NodeId(1),
            created: 1,
            published: Vec::new(),
        })
        .collect();
    (net, eps, svcs)
}

/// dnsmasq's hosts file with the same names (several lines per name give several answers).
fn hosts_file(net: &NetworkDef, eps: &[(String, EndpointRecord)], svcs: &[ServiceDef]) -> String {
    let mut s = String::new();
    for (_, e) in eps {
        s.push_str(&format!("{} {} {}.{}\n", e.ip, e.name, e.name, net.name));
        if let Some(svc) = &e.service {
            let j: usize = svc[1..].parse().unwrap_or(0);
            s.push_str(&format!("{} tasks.svc{j}\n", e.ip));
        }
    }
    for svc in svcs {
        let vip = svc.vips["n-bench"];
        s.push_str(&format!("{vip} {} {}.{}\n", svc.name, svc.name, net.name));
    }
    s
}

/// One round of one server and set: (throughput run, latency run, idle fraction before).
type Sample = (Run, Run, f64);

/// One dnsperf run's figures.
#[derive(Debug, Default, Clone)]
struct Run {
    qps: f64,
    sent: u64,
    lost: u64,
    avg_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    rcodes: String,
}

fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
}

fn first_number(s: Option<&str>) -> f64 {
    s.and_then(|s| s.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .unwrap_or(0.0)
}

/// Runs dnsperf in namespace `ns` against `server`.
fn dnsperf(ns: &str, server: &str, file: &Path, seconds: u64, extra: &[&str]) -> Result<Run> {
    let secs = seconds.to_string();
    let file = file.to_string_lossy().into_owned();
    let mut args = vec![
        "netns", "exec", ns, "dnsperf", "-s", server, "-d", &file, "-l", &secs, "-c", "1",
    ];
    args.extend_from_slice(extra);
    let o = Command::new("ip")
        .args(&args)
        .stderr(Stdio::inherit())
        .output()
        .context("dnsperf")?;
    let text = String::from_utf8_lossy(&o.stdout);
    ensure!(o.status.success(), "dnsperf failed: {text}");
    let mut lat: Vec<Duration> = text
        .lines()
        .filter_map(|l| l.strip_prefix("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .collect();
    lat.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Ok(Run {
        qps: first_number(field(&text, "Queries per second:")),
        sent: first_number(field(&text, "Queries sent:")) as u64,
        lost: first_number(field(&text, "Queries lost:")) as u64,
        avg_ms: first_number(field(&text, "Average Latency (s):")) * 1e3,
        p50_ms: if lat.is_empty() {
            0.0
        } else {
            ms(percentile(&lat, 50.0))
        },
        p99_ms: if lat.is_empty() {
            0.0
        } else {
            ms(percentile(&lat, 99.0))
        },
        rcodes: field(&text, "Response codes:").unwrap_or("").to_string(),
    })
}

/// (idle, total) jiffies of all CPUs.
fn cpu_times() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (idle, v.iter().sum())
}

/// Waits until the CPUs are >= 85% idle over one second (at most `max` seconds); returns
/// the idle fraction seen last.
fn wait_idle(max: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(max);
    let mut said = false;
    loop {
        let (i0, t0) = cpu_times();
        std::thread::sleep(Duration::from_secs(1));
        let (i1, t1) = cpu_times();
        let idle = (i1 - i0) as f64 / ((t1 - t0).max(1)) as f64;
        if idle >= 0.85 || Instant::now() >= deadline {
            return idle;
        }
        if !said {
            eprintln!(
                "waiting for the machine to go idle ({:.0}% idle)",
                idle * 100.0
            );
            said = true;
        }
    }
}

/// Time of the pure path (`handle_query`) per internal A query, over 200,000 queries.
fn micro(zone: &Zone, eps: &[(String, EndpointRecord)]) -> Duration {
    use agent::dns::{Handled, Limits, Transport, handle_query};
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let queries: Vec<Vec<u8>> = eps
        .iter()
        .take(100)
        .filter_map(|(_, e)| {
            let mut m = Message::new(1, MessageType::Query, OpCode::Query);
            m.add_query(Query::query(Name::from_ascii(&e.name).ok()?, RecordType::A));
            m.to_vec().ok()
        })
        .collect();
    let nets = vec!["n-bench".to_string()];
    let mut rng = rand::rng();
    let n = 200_000;
    let t = Instant::now();
    let mut answered = 0;
    for i in 0..n {
        let q = &queries[i % queries.len().max(1)];
        if let Handled::Reply { .. } =
            handle_query(q, zone, &nets, Transport::Udp, Limits::default(), &mut rng)
        {
            answered += 1;
        }
    }
    let took = t.elapsed();
    assert_eq!(answered, n);
    took / n as u32
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(nix::unistd::geteuid().is_root(), "needs root");
    for t in ["ip", "nft", "dnsperf", "dnsmasq", "dig"] {
        if find_tool(t).is_none() {
            bail!("{t} is not installed (scripts/install-deps.sh installs it)");
        }
    }
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("dnb-{pid}"));
    std::fs::create_dir_all(&dir)?;
    let mut bench = Bench {
        host: format!("dnb-{pid}-h"),
        container: format!("dnb-{pid}-c"),
        dir: dir.clone(),
        dnsmasq: None,
    };
    for ns in [&bench.host, &bench.container] {
        sh(&["ip", "netns", "add", ns])?;
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    // Everything from here on (runtime threads, dnsmasq) lives in the host namespace.
    let f = std::fs::File::open(format!("/var/run/netns/{}", bench.host))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;

    let (net, eps, svcs) = tables(args.endpoints, args.services);
    let ext: Vec<(String, Vec<Ipv4Addr>)> = (0..1000u32)
        .map(|i| {
            (
                format!("ext{i}.bench.test"),
                vec![Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(192, 0, 2, 0)) + i % 256,
                )],
            )
        })
        .collect();
    // Query files.
    let internal = dir.join("internal.txt");
    let mut q = String::new();
    for (_, e) in &eps {
        q.push_str(&format!("{} A\n", e.name));
    }
    for s in &svcs {
        q.push_str(&format!("{} A\ntasks.{} A\n", s.name, s.name));
    }
    std::fs::write(&internal, q)?;
    let forwarded = dir.join("forwarded.txt");
    std::fs::write(
        &forwarded,
        ext.iter()
            .map(|(n, _)| format!("{n} A\n"))
            .collect::<String>(),
    )?;
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, hosts_file(&net, &eps, &svcs))?;

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.workers > 0 {
        builder.worker_threads(args.workers);
    }
    let rt = builder.enable_all().build()?;
    let upstream: SocketAddr = UPSTREAM.parse()?;
    let mut per_query_ns = 0u64;
    let metrics = DnsMetrics::default();
    let resolver = rt.block_on(async {
        let stub = Stub::new(ext.iter().map(|(n, ips)| (n.as_str(), ips.clone())));
        let udp = tokio::net::UdpSocket::bind(upstream).await?;
        let tcp = tokio::net::TcpListener::bind(upstream).await?;
        tokio::spawn(stub.clone().serve_udp(udp));
        tokio::spawn(stub.serve_tcp(tcp));
        let resolver = Resolver::new(
            DnsConfig {
                upstreams: vec![upstream],
                udp_workers: args.udp_workers,
                ..DnsConfig::default()
            },
            metrics.clone(),
        );
        let t = Instant::now();
        let zone = Zone::build(std::slice::from_ref(&net), &eps, &svcs);
        println!("zone: {} names built in {:?}", zone.len(), t.elapsed());
        let per_query = micro(&zone, &eps);
        per_query_ns = per_query.as_nanos() as u64;
        println!("pure query path (parse, look up, encode): {per_query:?} per internal query");
        resolver.set_zone(Arc::new(zone));
        let containers: BTreeMap<PathBuf, Vec<String>> = [(
            PathBuf::from(format!("/var/run/netns/{}", bench.container)),
            vec!["n-bench".to_string()],
        )]
        .into();
        let report = resolver.sync(&containers).await;
        ensure!(report.errors.is_empty(), "resolver: {:?}", report.errors);
        anyhow::Ok(resolver)
    })?;

    let log = std::fs::File::create(dir.join("dnsmasq.log"))?;
    bench.dnsmasq = Some(
        Command::new(find_tool("dnsmasq").context("dnsmasq")?)
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                &format!("--addn-hosts={}", hosts.display()),
                &format!("--listen-address={DNSMASQ_IP}"),
                "--bind-interfaces",
                "--port=53",
                "--cache-size=0",
                "--local-ttl=5",
                "--user=root",
                &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
                "--server=127.0.0.1#5300",
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting dnsmasq")?,
    );
    // Both answer before measuring (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = sh(&[
            "dig",
            "@127.0.0.12",
            "+short",
            "+time=1",
            "+tries=1",
            "svc0",
        ])
        .unwrap_or_default();
        let b = sh(&[
            "ip",
            "netns",
            "exec",
            &bench.container,
            "dig",
            "@127.0.0.11",
            "+short",
            "+time=1",
            "+tries=1",
            "ext1.bench.test",
        ])
        .unwrap_or_default();
        if !a.trim().is_empty() && !b.trim().is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "servers not answering: dnsmasq {a:?}, resolver {b:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let outstanding = args.outstanding.to_string();
    let rate = args.rate.to_string();
    let container_path = PathBuf::from(format!("/var/run/netns/{}", bench.container));
    let (udp_port, _) = rt
        .block_on(resolver.ports(&container_path))
        .context("resolver ports")?;
    let direct = format!("127.0.0.11 -p {udp_port}");
    let servers: [(&str, &str, String); 3] = [
        ("swarmnet", bench.container.as_str(), "127.0.0.11".into()),
        ("swarmnet-no-dnat", bench.container.as_str(), direct),
        ("dnsmasq", bench.host.as_str(), DNSMASQ_IP.into()),
    ];
    // (set, server) -> runs (throughput, latency, idle before)
    let mut all: BTreeMap<(String, String), Vec<Sample>> = BTreeMap::new();
    for round in 0..args.rounds.max(1) {
        for (set, file) in [("internal", &internal), ("forwarded", &forwarded)] {
            for (server, ns, addr) in &servers {
                let idle = wait_idle(args.wait_idle_secs);
                println!(
                    "round {round}: {set} names, {server} (machine {:.0}% idle before)",
                    idle * 100.0
                );
                let (addr, port) = match addr.split_once(" -p ") {
                    Some((a, p)) => (a, Some(p)),
                    None => (addr.as_str(), None),
                };
                let with_port = |mut v: Vec<&'static str>| {
                    let mut out: Vec<String> = v.drain(..).map(str::to_string).collect();
                    if let Some(p) = port {
                        out.push("-p".into());
                        out.push(p.to_string());
                    }
                    out
                };
                let tp_args = with_port(vec!["-q"]);
                let mut tp_args: Vec<&str> = tp_args.iter().map(String::as_str).collect();
                tp_args.insert(1, &outstanding);
                let tp = dnsperf(ns, addr, file, args.seconds, &tp_args)?;
                let lat_args = with_port(vec!["-q", "100", "-v"]);
                let mut lat_args: Vec<&str> = lat_args.iter().map(String::as_str).collect();
                lat_args.extend(["-Q", rate.as_str()]);
                let lat = dnsperf(ns, addr, file, args.latency_seconds, &lat_args)?;
                all.entry((set.to_string(), server.to_string()))
                    .or_default()
                    .push((tp, lat, idle));
            }
        }
    }
    let median = |mut v: Vec<f64>| -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        if v.is_empty() { 0.0 } else { v[v.len() / 2] }
    };
    let mut rows: Vec<(String, String, Run, Run)> = Vec::new();
    for set in ["internal", "forwarded"] {
        for (server, _, _) in &servers {
            let runs = &all[&(set.to_string(), server.to_string())];
            let m = |f: fn(&Sample) -> f64| median(runs.iter().map(f).collect());
            let tp = Run {
                qps: m(|r| r.0.qps),
                sent: runs.iter().map(|r| r.0.sent).sum(),
                lost: runs.iter().map(|r| r.0.lost).sum(),
                avg_ms: m(|r| r.0.avg_ms),
                p50_ms: m(|r| r.0.p50_ms),
                p99_ms: m(|r| r.0.p99_ms),
                rcodes: runs[0].0.rcodes.clone(),
            };
            let lat = Run {
                qps: m(|r| r.1.qps),
                sent: runs.iter().map(|r| r.1.sent).sum(),
                lost: runs.iter().map(|r| r.1.lost).sum(),
                avg_ms: m(|r| r.1.avg_ms),
                p50_ms: m(|r| r.1.p50_ms),
                p99_ms: m(|r| r.1.p99_ms),
                rcodes: runs[0].1.rcodes.clone(),
            };
            rows.push((set.to_string(), server.to_string(), tp, lat));
        }
    }
    // The resolver's own counters of failures (why a SERVFAIL, if any).
    let failures: Vec<String> = {
        let mut r = prometheus_client::registry::Registry::default();
        metrics.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r)?;
        text.lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.contains("upstream_failures") || l.contains("forwards_rejected"))
            })
            .map(str::to_string)
            .collect()
    };
    for l in &failures {
        println!("resolver metric: {l}");
    }
    let errors = rt.block_on(resolver.shutdown());
    ensure!(errors.is_empty(), "shutdown: {errors:?}");
    drop(rt);

    println!();
    println!(
        "| names | server | max q/s | lost | avg ms at max | p50 ms at {r} q/s | p99 ms at {r} q/s | response codes (max run) |",
        r = args.rate
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut results = Vec::new();
    for (set, server, tp, lat) in &rows {
        println!(
            "| {set} | {server} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {} |",
            tp.qps, tp.lost, tp.avg_ms, lat.p50_ms, lat.p99_ms, tp.rcodes
        );
        let per_round: Vec<Value> = all[&(set.clone(), server.clone())]
            .iter()
            .map(|(t, l, idle)| {
                json!({"qps": t.qps, "lost": t.lost, "avg_ms": t.avg_ms,
                "latency_p50_ms": l.p50_ms, "latency_p99_ms": l.p99_ms, "idle_before": idle})
            })
            .collect();
        results.push(json!({
            "names": set, "server": server, "rounds": per_round,
            "throughput": {"qps": tp.qps, "sent": tp.sent, "lost": tp.lost, "avg_ms": tp.avg_ms,
                           "p50_ms": tp.p50_ms, "p99_ms": tp.p99_ms, "rcodes": tp.rcodes},
            "latency": {"rate": args.rate, "qps": lat.qps, "sent": lat.sent, "lost": lat.lost,
                        "avg_ms": lat.avg_ms, "p50_ms": lat.p50_ms, "p99_ms": lat.p99_ms,
                        "rcodes": lat.rcodes},
        }));
    }
    let mut ratios = serde_json::Map::new();
    for set in ["internal", "forwarded"] {
        let get = |s: &str| rows.iter().find(|r| r.0 == set && r.1 == s);
        if let (Some(a), Some(b)) = (get("swarmnet"), get("dnsmasq"))
            && b.2.qps > 0.0
        {
            let r = a.2.qps / b.2.qps;
            println!("{set}: swarmnet / dnsmasq throughput = {r:.2}");
            ratios.insert(set.to_string(), json!(r));
        }
    }
    let date = sh(&["date", "-u", "+%Y-%m-%d"])?.trim().to_string();
    let out = args.out.unwrap_or(format!("bench-results/dns-{date}.json"));
    let doc: Value = json!({
        "benchmark": "dns",
        "date": date,
        "zone": {"endpoints": args.endpoints, "services": args.services},
        "method": "medians over rounds; dnsperf 2.x, one client socket (-c 1); throughput runs with -q outstanding, latency runs at a fixed rate with -v (per-query latency -> p50/p99). swarmnet: agent::dns::Resolver in a container namespace via nft DNAT of 127.0.0.11:53; dnsmasq: --cache-size=0, addn-hosts with the same names, on 127.0.0.12:53 in the host namespace. swarmnet-no-dnat: the resolver's own port, skipping the DNAT rule (shows its cost). Both forward to one stub upstream on 127.0.0.1:5300.",
        "outstanding": args.outstanding,
        "rounds": args.rounds,
        "udp_workers": args.udp_workers,
        "pure_query_path_ns": per_query_ns,
        "seconds": args.seconds,
        "latency_seconds": args.latency_seconds,
        "results": results,
        "throughput_ratio_swarmnet_over_dnsmasq": ratios,
        "resolver_failure_metrics": failures,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    if let Some(parent) = Path::new(&out).parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::File::create(&out)?;
    f.write_all(serde_json::to_string_pretty(&doc)?.as_bytes())?;
    println!("wrote {out}");
    drop(bench);
    Ok(())
}
