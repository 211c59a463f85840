//! Real `swarmnet agent` processes in a network-namespace [`Lab`]: the harness of the tier-4
//! cluster tests (`cluster-tests/tests/overlay.rs`) and of `swarmnet demo`.
//!
//! An [`AgentCluster`] is a lab of N hosts with one agent per host namespace, each with its own
//! state dir, API socket (`unix://<dir>/h<i>/api.sock`) and name prefix (so the sandboxes
//! `<prefix>-<vni>` of different hosts never collide on this one machine). Everything is driven
//! through the `swarmnet` CLI, exactly as an operator would; container namespaces come from
//! [`Lab::add_container`].
//!
//! Agents are started in their host's network namespace **but in the caller's mount
//! namespace** (`ip netns exec <host> nsenter --mount=/proc/<caller>/ns/mnt -- swarmnet
//! agent ...`): `ip netns exec` alone gives the agent a private mount namespace whose new
//! mounts do not propagate back, so the sandboxes it creates under `/var/run/netns` would be
//! invisible to everyone else and would vanish (taking the containers' veths with them) when
//! the agent dies.
//!
//! Teardown: dropping the cluster (also while unwinding from a panic) stops every agent
//! (SIGTERM, then SIGKILL), then the lab kills whatever still runs in its namespaces and
//! deletes them, the containers and every sandbox the agents created (their prefixes are
//! registered with [`Lab::own_prefix`]). The agents' state dirs and logs are kept (and their
//! paths printed) when panicking, removed otherwise.
//!
//! Every wait here is bounded; every CLI call has a timeout.

use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::netns::{Lab, LabProcess, NETNS_DIR, ensure_tools};

/// Gossip port every agent listens on (each in its own host namespace).
pub const GOSSIP_PORT: u16 = 7946;
/// Longest a single CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a started agent has to answer on its API.
const API_TIMEOUT: Duration = Duration::from_secs(20);
/// Grace period of a SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Poll period of the `wait_*` helpers.
const POLL: Duration = Duration::from_millis(100);
/// Tools the harness needs (installed if missing, as root).
pub const TOOLS: [&str; 5] = ["ip", "bridge", "ping", "nsenter", "nft"];

/// Per-process cluster counter, mixed into the agent prefix tags.
static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

/// Path of the `swarmnet` binary for tests: `$SWARMNET_BIN`, else `swarmnet` beside the current
/// executable or its parent (test binaries live in `target/<profile>/deps/`).
pub fn swarmnet_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("SWARMNET_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join("swarmnet");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "swarmnet not found beside {}: build it (cargo build -p agent) or set SWARMNET_BIN",
        exe.display()
    )
}

/// Why tier-4 tests cannot run on this machine (not root, no iproute2, no namespaces, a
/// needed tool missing and not installable), if they cannot. Installs missing tools.
pub fn skip_reason() -> Option<String> {
    if let Err(e) = Lab::preflight() {
        return Some(format!("{e:#}"));
    }
    ensure_tools(&TOOLS).err().map(|e| format!("{e:#}"))
}

/// How to build an [`AgentCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Lab name (shows in `ip netns list`; sanitised by the lab).
    pub name: String,
    /// Number of hosts, 1..=250.
    pub hosts: usize,
    /// The `swarmnet` binary [default: [`swarmnet_binary`]].
    pub binary: Option<PathBuf>,
    /// `--reconcile-interval-secs` of every agent [default: the agent's].
    pub reconcile_interval_secs: Option<u64>,
    /// `--log-level` of every agent.
    pub log_level: String,
    /// How long the agents have to see each other up at start.
    pub join_timeout: Duration,
    /// Set from outside (e.g. a Ctrl-C handler): every wait stops with an error.
    pub cancel: Option<Arc<AtomicBool>>,
    /// More `swarmnet agent` flags for every agent (e.g. `--node-reap-secs 15`).
    pub agent_args: Vec<String>,
    /// More flags for one agent: `host_args[i]` for host `i` (hosts past the end get none).
    pub host_args: Vec<Vec<String>>,
}

impl ClusterOptions {
    pub fn new(name: &str, hosts: usize) -> Self {
        ClusterOptions {
            name: name.into(),
            hosts,
            binary: None,
            reconcile_interval_secs: None,
            log_level: "info".into(),
            join_timeout: Duration::from_secs(30),
            cancel: None,
            agent_args: Vec::new(),
            host_args: Vec::new(),
        }
    }
}

/// One host of the cluster: where its agent runs and keeps its state.
#[derive(Debug)]
pub struct Host {
    /// Node name given to the agent: `host<i + 1>`.
    pub name: String,
    /// The host's network namespace.
    pub netns: PathBuf,
    /// Underlay address (gossip and VTEP).
    pub addr: Ipv4Addr,
    pub state_dir: PathBuf,
    /// `unix://...` API URL of its agent.
    pub api: String,
    /// The agent's `--prefix`: its sandboxes are `<prefix>-<vni>`.
    pub prefix: String,
    /// The running agent, if any.
    pub process: Option<LabProcess>,
    /// Logs of earlier lives of this host's agent (restarts), oldest first.
    pub old_logs: Vec<PathBuf>,
}

/// A container attached through the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub host: usize,
    pub name: String,
    pub netns: PathBuf,
    /// Endpoint id.
    pub id: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub mtu: u32,
}

/// A network as `network create` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub vni: u32,
    pub subnet: String,
}

/// A member as one agent sees it (`cluster members`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub node_id: String,
    pub up: bool,
    pub is_self: bool,
}

/// A lab with one real agent per host. See the module docs.
pub struct AgentCluster {
    /// Declared first: dropped (namespaces deleted) after [`Drop`] stopped the agents.
    pub lab: Lab,
    pub hosts: Vec<Host>,
    pub containers: Vec<Container>,
    bin: PathBuf,
    dir: PathBuf,
    opts: ClusterOptions,
}

impl std::fmt::Debug for AgentCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCluster")
            .field("lab", &self.lab.prefix())
            .field("hosts", &self.hosts)
            .field("containers", &self.containers)
            .finish()
    }
}

impl AgentCluster {
    /// [`AgentCluster::start_with`] with default options.
    pub fn start(name: &str, hosts: usize) -> Result<AgentCluster> {
        Self::start_with(ClusterOptions::new(name, hosts))
    }

    /// Builds the lab, starts an agent on every host (host 0 joins host 1, the others join
    /// host 0) and waits until every agent sees every other one up. On error everything built
    /// so far is torn down.
    pub fn start_with(opts: ClusterOptions) -> Result<AgentCluster> {
        ensure!(
            (1..=250).contains(&opts.hosts),
            "a cluster has 1..=250 hosts, not {}",
            opts.hosts
        );
        let bin = match &opts.binary {
            Some(b) => b.clone(),
            None => swarmnet_binary()?,
        };
        ensure!(bin.is_file(), "{} is not a file", bin.display());
        ensure_tools(&TOOLS)?;
        let mut lab = Lab::new(&opts.name, opts.hosts)?;
        let dir = std::env::temp_dir().join(format!("swarmnet-ct-{}", lab.prefix()));
        let tag = agent_tag()?;
        let mut hosts = Vec::new();
        for i in 0..opts.hosts {
            let prefix = format!("{tag}h{i}");
            lab.own_prefix(&format!("{prefix}-"))?; // its sandboxes
            lab.own_prefix(&prefix)?; // any veth of it left in the root namespace
            let state_dir = dir.join(format!("h{i}"));
            hosts.push(Host {
                name: format!("host{}", i + 1),
                netns: lab.host_netns(i),
                addr: lab.host_addr(i),
                api: format!("unix://{}", state_dir.join("api.sock").display()),
                state_dir,
                prefix,
                process: None,
                old_logs: Vec::new(),
            });
        }
        let mut c = AgentCluster {
            lab,
            hosts,
            containers: Vec::new(),
            bin,
            dir,
            opts,
        };
        for i in 0..c.hosts.len() {
            std::fs::create_dir_all(&c.hosts[i].state_dir)
                .with_context(|| format!("creating {}", c.hosts[i].state_dir.display()))?;
            c.start_agent(i)?;
        }
        let t = c.opts.join_timeout;
        c.wait_members(t)?;
        Ok(c)
    }

    /// The `swarmnet` binary the agents and CLI calls run.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// Directory holding the agents' state dirs and sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.opts.cancel {
            Some(c) if c.load(Ordering::Relaxed) => bail!("interrupted"),
            _ => Ok(()),
        }
    }

    fn agent_args(&self, i: usize) -> Vec<String> {
        let h = &self.hosts[i];
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--node-name".into(),
            h.name.clone(),
            "--state-dir".into(),
            h.state_dir.display().to_string(),
            "--listen-addr".into(),
            h.addr.to_string(),
            "--gossip-port".into(),
            GOSSIP_PORT.to_string(),
            "--api-listen".into(),
            h.api.clone(),
            "--prefix".into(),
            h.prefix.clone(),
            "--log-level".into(),
            self.opts.log_level.clone(),
        ];
        if let Some(s) = self.opts.reconcile_interval_secs {
            args.extend(["--reconcile-interval-secs".into(), s.to_string()]);
        }
        args.extend(self.opts.agent_args.iter().cloned());
        args.extend(self.opts.host_args.get(i).into_iter().flatten().cloned());
        // Forwarded DNS stays in the lab: tests that need an upstream run it on host 0.
        args.extend([
            "--dns-upstream".into(),
            format!("{}:53", self.hosts[0].addr),
        ]);
        // Everyone joins host 0; host 0 joins host 1 (so a restarted host 0 finds the rest).
        let seed = if i == 0 { 1 } else { 0 };
        if seed < self.hosts.len() {
            args.extend([
                "--join".into(),
                format!("{}:{GOSSIP_PORT}", self.hosts[seed].addr),
            ]);
        }
        args
    }

    /// Starts (or restarts) host `i`'s agent and waits until its API answers. An agent still
    /// running is refused: stop or kill it first.
    pub fn start_agent(&mut self, i: usize) -> Result<()> {
        ensure!(i < self.hosts.len(), "host {i} does not exist");
        if let Some(p) = &self.hosts[i].process {
            ensure!(!p.is_running(), "the agent of host {i} is still running");
            let log = p.log_path().to_path_buf();
            self.hosts[i].old_logs.push(log);
            self.hosts[i].process = None;
        }
        // Same network namespace as the host, but the caller's mount namespace (module docs).
        let mnt = format!("--mount=/proc/{}/ns/mnt", std::process::id());
        let bin = self.bin.display().to_string();
        let mut argv: Vec<String> = vec!["nsenter".into(), mnt, "--".into(), bin];
        argv.extend(self.agent_args(i));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let netns = self.hosts[i].netns.clone();
        let p = self.lab.spawn(&netns, &argv)?;
        self.hosts[i].process = Some(p.clone());
        let deadline = Instant::now() + API_TIMEOUT;
        loop {
            self.check_cancel()?;
            if let Some(status) = p.try_wait()? {
                bail!(
                    "the agent of host {i} exited ({status}) at start; log:\n{}",
                    p.log()
                );
            }
            if self
                .cli(i, &["cluster", "status"])
                .is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent of host {i} did not answer on {} within {API_TIMEOUT:?}; log:\n{}",
                    self.hosts[i].api,
                    p.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// `kill -9` of host `i`'s agent (reaped before returning).
    pub fn kill_agent(&mut self, i: usize) -> Result<()> {
        let p = self.hosts[i]
            .process
            .as_ref()
            .with_context(|| format!("host {i} has no agent"))?;
        p.kill()?;
        Ok(())
    }

    /// SIGTERM to host `i`'s agent; waits (bounded) for it to exit, SIGKILL after the grace
    /// period. Returns its exit status.
    pub fn stop_agent(&mut self, i: usize) -> Result<ExitStatus> {
        let p = self.hosts[i]
            .process
            .as_ref()
            .with_context(|| format!("host {i} has no agent"))?;
        p.terminate(STOP_GRACE)
    }

    /// Whether host `i`'s agent is running.
    pub fn agent_running(&self, i: usize) -> bool {
        self.hosts[i]
            .process
            .as_ref()
            .is_some_and(LabProcess::is_running)
    }

    /// What host `i`'s agent logged (all its lives, oldest first).
    pub fn agent_log(&self, i: usize) -> String {
        let mut s = String::new();
        for p in &self.hosts[i].old_logs {
            s += &std::fs::read_to_string(p).unwrap_or_default();
            s += "---- restarted ----\n";
        }
        if let Some(p) = &self.hosts[i].process {
            s += &p.log();
        }
        s
    }

    /// Runs `swarmnet --api <host i's socket> <args>` from this process's namespaces (the API
    /// is a unix socket in the file system), killed after a timeout.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<Output> {
        let mut c = Command::new(&self.bin);
        c.arg("--api").arg(&self.hosts[i].api).args(args);
        output_within(c, CLI_TIMEOUT)
            .with_context(|| format!("swarmnet {} on host {i}", args.join(" ")))
    }

    /// [`AgentCluster::cli`] that must succeed; returns its stdout.
    pub fn cli_ok(&self, i: usize, args: &[&str]) -> Result<String> {
        let o = self.cli(i, args)?;
        ensure!(
            o.status.success(),
            "swarmnet {} on host {i} failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// [`AgentCluster::cli_ok`] with `--json`, parsed.
    pub fn cli_json(&self, i: usize, args: &[&str]) -> Result<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli_ok(i, &full)?;
        serde_json::from_str(&out)
            .with_context(|| format!("swarmnet {} printed no JSON: {out}", args.join(" ")))
    }

    /// Host `i`'s node id (`cluster status`).
    pub fn node_id(&self, i: usize) -> Result<String> {
        let v = self.cli_json(i, &["cluster", "status"])?;
        let id = str_field(&v, "node_id");
        ensure!(!id.is_empty(), "cluster status: no node_id in {v}");
        Ok(id)
    }

    /// `cluster members` as host `i` sees it.
    pub fn members(&self, i: usize) -> Result<Vec<Member>> {
        let v = self.cli_json(i, &["cluster", "members"])?;
        let list = v
            .as_array()
            .with_context(|| format!("cluster members: not a list: {v}"))?;
        Ok(list
            .iter()
            .map(|m| Member {
                name: str_field(m, "name"),
                node_id: str_field(m, "node_id"),
                up: m.get("up").and_then(Value::as_bool).unwrap_or(false),
                is_self: m.get("self_").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect())
    }

    /// Waits until every running agent sees every other running agent up (by node name).
    pub fn wait_members(&self, timeout: Duration) -> Result<()> {
        let running: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.agent_running(i))
            .collect();
        let deadline = Instant::now() + timeout;
        for &i in &running {
            loop {
                self.check_cancel()?;
                let seen = self.members(i).unwrap_or_default();
                let missing: Vec<&str> = running
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| self.hosts[j].name.as_str())
                    .filter(|n| !seen.iter().any(|m| m.up && !m.is_self && m.name == *n))
                    .collect();
                if missing.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "host {i} does not see {missing:?} up after {timeout:?}; it sees \
                         {seen:?}; its log:\n{}",
                        self.agent_log(i)
                    );
                }
                std::thread::sleep(POLL);
            }
        }
        Ok(())
    }

    /// `network create <name> [extra...]` on host `i`, then waits (bounded) until every running
    /// agent lists it.
    pub fn create_network(&self, i: usize, name: &str, extra: &[&str]) -> Result<Network> {
        let mut args = vec!["network", "create", name];
        args.extend_from_slice(extra);
        let v = self.cli_json(i, &args)?;
        let net = Network {
            id: str_field(&v, "id"),
            name: str_field(&v, "name"),
            vni: v
                .get("vni")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| format!("network create: no vni in {v}"))?,
            subnet: str_field(&v, "subnet"),
        };
        self.wait_until(
            Duration::from_secs(15),
            "every agent lists the network",
            || {
                Ok((0..self.hosts.len())
                    .filter(|&j| self.agent_running(j))
                    .all(|j| {
                        self.cli_json(j, &["network", "ls"])
                            .ok()
                            .and_then(|v| v.as_array().cloned())
                            .is_some_and(|a| a.iter().any(|n| str_field(n, "id") == net.id))
                    }))
            },
        )?;
        Ok(net)
    }

    /// Creates container namespace `name` on `host` and attaches it to `network` through
    /// host `host`'s agent (`endpoint attach <network> --netns <path> --name <name>`).
    pub fn attach(&mut self, host: usize, network: &str, name: &str) -> Result<Container> {
        self.attach_with(host, network, name, &[])
    }

    /// [`AgentCluster::attach`] with extra `endpoint attach` arguments (e.g. `--service`).
    pub fn attach_with(
        &mut self,
        host: usize,
        network: &str,
        name: &str,
        extra: &[&str],
    ) -> Result<Container> {
        let netns = self.lab.add_container(host, name)?;
        let path = netns.display().to_string();
        let mut args = vec![
            "endpoint", "attach", network, "--netns", &path, "--name", name,
        ];
        args.extend_from_slice(extra);
        let v = self.cli_json(host, &args)?;
        let ip = str_field(&v, "ip");
        let c = Container {
            host,
            name: name.into(),
            netns,
            id: str_field(&v, "id"),
            ip: ip
                .split('/')
                .next()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("endpoint attach: no IPv4 address in {v}"))?,
            mac: str_field(&v, "mac").to_ascii_lowercase(),
            mtu: v
                .get("mtu")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        };
        self.containers.push(c.clone());
        Ok(c)
    }

    /// `endpoint detach <name>` on the container's host.
    pub fn detach(&mut self, c: &Container) -> Result<()> {
        self.cli_ok(c.host, &["endpoint", "detach", &c.name])?;
        self.containers.retain(|x| x != c);
        Ok(())
    }

    /// Path of host `i`'s sandbox namespace for `vni` (`<prefix>-<vni>`).
    pub fn sandbox(&self, i: usize, vni: u32) -> PathBuf {
        Path::new(NETNS_DIR).join(format!("{}-{vni}", self.hosts[i].prefix))
    }

    /// Stdout of `cmd` run in host `i`'s sandbox for `vni`; fails unless it exits 0.
    pub fn in_sandbox(&self, i: usize, vni: u32, cmd: &[&str]) -> Result<String> {
        self.lab.exec_ok(&self.sandbox(i, vni), cmd)
    }

    /// Permanent FDB entries on `vxlan0` in host `i`'s sandbox: `(mac, remote VTEP)`, from
    /// `bridge fdb show dev vxlan0`.
    pub fn fdb(&self, i: usize, vni: u32) -> Result<Vec<(String, Ipv4Addr)>> {
        let out = self.in_sandbox(i, vni, &["bridge", "fdb", "show", "dev", "vxlan0"])?;
        Ok(parse_fdb(&out))
    }

    /// Neighbour entries on `vxlan0` in host `i`'s sandbox: `(ip, mac)`, from
    /// `ip neigh show dev vxlan0`.
    pub fn neighbours(&self, i: usize, vni: u32) -> Result<Vec<(Ipv4Addr, String)>> {
        let out = self.in_sandbox(i, vni, &["ip", "neigh", "show", "dev", "vxlan0"])?;
        Ok(parse_neigh(&out))
    }

    /// Whether host `i`'s sandbox for `vni` holds both the FDB entry (MAC -> `c`'s host VTEP)
    /// and the neighbour entry (IP -> MAC) of container `c`.
    pub fn knows(&self, i: usize, vni: u32, c: &Container) -> Result<bool> {
        let vtep = self.hosts[c.host].addr;
        let fdb = self.fdb(i, vni)?;
        let neigh = self.neighbours(i, vni)?;
        Ok(fdb.iter().any(|(m, d)| *m == c.mac && *d == vtep)
            && neigh.iter().any(|(ip, m)| *ip == c.ip && *m == c.mac))
    }

    /// Whether host `i`'s sandbox for `vni` holds any FDB or neighbour entry of container `c`.
    pub fn knows_any(&self, i: usize, vni: u32, c: &Container) -> Result<bool> {
        let fdb = self.fdb(i, vni)?;
        let neigh = self.neighbours(i, vni)?;
        Ok(fdb.iter().any(|(m, _)| *m == c.mac) || neigh.iter().any(|(ip, _)| *ip == c.ip))
    }

    /// `ip -o link` inside `netns`, reduced to `name type/flags` facts that survive a restart
    /// (no counters, no ifindex-dependent peer numbers), sorted.
    pub fn links(&self, netns: &Path) -> Result<Vec<String>> {
        let out = self.lab.exec_ok(netns, &["ip", "-o", "link", "show"])?;
        let mut v: Vec<String> = out.lines().filter_map(link_summary).collect();
        v.sort();
        Ok(v)
    }

    /// `count` pings (0.1 s apart, 1 s timeout each) from container `from` to `to`; true when
    /// all came back.
    pub fn ping(&self, from: &Container, to: Ipv4Addr, count: u32) -> bool {
        self.lab.ping(&from.netns, to, count, None, false)
    }

    /// Polls `f` every 100 ms until it returns `true`, at most `timeout`; returns the elapsed
    /// time. `what` names the condition in the error.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Result<bool>,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        let mut last_err = None;
        loop {
            self.check_cancel()?;
            match f() {
                Ok(true) => return Ok(t0.elapsed()),
                Ok(false) => {}
                Err(e) => last_err = Some(e),
            }
            if t0.elapsed() > timeout {
                return Err(match last_err {
                    Some(e) => e.context(format!("{what}: not within {timeout:?}")),
                    None => anyhow!("{what}: not within {timeout:?}"),
                });
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for AgentCluster {
    /// Stops every agent (SIGTERM to all, then waits; SIGKILL after the grace period); the
    /// lab then removes namespaces, containers and sandboxes.
    fn drop(&mut self) {
        let running: Vec<&LabProcess> = self
            .hosts
            .iter()
            .filter_map(|h| h.process.as_ref())
            .filter(|p| p.is_running())
            .collect();
        let grace = if std::thread::panicking() {
            Duration::from_secs(2)
        } else {
            STOP_GRACE
        };
        for p in &running {
            let _ = p.terminate(grace);
        }
        if std::thread::panicking() {
            eprintln!(
                "cluster {}: agent state dirs kept in {}",
                self.lab.prefix(),
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A 3-char prefix tag (`[a-z][a-z0-9]{2}`) that no namespace on the machine starts with, so
/// the agent prefixes `<tag>h<i>` (at most 7 chars) of concurrent clusters, in this process or
/// another, never collide (agents sharing a prefix would take each other's sandboxes).
fn agent_tag() -> Result<String> {
    use std::hash::{BuildHasher as _, Hasher as _};
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    for _ in 0..100 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let r = h.finish() as usize;
        let tag: String = [
            ALNUM[r % 26],
            ALNUM[(r / 26) % 36],
            ALNUM[(r / (26 * 36)) % 36],
        ]
        .iter()
        .map(|&b| b as char)
        .collect();
        let taken = std::fs::read_dir(NETNS_DIR).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&tag))
        });
        if !taken {
            return Ok(tag);
        }
    }
    bail!("no free agent prefix after 100 tries ({NETNS_DIR} is crowded)")
}

/// Runs `cmd` with piped output, killing it after `timeout`.
fn output_within(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning")?;
    let mut out = child.stdout.take().context("stdout")?;
    let mut err = child.stderr.take().context("stderr")?;
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let mut stderr = Vec::new();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = err.read_to_end(&mut stderr);
    let stdout = reader.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `(mac, dst)` of lines like `02:42:0a:80:00:03 dst 192.168.100.3 self permanent`.
fn parse_fdb(out: &str) -> Vec<(String, Ipv4Addr)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let mac = w.next()?.to_ascii_lowercase();
            let dst = w.skip_while(|x| *x != "dst").nth(1)?.parse().ok()?;
            Some((mac, dst))
        })
        .collect()
}

/// `(ip, mac)` of lines like `10.128.0.3 lladdr 02:42:0a:80:00:03 PERMANENT`.
fn parse_neigh(out: &str) -> Vec<(Ipv4Addr, String)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let ip = w.next()?.parse().ok()?;
            let mac = w
                .skip_while(|x| *x != "lladdr")
                .nth(1)?
                .to_ascii_lowercase();
            Some((ip, mac))
        })
        .collect()
}

/// `name mtu N master M state S` of an `ip -o link` line
/// (`7: eth0@if8: <BROADCAST,...,UP> mtu 1450 ... master br0 state UP ...`).
fn link_summary(line: &str) -> Option<String> {
    let name = line.split(": ").nth(1)?.split('@').next()?;
    let mut w = line.split_whitespace();
    let mut facts = vec![name.to_string()];
    while let Some(x) = w.next() {
        if matches!(x, "mtu" | "master" | "state" | "link/ether") {
            facts.push(format!("{x} {}", w.next()?));
        }
    }
    Some(facts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_and_neighbour_lines_are_parsed() {
        let fdb = "02:42:0a:80:00:03 dst 192.168.100.3 self permanent\n\
                   6a:1b:2c:3d:4e:5f master br0 permanent\n";
        assert_eq!(
            parse_fdb(fdb),
            vec![("02:42:0a:80:00:03".into(), Ipv4Addr::new(192, 168, 100, 3))]
        );
        let neigh = "10.128.0.3 lladdr 02:42:0A:80:00:03 PERMANENT\n10.128.0.9 FAILED\n";
        assert_eq!(
            parse_neigh(neigh),
            vec![(Ipv4Addr::new(10, 128, 0, 3), "02:42:0a:80:00:03".into())]
        );
    }

    #[test]
    fn link_lines_keep_only_stable_facts() {
        let l = "7: eth0@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue \
                 state UP mode DEFAULT group default qlen 1000\\    link/ether \
                 02:42:0a:80:00:02 brd ff:ff:ff:ff:ff:ff link-netns s1";
        assert_eq!(
            link_summary(l).unwrap(),
            "eth0 mtu 1450 state UP link/ether 02:42:0a:80:00:02"
        );
    }
}
