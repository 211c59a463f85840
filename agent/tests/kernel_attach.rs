//! Kernel test: a real `swarmnet agent` with the kernel dataplane, in its own host network
//! namespace, attaching container namespaces. Named `serial_*` (one at a time), checks first
//! that it can run (root, `ip`, `nsenter`, netns + veth + vxlan creatable) and otherwise
//! prints "skipped: <reason>", and removes every namespace it made, even on panic.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Why this machine cannot run the test, if it cannot.
fn preflight(tag: &str) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for tool in ["ip", "nsenter", "ping"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return Some(format!("{tool} is not installed"));
        }
    }
    let ns = format!("{tag}pf");
    if !run(&["ip", "netns", "add", &ns]).status.success() {
        return Some("cannot create network namespaces".into());
    }
    let vx = run(&[
        "ip", "-n", &ns, "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
    ]);
    let veth = run(&[
        "ip", "-n", &ns, "link", "add", "va", "type", "veth", "peer", "name", "vb",
    ]);
    let _ = run(&["ip", "netns", "del", &ns]);
    if !vx.status.success() {
        return Some("the kernel cannot create vxlan devices".into());
    }
    if !veth.status.success() {
        return Some("the kernel cannot create veth pairs".into());
    }
    None
}

/// Everything the test made; removed on drop.
struct Cleanup {
    netns: Vec<String>,
    prefix: String,
    agent: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut all = self.netns.clone();
        if let Ok(rd) = std::fs::read_dir("/var/run/netns") {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!("{}-", self.prefix)) {
                    all.push(n);
                }
            }
        }
        for n in all {
            let _ = run(&["ip", "netns", "del", &n]);
        }
    }
}

fn start_agent(host: &str, prefix: &str, dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .unwrap();
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{host}"))
        .arg(BIN)
        .args([
            "agent",
            "--state-dir",
            &dir.join("state").display().to_string(),
            "--listen-addr",
            "127.0.0.1",
            "--prefix",
            prefix,
            "--api-listen",
            &format!("unix://{}", dir.join("api.sock").display()),
            "--settle-ms",
            "200",
            "--reconcile-interval-secs",
            "2",
            "--log-level",
            "info",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn agent")
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--api")
        .arg(format!("unix://{}", dir.join("api.sock").display()))
        .args(args)
        .output()
        .unwrap()
}

fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let o = cli(dir, args);
    assert!(
        o.status.success(),
        "swarmnet {args:?}: {}\nagent log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn wait_ready(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if cli(dir, &["cluster", "status"]).status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "agent did not come up:\n{}",
        std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
    );
}

fn ping(from: &str, to: &str) -> bool {
    run(&[
        "ip", "netns", "exec", from, "ping", "-c", "2", "-i", "0.2", "-W", "2", to,
    ])
    .status
    .success()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn serial_attached_containers_ping_each_other_survive_kill_9_and_detach_cleanly() {
    let tag = format!("swk{}", std::process::id() % 10000);
    if let Some(reason) = preflight(&tag) {
        println!("skipped: {reason}");
        return;
    }
    // Prefix: 1..=7 of [a-z0-9], starting with a letter.
    let prefix = format!("k{}", std::process::id() % 100000);
    let (host, c1, c2, c3) = (
        format!("{tag}h"),
        format!("{tag}c1"),
        format!("{tag}c2"),
        format!("{tag}c3"),
    );
    let mut guard = Cleanup {
        netns: vec![host.clone(), c1.clone(), c2.clone(), c3.clone()],
        prefix: prefix.clone(),
        agent: None,
    };
    for ns in [&host, &c1, &c2, &c3] {
        ok(&["ip", "netns", "add", ns]);
        ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    guard.agent = Some(start_agent(&host, &prefix, d));
    wait_ready(d);

    let net = json(&cli_ok(
        d,
        &[
            "--json",
            "network",
            "create",
            "blue",
            "--subnet",
            "10.66.0.0/24",
        ],
    ));
    let vni = net["vni"].as_u64().unwrap();
    let netns_path = |n: &str| format!("/var/run/netns/{n}");
    let e1 = json(&cli_ok(
        d,
        &[
            "--json",
            "endpoint",
            "attach",
            "blue",
            "--netns",
            &netns_path(&c1),
            "--name",
            "one",
            "--alias",
            "uno",
        ],
    ));
    let e2 = json(&cli_ok(
        d,
        &[
            "--json",
            "endpoint",
            "attach",
            "blue",
            "--netns",
            &netns_path(&c2),
            "--name",
            "two",
            "--ip",
            "10.66.0.200",
        ],
    ));
    assert_eq!(e2["ip"], "10.66.0.200/24");
    let ip1 = e1["ip"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(ip1.starts_with("10.66.0."), "{e1}");
    let octets: Vec<u8> = ip1.split('.').map(|o| o.parse().unwrap()).collect();
    let want_mac = format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    );
    assert_eq!(e1["mac"], want_mac);
    // The container side: address, MAC, MTU (lo's 65536 - 50).
    let link = ok(&["ip", "-n", &c1, "-o", "addr", "show", "dev", "eth0"]);
    assert!(link.contains(&format!("{ip1}/24")), "{link}");
    let l = ok(&["ip", "-n", &c1, "-o", "link", "show", "dev", "eth0"]);
    assert!(l.contains(&want_mac), "{l}");
    assert!(l.contains("mtu 65486"), "{l}");
    assert!(Path::new(&format!("/var/run/netns/{prefix}-{vni}")).exists());

    assert!(ping(&c1, "10.66.0.200"), "c1 -> c2");
    assert!(ping(&c2, &ip1), "c2 -> c1");

    // Conflicts and refusals are clear.
    let o = cli(
        d,
        &[
            "endpoint",
            "attach",
            "blue",
            "--netns",
            &netns_path(&c3),
            "--name",
            "three",
            "--ip",
            "10.66.0.200",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("already exists: ip: 10.66.0.200 is already in use by endpoint two"),
        "{err}"
    );
    let o = cli(
        d,
        &[
            "endpoint",
            "attach",
            "blue",
            "--netns",
            &netns_path(&c3),
            "--name",
            "one",
        ],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("endpoint one already exists"));
    let o = cli(d, &["network", "rm", "blue"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refused: network blue has 2 endpoints"),
        "{err}"
    );
    let o = cli(
        d,
        &[
            "endpoint",
            "attach",
            "blue",
            "--netns",
            "/var/run/netns/does-not-exist",
            "--name",
            "x",
        ],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("netns: /var/run/netns/does-not-exist does not exist")
    );

    // kill -9 and restart: the containers keep their interfaces; the agent adopts them.
    let mut child = guard.agent.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ping(&c1, "10.66.0.200"), "ping while the agent is down");
    guard.agent = Some(start_agent(&host, &prefix, d));
    wait_ready(d);
    let eps = json(&cli_ok(d, &["--json", "endpoint", "ls"]));
    assert_eq!(eps.as_array().unwrap().len(), 2, "{eps}");
    std::thread::sleep(Duration::from_secs(3)); // a periodic reconcile has run
    assert!(ping(&c1, "10.66.0.200"), "ping after the restart");
    let l2 = ok(&["ip", "-n", &c1, "-o", "link", "show", "dev", "eth0"]);
    let idx = |s: &str| s.split(':').next().unwrap().to_string();
    assert_eq!(idx(&l), idx(&l2), "eth0 of c1 was recreated");

    // Detach removes the interfaces; the sandbox goes with the last endpoint.
    cli_ok(d, &["endpoint", "detach", "one"]);
    assert!(
        !run(&["ip", "-n", &c1, "link", "show", "eth0"])
            .status
            .success()
    );
    assert!(Path::new(&format!("/var/run/netns/{prefix}-{vni}")).exists());
    cli_ok(d, &["endpoint", "detach", e2["id"].as_str().unwrap()]);
    assert!(!Path::new(&format!("/var/run/netns/{prefix}-{vni}")).exists());
    cli_ok(d, &["network", "rm", "blue"]);

    // SIGTERM: a clean stop.
    let child = guard.agent.take().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
}
