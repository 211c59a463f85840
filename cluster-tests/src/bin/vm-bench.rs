//! Benchmarks that need a kernel with ESP and IPVS, in kernel-VM guests (Debian's stock
//! kernel under qemu; TCG unless KVM really works). Prints a table and writes JSON. Every
//! comparison is made in the same run, alternating the variants; ratios are what to read
//! (under TCG the CPU, AES-NI included, is emulated: absolute figures are far below real
//! hardware).
//!
//! * `esp`: two guests, a real agent in each; TCP throughput (`iperf3`, one stream) between
//!   containers on an encrypted network, on a clear network, and between the guests
//!   themselves (the underlay), alternated, median of the runs; ratio encrypted / clear.
//! * `lb`: one guest; the agent's two balancers (`agent::lb`): program 1,000 services x 10
//!   backends into an empty namespace, then one backend removed, then the same spec again
//!   (and by a fresh balancer); then short HTTP connections per second from a client
//!   namespace holding those 1,000 services plus one real VIP over 3 backends, through the
//!   VIP with nftables, with IPVS, and straight to a backend, alternated. The guest part
//!   is this binary's `guest-lb` command, run inside the guest.
//!
//! Run with `scripts/bench-vm.sh`. Needs root (the guests' network namespace). Traffic
//! stays in the guests and their namespace; every loop is bounded.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::lb::ipvs_backend::{IpvsBalancer, ipvs_available};
use agent::lb::{Backend, LbSpec, LoadBalancer, NftLoadBalancer, VipService};
use agent::records::{Protocol, ServicePort};
use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand};
use cluster_tests::vm::{self, Guest};
use cluster_tests::vm_agents::{GuestAgents, GuestContainer, exec_server_beside_me};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "ESP and IPVS benchmarks in kernel-VM guests (needs root)")]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results/vm.json")]
    out: String,
    /// Sections to run (comma separated): esp, lb.
    #[arg(long, default_value = "esp,lb")]
    only: String,
    /// Runs of each variant (alternated; the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of each iperf3 run.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    #[command(flatten)]
    lb: LbArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct LbArgs {
    /// Services programmed into one namespace.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Backends per service.
    #[arg(long, default_value_t = 10)]
    backends: usize,
    /// Short connections per run of the connection rate.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Connections in flight.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Runs of each connection-rate variant (`guest-lb`).
    #[arg(long, default_value_t = 3)]
    lb_runs: usize,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The balancer benchmark, inside a guest (prints JSON).
    GuestLb {
        #[command(flatten)]
        lb: LbArgs,
    },
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    s[(s.len() - 1) / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Cmd::GuestLb { lb }) = &args.cmd {
        let v = guest_lb(lb)?;
        println!("{v}");
        return Ok(());
    }
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    for s in &only {
        ensure!(["esp", "lb"].contains(s), "unknown section {s:?} (esp, lb)");
    }
    let kit = match vm::kit() {
        Ok(k) => k,
        Err(why) => bail!("the kernel-VM kit is unavailable here: {why}"),
    };
    let exec = exec_server_beside_me()
        .context("vm-exec not found beside this binary: build it (cargo build --release -p cluster-tests --bin vm-exec)")?;
    let mut results = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();
    let loadavg = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    results.insert(
        "guest".into(),
        json!({"kernel": kit.kernel_release, "accel": vm::accelerator_name()}),
    );
    results.insert("host_loadavg_at_start".into(), json!(loadavg()));
    if only.contains(&"esp") {
        results.insert("esp".into(), esp(&args, &exec, &mut table)?);
    }
    if only.contains(&"lb") {
        results.insert("lb".into(), lb(&args, &exec, &mut table)?);
    }
    results.insert("host_loadavg_at_end".into(), json!(loadavg()));
    cluster_tests::report::print_table(&table);
    cluster_tests::report::write_results(&args.out, results)?;
    Ok(())
}

// ---------------------------------------------------------------------------------- esp

/// iperf3 from `client` (a shell prefix: run in a container or the guest itself) on guest
/// 0 to `server_prefix` on guest 1 listening on `addr`: received bits/s.
fn iperf(c: &GuestAgents, client: &str, server: &str, addr: Ipv4Addr, secs: u64) -> Result<f64> {
    c.sh(
        1,
        &format!("{server} iperf3 -s -1 -D -B {addr} >/dev/null 2>&1"),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let out = c.net.sh_timeout(
        0,
        &format!("{client} iperf3 -c {addr} -t {secs} -J"),
        Duration::from_secs(secs + 60),
    )?;
    let v: Value = serde_json::from_str(&out).context("iperf3 -J output")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("no end.sum_received in {}", v["error"]))
}

fn in_ns(c: &GuestContainer) -> String {
    format!("ip netns exec {}", c.name)
}

fn esp(args: &Args, exec: &Path, table: &mut Vec<(String, String)>) -> Result<Value> {
    let swarmnet = lab::testbed::swarmnet_binary()?;
    let guests = GuestAgents::guests(&["bench1", "bench2"], &swarmnet, exec);
    let net = vm::start_network(&guests).map_err(|why| anyhow::anyhow!("{why}"))?;
    let c = GuestAgents::start(net, &swarmnet, &["--log-level", "warn"])?;
    let r = (|| -> Result<Value> {
        c.each(|i| {
            c.cli_ok(
                i,
                &[
                    "cluster",
                    "keys",
                    "set",
                    "--dataplane",
                    "1:000102030405060708090a0b0c0d0e0f",
                ],
            )
        })?;
        c.create_network(0, "enc", &["--encrypted"])?;
        c.create_network(0, "open", &[])?;
        let (e1, e2) = (c.attach(0, "enc", "e1")?, c.attach(1, "enc", "e2")?);
        let (o1, o2) = (c.attach(0, "open", "o1")?, c.attach(1, "open", "o2")?);
        c.wait_ping(&e1, e2.ip, Duration::from_secs(60))?;
        c.wait_ping(&o1, o2.ip, Duration::from_secs(60))?;
        let (mut under, mut clear, mut enc) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.runs {
            under.push(iperf(&c, "", "", c.net.addr(1), args.secs)?);
            clear.push(iperf(&c, &in_ns(&o1), &in_ns(&o2), o2.ip, args.secs)?);
            enc.push(iperf(&c, &in_ns(&e1), &in_ns(&e2), e2.ip, args.secs)?);
            println!(
                "run {}: underlay {:.0}, clear overlay {:.0}, encrypted overlay {:.0} Mbit/s",
                run + 1,
                under[run] / 1e6,
                clear[run] / 1e6,
                enc[run] / 1e6
            );
        }
        let esp_bytes: u64 = cluster_tests::xfrm_text::parse_states(&c.sh(0, "ip -s xfrm state")?)
            .iter()
            .filter(|s| s.src == c.net.addr(0))
            .map(|s| s.bytes)
            .sum();
        let driver = c
            .sh(
                0,
                "grep -A4 '^name *: rfc4106(gcm(aes))' /proc/crypto | sed -n 's/^driver *: //p' | head -1",
            )?
            .trim()
            .to_string();
        let (u, cl, en) = (median(&under), median(&clear), median(&enc));
        // Each run's variants ran back to back: their ratio is steadier than the ratio of
        // medians when the host's load changes between runs.
        let per_run: Vec<f64> = enc.iter().zip(&clear).map(|(e, c)| e / c).collect();
        let ratio = median(&per_run);
        table.push((
            format!("TCP throughput between two guests (iperf3, {} s, median of {})", args.secs, args.runs),
            format!(
                "underlay {:.0} Mbit/s, clear overlay {:.0}, encrypted overlay {:.0} (MTU {} vs {})",
                u / 1e6,
                cl / 1e6,
                en / 1e6,
                e1.mtu,
                o1.mtu
            ),
        ));
        table.push((
            "  ratio encrypted / clear overlay".into(),
            format!(
                "{ratio:.2}, median of the runs' ratios (clear overlay / underlay {:.2}; AEAD \
                 driver {driver})",
                cl / u
            ),
        ));
        Ok(json!({
            "seconds_per_run": args.secs,
            "underlay_bps": under,
            "clear_overlay_bps": clear,
            "encrypted_overlay_bps": enc,
            "mtu_encrypted": e1.mtu,
            "mtu_clear": o1.mtu,
            "ratio_encrypted_vs_clear_per_run": per_run,
            "ratio_encrypted_vs_clear": ratio,
            "aead_driver": driver,
            "ratio_clear_vs_underlay": cl / u,
            "esp_bytes_sent_by_guest_1": esp_bytes,
        }))
    })();
    for run in c.finish() {
        println!("{}", run.summary());
    }
    r
}

// ----------------------------------------------------------------------------------- lb

fn lb(args: &Args, exec: &Path, table: &mut Vec<(String, String)>) -> Result<Value> {
    let me = std::env::current_exe()?;
    let probe = me.with_file_name("probe");
    ensure!(
        probe.is_file(),
        "{} not found: build it (cargo build --release -p cluster-tests --bin probe)",
        probe.display()
    );
    let g = Guest::served("lbbench", exec)
        .with_binary(&me)
        .with_binary(&probe)
        .with_cpus(2)
        .with_mem_mb(1024);
    let net = vm::start_network(&[g]).map_err(|why| anyhow::anyhow!("{why}"))?;
    let l = &args.lb;
    let cmd = format!(
        "{} guest-lb --services {} --backends {} --connections {} --parallel {} --lb-runs {}",
        me.display(),
        l.services,
        l.backends,
        l.connections,
        l.parallel,
        l.lb_runs
    );
    let out = net.exec_timeout(0, &cmd, Duration::from_secs(1800));
    let runs = net.finish();
    for r in &runs {
        println!("{}", r.summary());
    }
    let out = out?;
    eprint!("{}", out.stderr);
    ensure!(
        out.success(),
        "guest-lb failed ({:?}): {}",
        out.code,
        out.stderr
    );
    let v: Value = serde_json::from_str(out.stdout.lines().last().unwrap_or(""))
        .with_context(|| format!("guest-lb printed no JSON: {}", out.stdout))?;
    let p = &v["program"];
    let f = |k: &str, what: &str| p[k][what].as_f64().unwrap_or(f64::NAN);
    let label = format!("{} services x {} backends", l.services, l.backends);
    for (what, key) in [
        (format!("program {label} into an empty netns"), "first_ms"),
        (
            "  one backend removed".to_string(),
            "one_backend_removed_ms",
        ),
        ("  same spec again".to_string(), "no_change_ms"),
        (
            "  same spec again, fresh balancer".to_string(),
            "no_change_fresh_ms",
        ),
    ] {
        table.push((
            what,
            format!(
                "nftables {:.1} ms, IPVS {:.1} ms: IPVS / nftables {:.2}",
                f("nftables", key),
                f("ipvs", key),
                f("ipvs", key) / f("nftables", key)
            ),
        ));
    }
    let c = &v["connections"];
    let rate = |k: &str| c[k]["per_s_median"].as_f64().unwrap_or(f64::NAN);
    let ratio = v["connections"]["ratio_ipvs_vs_nftables"]
        .as_f64()
        .unwrap_or(f64::NAN);
    table.push((
        format!(
            "short HTTP connections/s through a VIP ({} in flight, {} other services)",
            l.parallel, l.services
        ),
        format!(
            "nftables {:.0}/s, IPVS {:.0}/s, direct {:.0}/s: IPVS / nftables {ratio:.2} \
             (median of the runs' ratios)",
            rate("nftables"),
            rate("ipvs"),
            rate("direct"),
        ),
    ));
    Ok(v)
}

// ----------------------------------------------------------------------- guest-lb (in a guest)

fn sh(cmd: &str) -> Result<String> {
    let o = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()?;
    ensure!(
        o.status.success(),
        "`{cmd}`: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn netns(name: &str) -> Result<PathBuf> {
    sh(&format!(
        "ip netns del {name} 2>/dev/null; ip netns add {name} && ip -n {name} link set lo up"
    ))?;
    Ok(PathBuf::from(format!("/var/run/netns/{name}")))
}

/// `services` VIPs 10.128.0.1.. (TCP 80 -> 8080), each over `backends` addresses in
/// 10.200.0.0/16 (nothing answers there; they only fill the tables), plus `extra`.
fn spec(services: usize, backends: usize, extra: Option<VipService>) -> LbSpec {
    let ip = |base: u32, i: usize| Ipv4Addr::from(base + i as u32);
    let mut s: Vec<VipService> = (0..services)
        .map(|i| VipService {
            id: format!("svc{i:05}bench"),
            vip: ip(0x0a80_0001, i),
            ports: vec![ServicePort {
                protocol: Protocol::Tcp,
                port: 80,
                target: 8080,
            }],
            backends: (0..backends)
                .map(|b| Backend {
                    ip: ip(0x0ac8_0001, i * backends + b),
                    enabled: true,
                })
                .collect(),
        })
        .collect();
    s.extend(extra);
    s.sort_by_key(|v| v.vip);
    LbSpec { services: s }
}

fn balancer(kind: &str) -> Box<dyn LoadBalancer> {
    match kind {
        "ipvs" => Box::new(IpvsBalancer::new()),
        _ => Box::new(NftLoadBalancer::new()),
    }
}

fn timed(lb: &dyn LoadBalancer, ns: &Path, spec: &LbSpec) -> Result<(f64, usize)> {
    let t = Instant::now();
    let r = lb
        .program(ns, spec)
        .map_err(|e| anyhow::anyhow!("{}: {e}", lb.kind().as_str()))?;
    Ok((ms(t.elapsed()), r.changes))
}

const KINDS: [&str; 2] = ["nftables", "ipvs"];

fn guest_lb(a: &LbArgs) -> Result<Value> {
    ipvs_available().map_err(|e| anyhow::anyhow!("IPVS in the guest: {e}"))?;
    // Programming: per kind, alternated, `lb_runs` times; medians.
    let mut prog: Vec<Vec<[f64; 5]>> = vec![Vec::new(), Vec::new()];
    let mut changes = [0usize; 2];
    for run in 0..a.lb_runs {
        for (k, kind) in KINDS.iter().enumerate() {
            let ns = netns(&format!("bp{k}"))?;
            let mut s = spec(a.services, a.backends, None);
            let lb = balancer(kind);
            let (first, n) = timed(lb.as_ref(), &ns, &s)?;
            changes[k] = n;
            s.services[a.services / 2].backends.pop();
            let (change, _) = timed(lb.as_ref(), &ns, &s)?;
            let (noop, _) = timed(lb.as_ref(), &ns, &s)?;
            let (fresh, _) = timed(balancer(kind).as_ref(), &ns, &s)?;
            let (clear, _) = timed(lb.as_ref(), &ns, &LbSpec::default())?;
            eprintln!(
                "run {} {kind}: first {first:.0} ms, change {change:.1}, same {noop:.1}, fresh {fresh:.1}, clear {clear:.0}",
                run + 1
            );
            prog[k].push([first, change, noop, fresh, clear]);
            sh(&format!("ip netns del bp{k}"))?;
        }
    }
    let col = |k: usize, i: usize| median(&prog[k].iter().map(|r| r[i]).collect::<Vec<_>>());
    let mut program: serde_json::Map<String, Value> = KINDS
        .iter()
        .enumerate()
        .map(|(k, kind)| {
            (
                kind.to_string(),
                json!({
                    "first_ms": col(k, 0),
                    "first_changes": changes[k],
                    "one_backend_removed_ms": col(k, 1),
                    "no_change_ms": col(k, 2),
                    "no_change_fresh_ms": col(k, 3),
                    "remove_all_ms": col(k, 4),
                    "runs": prog[k],
                }),
            )
        })
        .collect();
    for (i, key) in [
        "first_ms",
        "one_backend_removed_ms",
        "no_change_ms",
        "no_change_fresh_ms",
    ]
    .iter()
    .enumerate()
    {
        let per_run: Vec<f64> = prog[1]
            .iter()
            .zip(&prog[0])
            .map(|(p, n)| p[i] / n[i])
            .collect();
        program.insert(
            format!("ratio_ipvs_vs_nftables_{}", key.trim_end_matches("_ms")),
            json!(median(&per_run)),
        );
    }

    // Connections: a client namespace and three backends on a bridge.
    let probe = std::env::current_exe()?.with_file_name("probe");
    sh("ip link del lbbr 2>/dev/null; ip link add lbbr type bridge && ip link set lbbr up")?;
    let mut servers = Vec::new();
    let mut backends = Vec::new();
    for (i, name) in ["lbc", "lbb1", "lbb2", "lbb3"].iter().enumerate() {
        netns(name)?;
        let addr = Ipv4Addr::new(10, 77, 0, 1 + i as u8 * 10);
        sh(&format!(
            "ip link add v{name} type veth peer name eth0 netns {name} && \
             ip link set v{name} master lbbr up && \
             ip -n {name} addr add {addr}/24 dev eth0 && ip -n {name} link set eth0 up"
        ))?;
        if i > 0 {
            backends.push(addr);
            servers.push(
                Command::new("ip")
                    .args(["netns", "exec", name])
                    .arg(&probe)
                    .args([
                        "serve",
                        "--name",
                        name,
                        "--tcp",
                        "8080",
                        "--max-secs",
                        "1800",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
        }
    }
    // VIPs are on the containers' network in a real cluster: route them on-link.
    sh("ip -n lbc route add default dev eth0")?;
    let client = PathBuf::from("/var/run/netns/lbc");
    let vip = Ipv4Addr::new(10, 96, 0, 1);
    let real = VipService {
        id: "realbench".into(),
        vip,
        ports: vec![ServicePort {
            protocol: Protocol::Tcp,
            port: 80,
            target: 8080,
        }],
        backends: backends
            .iter()
            .map(|ip| Backend {
                ip: *ip,
                enabled: true,
            })
            .collect(),
    };
    let full = spec(a.services, a.backends, Some(real));
    let http = |addr: Ipv4Addr, port: u16| -> Result<Value> {
        let out = sh(&format!(
            "ip netns exec lbc {} http {addr} {port} --count {} --parallel {}",
            probe.display(),
            a.connections,
            a.parallel
        ))?;
        Ok(serde_json::from_str(out.trim())?)
    };
    let rate = |v: &Value| {
        v["ok"].as_f64().unwrap_or(0.0) / (v["elapsed_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0)
    };
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let mut failures = [0u64; 3];
    let mut spread: Vec<Value> = vec![Value::Null; 3];
    let wait_ready = |addr: Ipv4Addr, port: u16| -> Result<()> {
        let t0 = Instant::now();
        loop {
            let o = sh(&format!(
                "ip netns exec lbc {} http {addr} {port} --count 3",
                probe.display()
            ))?;
            let v: Value = serde_json::from_str(o.trim())?;
            if v["ok"].as_u64() == Some(3) {
                return Ok(());
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(60),
                "{addr}:{port} does not answer: {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    for run in 0..a.lb_runs {
        for (k, kind) in ["direct", "nftables", "ipvs"].iter().enumerate() {
            let (addr, port) = if k == 0 {
                (backends[0], 8080)
            } else {
                (vip, 80)
            };
            if k > 0 {
                // Only this kind's rules in the client namespace.
                let other = KINDS[2 - k];
                balancer(other)
                    .program(&client, &LbSpec::default())
                    .map_err(|e| anyhow::anyhow!("{other}: {e}"))?;
                balancer(KINDS[k - 1])
                    .program(&client, &full)
                    .map_err(|e| anyhow::anyhow!("{kind}: {e}"))?;
            }
            wait_ready(addr, port)?;
            let v = http(addr, port)?;
            let r = rate(&v);
            eprintln!("run {} {kind}: {r:.0} connections/s ({v})", run + 1);
            failures[k] += v["failed"].as_u64().unwrap_or(0);
            spread[k] = v["by_name"].clone();
            rates[k].push(r);
        }
    }
    for mut s in servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    let _ = sh("ip link del lbbr; for n in lbc lbb1 lbb2 lbb3; do ip netns del $n; done");
    let per_run: Vec<f64> = rates[2].iter().zip(&rates[1]).map(|(i, n)| i / n).collect();
    let mut connections: serde_json::Map<String, Value> = ["direct", "nftables", "ipvs"]
        .iter()
        .enumerate()
        .map(|(k, kind)| {
            (
                kind.to_string(),
                json!({
                    "per_s": rates[k],
                    "per_s_median": median(&rates[k]),
                    "failures": failures[k],
                    "answers_by_backend_last_run": spread[k],
                }),
            )
        })
        .collect();
    connections.insert("ratio_ipvs_vs_nftables_per_run".into(), json!(per_run));
    connections.insert("ratio_ipvs_vs_nftables".into(), json!(median(&per_run)));
    Ok(json!({
        "services": a.services,
        "backends_per_service": a.backends,
        "connections_per_run": a.connections,
        "parallel": a.parallel,
        "runs": a.lb_runs,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "program": program,
        "connections": connections,
    }))
}
