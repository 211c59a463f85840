//! `swarmnet demo`: a three-host cluster in network namespaces on this machine, shown working.
//!
//! It builds a [`Lab`] of three hosts on one underlay bridge, starts this
//! very binary as `swarmnet agent` in each ([`AgentCluster`]), creates a network and a
//! service, attaches one backend container per host (each running `swarmnet debug whoami`)
//! and a client container, and shows through the CLI and real clients: pings across the
//! overlay, names resolved by the embedded DNS (`getent`), the VIP balanced over the three
//! hosts (`curl`), a drained backend leaving the rotation, and the CLI's tables. It tears
//! everything down on success, on error, and on Ctrl-C / SIGTERM (a second signal exits at
//! once, leaving the namespaces behind). Needs root; installs iproute2, iputils-ping,
//! nftables and curl if missing.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::netns::{Lab, ensure_tools, find_tool};
use crate::testbed::{AgentCluster, ClusterOptions, Container, TOOLS};

/// Hosts in the demo.
const HOSTS: usize = 3;
/// Name of the demo's network.
const NETWORK: &str = "demo";
/// Name of the demo's service.
const SERVICE: &str = "web";
/// Steps, for the progress lines.
const STEPS: usize = 9;
/// Tools of the demo beyond the lab's.
const DEMO_TOOLS: [&str; 2] = ["curl", "getent"];

/// What `swarmnet demo` was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoArgs {
    /// Keep the cluster running after the demo, until Enter or Ctrl-C.
    pub keep: bool,
}

/// Runs the demo; the process exit code (0 done, 1 failed, 130 interrupted).
pub fn main(args: &DemoArgs) -> ExitCode {
    let cancel = Arc::new(AtomicBool::new(false));
    if let Err(e) = watch_signals(cancel.clone()) {
        eprintln!("swarmnet demo: cannot handle Ctrl-C ({e:#}); it will leave namespaces behind");
    }
    let t0 = Instant::now();
    let result = run(args, &cancel);
    if cancel.load(Ordering::Relaxed) {
        println!("interrupted: everything was torn down");
        return ExitCode::from(130);
    }
    match result {
        Ok(()) => {
            println!("demo finished in {:.1} s", t0.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("swarmnet demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT/SIGTERM set `cancel` (the demo then tears down); a second one exits at once.
fn watch_signals(cancel: Arc<AtomicBool>) -> Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                use tokio::signal::unix::{SignalKind, signal};
                let (mut int, mut term) =
                    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                        (Ok(i), Ok(t)) => (i, t),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = ready_tx.send(Err(anyhow::anyhow!("signal handler: {e}")));
                            return;
                        }
                    };
                let _ = ready_tx.send(Ok(()));
                static SEEN: AtomicUsize = AtomicUsize::new(0);
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    if SEEN.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("\ninterrupted: tearing down (again to exit at once)");
                        cancel.store(true, Ordering::Relaxed);
                    } else {
                        eprintln!(
                            "exiting without teardown: namespaces named sl{}-* are left (ip netns list)",
                            std::process::id() % 1000
                        );
                        std::process::exit(130);
                    }
                }
            });
        })
        .context("spawning the signal thread")?;
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("signal thread did not start")?
}

fn step(n: usize, what: &str) {
    println!("\n[{n}/{STEPS}] {what}");
}

/// Prints `text` indented, for command output.
fn show(text: &str) {
    for l in text.lines() {
        println!("      {l}");
    }
    let _ = std::io::stdout().flush();
}

fn run(args: &DemoArgs, cancel: &Arc<AtomicBool>) -> Result<()> {
    println!(
        "swarmnet demo: {HOSTS} hosts in network namespaces on this machine, one `swarmnet \
         agent` each,\na VXLAN overlay network between them, a service with a backend \
         container on every host,\nand a client container that reaches it by name."
    );

    step(1, "Checking root and tools");
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "swarmnet demo needs root (it creates network namespaces, bridges and VXLAN \
         devices): run it as root, e.g. `sudo swarmnet demo`"
    );
    let tools: Vec<&str> = TOOLS.iter().chain(DEMO_TOOLS.iter()).copied().collect();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if !missing.is_empty() {
        println!("      installing {missing:?} with apt-get ...");
    }
    ensure_tools(&tools).context(
        "the demo needs iproute2 (ip, bridge), iputils-ping, util-linux (nsenter), nftables \
         and curl; install them with `apt-get install -y --no-install-recommends iproute2 \
         iputils-ping util-linux nftables curl`",
    )?;
    Lab::preflight().context("this machine cannot create network namespaces here")?;
    println!("      ok: running as root; {} present", tools.join(", "));

    step(
        2,
        &format!("Building {HOSTS} hosts in network namespaces and starting an agent on each"),
    );
    let mut opts = ClusterOptions::new("demo", HOSTS);
    opts.binary = Some(std::env::current_exe().context("locating this binary")?);
    opts.cancel = Some(cancel.clone());
    let t = Instant::now();
    let mut c = AgentCluster::start_with(opts)?;
    let ul = c.lab.host_addr(0).octets();
    println!(
        "      underlay: bridge br-ul in namespace {}-ul, {}.{}.{}.0/24",
        c.lab.prefix(),
        ul[0],
        ul[1],
        ul[2]
    );
    for h in &c.hosts {
        println!(
            "      {}: namespace {}, address {}, agent pid {}, api {}",
            h.name,
            h.netns.display(),
            h.addr,
            h.process.as_ref().map_or(0, |p| p.pid()),
            h.api
        );
    }
    println!(
        "      all agents up and every one sees the others ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    cmd(&c, 0, &["cluster", "members"])?;

    step(
        3,
        &format!("Creating network {NETWORK:?} on host1 (the others learn it by gossip)"),
    );
    println!("      $ swarmnet network create {NETWORK}    # on host1");
    let net = c.create_network(0, NETWORK, &[])?;
    println!(
        "      network {NETWORK}: VNI {}, subnet {}; listed by all {HOSTS} agents",
        net.vni, net.subnet
    );

    println!(
        "      $ swarmnet service create {SERVICE} --network {NETWORK} --port 80 --publish 8080:80    # on host1"
    );
    let svc = c.cli_json(
        0,
        &[
            "service",
            "create",
            SERVICE,
            "--network",
            NETWORK,
            "--port",
            "80",
            "--publish",
            "8080:80",
        ],
    )?;
    let vip = svc["vips"][0]["vip"]
        .as_str()
        .context("service create printed no VIP")?
        .to_string();
    println!(
        "      service {SERVICE}: VIP {vip} on {NETWORK}, balanced in every client's own namespace; \
         port 8080 published on every host"
    );

    step(
        4,
        "Attaching a backend container per host (serving HTTP) and a client on host1",
    );
    let me = std::env::current_exe().context("locating this binary")?;
    let me = me.display().to_string();
    let mut cs: Vec<Container> = Vec::new();
    for h in 0..HOSTS {
        check(cancel)?;
        let name = format!("web{}", h + 1);
        let x = c.attach_with(h, NETWORK, &name, &["--service", SERVICE])?;
        println!(
            "      $ swarmnet endpoint attach {NETWORK} --netns {} --name {name} --service {SERVICE}    # on {}",
            x.netns.display(),
            c.hosts[h].name
        );
        println!(
            "        -> {name}: eth0 {} mac {} mtu {}",
            x.ip, x.mac, x.mtu
        );
        c.lab.spawn(
            &x.netns,
            &[
                &me,
                "debug",
                "whoami",
                "--name",
                &name,
                "--tcp",
                "80",
                "--max-secs",
                "900",
            ],
        )?;
        cs.push(x);
    }
    println!(
        "      each backend runs `swarmnet debug whoami --tcp 80` (answers with its name and the caller's address)"
    );
    let client_ns = c.lab.container_path(0, "client");
    let rc = crate::netns::netns_resolv_conf(&client_ns)?;
    let rc_s = rc.display().to_string();
    let client = c.attach_with(0, NETWORK, "client", &["--resolv-conf", &rc_s])?;
    println!(
        "      $ swarmnet endpoint attach {NETWORK} --netns {} --name client --resolv-conf {rc_s}",
        client.netns.display()
    );
    println!(
        "        -> client: eth0 {}; its resolv.conf, written by the agent:",
        client.ip
    );
    show(&std::fs::read_to_string(&rc).unwrap_or_default());
    cs.push(client.clone());
    let took = c.wait_until(
        Duration::from_secs(15),
        "every host's dataplane knows every remote container",
        || {
            for h in 0..HOSTS {
                for x in cs.iter().filter(|x| x.host != h) {
                    if !c.knows(h, net.vni, x)? {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        },
    )?;
    println!(
        "      every host's VXLAN sandbox has the FDB and neighbour entries of the others' \
         containers ({} ms)",
        took.as_millis()
    );

    step(
        5,
        "Pinging across the overlay (3 pings each way round the ring, then the VIP)",
    );
    let mut failed = Vec::new();
    let ring: Vec<&Container> = cs.iter().take(HOSTS).collect();
    for (i, a) in ring.iter().enumerate() {
        let b = ring[(i + 1) % ring.len()];
        println!(
            "      {} ({}) -> {} ({}) {}",
            a.name, c.hosts[a.host].name, b.name, c.hosts[b.host].name, b.ip
        );
        if !ping(&c, a, b.ip)? {
            failed.push(format!("{} -> {}", a.name, b.name));
        }
        check(cancel)?;
    }
    let vip_ip: Ipv4Addr = vip.parse().context("VIP")?;
    println!("      client -> VIP {vip}");
    if !ping(&c, &client, vip_ip)? {
        failed.push(format!("client -> VIP {vip}"));
    }
    if !failed.is_empty() {
        bail!("pings failed: {}", failed.join(", "));
    }

    step(
        6,
        "Names from the embedded DNS (127.0.0.11 in the client, answered by host1's agent)",
    );
    let tasks = format!("tasks.{SERVICE}");
    for name in ["web3", "web3.demo", SERVICE, tasks.as_str()] {
        let out = c.lab.exec(&client.netns, &["getent", "ahostsv4", name])?;
        let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        ips.sort();
        ips.dedup();
        ensure!(
            !ips.is_empty(),
            "getent ahostsv4 {name} found nothing in the client"
        );
        println!(
            "      client$ getent ahostsv4 {name:<10} -> {}",
            ips.join(" ")
        );
    }

    step(
        7,
        &format!("Balancing: 6 requests to http://{SERVICE}/ from the client, then draining web2"),
    );
    println!("      client$ curl -s http://{SERVICE}/    (6 times)");
    let mut seen = Vec::new();
    for _ in 0..6 {
        let s = curl(&c, &client)?;
        println!("        {s}");
        seen.push(s);
    }
    ensure!(
        ["web1", "web2", "web3"]
            .iter()
            .all(|n| seen.iter().any(|s| s.starts_with(n))),
        "the VIP did not reach every backend: {seen:?}"
    );
    println!(
        "      every backend answered, and each saw the client's own address {}",
        client.ip
    );
    println!("      $ swarmnet endpoint disable web2    # on host2: drain before stopping it");
    c.cli_ok(1, &["endpoint", "disable", "web2"])?;
    let took = c.wait_until(Duration::from_secs(10), "web2 leaves the rotation", || {
        let mut any = false;
        for _ in 0..6 {
            any |= curl(&c, &client)?.starts_with("web2");
        }
        Ok(!any)
    })?;
    println!(
        "      within {} ms, new requests go only to web1 and web3",
        took.as_millis()
    );

    step(
        8,
        "The published port: http://<each host>:8080/ from a client outside the cluster",
    );
    let (outside, outside_ip) = c.lab.add_underlay_client("outside", 200)?;
    println!("      outside ({outside_ip}, on the hosts' own network, not on {NETWORK})");
    for h in 0..HOSTS {
        let url = format!("http://{}:8080/", c.lab.host_addr(h));
        let mut answers = Vec::new();
        let took = c.wait_until(
            Duration::from_secs(15),
            "the published port answers",
            || {
                let out = c
                    .lab
                    .exec(&outside, &["curl", "-s", "--max-time", "2", &url])?;
                let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if out.status.success() && !body.is_empty() {
                    answers.push(body);
                }
                Ok(answers.len() >= 3)
            },
        )?;
        let _ = took;
        println!("      outside$ curl {url}    (3 times)");
        for a in &answers {
            println!("        {a}");
        }
        ensure!(
            answers.iter().all(|a| a.ends_with(&outside_ip.to_string())),
            "the backends must see the outside client's own address: {answers:?}"
        );
    }
    println!(
        "      every host answers, balancing over the enabled backends of all hosts (web2 drains); \
         each backend saw \
         the outside client's own address {outside_ip}"
    );

    step(9, "The tables, as the CLI shows them");
    cmd(&c, 2, &["service", "inspect", SERVICE])?;
    cmd(&c, 1, &["network", "ls"])?;
    cmd(&c, 2, &["endpoint", "ls"])?;
    cmd(&c, 2, &["cluster", "members"])?;
    let sandbox = c.sandbox(0, net.vni);
    println!(
        "      $ ip netns exec {} bridge fdb show dev vxlan0    # host1's dataplane",
        sandbox.file_name().unwrap_or_default().to_string_lossy()
    );
    show(&c.in_sandbox(0, net.vni, &["bridge", "fdb", "show", "dev", "vxlan0"])?);
    println!(
        "      $ ip netns exec {} ip neigh show dev vxlan0",
        sandbox.file_name().unwrap_or_default().to_string_lossy()
    );
    show(&c.in_sandbox(0, net.vni, &["ip", "neigh", "show", "dev", "vxlan0"])?);

    if args.keep {
        keep(&c, &cs, net.vni, cancel)?;
    }
    println!("\nTearing down: stopping the agents, deleting every namespace ...");
    let t = Instant::now();
    let prefixes: Vec<String> = std::iter::once(format!("{}-", c.lab.prefix()))
        .chain(c.hosts.iter().map(|h| format!("{}-", h.prefix)))
        .collect();
    drop(c);
    let left: Vec<String> = std::fs::read_dir(crate::netns::NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
                .collect()
        })
        .unwrap_or_default();
    ensure!(left.is_empty(), "namespaces left behind: {left:?}");
    println!(
        "      done ({:.1} s): no namespace of the demo is left",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One `curl -s http://web/` from the client: the body (`<backend> <client ip>`).
fn curl(c: &AgentCluster, client: &Container) -> Result<String> {
    let url = format!("http://{SERVICE}/");
    let out = c
        .lab
        .exec(&client.netns, &["curl", "-s", "--max-time", "2", &url])?;
    ensure!(
        out.status.success(),
        "curl {url} from the client failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs a CLI command on host `i`'s agent and prints it with its output.
fn cmd(c: &AgentCluster, i: usize, args: &[&str]) -> Result<()> {
    println!(
        "      $ swarmnet {}    # on {}",
        args.join(" "),
        c.hosts[i].name
    );
    show(&c.cli_ok(i, args)?);
    Ok(())
}

/// Three pings (bounded: 5 s), printing ping's own lines; whether all came back.
fn ping(c: &AgentCluster, from: &Container, to: Ipv4Addr) -> Result<bool> {
    let to = to.to_string();
    let o = c.lab.exec(
        &from.netns,
        &[
            "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", "-w", "5", &to,
        ],
    )?;
    let out = String::from_utf8_lossy(&o.stdout);
    for l in out.lines().filter(|l| {
        l.contains("bytes from") || l.contains("packets transmitted") || l.starts_with("rtt")
    }) {
        println!("        {l}");
    }
    Ok(o.status.success())
}

/// `--keep`: prints what to try, waits for Enter (or Ctrl-C).
fn keep(c: &AgentCluster, cs: &[Container], vni: u32, cancel: &Arc<AtomicBool>) -> Result<()> {
    let (a, b) = (&cs[0], &cs[1]);
    println!("\nThe cluster keeps running. In another terminal, as root, try:");
    println!(
        "      {} --api {} endpoint ls",
        c.binary().display(),
        c.hosts[0].api
    );
    println!(
        "      ip netns exec {} ping -c 3 {}",
        a.netns.file_name().unwrap_or_default().to_string_lossy(),
        b.ip
    );
    println!(
        "      ip netns exec {} bridge fdb show dev vxlan0",
        c.sandbox(0, vni)
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    );
    for (i, h) in c.hosts.iter().enumerate() {
        if let Some(p) = &h.process {
            println!(
                "      agent log of {}: {}",
                c.hosts[i].name,
                p.log_path().display()
            );
        }
    }
    println!("Press Enter (or Ctrl-C) to tear it down.");
    let enter = Arc::new(AtomicBool::new(false));
    let e = enter.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        // EOF (no terminal) is not Enter: then only a signal ends the wait.
        if matches!(std::io::stdin().read_line(&mut line), Ok(n) if n > 0) {
            e.store(true, Ordering::Relaxed);
        }
    });
    while !enter.load(Ordering::Relaxed) && !cancel.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
