//! Network-namespace test lab: the machine room of the tier-4 cluster tests and of
//! `swarmnet demo` (docs/ARCHITECTURE.md, "Testing tiers").
//!
//! A [`Lab`] owns, all named with one unique prefix `sl<pid % 1000>-<index>-<name>`:
//! * `<prefix>-ul`: the underlay "switch", a namespace with bridge `br-ul` and one port
//!   `ul-h<i>` per host;
//! * `<prefix>-h<i>` (i = 0..hosts): the "hosts", each with `lo` up and `eth0` (the peer of
//!   `ul-h<i>`) addressed `192.168.<k>.<i + 1>/24`, where `k` (100..=249) comes from the
//!   per-process lab index, so concurrent labs use different plans (they are isolated
//!   anyway);
//! * `<prefix>-h<host>-<name>`: container namespaces ([`Lab::add_container`]), `lo` up and
//!   nothing else: the agent under test attaches them.
//!
//! Faults ([`Lab::partition`], [`Lab::link_loss`]) are nftables rules in the underlay
//! namespace's bridge `forward` hook, so nothing the agents program in their own namespaces
//! can disturb them, and they apply to every frame between hosts (ARP, VXLAN, gossip).
//!
//! Everything is done with iproute2 (`ip`) and `nft` through [`std::process::Command`]: this
//! is test and demo infrastructure, not the agent's data path. No traffic ever leaves the
//! namespaces the lab creates. Every helper that sends traffic is bounded in count and time.
//!
//! Cleanup: dropping a [`Lab`] (also while unwinding from a panic) kills every process it
//! spawned, kills whatever else still runs inside its namespaces, deletes its namespaces and
//! every namespace whose name starts with a prefix registered with [`Lab::own_prefix`], and
//! deletes root-namespace veths carrying one of those prefixes. [`Lab::sweep`] does the same
//! for leftovers of a run that crashed without unwinding.
//!
//! Everything here needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN); [`Lab::preflight`] says
//! whether this machine can run a lab, so tests can print `skipped: <reason>` instead.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

/// Where `ip netns add` mounts named namespaces (`/var/run` is `/run` on Debian).
pub const NETNS_DIR: &str = "/var/run/netns";
/// The underlay bridge inside `<prefix>-ul`.
const BRIDGE: &str = "br-ul";
/// The nftables table (family `bridge`) holding partitions and loss rules in `<prefix>-ul`.
const NFT_TABLE: &str = "swarmnet_lab";
/// Longest lab prefix (`sl999-12-name`), so namespace names stay short.
const MAX_PREFIX: usize = 15;
/// Most hosts per lab (host addresses are `.1..=.250`).
const MAX_HOSTS: usize = 250;
/// Directories searched for tools besides `$PATH` (test runners often lack the sbin dirs).
const TOOL_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Per-process lab counter: makes prefixes and underlay subnets of concurrent labs differ.
static NEXT_LAB: AtomicUsize = AtomicUsize::new(0);

/// A network-namespace lab: an underlay bridge, N hosts, container namespaces, spawned
/// processes and injected faults. See the module docs for the layout. Dropping it removes
/// everything it created (see [`Drop`]).
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    /// Third octet of the underlay subnet `192.168.<octet>.0/24`.
    octet: u8,
    underlay: String,
    hosts: Vec<String>,
    /// Every namespace this lab created, in creation order (underlay, hosts, containers).
    created: Vec<String>,
    /// Prefixes registered with [`Lab::own_prefix`].
    owned: Vec<String>,
    procs: Vec<LabProcess>,
    log_dir: PathBuf,
    partitions: BTreeSet<(usize, usize)>,
    /// host -> drop percentage (1..=100) of frames to and from that host.
    loss: BTreeMap<usize, u8>,
}

impl Lab {
    /// Builds a lab with `hosts` (1..=250) host namespaces joined by an underlay bridge.
    ///
    /// `name` is sanitised to `[a-z0-9]` and truncated into the prefix; it only helps humans
    /// reading `ip netns list`. The prefix is unique in this process and checked against the
    /// namespaces present on the machine. On error, whatever was already built is removed.
    /// Needs root and iproute2 (a clear error says which is missing).
    pub fn new(name: &str, hosts: usize) -> Result<Lab> {
        ensure!(
            (1..=MAX_HOSTS).contains(&hosts),
            "a lab has 1..={MAX_HOSTS} hosts, not {hosts}"
        );
        preflight_basic()?;
        let name: String = name
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            .collect();
        let pid = std::process::id() % 1000;
        for _ in 0..64 {
            let index = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
            let mut prefix = format!("sl{pid}-{index}-{name}");
            prefix.truncate(MAX_PREFIX);
            let prefix = prefix.trim_end_matches('-').to_string();
            let dash = format!("{prefix}-");
            if list_netns().iter().any(|n| n.starts_with(&dash)) {
                continue; // left over by a crashed run with the same pid % 1000
            }
            let underlay = format!("{prefix}-ul");
            let o = ip(&["netns", "add", &underlay])?;
            if !o.status.success() {
                if String::from_utf8_lossy(&o.stderr).contains("File exists") {
                    continue; // another process took this prefix a moment ago
                }
                bail!("ip netns add {underlay}: {}", stderr(&o));
            }
            let mut lab = Lab {
                log_dir: std::env::temp_dir().join(format!("swarmnet-lab-{prefix}")),
                prefix,
                octet: 100 + (index % 150) as u8,
                underlay: underlay.clone(),
                hosts: Vec::new(),
                created: vec![underlay],
                owned: Vec::new(),
                procs: Vec::new(),
                partitions: BTreeSet::new(),
                loss: BTreeMap::new(),
            };
            lab.build(hosts)?; // on error, dropping `lab` removes the partial build
            return Ok(lab);
        }
        bail!("no free lab prefix for {name:?} after 64 tries")
    }

    fn build(&mut self, hosts: usize) -> Result<()> {
        let ul = self.underlay.clone();
        ip_ok(&["-n", &ul, "link", "set", "lo", "up"])?;
        ip_ok(&["-n", &ul, "link", "add", BRIDGE, "type", "bridge"])?;
        ip_ok(&["-n", &ul, "link", "set", BRIDGE, "up"])?;
        for i in 0..hosts {
            let h = format!("{}-h{i}", self.prefix);
            self.add_netns(&h)?;
            let port = format!("ul-h{i}");
            // Both ends are created directly in their namespaces: nothing appears in root.
            ip_ok(&[
                "link", "add", "eth0", "netns", &h, "type", "veth", "peer", "name", &port, "netns",
                &ul,
            ])?;
            ip_ok(&["-n", &ul, "link", "set", &port, "master", BRIDGE, "up"])?;
            let addr = format!("{}/24", Ipv4Addr::new(192, 168, self.octet, i as u8 + 1));
            ip_ok(&["-n", &h, "addr", "add", &addr, "dev", "eth0"])?;
            ip_ok(&["-n", &h, "link", "set", "eth0", "up"])?;
            self.hosts.push(h);
        }
        Ok(())
    }

    /// Creates namespace `name`, records it for cleanup, brings `lo` up.
    fn add_netns(&mut self, name: &str) -> Result<()> {
        ip_ok(&["netns", "add", name])?;
        self.created.push(name.to_string());
        ip_ok(&["-n", name, "link", "set", "lo", "up"])
    }

    /// Whether this machine can run a lab: root, iproute2, and a namespace with a veth pair
    /// and a bridge can be created (tried on a throw-away namespace). `Err` carries the
    /// reason, for `skipped: <reason>`.
    pub fn preflight() -> Result<()> {
        preflight_basic()?;
        static PROBES: AtomicUsize = AtomicUsize::new(0);
        let probe = format!(
            "slprobe{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let steps: [&[&str]; 3] = [
            &["netns", "add", &probe],
            &[
                "-n", &probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb",
            ],
            &["-n", &probe, "link", "add", "probebr0", "type", "bridge"],
        ];
        let result = steps.iter().try_for_each(|s| ip_ok(s));
        let _ = ip(&["netns", "del", &probe]);
        result.context("cannot create a network namespace with a veth pair and a bridge")
    }

    /// The lab's name prefix: every namespace it creates is named `<prefix>-...`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// The underlay namespace (bridge `br-ul`, ports `ul-h<i>`), e.g. for tcpdump.
    pub fn underlay_netns(&self) -> PathBuf {
        netns_path(&self.underlay)
    }

    /// Path of host `i`'s namespace (`/var/run/netns/<prefix>-h<i>`), for `ip netns exec`,
    /// setns, or an agent's `--netns`. Hosts are numbered from 0. Panics if `i >= hosts()`.
    pub fn host_netns(&self, i: usize) -> PathBuf {
        netns_path(&self.hosts[i])
    }

    /// Underlay address of host `i` on its `eth0`: `192.168.<k>.<i + 1>` (/24). Panics if
    /// `i >= hosts()`.
    pub fn host_addr(&self, i: usize) -> Ipv4Addr {
        assert!(i < self.hosts.len(), "host {i} of {}", self.hosts.len());
        Ipv4Addr::new(192, 168, self.octet, i as u8 + 1)
    }

    /// Creates container namespace `<prefix>-h<host>-<name>` with `lo` up and nothing else
    /// (the agent on `host` attaches it) and returns its path. `name` is 1..=32 chars of
    /// `[a-z0-9-]`; `(host, name)` must be new. Deleted when the lab drops.
    pub fn add_container(&mut self, host: usize, name: &str) -> Result<PathBuf> {
        ensure!(
            host < self.hosts.len(),
            "host {host} does not exist ({} hosts)",
            self.hosts.len()
        );
        ensure!(
            !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "container name {name:?}: use 1..=32 chars of [a-z0-9-]"
        );
        let ns = format!("{}-h{host}-{name}", self.prefix);
        self.add_netns(&ns)?;
        Ok(netns_path(&ns))
    }

    /// Creates namespace `<prefix>-<name>` with an `eth0` on the underlay bridge and the
    /// address `192.168.<k>.<octet>/24`: a client outside every host (as on the hosts' own
    /// network), for published ports. `octet` is 200..=254 (hosts use 1..=250, so keep
    /// labs with clients below 200 hosts). Deleted when the lab drops.
    pub fn add_underlay_client(&mut self, name: &str, octet: u8) -> Result<(PathBuf, Ipv4Addr)> {
        ensure!(
            (200..=254).contains(&octet) && usize::from(octet) > self.hosts.len(),
            "client octet {octet}: use 200..=254, above the hosts"
        );
        ensure!(
            !name.is_empty()
                && name.len() <= 16
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "client name {name:?}: use 1..=16 chars of [a-z0-9]"
        );
        let ns = format!("{}-{name}", self.prefix);
        self.add_netns(&ns)?;
        let port = format!("ul-{name}");
        let ul = self.underlay.clone();
        ip_ok(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
            &ul,
        ])?;
        ip_ok(&["-n", &ul, "link", "set", &port, "master", BRIDGE, "up"])?;
        let addr = Ipv4Addr::new(192, 168, self.octet, octet);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip_ok(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok((netns_path(&ns), addr))
    }

    /// The path [`Lab::add_container`] gives (or gave) container `name` on `host`.
    pub fn container_path(&self, host: usize, name: &str) -> PathBuf {
        netns_path(&format!("{}-h{host}-{name}", self.prefix))
    }

    /// Registers a namespace name prefix owned by this lab: on drop, every namespace whose
    /// name starts with `prefix` (e.g. the sandboxes an agent under test creates with its
    /// `--prefix`) is deleted, as is every root-namespace veth whose name starts with it.
    /// Choose a prefix unique to the test (at least 2 chars of `[A-Za-z0-9._-]`).
    pub fn own_prefix(&mut self, prefix: &str) -> Result<()> {
        check_prefix(prefix)?;
        if !self.owned.iter().any(|p| p == prefix) {
            self.owned.push(prefix.to_string());
        }
        Ok(())
    }

    /// Runs `cmd` (program + arguments; the program is looked up in `$PATH` and the sbin
    /// directories) inside `netns` and waits for it: `ip netns exec` for a path under
    /// `/var/run/netns` or `/run/netns` (so `/etc/netns/<name>/resolv.conf` applies),
    /// `nsenter --net=<path>` for any other namespace file. stdin is null. The caller bounds
    /// the command's run time. `Err` only if it could not be started.
    pub fn exec(&self, netns: &Path, cmd: &[&str]) -> Result<Output> {
        let mut c = netns_command(netns, cmd)?;
        c.stdin(Stdio::null());
        c.output()
            .with_context(|| format!("running {cmd:?} in {}", netns.display()))
    }

    /// [`Lab::exec`] that must exit 0; returns its stdout, or an error with its output.
    pub fn exec_ok(&self, netns: &Path, cmd: &[&str]) -> Result<String> {
        let o = self.exec(netns, cmd)?;
        ensure!(
            o.status.success(),
            "{cmd:?} in {} failed ({}): {}{}",
            netns.display(),
            o.status,
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Starts `cmd` inside `netns` (as [`Lab::exec`]) without waiting. stdin is null; stdout
    /// and stderr go to a log file ([`LabProcess::log`]). The process is registered: the lab
    /// kills it (SIGKILL, then reaps it) on drop unless it was reaped before.
    pub fn spawn(&mut self, netns: &Path, cmd: &[&str]) -> Result<LabProcess> {
        self.spawn_with(netns, cmd, |_| {})
    }

    /// [`Lab::spawn`], with `configure` applied to the command last (environment, stdio,
    /// working directory; e.g. `|c| { c.stdout(Stdio::piped()); }`, then take the pipe with
    /// [`LabProcess::with_child`]). A piped output must be read, or the process blocks.
    pub fn spawn_with(
        &mut self,
        netns: &Path,
        cmd: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Result<LabProcess> {
        let mut c = netns_command(netns, cmd)?;
        std::fs::create_dir_all(&self.log_dir)
            .with_context(|| format!("creating {}", self.log_dir.display()))?;
        let program = Path::new(cmd[0])
            .file_name()
            .map_or_else(|| "proc".into(), |f| f.to_string_lossy().into_owned());
        let log = self
            .log_dir
            .join(format!("{}-{program}.log", self.procs.len()));
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        c.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        configure(&mut c);
        let child = c
            .spawn()
            .with_context(|| format!("spawning {cmd:?} in {}", netns.display()))?;
        let p = LabProcess {
            pid: child.id(),
            netns: netns.to_path_buf(),
            log,
            child: Arc::new(Mutex::new(child)),
        };
        self.procs.push(p.clone());
        Ok(p)
    }

    /// Sends `count` (1..=1000) ICMP echo requests, 0.1 s apart, from `from_netns` to `addr`
    /// and returns whether every reply arrived (each waited for at most 1 s; total time about
    /// `count * 0.1 + 1` s). `size` is the ICMP payload (`ping -s`); `dont_fragment` sets
    /// DF (`-M do`: an oversize packet fails locally or gets "frag needed"), otherwise
    /// fragmentation is allowed (`-M dont`). Installs iputils-ping if missing; any error
    /// (also a failed install) counts as `false`.
    pub fn ping(
        &self,
        from_netns: &Path,
        addr: Ipv4Addr,
        count: u32,
        size: Option<usize>,
        dont_fragment: bool,
    ) -> bool {
        matches!(
            self.ping_received(from_netns, addr, count, size, dont_fragment),
            Ok(n) if n == count
        )
    }

    /// [`Lab::ping`], returning how many replies arrived (for loss measurements).
    pub fn ping_received(
        &self,
        from_netns: &Path,
        addr: Ipv4Addr,
        count: u32,
        size: Option<usize>,
        dont_fragment: bool,
    ) -> Result<u32> {
        ensure!(
            (1..=1000).contains(&count),
            "ping count {count} not in 1..=1000"
        );
        ensure_tools(&["ping"])?;
        let (count_s, addr_s) = (count.to_string(), addr.to_string());
        let size_s = size.map(|s| s.to_string());
        let pmtu = if dont_fragment { "do" } else { "dont" };
        let mut args = vec![
            "ping", "-n", "-q", "-c", &count_s, "-i", "0.1", "-W", "1", "-M", pmtu,
        ];
        if let Some(s) = &size_s {
            args.extend(["-s", s.as_str()]);
        }
        args.push(&addr_s);
        let o = self.exec(from_netns, &args)?;
        let out = String::from_utf8_lossy(&o.stdout);
        parse_ping_received(&out).ok_or_else(|| anyhow!("ping output: {out}{}", stderr(&o)))
    }

    /// Cuts the underlay between hosts `a` and `b` in both directions (every frame, ARP
    /// included, is dropped at the bridge), until [`Lab::heal`]. Other pairs are unaffected.
    /// Installs nftables if missing.
    pub fn partition(&mut self, host_a: usize, host_b: usize) -> Result<()> {
        let n = self.hosts.len();
        ensure!(
            host_a < n && host_b < n && host_a != host_b,
            "partition({host_a}, {host_b}) needs two distinct hosts < {n}"
        );
        self.partitions
            .insert((host_a.min(host_b), host_a.max(host_b)));
        self.apply_faults()
    }

    /// Removes every partition and every loss rule: the underlay is whole again.
    pub fn heal(&mut self) -> Result<()> {
        self.partitions.clear();
        self.loss.clear();
        self.apply_faults()
    }

    /// Drops `percent` (0..=100) of the frames to and from `host` at the underlay bridge, at
    /// random (nftables `numgen random`), independently per frame and direction (a ping round
    /// trip then fails with probability `1 - (1 - p)^2`). 0 removes the rule.
    pub fn link_loss(&mut self, host: usize, percent: u8) -> Result<()> {
        ensure!(host < self.hosts.len(), "host {host} does not exist");
        ensure!(percent <= 100, "loss {percent}% is over 100%");
        if percent == 0 {
            self.loss.remove(&host);
        } else {
            self.loss.insert(host, percent);
        }
        self.apply_faults()
    }

    /// Replaces the fault table in the underlay namespace with one built from the current
    /// partitions and loss rules, in one nft transaction.
    fn apply_faults(&self) -> Result<()> {
        let mut rules = String::new();
        for (a, b) in &self.partitions {
            for (i, o) in [(a, b), (b, a)] {
                rules += &format!("    iifname \"ul-h{i}\" oifname \"ul-h{o}\" drop\n");
            }
        }
        for (h, p) in &self.loss {
            // numgen values are 0..=99, so "< 100" would be out of range
            let random = if *p >= 100 {
                String::new()
            } else {
                format!("numgen random mod 100 < {p} ")
            };
            for dir in ["iifname", "oifname"] {
                rules += &format!("    {dir} \"ul-h{h}\" {random}drop\n");
            }
        }
        let mut script = format!("table bridge {NFT_TABLE}\ndelete table bridge {NFT_TABLE}\n");
        if !rules.is_empty() {
            script += &format!(
                "table bridge {NFT_TABLE} {{\n  chain forward {{\n    type filter hook forward \
                 priority 0; policy accept;\n{rules}  }}\n}}\n"
            );
        }
        if rules.is_empty() && find_tool("nft").is_none() {
            return Ok(()); // nothing to remove: no rule was ever installed
        }
        ensure_tools(&["nft"])?;
        let mut c = netns_command(&self.underlay_netns(), &["nft", "-f", "-"])?;
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning nft")?;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(script.as_bytes())?;
        let o = child.wait_with_output()?;
        ensure!(
            o.status.success(),
            "nft -f in {}: {}\n{script}",
            self.underlay,
            stderr(&o)
        );
        Ok(())
    }

    /// Namespaces currently present on the machine that this lab owns (created by it or
    /// matching an owned prefix). Empty after drop.
    pub fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = list_netns()
            .into_iter()
            .filter(|n| self.created.contains(n) || self.owned.iter().any(|p| n.starts_with(p)))
            .collect();
        v.sort();
        v
    }

    /// Removes leftovers of an earlier run that could not clean up (killed, aborted): kills
    /// every process inside and deletes every namespace whose name starts with `prefix`,
    /// deletes root-namespace veths starting with it and lab log directories
    /// (`$TMPDIR/swarmnet-lab-<prefix>...`). Returns the deleted namespace names. It does not
    /// spare live labs: `Lab::sweep("sl")` removes every lab on the machine, so use a prefix
    /// that only the crashed run used. `prefix` needs at least 2 chars of `[A-Za-z0-9._-]`.
    pub fn sweep(prefix: &str) -> Result<Vec<String>> {
        check_prefix(prefix)?;
        preflight_basic()?;
        let mut names: Vec<String> = list_netns()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        remove_namespaces(&names);
        delete_root_veths(&[prefix]);
        if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
            let logs = format!("swarmnet-lab-{prefix}");
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&logs) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let left: Vec<String> = list_netns()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        ensure!(
            left.is_empty(),
            "namespaces still present after sweep: {left:?}"
        );
        Ok(names)
    }
}

impl Drop for Lab {
    /// Kills spawned processes (SIGKILL, then reaps them), kills anything else inside the
    /// lab's namespaces, deletes namespaces matching owned prefixes, then the lab's own
    /// namespaces (newest first), then root-namespace veths with the lab's or an owned
    /// prefix, then the log directory (kept, and its path printed, when panicking). Never
    /// panics; failures are printed to stderr.
    fn drop(&mut self) {
        for p in &self.procs {
            let mut c = p.lock();
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut owned: Vec<String> = list_netns()
            .into_iter()
            .filter(|n| self.owned.iter().any(|p| n.starts_with(p)) && !self.created.contains(n))
            .collect();
        owned.sort();
        owned.extend(self.created.iter().rev().cloned());
        remove_namespaces(&owned);
        let mut prefixes: Vec<&str> = self.owned.iter().map(String::as_str).collect();
        let lab_prefix = format!("{}-", self.prefix);
        prefixes.push(&lab_prefix);
        delete_root_veths(&prefixes);
        let left = self.leftovers();
        if !left.is_empty() {
            eprintln!("lab {}: namespaces left behind: {left:?}", self.prefix);
        }
        if std::thread::panicking() && self.log_dir.exists() {
            eprintln!(
                "lab {}: process logs kept in {}",
                self.prefix,
                self.log_dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// A process started by [`Lab::spawn`]. Clones share the process. Dropping the handle does
/// not stop the process; the lab kills it on drop.
#[derive(Debug, Clone)]
pub struct LabProcess {
    pid: u32,
    netns: PathBuf,
    log: PathBuf,
    child: Arc<Mutex<Child>>,
}

impl LabProcess {
    fn lock(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The process id (valid until the process is reaped).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The namespace it was started in.
    pub fn netns(&self) -> &Path {
        &self.netns
    }

    /// The file receiving stdout and stderr (unless redirected by `spawn_with`).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What the process wrote so far (lossy UTF-8; empty if the log is gone).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Its exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        Ok(self.lock().try_wait()?)
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` (polling every 20 ms) for it to exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a `kill -9` fault), then reaps it and returns its status. A process that
    /// already exited just returns its status.
    pub fn kill(&self) -> Result<ExitStatus> {
        let mut c = self.lock();
        if let Some(s) = c.try_wait()? {
            return Ok(s);
        }
        c.kill()?;
        Ok(c.wait()?)
    }

    /// SIGTERM (a graceful stop), waits up to `grace` for it to exit, then SIGKILLs it.
    /// Returns its exit status.
    pub fn terminate(&self, grace: Duration) -> Result<ExitStatus> {
        {
            let mut c = self.lock();
            if let Some(s) = c.try_wait()? {
                return Ok(s);
            }
            // Not reaped yet (we hold the lock), so the pid is still this process.
            signal(self.pid, "TERM")?;
        }
        match self.wait_timeout(grace)? {
            Some(s) => Ok(s),
            None => self.kill(),
        }
    }

    /// Direct access to the [`Child`] (e.g. to take a piped stdout). Do not `wait` on it
    /// while holding other lab locks; the closure runs with the handle's lock held.
    pub fn with_child<R>(&self, f: impl FnOnce(&mut Child) -> R) -> R {
        f(&mut self.lock())
    }
}

/// Makes sure each command in `tools` exists (`$PATH` or the sbin directories), installing
/// the Debian packages that provide the missing ones with
/// `apt-get install -y --no-install-recommends` (one `apt-get update` and a few retries
/// while dpkg is locked are allowed). Known tools: ip, bridge, ss, ping, nft, iptables,
/// conntrack, tcpdump, iperf3, socat, nc, dig, curl, getent, nsenter. A package that failed
/// once is not tried again in this process. Calls are serialised; a present tool costs a
/// few `stat`s.
pub fn ensure_tools(tools: &[&str]) -> Result<()> {
    static INSTALL: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut failed = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs = BTreeSet::new();
    for t in &missing {
        let p = package_of(t)
            .ok_or_else(|| anyhow!("`{t}` is missing and no Debian package is known for it"))?;
        ensure!(
            !failed.contains(p),
            "`{t}` is missing and installing {p} failed earlier"
        );
        pkgs.insert(p);
    }
    ensure!(
        is_root(),
        "{missing:?} missing; installing {pkgs:?} needs root"
    );
    let apt = find_tool("apt-get").ok_or_else(|| anyhow!("{missing:?} missing and no apt-get"))?;
    let mut last = String::new();
    for attempt in 0..4 {
        if attempt == 1 {
            let _ = Command::new(&apt)
                .args(["update", "-q"])
                .stdin(Stdio::null())
                .output();
        } else if attempt > 1 {
            std::thread::sleep(Duration::from_secs(5)); // dpkg lock held by someone else
        }
        let o = Command::new(&apt)
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .context("running apt-get")?;
        if o.status.success() {
            break;
        }
        last = stderr(&o);
    }
    let still: Vec<&str> = missing
        .into_iter()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if !still.is_empty() {
        failed.extend(pkgs.iter().copied());
        bail!("could not install {still:?} (apt-get install {pkgs:?}): {last}");
    }
    Ok(())
}

/// The absolute path of command `tool`, searched in `$PATH`, then the usual sbin/bin dirs.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(TOOL_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn package_of(tool: &str) -> Option<&'static str> {
    Some(match tool {
        "ip" | "bridge" | "ss" => "iproute2",
        "ping" => "iputils-ping",
        "nft" => "nftables",
        "iptables" => "iptables",
        "conntrack" => "conntrack",
        "tcpdump" => "tcpdump",
        "iperf3" => "iperf3",
        "socat" => "socat",
        "nc" => "netcat-openbsd",
        "dig" => "bind9-dnsutils",
        "curl" => "curl",
        "getent" => "libc-bin",
        "nsenter" => "util-linux",
        _ => return None,
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Root and iproute2, with errors that say what to do.
fn preflight_basic() -> Result<()> {
    ensure!(
        is_root(),
        "the network lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    );
    ensure!(
        find_tool("ip").is_some(),
        "iproute2 `ip` not found in $PATH or /usr/sbin, /sbin \
         (apt-get install -y --no-install-recommends iproute2)"
    );
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<()> {
    ensure!(
        prefix.len() >= 2
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
        "prefix {prefix:?}: use at least 2 chars of [A-Za-z0-9._-]"
    );
    Ok(())
}

fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Names of all named namespaces on the machine.
fn list_netns() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Namespaces on the machine whose name starts with `prefix`, as `ip netns list` reports them
/// (an independent check for cleanup assertions: it does not use the lab's own bookkeeping).
pub fn netns_listed(prefix: &str) -> Result<Vec<String>> {
    let o = ip(&["netns", "list"])?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect())
}

/// The process is gone or a zombie (killed, not yet reaped by whoever inherited it).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Runs `ip <args>` in the root namespace.
fn ip(args: &[&str]) -> Result<Output> {
    let ip = find_tool("ip").ok_or_else(|| anyhow!("iproute2 `ip` not found"))?;
    Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))
}

/// `ip <args>` that must succeed.
fn ip_ok(args: &[&str]) -> Result<()> {
    let o = ip(args)?;
    ensure!(
        o.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        stderr(&o)
    );
    Ok(())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

/// The command running `cmd` inside `netns` (see [`Lab::exec`]).
fn netns_command(netns: &Path, cmd: &[&str]) -> Result<Command> {
    let (program, args) = cmd.split_first().context("empty command")?;
    let program = if program.contains('/') {
        PathBuf::from(program)
    } else {
        find_tool(program).unwrap_or_else(|| PathBuf::from(program))
    };
    let named = netns
        .parent()
        .is_some_and(|d| d == Path::new(NETNS_DIR) || d == Path::new("/run/netns"));
    let mut c = if named {
        let name = netns.file_name().context("namespace path without a name")?;
        let mut c = Command::new(find_tool("ip").context("iproute2 `ip` not found")?);
        c.args(["netns", "exec"]).arg(name);
        c
    } else {
        let mut c = Command::new(find_tool("nsenter").context("`nsenter` not found")?);
        c.arg(format!("--net={}", netns.display())).arg("--");
        c
    };
    c.arg(program).args(args);
    Ok(c)
}

/// Sends signal `sig` (e.g. "TERM") to `pid`. The caller guarantees the pid is its own.
fn signal(pid: u32, sig: &str) -> Result<()> {
    let o = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\"", "sh", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("running kill")?;
    ensure!(o.status.success(), "kill -s {sig} {pid}: {}", stderr(&o));
    Ok(())
}

/// Kills every process inside each namespace (never this process), then deletes them in
/// the given order. Errors are printed, not returned: this is cleanup.
fn remove_namespaces(names: &[String]) {
    let me = std::process::id();
    for n in names {
        if let Ok(o) = ip(&["netns", "pids", n]) {
            for pid in String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .filter(|&p| p != me)
            {
                let _ = signal(pid, "KILL");
            }
        }
    }
    for n in names {
        match ip(&["netns", "del", n]) {
            Ok(o) if !o.status.success() && netns_path(n).exists() => {
                eprintln!("lab cleanup: ip netns del {n}: {}", stderr(&o));
            }
            Err(e) => eprintln!("lab cleanup: {e:#}"),
            _ => {}
        }
        // Per-namespace files `ip netns exec` bind-mounts (a container's resolv.conf).
        let etc = Path::new(ETC_NETNS_DIR).join(n);
        if etc.is_dir() {
            let _ = std::fs::remove_dir_all(&etc);
        }
    }
}

/// Where `ip netns exec NAME` finds files to bind-mount over `/etc` (e.g.
/// `/etc/netns/NAME/resolv.conf`).
pub const ETC_NETNS_DIR: &str = "/etc/netns";

/// `/etc/netns/<namespace name>/resolv.conf` of a named namespace (its directory created):
/// the path an agent can write a container's resolv.conf at so that `ip netns exec` (and so
/// [`Lab::exec`]) uses it. The lab removes the directory with the namespace.
pub fn netns_resolv_conf(netns: &Path) -> Result<PathBuf> {
    let name = netns.file_name().context("namespace path without a name")?;
    let dir = Path::new(ETC_NETNS_DIR).join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("resolv.conf"))
}

/// Deletes veths in the root namespace whose names start with one of `prefixes`.
fn delete_root_veths(prefixes: &[&str]) {
    let Ok(o) = ip(&["-o", "link", "show", "type", "veth"]) else {
        return;
    };
    // Lines look like "12: name@peer: <FLAGS> ...".
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        if prefixes.iter().any(|p| name.starts_with(p)) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

/// "N received" from ping's summary line ("3 packets transmitted, 2 received, ...").
fn parse_ping_received(out: &str) -> Option<u32> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    line.split(", ")
        .find_map(|part| part.strip_suffix(" received")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lab tests in one process run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// Takes the serial lock, or returns the reason the lab cannot run here.
    fn preflight() -> std::result::Result<MutexGuard<'static, ()>, String> {
        let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        Lab::preflight().map_err(|e| format!("{e:#}"))?;
        Ok(guard)
    }

    macro_rules! preflight_or_skip {
        () => {
            match preflight() {
                Ok(g) => g,
                Err(reason) => {
                    println!("skipped: {reason}");
                    return;
                }
            }
        };
    }

    fn netns_listed(prefix: &str) -> Vec<String> {
        super::netns_listed(prefix).unwrap()
    }

    fn proc_gone(pid: u32) -> bool {
        super::process_gone(pid)
    }

    #[test]
    fn ping_summary_lines_are_parsed() {
        let ok = "--- 1.2.3.4 ping statistics ---\n3 packets transmitted, 3 received, 0% \
                  packet loss, time 203ms\nrtt min/avg/max/mdev = 0.02/0.03/0.04/0.01 ms\n";
        assert_eq!(parse_ping_received(ok), Some(3));
        let err = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n";
        assert_eq!(parse_ping_received(err), Some(0));
        assert_eq!(parse_ping_received("ping: unknown host\n"), None);
    }

    #[test]
    fn short_or_odd_prefixes_are_refused() {
        assert!(check_prefix("s").is_err());
        assert!(check_prefix("a/b").is_err());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("t12a-").is_ok());
    }

    #[test]
    fn serial_three_host_lab_pings_over_the_underlay_and_leaves_nothing_behind() {
        let _serial = preflight_or_skip!();
        if let Err(e) = ensure_tools(&["ping"]) {
            println!("skipped: {e:#}");
            return;
        }
        let owned = format!("slt{}o-", std::process::id());
        let (prefix, sleeper) = {
            let mut lab = Lab::new("Basic_Test", 3).unwrap();
            let prefix = format!("{}-", lab.prefix());
            assert!(lab.prefix().len() <= MAX_PREFIX, "{}", lab.prefix());
            assert_eq!(lab.hosts(), 3);
            assert_eq!(
                netns_listed(&prefix).len(),
                4,
                "underlay + 3 hosts: {:?}",
                netns_listed(&prefix)
            );

            // host 1 -> host 3 (indices 0 and 2) over the underlay bridge, and back
            let (h0, h2) = (lab.host_netns(0), lab.host_netns(2));
            assert!(h0.starts_with(NETNS_DIR) && h0.exists(), "{h0:?}");
            assert!(lab.ping(&h0, lab.host_addr(2), 3, None, false));
            assert!(lab.ping(&h2, lab.host_addr(0), 2, Some(1472), true));
            // 1473 bytes of payload do not fit a 1500 MTU with DF set
            assert!(!lab.ping(&h0, lab.host_addr(2), 1, Some(1473), true));
            // nothing answers outside the underlay subnet (and nothing leaves the namespace)
            assert!(!lab.ping(&h0, Ipv4Addr::new(10, 255, 255, 1), 1, None, false));

            // a container namespace: lo up, nothing else
            let c = lab.add_container(1, "c1").unwrap();
            assert!(c.exists());
            let links = lab.exec_ok(&c, &["ip", "-o", "link", "show"]).unwrap();
            assert_eq!(links.lines().count(), 1, "{links}");
            assert!(links.contains(": lo:") && links.contains("UP"), "{links}");
            assert!(lab.add_container(1, "c1").is_err(), "duplicate container");
            assert!(lab.add_container(3, "c2").is_err(), "no host 3");
            assert!(lab.add_container(0, "Bad_Name").is_err());

            // an agent-made namespace under an owned prefix
            lab.own_prefix(&owned).unwrap();
            ip_ok(&["netns", "add", &format!("{owned}4096")]).unwrap();
            assert_eq!(lab.leftovers().len(), 6, "{:?}", lab.leftovers());

            // a spawned process runs in its namespace and writes to its log
            let p = lab
                .spawn(
                    &h0,
                    &["sh", "-c", "ip -o -4 addr show dev eth0; exec sleep 30"],
                )
                .unwrap();
            let t0 = Instant::now();
            while !p.log().contains("eth0") && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                p.log().contains(&lab.host_addr(0).to_string()),
                "{}",
                p.log()
            );
            assert!(p.is_running());
            // a second one is stopped gracefully by the test itself
            let q = lab.spawn(&h2, &["sleep", "30"]).unwrap();
            let status = q.terminate(Duration::from_secs(5)).unwrap();
            assert!(!status.success());
            assert!(!q.is_running());
            (prefix, p.pid())
        };
        assert!(
            proc_gone(sleeper),
            "spawned process {sleeper} survived the lab"
        );
        assert_eq!(netns_listed(&prefix), Vec::<String>::new());
        assert_eq!(netns_listed(&owned), Vec::<String>::new());
    }

    #[test]
    fn serial_a_panicking_test_still_removes_the_whole_lab() {
        let _serial = preflight_or_skip!();
        let owned = format!("slt{}p-", std::process::id());
        let seen: Mutex<Option<(String, u32)>> = Mutex::new(None);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut lab = Lab::new("panics", 2).unwrap();
            lab.own_prefix(&owned).unwrap();
            ip_ok(&["netns", "add", &format!("{owned}7")]).unwrap();
            lab.add_container(0, "web").unwrap();
            let p = lab.spawn(&lab.host_netns(1), &["sleep", "30"]).unwrap();
            *seen.lock().unwrap() = Some((format!("{}-", lab.prefix()), p.pid()));
            assert_eq!(lab.leftovers().len(), 5, "{:?}", lab.leftovers());
            panic!("test failure inside a lab");
        }));
        assert!(result.is_err());
        let (prefix, pid) = seen.lock().unwrap().take().expect("lab was built");
        // the lab keeps its log directory when dropped during a panic; this panic was staged
        let logs =
            std::env::temp_dir().join(format!("swarmnet-lab-{}", prefix.trim_end_matches('-')));
        assert!(logs.exists(), "{logs:?}");
        std::fs::remove_dir_all(&logs).unwrap();
        assert!(proc_gone(pid), "spawned process {pid} survived the panic");
        assert_eq!(netns_listed(&prefix), Vec::<String>::new());
        assert_eq!(netns_listed(&owned), Vec::<String>::new());
    }

    #[test]
    fn serial_sweep_removes_namespaces_and_processes_of_a_crashed_run() {
        let _serial = preflight_or_skip!();
        let prefix = format!("slt{}s-", std::process::id());
        for n in ["a", "b"] {
            let ns = format!("{prefix}{n}");
            ip_ok(&["netns", "add", &ns]).unwrap();
        }
        // a process of the "crashed run" still inside one namespace (not our child: the
        // intermediate shell exits at once)
        let o = Command::new("sh")
            .args([
                "-c",
                "ip netns exec \"$1\" sleep 30 >/dev/null 2>&1 & echo $!",
            ])
            .args(["sh", &format!("{prefix}a")])
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
        let t0 = Instant::now();
        while ip(&["netns", "pids", &format!("{prefix}a")])
            .map(|o| o.stdout.is_empty())
            .unwrap_or(true)
            && t0.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let removed = Lab::sweep(&prefix).unwrap();
        assert_eq!(removed, vec![format!("{prefix}a"), format!("{prefix}b")]);
        assert_eq!(netns_listed(&prefix), Vec::<String>::new());
        let t0 = Instant::now();
        while !proc_gone(pid) && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(proc_gone(pid), "process {pid} survived the sweep");
        assert!(Lab::sweep("s").is_err());
        assert_eq!(Lab::sweep(&prefix).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn serial_partition_and_loss_cut_the_underlay_until_healed() {
        let _serial = preflight_or_skip!();
        if let Err(e) = ensure_tools(&["ping", "nft"]) {
            println!("skipped: {e:#}");
            return;
        }
        let mut lab = Lab::new("faults", 3).unwrap();
        let (h0, h1) = (lab.host_netns(0), lab.host_netns(1));
        let (a1, a2) = (lab.host_addr(1), lab.host_addr(2));
        assert!(lab.ping(&h0, a1, 2, None, false));

        lab.partition(0, 1).unwrap();
        assert!(
            !lab.ping(&h0, a1, 2, None, false),
            "0 -> 1 while partitioned"
        );
        assert!(!lab.ping(&h1, lab.host_addr(0), 2, None, false), "1 -> 0");
        assert!(
            lab.ping(&h0, a2, 2, None, false),
            "0 -> 2 is not partitioned"
        );
        assert!(
            lab.ping(&h1, a2, 2, None, false),
            "1 -> 2 is not partitioned"
        );
        assert!(lab.partition(1, 1).is_err());
        lab.heal().unwrap();
        assert!(lab.ping(&h0, a1, 2, None, false), "healed");

        lab.link_loss(2, 100).unwrap();
        assert!(!lab.ping(&h0, a2, 2, None, false), "100% loss");
        assert!(lab.ping(&h0, a1, 2, None, false), "loss on host 2 only");
        // 30% per direction: a round trip succeeds with probability 0.49; 40 tries all
        // failing or all succeeding is vanishingly unlikely.
        lab.link_loss(2, 30).unwrap();
        let got = lab.ping_received(&h0, a2, 40, None, false).unwrap();
        assert!((1..40).contains(&got), "{got}/40 replies at 30% loss");
        lab.link_loss(2, 0).unwrap();
        assert!(lab.ping(&h0, a2, 3, None, false), "loss removed");
        assert!(lab.link_loss(2, 101).is_err());
    }
}
