//! Container start to network-ready, through swarmnet and through each runtime's own bridge
//! network, in the same run: podman 4.3 (CNI: swarmnet-cni vs its default bridge network),
//! containerd 1.6 (`ctr run --cni`: swarmnet-cni vs the reference bridge + host-local
//! plugins) and dockerd 20.10 (swarmnet's network plugin vs the default bridge), one
//! instance of each on host 1 of a two-host lab cluster.
//!
//! One sample: the clock starts before `run -d`; the container's first command connects to a
//! TCP listener until it gets through (`until echo x | nc <target> <port>; do usleep 5000;
//! done`), and the sample is the time the listener accepts. For the bridges the listener is
//! in host 1's namespace on the bridge's gateway. For swarmnet there are two targets, both
//! containers attached to the network: one on host 1 itself (`-swarmnet`: the attach is
//! ready), one on host 2 (`-swarmnet-remote`: the other host has also learnt the new
//! endpoint, by gossip, and programmed it: its replies need it). Also recorded: when `run -d`
//! returned. Containers are removed between samples (not timed); the first sample of each
//! variant is a warm-up and is dropped. Variants are interleaved round by round, so that
//! drift of the shared machine hits all alike. The network already has an endpoint on host 1
//! (the local target), as on any host in use; the first endpoint of a network on a host also
//! waits for an address block to settle (`first_attach_ms`, timed on its own).
//!
//! Run with `scripts/bench-runtimes.sh`. Needs root and the runtimes
//! (scripts/install-deps.sh). Prints a table; JSON in bench-results/.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use cluster_tests::runtimes::containerd::Containerd;
use cluster_tests::runtimes::docker::Dockerd;
use cluster_tests::runtimes::podman::Podman;
use cluster_tests::runtimes::{image, process, skip_reason, work_dir};
use lab::testbed::{AgentCluster, ClusterOptions, swarmnet_binary};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    about = "container start to network-ready: swarmnet vs each runtime's bridge (needs root)"
)]
struct Args {
    /// Where the JSON results go [default: bench-results/runtimes-<date>.json].
    #[arg(long)]
    out: Option<String>,
    /// Samples per variant (after one warm-up).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Runtimes to measure (comma separated): podman, ctr, docker.
    #[arg(long, default_value = "podman,ctr,docker")]
    only: String,
}

const SUBNET: &str = "10.64.0.0/24";
const GATEWAY: &str = "10.64.0.1";
const CTR_BRIDGE_GW: &str = "10.65.1.1";

/// A TCP listener on `addr:port` created inside the namespace at `netns`.
fn listen_in(netns: &Path, addr: Ipv4Addr, port: u16) -> Result<TcpListener> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<TcpListener> {
        let f = std::fs::File::open(&netns).with_context(|| format!("{}", netns.display()))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let l = TcpListener::bind((addr, port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("listener thread panicked"))?
}

/// Drop connections already queued (a previous container's late retries).
fn drain(l: &TcpListener) {
    while l.accept().is_ok() {}
}

/// One variant: how to start sample `i` (a command whose container connects to `target`),
/// how to remove it, and the listener.
struct Variant<'a> {
    name: String,
    runtime: &'static str,
    network: String,
    listener: TcpListener,
    start: Box<dyn Fn(usize) -> Command + 'a>,
    remove: Box<dyn Fn(usize) + 'a>,
    ready_ms: Vec<f64>,
    cmd_ms: Vec<f64>,
}

fn probe_script(target: &str, port: u16) -> String {
    format!("until echo x | nc {target} {port}; do usleep 5000; done; exec sleep 3600")
}

/// One sample of `v` (run `i`): (ready ms, command ms), each from the same start.
fn sample(v: &Variant<'_>, i: usize) -> Result<(f64, f64)> {
    drain(&v.listener);
    let t0 = Instant::now();
    let mut child = (v.start)(i)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("{} run {i}", v.name))?;
    let deadline = t0 + Duration::from_secs(60);
    let (mut ready, mut done) = (None, None);
    while ready.is_none() || done.is_none() {
        if done.is_none()
            && let Some(status) = child.try_wait()?
        {
            if !status.success() {
                (v.remove)(i);
                bail!("{} run {i} failed ({status})", v.name);
            }
            done = Some(t0.elapsed());
        }
        if ready.is_none() {
            match v.listener.accept() {
                Ok(_) => ready = Some(t0.elapsed()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            (v.remove)(i);
            bail!("{} run {i}: not ready within 60 s", v.name);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    (v.remove)(i);
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    Ok((ms(ready), ms(done)))
}

/// Nearest-rank percentile.
fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%F"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "undated".into())
}

fn conflist_swarmnet(socket: &str) -> String {
    json!({"cniVersion": "1.0.0", "name": "app", "plugins": [{
        "type": "swarmnet-cni", "network": "app", "agentSocket": socket,
        "capabilities": {"aliases": true, "ips": true, "mac": true}}]})
    .to_string()
}

fn conflist_bridge() -> String {
    json!({"cniVersion": "1.0.0", "name": "ctrbridge", "plugins": [
        {"type": "bridge", "bridge": "ctr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.65.1.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": true}}]})
    .to_string()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let only: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let mut need = vec!["nsenter", "unshare", "runc"];
    if only.contains(&"podman") {
        need.push("podman");
    }
    if only.contains(&"ctr") {
        need.extend(["containerd", "ctr"]);
    }
    if only.contains(&"docker") {
        need.push("dockerd");
    }
    if let Some(why) = skip_reason(&need) {
        bail!("cannot run: {why}");
    }
    let cni_bin = std::env::var_os("SWARMNET_CNI_BIN")
        .map(PathBuf::from)
        .context(
            "set SWARMNET_CNI_BIN to the swarmnet-cni binary (scripts/bench-runtimes.sh does)",
        )?;
    let dir = work_dir("bench");
    std::fs::create_dir_all(&dir)?;
    let result = run(&args, &only, &dir, &cni_bin);
    process::remove_dir(&dir);
    result
}

fn run(args: &Args, only: &[&str], dir: &Path, cni_bin: &Path) -> Result<()> {
    let h0 = dir.join("h0");
    std::fs::create_dir_all(&h0)?;
    let plugin_sock = h0.join("plugin/swarmnet.sock");
    let mut opts = ClusterOptions::new("rtbench", 2);
    opts.binary = Some(swarmnet_binary()?);
    opts.log_level = "warn".into();
    opts.host_args = vec![vec![
        "--docker-plugin".into(),
        plugin_sock.display().to_string(),
        "--docker-api".into(),
        format!(
            "unix://{}",
            Dockerd::socket_in(&h0.join("docker")).display()
        ),
    ]];
    let mut c = AgentCluster::start_with(opts)?;
    c.create_network(0, "app", &["--subnet", SUBNET])?;
    // The swarmnet targets: a container namespace on this host (attached first: the
    // network's first endpoint here, timed) and one on the other host.
    let t_first = Instant::now();
    let local = c.attach(0, "app", "local")?;
    let first_attach = t_first.elapsed();
    let target = c.attach(1, "app", "target")?;
    let target_ip = target.ip.to_string();
    let socket = c.hosts[0].api.trim_start_matches("unix://").to_string();
    let host = c.hosts[0].netns.clone();
    let img = image::build(dir)?;
    let plugins = dir.join("cni-plugins");
    std::fs::create_dir_all(&plugins)?;
    std::os::unix::fs::symlink(cni_bin, plugins.join("swarmnet-cni"))?;

    let podman = if only.contains(&"podman") {
        let p = Podman::setup(
            &host,
            &h0.join("podman"),
            0,
            &plugins,
            &[("app.conflist", conflist_swarmnet(&socket))],
        )?;
        p.import(&img.rootfs_tar)?;
        Some(p)
    } else {
        None
    };
    let ctr = if only.contains(&"ctr") {
        let lib = Path::new("/usr/lib/cni");
        let h = Containerd::start(
            &host,
            &h0.join("containerd"),
            0,
            &[
                ("swarmnet-cni", cni_bin),
                ("bridge", &lib.join("bridge")),
                ("host-local", &lib.join("host-local")),
                ("portmap", &lib.join("portmap")),
                ("loopback", &lib.join("loopback")),
            ],
            &[("10-app.conflist", conflist_swarmnet(&socket))],
        )?;
        let bridge_dir = h0.join("containerd/net.d-bridge");
        std::fs::create_dir_all(&bridge_dir)?;
        std::fs::write(bridge_dir.join("10-bridge.conflist"), conflist_bridge())?;
        h.import(&img.oci_tar)?;
        Some((h, bridge_dir))
    } else {
        None
    };
    let docker = if only.contains(&"docker") {
        let d = Dockerd::start(&host, &h0.join("docker"), 0, &plugin_sock)?;
        d.import(&img.rootfs_tar)?;
        d.ok(&[
            "network",
            "create",
            "-d",
            "swarmnet",
            "--ipam-driver",
            "swarmnet",
            "-o",
            "swarmnet.network=app",
            "app",
        ])?;
        Some(d)
    } else {
        None
    };

    // Each variant listens on its own port (the bridges' listeners share host 1's namespace).
    let overlay_listener = |port| listen_in(&target.netns, target.ip, port);
    let local_listener = |port| listen_in(&local.netns, local.ip, port);
    let local_ip = local.ip.to_string();
    let host_listener = |port| listen_in(&host, Ipv4Addr::UNSPECIFIED, port);
    let script = probe_script;
    let mut variants: Vec<Variant<'_>> = Vec::new();
    // (suffix, note, listener factory, target address, port offset) of the swarmnet targets.
    type Listen<'l> = &'l dyn Fn(u16) -> Result<TcpListener>;
    let targets: [(&str, &str, Listen<'_>, &str); 2] = [
        (
            "swarmnet",
            "target on the same host",
            &local_listener,
            &local_ip,
        ),
        (
            "swarmnet-remote",
            "target on the other host",
            &overlay_listener,
            &target_ip,
        ),
    ];
    let mut port = 9900;
    let mut next_port = move || {
        port += 1;
        port
    };
    if let Some(p) = &podman {
        let img = p.image();
        let port1 = next_port();
        let (img1, s1) = (img.clone(), script("10.88.100.1", port1));
        variants.push(Variant {
            name: "podman-bridge".into(),
            runtime: "podman 4.3",
            network: "its default network (CNI bridge, portmap, firewall, tuning)".into(),
            listener: host_listener(port1)?,
            start: Box::new(move |i| {
                p.cmd(&[
                    "run",
                    "-d",
                    "--name",
                    &format!("pb{i}"),
                    &img1,
                    "sh",
                    "-c",
                    &s1,
                ])
            }),
            remove: Box::new(move |i| {
                let _ = p.run(&["rm", "-f", "-t", "0", &format!("pb{i}")]);
            }),
            ready_ms: vec![],
            cmd_ms: vec![],
        });
        for (k, (suffix, note, listen, ip)) in targets.iter().enumerate() {
            let port2 = next_port();
            let (img2, s2) = (img.clone(), script(ip, port2));
            variants.push(Variant {
                name: format!("podman-{suffix}"),
                runtime: "podman 4.3",
                network: format!("swarmnet-cni ({note})"),
                listener: listen(port2)?,
                start: Box::new(move |i| {
                    p.cmd(&[
                        "run",
                        "-d",
                        "--name",
                        &format!("ps{k}x{i}"),
                        "--network",
                        "app",
                        &img2,
                        "sh",
                        "-c",
                        &s2,
                    ])
                }),
                remove: Box::new(move |i| {
                    let _ = p.run(&["rm", "-f", "-t", "0", &format!("ps{k}x{i}")]);
                }),
                ready_ms: vec![],
                cmd_ms: vec![],
            });
        }
    }
    if let Some((h, bridge_dir)) = &ctr {
        let img = h.image();
        let port1 = next_port();
        let (img1, s1) = (img.clone(), script(CTR_BRIDGE_GW, port1));
        variants.push(Variant {
            name: "ctr-bridge".into(),
            runtime: "containerd 1.6 (ctr run --cni)",
            network: "CNI bridge + host-local + portmap".into(),
            listener: host_listener(port1)?,
            start: Box::new(move |i| {
                h.cni_cmd_in(
                    bridge_dir,
                    &[
                        "run",
                        "-d",
                        "--cni",
                        "--snapshotter",
                        "native",
                        &img1,
                        &format!("cb{i}"),
                        "sh",
                        "-c",
                        &s1,
                    ],
                )
            }),
            remove: Box::new(move |i| h.remove(&format!("cb{i}"))),
            ready_ms: vec![],
            cmd_ms: vec![],
        });
        for (k, (suffix, note, listen, ip)) in targets.iter().enumerate() {
            let port2 = next_port();
            let (img2, s2) = (img.clone(), script(ip, port2));
            variants.push(Variant {
                name: format!("ctr-{suffix}"),
                runtime: "containerd 1.6 (ctr run --cni)",
                network: format!("swarmnet-cni ({note})"),
                listener: listen(port2)?,
                start: Box::new(move |i| {
                    h.cni_cmd(&[
                        "run",
                        "-d",
                        "--cni",
                        "--snapshotter",
                        "native",
                        &img2,
                        &format!("cs{k}x{i}"),
                        "sh",
                        "-c",
                        &s2,
                    ])
                }),
                remove: Box::new(move |i| h.remove(&format!("cs{k}x{i}"))),
                ready_ms: vec![],
                cmd_ms: vec![],
            });
        }
    }
    if let Some(d) = &docker {
        let port1 = next_port();
        let s1 = script("172.17.0.1", port1);
        variants.push(Variant {
            name: "docker-bridge".into(),
            runtime: "dockerd 20.10",
            network: "the default bridge (no iptables)".into(),
            listener: host_listener(port1)?,
            start: Box::new(move |i| {
                d.cmd(&[
                    "run",
                    "-d",
                    "--name",
                    &format!("db{i}"),
                    image::NAME,
                    "sh",
                    "-c",
                    &s1,
                ])
            }),
            remove: Box::new(move |i| {
                let _ = d.run(&["rm", "-f", &format!("db{i}")]);
            }),
            ready_ms: vec![],
            cmd_ms: vec![],
        });
        for (k, (suffix, note, listen, ip)) in targets.iter().enumerate() {
            let port2 = next_port();
            let s2 = script(ip, port2);
            variants.push(Variant {
                name: format!("docker-{suffix}"),
                runtime: "dockerd 20.10",
                network: format!("swarmnet network plugin ({note})"),
                listener: listen(port2)?,
                start: Box::new(move |i| {
                    d.cmd(&[
                        "run",
                        "-d",
                        "--name",
                        &format!("ds{k}x{i}"),
                        "--network",
                        "app",
                        "--dns",
                        GATEWAY,
                        image::NAME,
                        "sh",
                        "-c",
                        &s2,
                    ])
                }),
                remove: Box::new(move |i| {
                    let _ = d.run(&["rm", "-f", &format!("ds{k}x{i}")]);
                }),
                ready_ms: vec![],
                cmd_ms: vec![],
            });
        }
    }

    // Round 0 is the warm-up.
    for round in 0..=args.runs {
        for v in variants.iter_mut() {
            let (ready, cmd) = sample(v, round)?;
            if round > 0 {
                v.ready_ms.push(ready);
                v.cmd_ms.push(cmd);
            }
        }
        eprint!("\rround {round}/{}", args.runs);
    }
    eprintln!();

    let mut results = serde_json::Map::new();
    let mut table = Vec::new();
    let stats = |v: &[f64]| {
        json!({
            "p50": percentile(v, 50.0), "p99": percentile(v, 99.0),
            "min": percentile(v, 0.0), "max": percentile(v, 100.0),
            "mean": v.iter().sum::<f64>() / v.len().max(1) as f64,
        })
    };
    let mut by_name = std::collections::BTreeMap::new();
    for v in &variants {
        by_name.insert(
            v.name.clone(),
            (percentile(&v.ready_ms, 50.0), percentile(&v.ready_ms, 99.0)),
        );
        results.insert(
            v.name.clone(),
            json!({
                "runtime": v.runtime, "network": v.network, "samples": v.ready_ms.len(),
                "ready_ms": stats(&v.ready_ms), "run_command_ms": stats(&v.cmd_ms),
                "ready_samples_ms": v.ready_ms,
            }),
        );
        table.push((
            format!("{} ready p50 / p99", v.name),
            format!(
                "{:.0} / {:.0} ms (run -d returns: p50 {:.0} ms)",
                percentile(&v.ready_ms, 50.0),
                percentile(&v.ready_ms, 99.0),
                percentile(&v.cmd_ms, 50.0)
            ),
        ));
    }
    let mut ratios = serde_json::Map::new();
    for rt in ["podman", "ctr", "docker"] {
        let Some(b) = by_name.get(&format!("{rt}-bridge")) else {
            continue;
        };
        for suffix in ["swarmnet", "swarmnet-remote"] {
            let Some(s) = by_name.get(&format!("{rt}-{suffix}")) else {
                continue;
            };
            let (r50, r99) = (s.0 / b.0, s.1 / b.1);
            ratios.insert(format!("{rt}-{suffix}"), json!({"p50": r50, "p99": r99}));
            table.push((
                format!("{rt}: {suffix} / bridge"),
                format!("p50 x{r50:.2}, p99 x{r99:.2}"),
            ));
        }
    }
    results.insert("ratio_swarmnet_vs_bridge".into(), Value::Object(ratios));
    results.insert(
        "method".into(),
        json!("run -d to the first TCP connection the container makes (retrying every 5 ms); bridge: to the host side of the bridge; swarmnet: to a container on the same host, swarmnet-remote: to a container on the other host (its node must have learnt the new endpoint); the network already has an endpoint on the host; one warm-up per variant dropped; variants interleaved round by round"),
    );
    results.insert("runs".into(), json!(args.runs));
    results.insert(
        "first_attach_ms".into(),
        json!(first_attach.as_secs_f64() * 1e3),
    );
    table.push((
        "first endpoint of a network on a host (CLI attach)".into(),
        format!("{:.0} ms", first_attach.as_secs_f64() * 1e3),
    ));
    cluster_tests::report::print_table(&table);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| format!("bench-results/runtimes-{}.json", today()));
    // Runtimes go before the cluster: containers first, then daemons.
    drop(variants);
    drop(docker);
    drop(ctr);
    drop(podman);
    cluster_tests::report::write_results(&out, results)?;
    drop(c);
    Ok(())
}
