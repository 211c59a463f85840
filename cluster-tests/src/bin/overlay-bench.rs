//! Overlay benchmark: real `swarmnet agent` processes in network namespaces (one per host of
//! an [`AgentCluster`]), driven through the CLI exactly as an operator would. Prints a table
//! and writes JSON.
//!
//! * `latency`: time from the `swarmnet endpoint attach` call on host A until a long-lived
//!   container on host B gets an ICMP echo reply from the new endpoint, for each cluster size,
//!   with the parts timed on the way (see [`latency`]).
//! * `throughput`: N sequential attaches, then N detaches, on one host of a 3-host cluster.
//! * `memory`: resident memory of an agent holding 200, 500 and 1,000 endpoints (3 hosts).
//!
//! The benchmark waits while other network labs or compilers run on the machine (the test
//! suite shares it) and measures a sample again if one started meanwhile; see `--help`.
//!
//! Run with `scripts/bench-overlay.sh` (builds in release mode first). Needs root. Traffic
//! stays inside the lab's namespaces; every loop that sends traffic is bounded in count and
//! time; the lab removes everything it created when it drops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use cluster_tests::serf::percentile;
use lab::testbed::{AgentCluster, swarmnet_binary};
use lab::{Lab, NETNS_DIR, ensure_tools, find_tool};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "overlay benchmarks with real agents in network namespaces (needs root)")]
struct Args {
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results/overlay.json")]
    out: String,
    /// Sections to run (comma separated): latency, throughput, memory.
    #[arg(long, default_value = "latency,throughput,memory")]
    only: String,
    /// Cluster sizes of the latency section.
    #[arg(long, default_value = "3,10", value_delimiter = ',')]
    hosts: Vec<usize>,
    /// Measured attaches per cluster size (after one warm-up attach per host).
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Quiet time before each measured attach, in ms: the previous attach's gossip
    /// retransmissions (6 rounds of 50 ms at 10 nodes) and reconciles finish first.
    #[arg(long, default_value_t = 400)]
    gap_ms: u64,
    /// Give up on one sample's ping after this many ms (the sample counts as failed).
    #[arg(long, default_value_t = 5000)]
    reply_timeout_ms: u64,
    /// Sequential attaches (then as many detaches) of the throughput section.
    #[arg(long, default_value_t = 100)]
    ops: usize,
    /// Endpoint counts on one host at which the memory section reads the agents' RSS (one
    /// network; at most 1,000: a Linux bridge has 1,024 ports).
    #[arg(long, default_value = "200,500,1000", value_delimiter = ',')]
    mem_endpoints: Vec<usize>,
    /// Time budget of the memory section's attaches, in seconds; checkpoints not reached
    /// in time are extrapolated linearly from the measured ones (and marked so).
    #[arg(long, default_value_t = 1800)]
    mem_budget_secs: u64,
    /// Run even while other network labs or compilers (rustc) run on this machine (their CPU
    /// use skews the figures). Without it, the benchmark waits for them before each section,
    /// sample and operation, and measures a sample again if one started meanwhile.
    #[arg(long)]
    allow_concurrent: bool,
    /// Longest wait for other labs and compilers to finish (then fail).
    #[arg(long, default_value_t = 1200)]
    wait_labs_secs: u64,
}

/// Bound on one CLI call (a first attach waits about two settle periods).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    for s in &only {
        ensure!(
            ["latency", "throughput", "memory"].contains(s),
            "unknown section {s:?} (latency, throughput, memory)"
        );
    }
    Lab::preflight().context("this machine cannot run the network lab")?;
    ensure_tools(&["ping"])?;
    let mut quiet = Quiet::default();
    let bin = swarmnet_binary()?;
    let mut results = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();

    if only.contains(&"latency") {
        let mut runs = Vec::new();
        for &n in &args.hosts {
            ensure!(n >= 2, "latency needs at least 2 hosts, not {n}");
            quiet.wait(&args)?;
            runs.push(latency(n, &args, &bin, &quiet, &mut table)?);
        }
        results.insert("latency".into(), Value::Array(runs));
    }
    if only.contains(&"throughput") {
        quiet.wait(&args)?;
        results.insert(
            "throughput".into(),
            throughput(&args, &bin, &quiet, &mut table)?,
        );
    }
    if only.contains(&"memory") {
        quiet.wait(&args)?;
        results.insert("memory".into(), memory(&args, &bin, &quiet, &mut table)?);
    }
    let disturbed = quiet.disturbed();
    if !disturbed.is_empty() {
        table.push((
            "NOTE: other labs/compilers ran while measuring (see per-section counts)".into(),
            format!("{} namespaces, e.g. {}", disturbed.len(), disturbed[0]),
        ));
    }

    let width = table.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
    println!("\n{:width$}  result", "measurement");
    println!("{}", "-".repeat(width + 40));
    for (k, v) in &table {
        println!("{k:width$}  {v}");
    }
    results.insert(
        "machine".into(),
        json!({
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        }),
    );
    results.insert(
        "method".into(),
        json!({
            "cli": "every operation is a `swarmnet` CLI process against the agent's unix-socket API; times run from spawn to the exit (stdout EOF)",
            "reachable": "ping -i 0.002 from a container on host B, started when the attach call returned, with a permanent neighbour entry for the new address (the MAC B's ARP proxy answers with) so that the kernel's ARP retry clock (>= 10 ms steps) is not measured",
            "gap_ms": args.gap_ms,
        }),
    );
    results.insert("other_labs_seen_during_run".into(), json!(disturbed));
    if let Some(dir) = Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&Value::Object(results))?,
    )?;
    println!("\nJSON written to {}", args.out);
    Ok(())
}

// ------------------------------------------------------------------------------ latency

/// One measured attach. Times are from the moment the CLI process was spawned on host A.
#[derive(Debug, Clone)]
struct Sample {
    /// The attach call (CLI spawn to exit).
    attach: Duration,
    /// Last kernel change to the new endpoint's veth in A's sandbox or inside the new
    /// container before the attach call returned (A's kernel work done).
    kernel_a: Option<Duration>,
    /// First such kernel change (A's kernel work starts: everything
    /// before is CLI start, API, IPAM, local state and reading the kernel's state).
    kernel_a_first: Option<Duration>,
    /// B's agent wrote the new endpoint's neighbour entry in its sandbox (gossip arrived,
    /// debounce, reconcile).
    neigh_b: Option<Duration>,
    /// B's container installed the neighbour entry and is about to `exec` ping.
    ping_go: Option<Duration>,
    /// First echo reply in B's container.
    reachable: Option<Duration>,
}

/// Time from the attach call on host 0 ("A") until the container on host n-1 ("B") gets an
/// echo reply from the new endpoint.
///
/// Setup: a network with a /16, one warm-up attach per host (its first attach waits for the
/// network and an address block to settle; reported separately). B's warm-up container is the
/// long-lived pinger. Each sample: create a container namespace on A and start a `sh` in B's
/// container that waits for an address (both before the timer), wait `gap_ms`, start the
/// timer, run `swarmnet endpoint attach` on A, hand the returned address and MAC to the
/// waiting shell (which installs the neighbour entry and `exec`s `ping -i 0.002`; see
/// [`spawn_pinger`] for why), stop at the first reply. `ip monitor link` in A's sandbox and
/// `ip monitor neigh` in B's timestamp the kernel changes on the way. Before the samples, five
/// pings to an address that already answers measure what the ping itself costs.
fn latency(
    n: usize,
    args: &Args,
    bin: &Path,
    quiet: &Quiet,
    table: &mut Vec<(String, String)>,
) -> Result<Value> {
    eprintln!("latency: starting {n} agents");
    let started = Instant::now();
    let mut c = AgentCluster::start(&format!("ovl{n}"), n)?;
    eprintln!("  cluster up in {:.1} s", started.elapsed().as_secs_f64());
    let (a, b) = (0, n - 1);
    let cli_base = cli_baseline(&c, bin, 20)?;
    let vni = create_network(&c, bin, 0, "lat", "10.240.0.0/16")?;
    wait_network(&c, bin, "lat")?;

    // Warm-up: one attach per host, A first.
    let mut first = Vec::new();
    let mut warm = Vec::new();
    for h in 0..n {
        let ns = c.lab.add_container(h, "warm")?;
        let at = attach(&c, bin, h, "lat", &ns, &format!("warm{h}"))?;
        eprintln!("  first attach on host {h}: {:.0} ms", ms(at.took));
        first.push(at.took);
        warm.push((ns, at.ip, at.mac));
    }
    let bc = warm[b].0.clone();
    let bc_name = netns_name(&bc)?;
    // B's container must reach A's warm-up container before anything is measured.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c.lab.ping(&bc, warm[a].1, 1, None, false) {
        ensure!(
            Instant::now() < deadline,
            "B's container cannot ping A's warm-up container {} after 15 s",
            warm[a].1
        );
    }

    let sandbox = |h: usize| format!("{}-{vni}", c.hosts[h].prefix);
    let ip_tool = find_tool("ip").context("iproute2 `ip` not found")?;
    let mon_a = LineLog::spawn(
        Command::new(&ip_tool).args(["-n", &sandbox(a), "monitor", "link"]),
        false,
    )?;
    let mon_b = LineLog::spawn(
        Command::new(&ip_tool).args(["-n", &sandbox(b), "monitor", "neigh"]),
        false,
    )?;
    std::thread::sleep(Duration::from_millis(200));

    // What the ping itself costs: hand the waiting shell an address that already answers.
    let mut cal = Vec::new();
    for _ in 0..5 {
        let mut pinger = spawn_pinger(&ip_tool, &bc_name)?;
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        pinger.send_line(&format!("{} {}", warm[a].1, warm[a].2))?;
        let reply = pinger.wait_first(t0, |l| l.contains("bytes from"), Duration::from_secs(2));
        cal.push(reply.context("calibration ping to A's warm-up container got no reply")? - t0);
    }
    let ping_cost = percentile(&cal, 50.0);

    let mut samples = Vec::new();
    let mut failed = 0;
    let a_prefix = c.hosts[a].prefix.clone();
    let mut redone = 0;
    let mut attempt = 0;
    while samples.len() < args.samples {
        let k = samples.len();
        let name = format!("s{attempt}");
        attempt += 1;
        let ns = c.lab.add_container(a, &name)?;
        quiet.pause(args)?;
        let mut pinger = spawn_pinger(&ip_tool, &bc_name)?;
        // The new container's side of the attach (its eth0 arriving, addresses, routes).
        let mon_c = LineLog::spawn(
            Command::new(&ip_tool).args([
                "-n",
                &netns_name(&ns)?,
                "monitor",
                "link",
                "address",
                "route",
            ]),
            false,
        )?;
        std::thread::sleep(Duration::from_millis(args.gap_ms));
        let t0 = Instant::now();
        let at = attach(&c, bin, a, "lat", &ns, &name)?;
        pinger.send_line(&format!("{} {}", at.ip, at.mac))?;
        let reply = pinger.wait_first(
            t0,
            |l| l.contains("bytes from"),
            Duration::from_millis(args.reply_timeout_ms),
        );
        let go = pinger.first(t0, &|l: &str| l == "go");
        drop(pinger);
        let ip_s = at.ip.to_string();
        let neigh = mon_b.wait_first(
            t0,
            |l| l.split_whitespace().next() == Some(ip_s.as_str()),
            Duration::from_millis(if reply.is_some() { 200 } else { 0 }),
        );
        let veth = format!("{a_prefix}{:08x}", fnv1a32(at.id.as_bytes()));
        let kernel = [
            mon_a.last_between(t0, at.end, |l| l.contains(&veth)),
            mon_c.last_between(t0, at.end, |_| true),
        ]
        .into_iter()
        .flatten()
        .max();
        let kernel_first = [
            mon_a.first(t0, &|l: &str| l.contains(&veth)),
            mon_c.first(t0, &|_: &str| true),
        ]
        .into_iter()
        .flatten()
        .min();
        drop(mon_c);
        let s = Sample {
            attach: at.took,
            kernel_a: kernel.map(|t| t - t0),
            kernel_a_first: kernel_first.map(|t| t - t0),
            neigh_b: neigh.map(|t| t - t0),
            ping_go: go.map(|t| t - t0),
            reachable: reply.map(|t| t - t0),
        };
        if quiet.busy(args) && redone < args.samples {
            redone += 1;
            eprintln!(
                "  sample {k}: another lab or compiler started meanwhile; measuring it again"
            );
            continue;
        }
        if s.reachable.is_none() {
            failed += 1;
            eprintln!("  sample {k}: {} not reachable from B", at.ip);
        }
        samples.push(s);
        if (k + 1) % 10 == 0 {
            eprintln!("  {} / {} samples", k + 1, args.samples);
        }
    }
    drop((mon_a, mon_b));

    let pick = |f: &dyn Fn(&Sample) -> Option<Duration>| -> Vec<Duration> {
        samples.iter().filter_map(f).collect()
    };
    let reach = pick(&|s| s.reachable);
    let att = pick(&|s| Some(s.attach));
    let ka = pick(&|s| s.kernel_a);
    let kf = pick(&|s| s.kernel_a_first);
    let k_span = pick(&|s| Some(s.kernel_a?.saturating_sub(s.kernel_a_first?)));
    let after_kernel = pick(&|s| Some(s.attach.saturating_sub(s.kernel_a?)));
    let nb = pick(&|s| s.neigh_b);
    // parts, per sample where both ends were seen
    let gossip = pick(&|s| s.neigh_b.map(|nb| nb.saturating_sub(s.attach)));
    let last_mile = pick(&|s| Some(s.reachable?.saturating_sub(s.neigh_b?)));
    // Samples whose ping began only after B was programmed: their first reply includes up to
    // the ping's own start (see `ping_cost`).
    let late_ping = samples
        .iter()
        .filter(|s| matches!((s.ping_go, s.neigh_b), (Some(g), Some(nb)) if g > nb))
        .count();
    let stats = |v: &[Duration]| {
        json!({
            "n": v.len(),
            "p50_ms": ms(percentile(v, 50.0)),
            "p99_ms": ms(percentile(v, 99.0)),
            "max_ms": ms(percentile(v, 100.0)),
        })
    };
    table.push((
        format!(
            "{n} hosts: attach on A until B pings it, p50 / p99 / max ({} samples)",
            reach.len()
        ),
        format!(
            "{:.1} / {:.1} / {:.1} ms{}",
            ms(percentile(&reach, 50.0)),
            ms(percentile(&reach, 99.0)),
            ms(percentile(&reach, 100.0)),
            if failed > 0 {
                format!(" ({failed} never replied)")
            } else {
                String::new()
            }
        ),
    ));
    table.push((
        format!(
            "{n} hosts:   CLI baseline (`cluster status`: process, connect, trivial call), p50"
        ),
        format!(
            "{:.1} ms; ping start to first reply, known peer: {:.1} ms; late pings: {late_ping}",
            ms(cli_base),
            ms(ping_cost)
        ),
    ));
    table.push((
        format!("{n} hosts:   attach call alone (CLI spawn to exit), p50 / p99"),
        format!(
            "{:.1} / {:.1} ms",
            ms(percentile(&att, 50.0)),
            ms(percentile(&att, 99.0))
        ),
    ));
    table.push((
        format!("{n} hosts:   A: t0 -> first kernel change / kernel work / done -> CLI exit, p50"),
        format!(
            "{:.1} / {:.1} / {:.1} ms (A's veth done at {:.1} ms)",
            ms(percentile(&kf, 50.0)),
            ms(percentile(&k_span, 50.0)),
            ms(percentile(&after_kernel, 50.0)),
            ms(percentile(&ka, 50.0))
        ),
    ));
    table.push((
        format!("{n} hosts:   B's neighbour entry written, p50 / p99 (from t0)"),
        format!(
            "{:.1} / {:.1} ms",
            ms(percentile(&nb, 50.0)),
            ms(percentile(&nb, 99.0))
        ),
    ));
    table.push((
        format!("{n} hosts:   attach returned -> B programmed (gossip, 20 ms debounce, reconcile), p50 / p99"),
        format!("{:.1} / {:.1} ms", ms(percentile(&gossip, 50.0)), ms(percentile(&gossip, 99.0))),
    ));
    table.push((
        format!("{n} hosts:   B programmed -> first reply (forwarding, ICMP), p50 / p99"),
        format!(
            "{:.1} / {:.1} ms",
            ms(percentile(&last_mile, 50.0)),
            ms(percentile(&last_mile, 99.0))
        ),
    ));
    table.push((
        format!("{n} hosts: first attach per host (network + block settle), min / max"),
        format!(
            "{:.0} / {:.0} ms (host 0: {:.0} ms)",
            ms(percentile(&first, 0.0)),
            ms(percentile(&first, 100.0)),
            ms(first[0])
        ),
    ));
    let opt = |d: Option<Duration>| d.map(ms);
    Ok(json!({
        "hosts": n,
        "samples": args.samples,
        "failed": failed,
        "redone_because_another_lab_started": redone,
        "ping_start_to_reply_known_ip_p50_ms": ms(ping_cost),
        "ping_started_after_b_programmed": late_ping,
        "reachable": stats(&reach),
        "attach_call": stats(&att),
        "kernel_a_done": stats(&ka),
        "kernel_a_first_change": stats(&kf),
        "kernel_a_span": stats(&k_span),
        "kernel_a_done_to_cli_exit": stats(&after_kernel),
        "neighbour_on_b": stats(&nb),
        "attach_return_to_b_programmed": stats(&gossip),
        "b_programmed_to_reply": stats(&last_mile),
        "cli_baseline_status_call_p50_ms": ms(cli_base),
        "first_attach_ms": first.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "per_sample": samples.iter().map(|s| json!({
            "attach_ms": ms(s.attach), "kernel_a_first_ms": opt(s.kernel_a_first), "kernel_a_ms": opt(s.kernel_a), "neigh_b_ms": opt(s.neigh_b),
            "ping_go_ms": opt(s.ping_go), "reachable_ms": opt(s.reachable),
        })).collect::<Vec<_>>(),
    }))
}

/// A shell in namespace `netns` that reads "IP MAC" from stdin, makes MAC the permanent
/// neighbour entry of IP on `eth0`, and `exec`s a ping to IP: every 2 ms, 2,500 echo requests
/// at most, for 5 s at most.
///
/// Why the static entry: a container that sends to an address its agent has not programmed
/// yet gets no ARP answer and retries only every `retrans_time` (1 s by default, 10 ms at the
/// least), so its first reply would measure the kernel's ARP retry clock. With the entry (the
/// MAC B's ARP proxy answers with), the first reply marks the moment the overlay forwards;
/// the proxy's own entry on B is timed separately by `ip monitor neigh`.
fn spawn_pinger(ip_tool: &Path, netns: &str) -> Result<LineLog> {
    LineLog::spawn(
        Command::new(ip_tool).args([
            "netns",
            "exec",
            netns,
            "sh",
            "-c",
            "read ip mac && ip neigh replace \"$ip\" lladdr \"$mac\" dev eth0 nud permanent \
             && echo go && exec ping -n -i 0.002 -c 2500 -w 5 \"$ip\"",
        ]),
        true,
    )
}

// --------------------------------------------------------------------------- throughput

/// `ops` sequential attaches on host 0 of a 3-host cluster, then as many detaches; every
/// container namespace exists before the clock starts.
fn throughput(
    args: &Args,
    bin: &Path,
    quiet: &Quiet,
    table: &mut Vec<(String, String)>,
) -> Result<Value> {
    let n = 3;
    eprintln!("throughput: starting {n} agents");
    let mut c = AgentCluster::start("ovtp", n)?;
    create_network(&c, bin, 0, "tp", "10.241.0.0/16")?;
    wait_network(&c, bin, "tp")?;
    for h in 0..2 {
        let ns = c.lab.add_container(h, "warm")?;
        attach(&c, bin, h, "tp", &ns, &format!("warm{h}"))?;
    }
    let mut nss = Vec::new();
    for k in 0..args.ops {
        nss.push(c.lab.add_container(0, &format!("t{k}"))?);
    }
    std::thread::sleep(Duration::from_secs(1));
    // Totals are sums of the operations' own times: a pause while another lab runs is not
    // counted (`disturbed` counts operations during which one started anyway).
    let mut att = Vec::new();
    let mut disturbed = 0;
    for (k, ns) in nss.iter().enumerate() {
        quiet.pause(args)?;
        att.push(attach(&c, bin, 0, "tp", ns, &format!("t{k}"))?.took);
        disturbed += usize::from(quiet.busy(args));
    }
    let attach_total: Duration = att.iter().sum();
    let mut det = Vec::new();
    for k in 0..args.ops {
        let name = format!("t{k}");
        quiet.pause(args)?;
        det.push(cli_ok(&c, bin, 0, &["endpoint", "detach", &name])?.took);
        disturbed += usize::from(quiet.busy(args));
    }
    let detach_total: Duration = det.iter().sum();
    let slow = |v: &[Duration]| {
        v.iter()
            .filter(|d| **d > Duration::from_millis(500))
            .count()
    };
    let rate = |total: Duration| args.ops as f64 / total.as_secs_f64();
    for (what, v, total) in [
        ("attaches", &att, attach_total),
        ("detaches", &det, detach_total),
    ] {
        table.push((
            format!(
                "{} sequential {what} on one host: ops/s; per op p50 / p99 / max",
                args.ops
            ),
            format!(
                "{:.1}/s; {:.1} / {:.1} / {:.1} ms ({} over 500 ms){}",
                rate(total),
                ms(percentile(v, 50.0)),
                ms(percentile(v, 99.0)),
                ms(percentile(v, 100.0)),
                slow(v),
                if disturbed > 0 {
                    format!("; {disturbed} ops disturbed by another lab")
                } else {
                    String::new()
                }
            ),
        ));
    }
    let side = |v: &[Duration], total: Duration| {
        json!({
            "total_ms": ms(total), "ops_per_s": rate(total),
            "p50_ms": ms(percentile(v, 50.0)), "p99_ms": ms(percentile(v, 99.0)),
            "max_ms": ms(percentile(v, 100.0)), "over_500ms": slow(v),
            "per_op_ms": v.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        })
    };
    Ok(json!({
        "hosts": n, "ops": args.ops, "ops_disturbed_by_another_lab": disturbed,
        "attach": side(&att, attach_total),
        "detach": side(&det, detach_total),
    }))
}

// ------------------------------------------------------------------------------- memory

/// RSS of the agent on host 0 of a 3-host cluster as it gains endpoints on one network (the
/// other two agents each hold one endpoint and program all of host 0's as remote peers).
fn memory(
    args: &Args,
    bin: &Path,
    quiet: &Quiet,
    table: &mut Vec<(String, String)>,
) -> Result<Value> {
    let n = 3;
    let mut targets = args.mem_endpoints.clone();
    targets.sort_unstable();
    targets.dedup();
    ensure!(
        targets.first().is_some_and(|t| *t >= 1) && targets.last().is_some_and(|t| *t <= 1000),
        "--mem-endpoints: counts in 1..=1000 (a Linux bridge has 1,024 ports)"
    );
    eprintln!("memory: starting {n} agents");
    let mut c = AgentCluster::start("ovmem", n)?;
    let pids: Vec<u32> = (0..n)
        .map(|h| {
            c.hosts[h]
                .process
                .as_ref()
                .map(|p| p.pid())
                .context("agent not running")
        })
        .collect::<Result<_>>()?;
    for &pid in &pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        ensure!(
            comm.trim() == "swarmnet",
            "pid {pid} is {comm:?}, not the agent"
        );
    }
    let rss_all = || -> Vec<Option<u64>> { pids.iter().map(|p| status_kb(*p, "VmRSS")).collect() };
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_all();
    create_network(&c, bin, 0, "mem", "10.242.0.0/16")?;
    wait_network(&c, bin, "mem")?;
    for h in 0..n {
        let ns = c.lab.add_container(h, "warm")?;
        attach(&c, bin, h, "mem", &ns, &format!("warm{h}"))?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut points = vec![json!({
        "endpoints": 1, "rss_kb": rss_all(), "measured": true,
    })];
    let mut fit: Vec<(f64, f64)> = vec![(1.0, rss_all()[0].unwrap_or(0) as f64)];
    let budget = Instant::now() + Duration::from_secs(args.mem_budget_secs);
    let mut have = 1; // endpoints on host 0 (the warm-up one)
    let run0 = Instant::now();
    let mut out_of_time = false;
    for &target in &targets {
        let mut window = Vec::new();
        let w0 = Instant::now();
        while have < target && Instant::now() < budget {
            let name = format!("m{have}");
            let ns = c.lab.add_container(0, &name)?;
            quiet.pause(args)?;
            window.push(attach(&c, bin, 0, "mem", &ns, &name)?.took);
            have += 1;
            if have % 50 == 0 {
                eprintln!(
                    "  {have} endpoints on host 0 ({:.0} s; last attach {:.0} ms)",
                    run0.elapsed().as_secs_f64(),
                    ms(*window.last().unwrap_or(&Duration::ZERO))
                );
            }
        }
        if window.is_empty() && have < target {
            out_of_time = true;
            break;
        }
        let took = w0.elapsed();
        std::thread::sleep(Duration::from_secs(3)); // reconciles on every host finish
        quiet.pause(args)?;
        // RSS moves with each reconcile's transient allocations: 5 reads, 1 s apart.
        let mut reads: Vec<Vec<Option<u64>>> = Vec::new();
        for _ in 0..5 {
            reads.push(rss_all());
            std::thread::sleep(Duration::from_secs(1));
        }
        let rss: Vec<Option<u64>> = (0..n)
            .map(|h| {
                let mut v: Vec<u64> = reads.iter().filter_map(|r| r[h]).collect();
                v.sort_unstable();
                v.get(v.len() / 2).copied()
            })
            .collect();
        let rss_max0 = reads.iter().filter_map(|r| r[0]).max();
        let hwm = status_kb(pids[0], "VmHWM");
        eprintln!("  {have} endpoints: host 0 RSS {:?} kB", rss[0]);
        fit.push((have as f64, rss[0].unwrap_or(0) as f64));
        points.push(json!({
            "endpoints": have, "measured": true, "rss_kb": rss, "rss_reads_kb": reads,
            "rss_max_kb_host0": rss_max0, "hwm_kb_host0": hwm,
            "window_attaches": window.len(), "window_s": took.as_secs_f64(),
            "window_attach_p50_ms": ms(percentile(&window, 50.0)),
            "window_attach_p99_ms": ms(percentile(&window, 99.0)),
        }));
        table.push((
            format!("agent RSS with {have} endpoints: host 0 median / peak (the 2 peers)"),
            format!(
                "{:.1} / {:.1} MB ({}); attaches {:.0} / {:.0} ms p50 / p99 in the last window",
                rss[0].unwrap_or(0) as f64 / 1024.0,
                hwm.unwrap_or(0) as f64 / 1024.0,
                rss[1..]
                    .iter()
                    .map(|r| format!("{:.1} MB", r.unwrap_or(0) as f64 / 1024.0))
                    .collect::<Vec<_>>()
                    .join(", "),
                ms(percentile(&window, 50.0)),
                ms(percentile(&window, 99.0)),
            ),
        ));
        if have < target {
            out_of_time = true;
            break;
        }
    }
    // Least-squares line through the measured (endpoints, RSS) points.
    let (slope, intercept) = linear_fit(&fit);
    let mut extrapolated = Vec::new();
    if out_of_time {
        for &t in targets.iter().filter(|t| **t > have) {
            let est = intercept + slope * t as f64;
            extrapolated.push(json!({"endpoints": t, "rss_kb_host0_estimate": est}));
            table.push((
                format!("agent RSS with {t} endpoints (EXTRAPOLATED: budget ran out at {have})"),
                format!("~{:.1} MB", est / 1024.0),
            ));
        }
    }
    table.push((
        "agent RSS: idle (no network) / per endpoint (least squares)".into(),
        format!(
            "{:.1} MB / {:.1} kB",
            idle[0].unwrap_or(0) as f64 / 1024.0,
            slope
        ),
    ));
    Ok(json!({
        "hosts": n,
        "idle_rss_kb": idle,
        "points": points,
        "slope_kb_per_endpoint": slope,
        "intercept_kb": intercept,
        "extrapolated": extrapolated,
        "attach_run_s": run0.elapsed().as_secs_f64(),
    }))
}

fn linear_fit(pts: &[(f64, f64)]) -> (f64, f64) {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return (0.0, pts.first().map_or(0.0, |p| p.1));
    }
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
    let (mx, my) = (sx / n, sy / n);
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, my - slope * mx)
}

// ------------------------------------------------------------------------------ helpers

/// A CLI call: whether it succeeded, what it printed, how long it took.
#[derive(Debug)]
struct Timed {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
    /// When it exited (its stdout closed).
    end: Instant,
}

/// Runs `cmd` to completion (at most `timeout`, then it is killed), timing it from spawn to
/// the close of its stdout, stamped by a reader thread as it happens.
fn run_timed(mut cmd: Command, timeout: Duration) -> Result<Timed> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        let _ = tx.send((Instant::now(), b));
    });
    let errs = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let Ok((end, stdout)) = rx.recv_timeout(timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("{cmd:?} did not finish in {timeout:?}");
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let stderr = errs.join().unwrap_or_default();
    Ok(Timed {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        took: end - start,
        end,
    })
}

/// `swarmnet --api <host's API> <args>`, bounded by [`CLI_TIMEOUT`].
fn cli(c: &AgentCluster, bin: &Path, host: usize, args: &[&str]) -> Result<Timed> {
    let mut cmd = Command::new(bin);
    cmd.arg("--api").arg(&c.hosts[host].api).args(args);
    run_timed(cmd, CLI_TIMEOUT)
}

/// [`cli`] that must succeed.
fn cli_ok(c: &AgentCluster, bin: &Path, host: usize, args: &[&str]) -> Result<Timed> {
    let t = cli(c, bin, host, args)?;
    ensure!(
        t.ok,
        "swarmnet {} on host {host} failed: {}",
        args.join(" "),
        t.stderr.trim()
    );
    Ok(t)
}

/// Median of `count` `swarmnet cluster status` calls: the cost of a CLI process, its
/// connection and a trivial API call.
fn cli_baseline(c: &AgentCluster, bin: &Path, count: usize) -> Result<Duration> {
    let mut v = Vec::new();
    for _ in 0..count {
        v.push(cli_ok(c, bin, 0, &["cluster", "status"])?.took);
    }
    Ok(percentile(&v, 50.0))
}

/// Creates `name` with `subnet` through host `host`'s agent; returns its VNI.
fn create_network(
    c: &AgentCluster,
    bin: &Path,
    host: usize,
    name: &str,
    subnet: &str,
) -> Result<u32> {
    let t = cli_ok(
        c,
        bin,
        host,
        &["--json", "network", "create", name, "--subnet", subnet],
    )?;
    let v: Value = serde_json::from_str(&t.stdout)
        .with_context(|| format!("network create printed {}", t.stdout))?;
    let vni = v["vni"].as_u64().context("no vni in the reply")?;
    Ok(vni as u32)
}

/// Waits (at most 15 s) until every agent knows network `name`.
fn wait_network(c: &AgentCluster, bin: &Path, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    for h in 0..c.hosts.len() {
        while !cli(c, bin, h, &["network", "inspect", name])?.ok {
            ensure!(
                Instant::now() < deadline,
                "host {h} does not know network {name} after 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// An attach call's result.
#[derive(Debug)]
struct Attached {
    ip: Ipv4Addr,
    mac: String,
    id: String,
    took: Duration,
    end: Instant,
}

/// `swarmnet --json endpoint attach <net> --netns <ns> --name <name>` on `host`, timed.
fn attach(
    c: &AgentCluster,
    bin: &Path,
    host: usize,
    net: &str,
    ns: &Path,
    name: &str,
) -> Result<Attached> {
    let path = ns.display().to_string();
    let t = cli_ok(
        c,
        bin,
        host,
        &[
            "--json", "endpoint", "attach", net, "--netns", &path, "--name", name,
        ],
    )?;
    let v: Value =
        serde_json::from_str(&t.stdout).with_context(|| format!("attach printed {}", t.stdout))?;
    let ip = v["ip"]
        .as_str()
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no ip in the attach reply {v}"))?;
    let mac = v["mac"]
        .as_str()
        .with_context(|| format!("no mac in the attach reply {v}"))?
        .to_string();
    let id = v["id"]
        .as_str()
        .with_context(|| format!("no id in the attach reply {v}"))?
        .to_string();
    Ok(Attached {
        ip,
        mac,
        id,
        took: t.took,
        end: t.end,
    })
}

/// A child process whose stdout lines are stamped with [`Instant::now`] by a reader thread as
/// they arrive. Killed and reaped on drop.
#[derive(Debug)]
struct LineLog {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl LineLog {
    fn spawn(cmd: &mut Command, with_stdin: bool) -> Result<LineLog> {
        cmd.stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let stdin = child.stdin.take();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let now = Instant::now();
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((now, line));
            }
        });
        Ok(LineLog {
            child,
            stdin,
            lines,
        })
    }

    fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("no stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// When the first line at or after `since` matching `pred` arrived.
    fn first(&self, since: Instant, pred: &impl Fn(&str) -> bool) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(t, l)| *t >= since && pred(l))
            .map(|(t, _)| *t)
    }

    /// [`LineLog::first`], waiting for it at most `timeout`.
    fn wait_first(
        &self,
        since: Instant,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.first(since, &pred) {
                return Some(t);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// When the last line in `[since, until]` matching `pred` arrived.
    fn last_between(
        &self,
        since: Instant,
        until: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Option<Instant> {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|(t, l)| *t >= since && *t <= until && pred(l))
            .map(|(t, _)| *t)
    }
}

impl Drop for LineLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/<pid>/status` (VmRSS, VmHWM).
fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The name of a namespace under [`NETNS_DIR`] (for `ip netns exec`).
fn netns_name(path: &Path) -> Result<String> {
    ensure!(
        path.parent() == Some(Path::new(NETNS_DIR)),
        "{} is not a named namespace",
        path.display()
    );
    Ok(path
        .file_name()
        .context("namespace without a name")?
        .to_string_lossy()
        .into_owned())
}

/// Keeps the benchmark off a machine shared with other labs (see `--wait-labs-secs`), and
/// notes any that appeared while it ran.
#[derive(Debug, Default)]
struct Quiet {
    /// Other labs' namespaces seen while a section ran (sorted, deduplicated).
    seen: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// A section is running (the watcher records only then).
    active: Arc<AtomicBool>,
    watching: bool,
}

impl Quiet {
    /// Waits for other labs to finish (bounded), then watches (every 2 s, in a thread that
    /// lives as long as the program) for labs that are not this process's.
    fn wait(&mut self, args: &Args) -> Result<()> {
        self.active.store(false, Ordering::SeqCst);
        self.pause(args)?;
        self.active.store(true, Ordering::SeqCst);
        if !self.watching {
            self.watching = true;
            let (seen, active) = (self.seen.clone(), self.active.clone());
            std::thread::spawn(move || {
                loop {
                    let others = other_labs();
                    if active.load(Ordering::SeqCst) {
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend(others);
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
            });
        }
        Ok(())
    }

    /// Whether another lab is running now (never, with --allow-concurrent).
    fn busy(&self, args: &Args) -> bool {
        !args.allow_concurrent && !other_labs().is_empty()
    }

    /// Blocks while other labs run (at most --wait-labs-secs, then fails); used between
    /// samples and operations, so that what is timed runs on a machine of its own.
    fn pause(&self, args: &Args) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(args.wait_labs_secs);
        let mut said = false;
        // The watcher does not count labs that run while nothing is being measured.
        let was_active = self.active.load(Ordering::SeqCst);
        loop {
            let others = other_labs();
            if others.is_empty() || args.allow_concurrent {
                self.active.store(was_active, Ordering::SeqCst);
                return Ok(());
            }
            self.active.store(false, Ordering::SeqCst);
            ensure!(
                Instant::now() < deadline,
                "other network labs or compilers are still running on this machine ({}, e.g. {}) \
                 after {} s; their CPU use would skew the figures (--allow-concurrent runs anyway)",
                others.len(),
                others[0],
                args.wait_labs_secs
            );
            if !said {
                eprintln!("waiting for other labs/compilers to finish ({})", others[0]);
                said = true;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn disturbed(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// What else loads the machine: namespaces of other processes' network labs
/// (`sl<pid % 1000>-<index>-...`), and running compilers (`rustc <pid>`).
fn other_labs() -> Vec<String> {
    let mut v = lab_namespaces();
    if let Ok(d) = std::fs::read_dir("/proc") {
        for e in d.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.bytes().all(|b| b.is_ascii_digit())
                && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "rustc")
            {
                v.push(format!("rustc {name}"));
            }
        }
    }
    v
}

/// Namespaces of other processes' network labs present on the machine.
fn lab_namespaces() -> Vec<String> {
    let mine = format!("sl{}-", std::process::id() % 1000);
    let is_lab = |n: &str| {
        if n.starts_with(&mine) {
            return false;
        }
        let Some(rest) = n.strip_prefix("sl") else {
            return false;
        };
        let mut parts = rest.splitn(3, '-');
        let digits = |s: Option<&str>| {
            s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        };
        digits(parts.next()) && digits(parts.next()) && parts.next().is_some()
    };
    let mut v: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| is_lab(n))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// FNV-1a, 32 bits: how the overlay names an endpoint's sandbox-side veth
/// (`<prefix><8 hex digits of fnv1a32(endpoint id)>`, `overlay::Names::veth`).
fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}
