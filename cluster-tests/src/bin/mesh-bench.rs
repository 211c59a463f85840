//! Published-port (routing mesh) benchmark: real agents in network namespaces, the `probe`
//! binary for traffic. Prints a table and writes JSON.
//!
//! * `http`: short HTTP/1.0 connections/s from outside clients (namespaces on the underlay)
//!   through the mesh: via a host without the backend (the backend is remote: one VXLAN hop)
//!   and via the backend's own host; and, in the same run, straight to the backend at its
//!   overlay address from a container on the first host (the same VXLAN path without the
//!   mesh): the ratios. Each path has its own client address, so one path's TIME_WAIT
//!   entries in the backend never meet another path's SYNs (a caveat of keeping the source,
//!   see the agent's `mesh` module docs).
//! * `program`: the host table with 1,000 published ports (3 backends each) programmed into
//!   an empty namespace; then the cost of ONE MORE published port (the executor's cached
//!   table, and a fresh executor that lists and parses the table first), one fewer, none.
//! * `create`: on a one-host cluster that publishes 1,000 ports already (dnsrr services), the
//!   time from `service create --publish` of one more until its chain is in the host table
//!   (seen by `nft monitor` in the host namespace), and the CLI call alone.
//!
//! Run with `scripts/bench-mesh.sh` (release build first). Needs root. Traffic stays in the
//! lab's namespaces; every loop that sends traffic is bounded.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use lab::testbed::{AgentCluster, ClusterOptions, swarmnet_binary};
use lab::{Lab, LabProcess, ensure_tools};
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    about = "published-port (routing mesh) benchmarks with real agents in namespaces (needs root)"
)]
struct Args {
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results/mesh.json")]
    out: String,
    /// Sections to run (comma separated): http, program, create.
    #[arg(long, default_value = "http,program,create")]
    only: String,
    /// Published ports already on the host (program and create sections).
    #[arg(long, default_value_t = 1000)]
    ports: usize,
    /// Backends per port of the program section.
    #[arg(long, default_value_t = 3)]
    backends: usize,
    /// Connections per run of the http section.
    #[arg(long, default_value_t = 3000)]
    connections: usize,
    /// Concurrent connections of the http section.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Runs of each http path (alternated; the median run is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Samples of the create section.
    #[arg(long, default_value_t = 10)]
    samples: usize,
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
    let p = std::env::current_exe()?.with_file_name("probe");
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
            ["http", "program", "create"].contains(s),
            "unknown section {s:?} (http, program, create)"
        );
    }
    Lab::preflight().context("this machine cannot run the network lab")?;
    ensure_tools(&["nft", "ping"])?;
    let mut results = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();
    if only.contains(&"http") {
        results.insert("http".into(), http(&args, &mut table)?);
    }
    if only.contains(&"program") {
        results.insert("program".into(), program(&args, &mut table)?);
    }
    if only.contains(&"create") {
        results.insert("create".into(), create(&args, &mut table)?);
    }
    cluster_tests::report::print_table(&table);
    cluster_tests::report::write_results(&args.out, results)?;
    Ok(())
}

// --------------------------------------------------------------------------------- http

/// One run of `probe http` from `from` to `addr:port`: (connections/s, failures).
fn run_http(
    c: &AgentCluster,
    probe: &Path,
    from: &Path,
    addr: Ipv4Addr,
    port: u16,
    args: &Args,
) -> Result<(f64, u64)> {
    let out = c.lab.exec_ok(
        from,
        &[
            &probe.display().to_string(),
            "http",
            &addr.to_string(),
            &port.to_string(),
            "--count",
            &args.connections.to_string(),
            "--parallel",
            &args.parallel.to_string(),
            "--timeout-ms",
            "2000",
        ],
    )?;
    let v: Value = serde_json::from_str(out.trim())?;
    let ok = v["ok"].as_u64().unwrap_or(0);
    let failed = v["failed"].as_u64().unwrap_or(0);
    let secs = v["elapsed_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0;
    Ok((ok as f64 / secs, failed))
}

fn http(args: &Args, table: &mut Vec<(String, String)>) -> Result<Value> {
    let probe = probe_bin()?;
    let mut opts = ClusterOptions::new("bmh", 3);
    opts.binary = Some(swarmnet_binary()?);
    opts.log_level = "warn".into();
    let mut c = AgentCluster::start_with(opts)?;
    let (via_remote, _) = c.lab.add_underlay_client("clienta", 200)?;
    let (via_local, _) = c.lab.add_underlay_client("clientb", 201)?;
    c.create_network(0, "blue", &[])?;
    c.cli_json(
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
    )?;
    let b = c.attach_with(1, "blue", "web2", &["--service", "web"])?;
    let _server: LabProcess = c.lab.spawn(
        &b.netns,
        &[
            &probe.display().to_string(),
            "serve",
            "--name",
            "web2",
            "--tcp",
            "80",
        ],
    )?;
    let inside = c.attach(0, "blue", "client")?;
    let (host1, host2) = (c.lab.host_addr(0), c.lab.host_addr(1));
    c.wait_until(Duration::from_secs(30), "every path answers", || {
        let one = |from: &Path, addr: Ipv4Addr, port: u16| -> Result<bool> {
            let out = c.lab.exec_ok(
                from,
                &[
                    &probe.display().to_string(),
                    "http",
                    &addr.to_string(),
                    &port.to_string(),
                    "--timeout-ms",
                    "500",
                ],
            )?;
            let v: Value = serde_json::from_str(out.trim())?;
            Ok(v["ok"].as_u64() == Some(1))
        };
        Ok(one(&via_remote, host1, 8080)?
            && one(&via_local, host2, 8080)?
            && one(&inside.netns, b.ip, 80)?)
    })?;
    let (mut remote, mut local, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    let mut failures = 0;
    for _ in 0..args.runs {
        let (r, f) = run_http(&c, &probe, &via_remote, host1, 8080, args)?;
        remote.push(r);
        failures += f;
        let (r, f) = run_http(&c, &probe, &inside.netns, b.ip, 80, args)?;
        direct.push(r);
        failures += f;
        let (r, f) = run_http(&c, &probe, &via_local, host2, 8080, args)?;
        local.push(r);
        failures += f;
    }
    let med = |v: &[f64]| percentile(v, 50.0);
    let ratio_remote = med(&remote) / med(&direct);
    let ratio_local = med(&local) / med(&direct);
    table.push((
        format!(
            "short HTTP connections/s, {} in flight, backend on host 2",
            args.parallel
        ),
        format!(
            "mesh via host 1 {:.0}/s, via host 2 {:.0}/s; straight to the backend (container on host 1) {:.0}/s",
            med(&remote),
            med(&local),
            med(&direct)
        ),
    ));
    table.push((
        "  ratios mesh / straight".into(),
        format!(
            "via another host {ratio_remote:.2}, via the backend's host {ratio_local:.2} (failures: {failures})"
        ),
    ));
    Ok(json!({
        "connections_per_run": args.connections,
        "parallel": args.parallel,
        "mesh_via_other_host_per_s": remote,
        "mesh_via_backend_host_per_s": local,
        "straight_to_backend_per_s": direct,
        "ratio_mesh_other_host_vs_straight": ratio_remote,
        "ratio_mesh_backend_host_vs_straight": ratio_local,
        "failures": failures,
        "paths": "outside client -> host 1 -> VXLAN -> backend on host 2; outside client -> host 2 -> backend on host 2; container on host 1 -> VXLAN -> backend (no mesh)",
    }))
}

// ------------------------------------------------------------------------------ program

fn program(args: &Args, table: &mut Vec<(String, String)>) -> Result<Value> {
    let mut lab = Lab::new("bmp", 1)?;
    let ns = lab.add_container(0, "h")?;
    let file = File::open(&ns)?;
    let (ports, backends) = (args.ports, args.backends);
    let r = std::thread::scope(|s| {
        s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
            agent::mesh::host::bench_program(ports, backends).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("bench thread panicked"))?
    })?;
    table.push((
        format!("host table with {ports} published ports x {backends} backends, from empty"),
        format!("{:.0} ms, {} changes", ms(r.first), r.first_changes),
    ));
    table.push((
        "  one more published port".into(),
        format!(
            "{:.1} ms, {} changes; fresh executor (lists and parses the table) {:.0} ms; one nft process in an empty namespace {:.1} ms",
            ms(r.one_more),
            r.one_more_changes,
            ms(r.one_more_fresh),
            ms(r.nft_floor)
        ),
    ));
    table.push((
        "  one fewer / no change".into(),
        format!(
            "{:.1} ms / {:.2} ms (generation check); fresh executor no change {:.0} ms",
            ms(r.one_removed),
            ms(r.no_op),
            ms(r.no_op_fresh)
        ),
    ));
    drop(lab);
    Ok(json!({
        "ports": ports,
        "backends_per_port": backends,
        "first_ms": ms(r.first),
        "first_changes": r.first_changes,
        "one_more_ms": ms(r.one_more),
        "one_more_changes": r.one_more_changes,
        "one_more_fresh_executor_ms": ms(r.one_more_fresh),
        "one_removed_ms": ms(r.one_removed),
        "no_change_ms": ms(r.no_op),
        "no_change_fresh_executor_ms": ms(r.no_op_fresh),
        "nft_process_floor_ms": ms(r.nft_floor),
    }))
}

// ------------------------------------------------------------------------------- create

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
    fn seen(&self, since: Instant, needle: &str) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(t, l)| *t >= since && l.contains(needle))
            .map(|(t, _)| *t)
    }
}

fn create(args: &Args, table: &mut Vec<(String, String)>) -> Result<Value> {
    let mut opts = ClusterOptions::new("bmc", 1);
    opts.binary = Some(swarmnet_binary()?);
    opts.log_level = "warn".into();
    let mut c = AgentCluster::start_with(opts)?;
    c.create_network(0, "blue", &[])?;
    let t0 = Instant::now();
    let publish = |c: &AgentCluster, i: usize| -> Result<()> {
        let name = format!("s{i:05}");
        let port = format!("{}:80", 10_000 + i);
        c.cli_ok(
            0,
            &[
                "service",
                "create",
                &name,
                "--network",
                "blue",
                "--mode",
                "dnsrr",
                "--publish",
                &port,
            ],
        )?;
        Ok(())
    };
    for i in 0..args.ports {
        publish(&c, i)?;
    }
    let fill = t0.elapsed();
    let host = c.lab.host_netns(0);
    c.wait_until(
        Duration::from_secs(120),
        "every port is in the host table",
        || {
            let t = c.lab.exec_ok(
                &host,
                &["nft", "list", "map", "ip", "swarmnet_mesh", "published"],
            )?;
            Ok(t.contains(&format!("tcp . {} ", 10_000 + args.ports - 1)))
        },
    )?;
    let mon = monitor(&mut c.lab, &host)?;
    std::thread::sleep(Duration::from_millis(300));
    let (mut e2e, mut cli) = (Vec::new(), Vec::new());
    for k in 0..args.samples {
        let i = args.ports + k;
        let t = Instant::now();
        publish(&c, i)?;
        cli.push(ms(t.elapsed()));
        let chain = format!("p_t{}", 10_000 + i);
        let deadline = Instant::now() + Duration::from_secs(30);
        let seen = loop {
            if let Some(at) = mon.seen(t, &chain) {
                break at;
            }
            ensure!(Instant::now() < deadline, "{chain} not seen within 30 s");
            std::thread::sleep(Duration::from_millis(2));
        };
        e2e.push(ms(seen.duration_since(t)));
        std::thread::sleep(Duration::from_millis(200));
    }
    let med = |v: &[f64]| percentile(v, 50.0);
    table.push((
        format!(
            "one more published service on a host publishing {} ports (dnsrr), create -> in the host table",
            args.ports
        ),
        format!(
            "p50 {:.0} ms, max {:.0} ms ({} samples; the CLI call alone p50 {:.0} ms)",
            med(&e2e),
            percentile(&e2e, 100.0),
            e2e.len(),
            med(&cli)
        ),
    ));
    table.push((
        format!("  creating the first {} published services", args.ports),
        format!("{:.1} s through the CLI, one at a time", fill.as_secs_f64()),
    ));
    Ok(json!({
        "ports_before": args.ports,
        "create_to_host_table_ms": e2e,
        "cli_call_ms": cli,
        "p50_ms": med(&e2e),
        "fill_secs": fill.as_secs_f64(),
    }))
}
