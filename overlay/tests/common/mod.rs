//! Test harness for kernel tests: an underlay of network namespaces (a switch namespace with
//! a bridge, N "host" namespaces joined to it by veths, like the lab in `lab::Lab`), container
//! namespaces, and a guard that tears everything down on drop, even on panic.

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

use ipnetwork::Ipv4Network;
use overlay::{Desired, Executor, LocalEndpoint, Names, NetworkSpec, RemotePeer};

/// Kernel tests in one process run one at a time (nextest runs each in its own process
/// anyway; this covers `cargo test`).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
pub fn must(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `Err(reason)` when this machine cannot run the kernel tests: not root, or netns, veth or
/// vxlan cannot be created (checked by creating and deleting them).
pub fn preflight(need_ping: bool) -> Result<(), String> {
    if !is_root() {
        return Err("not running as root".into());
    }
    if run(&["ip", "-V"]).status.code().is_none() {
        return Err("iproute2 `ip` is not installed".into());
    }
    if need_ping && !run(&["sh", "-c", "command -v ping"]).status.success() {
        return Err(
            "`ping` is missing (apt-get install -y --no-install-recommends iputils-ping)".into(),
        );
    }
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let probe = format!(
        "ovprobe{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let steps: [&[&str]; 3] = [
        &["ip", "netns", "add", &probe],
        &[
            "ip", "-n", &probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb",
        ],
        &[
            "ip", "-n", &probe, "link", "add", "vx", "type", "vxlan", "id", "42", "dstport", "4789",
        ],
    ];
    let mut failure = None;
    for s in steps {
        let o = run(s);
        if !o.status.success() {
            failure = Some(format!(
                "{s:?}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            break;
        }
    }
    let _ = run(&["ip", "netns", "del", &probe]);
    match failure {
        Some(f) => Err(format!("cannot create netns/veth/vxlan: {f}")),
        None => Ok(()),
    }
}

/// Takes the serial lock, then returns from the test with "skipped: <reason>" when
/// [`preflight`] fails. Evaluates to the lock guard: `let _serial = preflight_or_skip!(..);`.
#[macro_export]
macro_rules! preflight_or_skip {
    ($need_ping:expr) => {{
        let guard = common::serial();
        if let Err(reason) = common::preflight($need_ping) {
            println!("skipped: {reason}");
            return;
        }
        guard
    }};
}

pub struct Host {
    /// Namespace name of the host.
    pub ns: String,
    pub path: PathBuf,
    /// Underlay address (192.168.77.i).
    pub vtep: Ipv4Addr,
    /// The prefix of this host's agent (unique per test and host).
    pub names: Names,
}

/// The underlay and containers of one test. Dropping it deletes every namespace it created
/// and every namespace named with one of its hosts' prefixes.
pub struct Lab {
    pub tag: String,
    pub hosts: Vec<Host>,
    created: Vec<String>,
}

impl Lab {
    /// `letter` (a-z) must be unique per test in the file: it makes the prefixes unique.
    pub fn new(test: &str, letter: char, hosts: usize) -> Lab {
        assert!(letter.is_ascii_lowercase());
        let pid = std::process::id();
        let tag = format!("ovt{pid}-{test}");
        let mut lab = Lab {
            tag: tag.clone(),
            hosts: Vec::new(),
            created: Vec::new(),
        };
        let ul = format!("{tag}-ul");
        lab.add_netns(&ul);
        must(&["ip", "-n", &ul, "link", "add", "br-ul", "type", "bridge"]);
        must(&["ip", "-n", &ul, "link", "set", "br-ul", "up"]);
        for i in 1..=hosts {
            let ns = format!("{tag}-h{i}");
            lab.add_netns(&ns);
            let port = format!("ul-h{i}");
            must(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &ul,
            ]);
            must(&[
                "ip", "-n", &ul, "link", "set", &port, "master", "br-ul", "up",
            ]);
            let vtep = Ipv4Addr::new(192, 168, 77, i as u8);
            must(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{vtep}/24"),
                "dev",
                "eth0",
            ]);
            must(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            let names = Names::new(format!("t{:04x}{letter}{i}", pid & 0xffff)).unwrap();
            lab.hosts.push(Host {
                path: PathBuf::from(format!("/var/run/netns/{ns}")),
                ns,
                vtep,
                names,
            });
        }
        lab
    }

    fn add_netns(&mut self, name: &str) {
        must(&["ip", "netns", "add", name]);
        self.created.push(name.to_string());
        must(&["ip", "-n", name, "link", "set", "lo", "up"]);
    }

    /// A container namespace `<tag>-<name>` with `lo` up.
    pub fn container(&mut self, name: &str) -> PathBuf {
        let ns = format!("{}-{name}", self.tag);
        self.add_netns(&ns);
        PathBuf::from(format!("/var/run/netns/{ns}"))
    }

    /// The executor of host `i` (1-based), acting inside that host's namespace.
    pub fn executor(&self, i: usize) -> Executor {
        let h = &self.hosts[i - 1];
        Executor::new_in(&h.path, h.names.clone(), h.vtep).expect("executor")
    }

    /// The sandbox namespace name of host `i` for `vni`.
    pub fn sandbox(&self, i: usize, vni: u32) -> String {
        self.hosts[i - 1].names.sandbox(vni)
    }

    /// Namespace names under /var/run/netns that this lab owns.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/var/run/netns") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let ours = self.created.contains(&name)
                    || self
                        .hosts
                        .iter()
                        .any(|h| h.names.parse_sandbox(&name).is_some());
                if ours {
                    out.push(name);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Sandboxes first (their vxlan devices belong to the hosts), then containers, hosts,
        // the underlay.
        for h in &self.hosts {
            if let Ok(dir) = std::fs::read_dir("/var/run/netns") {
                for e in dir.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if h.names.parse_sandbox(&name).is_some() {
                        let _ = run(&["ip", "netns", "del", &name]);
                    }
                }
            }
        }
        for ns in self.created.iter().rev() {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let left = self.leftovers();
        if !left.is_empty() && !std::thread::panicking() {
            panic!("namespaces left behind: {left:?}");
        }
    }
}

/// Runs `cmd` inside namespace `ns` (via `ip netns exec`).
pub fn exec_in(ns: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend_from_slice(cmd);
    run(&args)
}

/// One ping (1 s timeout) with optional payload size and DF; retried at most `tries` times.
pub fn ping(ns_path: &Path, dst: Ipv4Addr, size: Option<u32>, tries: u32) -> Result<(), String> {
    let ns = ns_path.file_name().unwrap().to_string_lossy().into_owned();
    let dst = dst.to_string();
    let size_s = size.map(|s| s.to_string());
    let mut last = String::new();
    for _ in 0..tries {
        let mut cmd = vec!["ping", "-c", "1", "-W", "1", "-q"];
        if let Some(s) = &size_s {
            cmd.extend_from_slice(&["-M", "do", "-s", s]);
        }
        cmd.push(&dst);
        let o = exec_in(&ns, &cmd);
        if o.status.success() {
            return Ok(());
        }
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Err(last)
}

pub const VNI: u32 = 4100;

pub fn network(id: &str, vni: u32, third_octet: u8) -> NetworkSpec {
    NetworkSpec {
        id: id.into(),
        vni,
        subnet: Ipv4Network::new(Ipv4Addr::new(10, 10, third_octet, 0), 24).unwrap(),
        gateway: Ipv4Addr::new(10, 10, third_octet, 1),
        mtu: 1450,
        vxlan_port: 4789,
    }
}

/// Endpoint `n` on `net`: ip x.x.x.(n+1), MAC 02:42:0a:0a:<third>:(n+1), eth0, MTU 1450.
pub fn endpoint(id: &str, net: &NetworkSpec, netns: &Path, n: u8) -> LocalEndpoint {
    let o = net.subnet.ip().octets();
    LocalEndpoint {
        handoff: overlay::Handoff::No,
        id: id.into(),
        network: net.id.clone(),
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        ip: Ipv4Addr::new(o[0], o[1], o[2], n + 1),
        prefix_len: 24,
        mac: [0x02, 0x42, o[0], o[1], o[2], n + 1],
        mtu: net.mtu,
    }
}

pub fn peer_of(e: &LocalEndpoint, vtep: Ipv4Addr) -> RemotePeer {
    RemotePeer {
        network: e.network.clone(),
        endpoint: e.id.clone(),
        ip: e.ip,
        mac: e.mac,
        vtep,
    }
}

/// The classic setup: `lab` hosts 1..=k each with one container `c<i>` (endpoint `ep<i>`) on
/// one network. Returns the per-host desired states (each lists every endpoint as a peer,
/// including its own, which the planner must skip) and the endpoints.
pub fn one_container_per_host(
    lab: &mut Lab,
    net: &NetworkSpec,
) -> (Vec<Desired>, Vec<LocalEndpoint>) {
    let mut eps = Vec::new();
    for i in 1..=lab.hosts.len() {
        let c = lab.container(&format!("c{i}"));
        eps.push(endpoint(&format!("ep{i}"), net, &c, i as u8));
    }
    let peers: Vec<RemotePeer> = eps
        .iter()
        .zip(&lab.hosts)
        .map(|(e, h)| peer_of(e, h.vtep))
        .collect();
    let desired = eps
        .iter()
        .map(|e| Desired {
            networks: vec![net.clone()],
            endpoints: vec![e.clone()],
            peers: peers.clone(),
        })
        .collect();
    (desired, eps)
}

/// The current thread's network namespace identity (`net:[inode]`).
pub fn current_netns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}
