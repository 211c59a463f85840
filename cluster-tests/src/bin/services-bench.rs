//! Service benchmark: real agents in network namespaces (an [`AgentCluster`]), the nftables
//! balancer, the `probe` binary for traffic. Prints a table and writes JSON.
//!
//! * `program`: time to program 1,000 services x 10 backends into one container namespace
//!   from empty, then one backend change, then the same spec again (no change); the
//!   reference in the same run is `nft -f` loading the identical ruleset text in one go (the
//!   kernel's floor for that many objects).
//! * `propagation`: on a 10-host cluster with a backend container on every host (every one
//!   of them a client of the service too), the time from `endpoint disable` (and `enable`)
//!   on host 1 until every container's balancer has changed, seen by an `nft monitor`
//!   process in each container namespace (lines stamped on read).
//! * `http`: short HTTP/1.0 connections from a container on host 1 through a VIP with one
//!   backend on host 2, and straight to that backend, in the same run (ratio); and through a
//!   VIP over 3 backends.
//!
//! Run with `scripts/bench-services.sh` (release build first). Needs root. Traffic stays in
//! the lab's namespaces; every loop that sends traffic is bounded.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use lab::testbed::{AgentCluster, ClusterOptions, Container, swarmnet_binary};
use lab::{Lab, LabProcess, ensure_tools};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "service balancing benchmarks with real agents in namespaces (needs root)")]
struct Args {
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results/services.json")]
    out: String,
    /// Sections to run (comma separated): program, propagation, http.
    #[arg(long, default_value = "program,propagation,http")]
    only: String,
    /// Services and backends per service of the program section.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    #[arg(long, default_value_t = 10)]
    backends: usize,
    /// Hosts of the propagation section.
    #[arg(long, default_value_t = 10)]
    hosts: usize,
    /// Disable/enable pairs measured in the propagation section.
    #[arg(long, default_value_t = 10)]
    samples: usize,
    /// Connections per run of the http section.
    #[arg(long, default_value_t = 3000)]
    connections: usize,
    /// Concurrent connections of the http section.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Runs of each http variant (alternated; the median run is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of `v` (`q` in 0..=100); NaN when empty.
fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

fn probe_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("probe");
    ensure!(
        p.exists(),
        "{} not found: build it (cargo build --release -p cluster-tests --bin probe)",
        p.display()
    );
    Ok(p)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    for s in &only {
        ensure!(
            ["program", "propagation", "http"].contains(s),
            "unknown section {s:?} (program, propagation, http)"
        );
    }
    Lab::preflight().context("this machine cannot run the network lab")?;
    ensure_tools(&["nft", "ping"])?;
    let mut results = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();
    if only.contains(&"program") {
        results.insert("program".into(), program(&args, &mut table)?);
    }
    if only.contains(&"propagation") {
        results.insert("propagation".into(), propagation(&args, &mut table)?);
    }
    if only.contains(&"http") {
        results.insert("http".into(), http(&args, &mut table)?);
    }
    cluster_tests::report::print_table(&table);
    cluster_tests::report::write_results(&args.out, results)?;
    Ok(())
}

// ------------------------------------------------------------------------------ program

fn program(args: &Args, table: &mut Vec<(String, String)>) -> Result<Value> {
    ensure_tools(&["iptables-restore"])?;
    let mut lab = Lab::new("bsp", 1)?;
    let ns = lab.add_container(0, "c")?;
    let r = agent::lb::nft::bench_program(&ns, args.services, args.backends)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (ref_initial, ref_change) = iptables_reference(&ns, args.services, args.backends)?;
    let label = format!("{} services x {} backends", args.services, args.backends);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    table.push((
        format!("program {label} into one netns, from empty"),
        format!(
            "{:.0} ms, {} changes (kube-proxy-style iptables-restore: {:.0} ms; ratio {:.2})",
            ms(r.first),
            r.first_changes,
            ms(ref_initial),
            ratio(r.first, ref_initial)
        ),
    ));
    table.push((
        "  one backend removed".into(),
        format!(
            "{:.1} ms, {} changes; fresh balancer (lists the table) {:.1} ms (iptables-restore of the whole ruleset: {:.0} ms; ratio {:.3})",
            ms(r.one_backend_removed),
            r.one_backend_changes,
            ms(r.one_backend_uncached),
            ms(ref_change),
            ratio(r.one_backend_removed, ref_change)
        ),
    ));
    table.push((
        "  same spec again".into(),
        format!(
            "{:.2} ms (generation check); fresh balancer {:.1} ms",
            ms(r.no_op),
            ms(r.no_op_uncached)
        ),
    ));
    drop(lab);
    Ok(json!({
        "services": args.services,
        "backends_per_service": args.backends,
        "first_ms": ms(r.first),
        "first_changes": r.first_changes,
        "one_backend_removed_ms": ms(r.one_backend_removed),
        "one_backend_removed_changes": r.one_backend_changes,
        "one_backend_removed_fresh_balancer_ms": ms(r.one_backend_uncached),
        "no_change_ms": ms(r.no_op),
        "no_change_fresh_balancer_ms": ms(r.no_op_uncached),
        "reference": "kube-proxy iptables-mode ruleset (per service a chain of statistic-random jumps to per-endpoint DNAT chains) loaded with one iptables-restore; a change reloads it whole, as kube-proxy's full sync does",
        "reference_initial_ms": ms(ref_initial),
        "reference_one_change_ms": ms(ref_change),
        "ratio_first_vs_reference": ratio(r.first, ref_initial),
        "ratio_one_change_vs_reference": ratio(r.one_backend_removed, ref_change),
    }))
}

/// kube-proxy's iptables-mode rules for the same services, as `iptables-restore` input.
fn iptables_rules(services: usize, backends: usize, skip_last_of: Option<usize>) -> String {
    let ip = |base: u32, i: usize| Ipv4Addr::from(base + i as u32);
    let mut chains = String::from("*nat\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n");
    let mut rules = String::from("-A OUTPUT -j KUBE-SERVICES\n");
    for s in 0..services {
        let svc = format!("KUBE-SVC-{s:05}");
        chains += &format!(":{svc} - [0:0]\n");
        rules += &format!(
            "-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport 80 -j {svc}\n",
            ip(0x0a80_0001, s)
        );
        let n = if skip_last_of == Some(s) {
            backends - 1
        } else {
            backends
        };
        for b in 0..n {
            let sep = format!("KUBE-SEP-{s:05}-{b:02}");
            chains += &format!(":{sep} - [0:0]\n");
            if b + 1 < n {
                rules += &format!(
                    "-A {svc} -m statistic --mode random --probability {:.10} -j {sep}\n",
                    1.0 / (n - b) as f64
                );
            } else {
                rules += &format!("-A {svc} -j {sep}\n");
            }
            rules += &format!(
                "-A {sep} -p tcp -m tcp -j DNAT --to-destination {}:8080\n",
                ip(0x0ac8_0001, s * backends + b)
            );
        }
    }
    chains + &rules + "COMMIT\n"
}

/// Times of loading [`iptables_rules`] into `netns` from empty, and of reloading it with one
/// backend fewer; the rules are flushed afterwards.
fn iptables_reference(
    netns: &Path,
    services: usize,
    backends: usize,
) -> Result<(Duration, Duration)> {
    let load = |text: &str| -> Result<Duration> {
        use std::io::Write;
        let t = Instant::now();
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["iptables-restore"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success(),
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t.elapsed())
    };
    let initial = load(&iptables_rules(services, backends, None))?;
    let change = load(&iptables_rules(services, backends, Some(services / 2)))?;
    load("*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n")?;
    let _ = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["iptables", "-t", "nat", "-X"])
        .status();
    Ok((initial, change))
}

// -------------------------------------------------------------------------- propagation

/// Lines of an `nft monitor` in one namespace, stamped on read.
struct Monitor {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    _proc: LabProcess,
}

fn monitor(lab: &mut Lab, netns: &Path) -> Result<Monitor> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let p = lab.spawn_with(netns, &["stdbuf", "-oL", "nft", "monitor"], |c| {
        c.stdout(Stdio::piped());
    })?;
    let out = p
        .with_child(|c| c.stdout.take())
        .context("nft monitor stdout")?;
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((Instant::now(), line));
        }
    });
    Ok(Monitor { lines, _proc: p })
}

impl Monitor {
    /// First line after `since` mentioning `needle`.
    fn seen(&self, since: Instant, needle: &str) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(t, l)| *t >= since && l.contains(needle))
            .map(|(t, _)| *t)
    }
}

fn propagation(args: &Args, table: &mut Vec<(String, String)>) -> Result<Value> {
    let mut opts = ClusterOptions::new("bsv", args.hosts);
    opts.binary = Some(swarmnet_binary()?);
    opts.log_level = "warn".into();
    let mut c = AgentCluster::start_with(opts)?;
    c.create_network(0, "blue", &[])?;
    c.cli_json(
        0,
        &[
            "service",
            "create",
            "web",
            "--network",
            "blue",
            "--port",
            "80:8080",
        ],
    )?;
    let mut backends: Vec<Container> = Vec::new();
    for h in 0..args.hosts {
        backends.push(c.attach_with(h, "blue", &format!("web{}", h + 1), &["--service", "web"])?);
    }
    // Every container holds every backend before measuring.
    let all_ips: Vec<String> = backends.iter().map(|b| b.ip.to_string()).collect();
    c.wait_until(
        Duration::from_secs(60),
        "every balancer holds every backend",
        || {
            for b in &backends {
                let t = c
                    .lab
                    .exec_ok(&b.netns, &["nft", "list", "table", "ip", "swarmnet_lb"])
                    .unwrap_or_default();
                if !all_ips.iter().all(|ip| t.contains(ip.as_str())) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )?;
    let netns: Vec<PathBuf> = backends.iter().map(|b| b.netns.clone()).collect();
    let mut monitors = Vec::new();
    for ns in &netns {
        monitors.push(monitor(&mut c.lab, ns)?);
    }
    std::thread::sleep(Duration::from_millis(300));
    let target = backends[0].clone();
    // The only change in the window: any line about the balancer's table is it (a drain
    // rewrites the service's chain without the backend, which the line may not mention).
    let needle = "swarmnet_lb";
    let mut disable_ms = Vec::new();
    let mut enable_ms = Vec::new();
    let bin = swarmnet_binary()?;
    for _ in 0..args.samples {
        for (verb, out) in [("disable", &mut disable_ms), ("enable", &mut enable_ms)] {
            let t0 = Instant::now();
            let st = Command::new(&bin)
                .args(["--api", &c.hosts[0].api, "endpoint", verb, &target.name])
                .stdout(Stdio::null())
                .status()?;
            ensure!(st.success(), "endpoint {verb} failed");
            let deadline = t0 + Duration::from_secs(10);
            let worst = loop {
                let seen: Vec<Option<Instant>> =
                    monitors.iter().map(|m| m.seen(t0, needle)).collect();
                if seen.iter().all(Option::is_some) {
                    break seen.into_iter().flatten().max().expect("non-empty");
                }
                if Instant::now() > deadline {
                    bail!(
                        "{verb}: only {}/{} containers changed within 10 s",
                        seen.iter().filter(|s| s.is_some()).count(),
                        seen.len()
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            out.push(ms(worst - t0));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let p = |v: &[f64], q: f64| percentile(v, q);
    table.push((
        format!(
            "backend drain reaches all {} containers on {} hosts",
            args.hosts, args.hosts
        ),
        format!(
            "p50 {:.1} ms, max {:.1} ms ({} samples)",
            p(&disable_ms, 50.0),
            p(&disable_ms, 100.0),
            disable_ms.len()
        ),
    ));
    table.push((
        "  back in rotation (enable)".into(),
        format!(
            "p50 {:.1} ms, max {:.1} ms",
            p(&enable_ms, 50.0),
            p(&enable_ms, 100.0)
        ),
    ));
    Ok(json!({
        "hosts": args.hosts,
        "containers": netns.len(),
        "disable_to_all_ms": disable_ms,
        "enable_to_all_ms": enable_ms,
        "method": "from spawning `swarmnet endpoint disable|enable` on host 1 until an `nft monitor` in every container namespace printed a change to table swarmnet_lb (lines stamped on read; nothing else changes meanwhile); includes the CLI process (~10 ms), the 20 ms reconcile debounce on each host, gossip and the nft transaction",
    }))
}

// --------------------------------------------------------------------------------- http

fn run_http(
    c: &AgentCluster,
    probe: &Path,
    from: &Container,
    addr: Ipv4Addr,
    port: u16,
    args: &Args,
) -> Result<(f64, u64)> {
    let out = c.lab.exec_ok(
        &from.netns,
        &[
            &probe.display().to_string(),
            "http",
            &addr.to_string(),
            &port.to_string(),
            "--count",
            &args.connections.to_string(),
            "--parallel",
            &args.parallel.to_string(),
        ],
    )?;
    let v: Value = serde_json::from_str(out.trim())?;
    let ok = v["ok"].as_u64().unwrap_or(0);
    let elapsed = v["elapsed_ms"].as_f64().unwrap_or(f64::NAN);
    Ok((
        ok as f64 / (elapsed / 1000.0),
        v["failed"].as_u64().unwrap_or(0),
    ))
}

fn http(args: &Args, table: &mut Vec<(String, String)>) -> Result<Value> {
    let probe = probe_bin()?;
    let mut opts = ClusterOptions::new("bsh", 3);
    opts.binary = Some(swarmnet_binary()?);
    opts.log_level = "warn".into();
    let mut c = AgentCluster::start_with(opts)?;
    c.create_network(0, "blue", &[])?;
    let one = c.cli_json(
        0,
        &[
            "service",
            "create",
            "one",
            "--network",
            "blue",
            "--port",
            "80:8080",
        ],
    )?;
    let three = c.cli_json(
        0,
        &[
            "service",
            "create",
            "three",
            "--network",
            "blue",
            "--port",
            "80:8080",
        ],
    )?;
    let vip = |v: &Value| -> Result<Ipv4Addr> {
        v["vips"][0]["vip"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .context("no VIP")
    };
    let (vip1, vip3) = (vip(&one)?, vip(&three)?);
    let mut servers = Vec::new();
    let b = c.attach_with(1, "blue", "one1", &["--service", "one"])?;
    servers.push(c.lab.spawn(
        &b.netns,
        &[
            &probe.display().to_string(),
            "serve",
            "--name",
            "one1",
            "--tcp",
            "8080",
        ],
    )?);
    for h in 0..3 {
        let t = c.attach_with(
            h,
            "blue",
            &format!("three{}", h + 1),
            &["--service", "three"],
        )?;
        servers.push(c.lab.spawn(
            &t.netns,
            &[
                &probe.display().to_string(),
                "serve",
                "--name",
                &t.name,
                "--tcp",
                "8080",
            ],
        )?);
    }
    let client = c.attach(0, "blue", "client")?;
    c.wait_until(Duration::from_secs(30), "both VIPs answer", || {
        let a = run_once(&c, &probe, &client, vip1)?;
        let b = run_once(&c, &probe, &client, vip3)?;
        Ok(a && b)
    })?;
    let mut vip_rates = Vec::new();
    let mut direct_rates = Vec::new();
    let mut vip3_rates = Vec::new();
    let mut failures = 0;
    for _ in 0..args.runs {
        let (r, f) = run_http(&c, &probe, &client, vip1, 80, args)?;
        vip_rates.push(r);
        failures += f;
        let (r, f) = run_http(&c, &probe, &client, b.ip, 8080, args)?;
        direct_rates.push(r);
        failures += f;
        let (r, f) = run_http(&c, &probe, &client, vip3, 80, args)?;
        vip3_rates.push(r);
        failures += f;
    }
    let med = |v: &[f64]| percentile(v, 50.0);
    let ratio = med(&vip_rates) / med(&direct_rates);
    table.push((
        format!(
            "short HTTP connections/s, {} in flight, client host 1 -> backend host 2",
            args.parallel
        ),
        format!(
            "VIP {:.0}/s, direct {:.0}/s: ratio {ratio:.2} (failures: {failures})",
            med(&vip_rates),
            med(&direct_rates)
        ),
    ));
    table.push((
        "  VIP over 3 backends on hosts 1-3".into(),
        format!("{:.0}/s", med(&vip3_rates)),
    ));
    Ok(json!({
        "connections_per_run": args.connections,
        "parallel": args.parallel,
        "vip_one_backend_per_s": vip_rates,
        "direct_per_s": direct_rates,
        "vip_three_backends_per_s": vip3_rates,
        "ratio_vip_vs_direct": ratio,
        "failures": failures,
    }))
}

fn run_once(c: &AgentCluster, probe: &Path, from: &Container, vip: Ipv4Addr) -> Result<bool> {
    let out = c.lab.exec_ok(
        &from.netns,
        &[
            &probe.display().to_string(),
            "http",
            &vip.to_string(),
            "80",
            "--timeout-ms",
            "500",
        ],
    )?;
    let v: Value = serde_json::from_str(out.trim())?;
    Ok(v["ok"].as_u64() == Some(1))
}
