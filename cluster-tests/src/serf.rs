//! Reference measurements against HashiCorp serf.
//!
//! [`SerfCluster`] starts N `serf agent` processes on loopback addresses
//! (node `i` binds `127.0.<subnet>.(i+1):7946`, RPC on the same address port
//! 7373), joins them all to node 0 and waits until every node sees N alive
//! members. It then attaches one `serf monitor -log-level=debug` per node and
//! reads its stdout from a thread per node, timestamping every line with
//! [`Instant::now`] as soon as it is read.
//!
//! Receive times come from those monitor lines, not from `-event-handler`
//! scripts: the agent logs `agent: Received event: user-event: <name>` in its
//! event loop at the moment serf delivers the event to the application, and the
//! log line reaches us over an already-open RPC stream and a pipe (well under a
//! millisecond on loopback). An event handler costs a fork+exec of a shell per
//! event (several milliseconds, more under load on 2 cores) before it can take a
//! timestamp, and that cost lands on every receiver (measured on a 5-node
//! loopback cluster: a `date +%s%N` handler stamped deliveries a median 4 ms and
//! up to 13 ms later than the monitor line). Failure detection uses the
//! `serf: EventMemberFailed: <name>` line that serf logs when it marks a member
//! failed, i.e. exactly when `serf members` would start reporting `failed`
//! (polling `serf members` on every node every 50 ms would need 20 process
//! spawns per 50 ms at 20 nodes on 2 cores, and would perturb the cluster).
//!
//! Propagation is measured from the origin's own delivery line (serf delivers a
//! user event locally before queueing its broadcast), so process-spawn and RPC
//! latency of `serf event` is excluded and both ends of every sample go through
//! the same observation path. [`SerfCluster::measure_event_samples`] also
//! reports the time from just before `serf event` was spawned.
//!
//! Every serf process runs under `timeout --foreground -s KILL <lifetime>` so it
//! cannot outlive the test by more than [`SerfOptions::max_lifetime`] even if the
//! test binary itself is SIGKILLed; on [`Drop`] every agent and monitor is
//! killed with SIGKILL and reaped.
//!
//! Quirks worth knowing (serf 0.8.x):
//! * user events are coalesced by the agent by default (1 s quiescent / 3 s
//!   coalesce period), so events are sent with `-coalesce=false`;
//! * `serf monitor` first replays the agent's recent log ring buffer, so lines
//!   are matched by unique names and, for failures, only lines read after the
//!   kill count;
//! * the agent's own `-log-level` only filters its stdout; a monitor at `debug`
//!   still sees debug lines.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Deserialize;

/// Name of the serf binary looked up in `PATH`.
pub const SERF_BIN: &str = "serf";
/// Gossip (memberlist) port every agent binds on its own loopback address.
pub const BIND_PORT: u16 = 7946;
/// RPC port every agent listens on, on its own loopback address.
pub const RPC_PORT: u16 = 7373;
/// Largest cluster supported (node addresses are `127.0.<subnet>.1..=250`).
pub const MAX_NODES: usize = 250;

/// Upper bound on any one-shot serf CLI call (`serf members`, `serf event`).
const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between `serf members` polls while waiting for convergence.
const CONVERGE_POLL: Duration = Duration::from_millis(250);
/// How long to wait for a wrapper process to exit after its child was killed.
const REAP_GRACE: Duration = Duration::from_secs(3);

const USER_EVENT_MARK: &str = "agent: Received event: user-event: ";
const MEMBER_FAILED_MARK: &str = "serf: EventMemberFailed: ";

/// Options for [`SerfCluster::start_with`].
#[derive(Debug, Clone)]
pub struct SerfOptions {
    /// Number of agents (1..=[`MAX_NODES`]).
    pub nodes: usize,
    /// Third octet of the loopback addresses: node `i` is `127.0.<subnet>.(i+1)`.
    /// Use distinct subnets for clusters that may run at the same time.
    pub subnet: u8,
    /// serf timing profile passed as `-profile=` (`lan` is serf's default).
    pub profile: String,
    /// Bound on starting, joining and converging the whole cluster.
    pub converge_timeout: Duration,
    /// Hard cap on the lifetime of every serf process (enforced by
    /// `timeout -s KILL`), in case the test process dies without running Drop.
    pub max_lifetime: Duration,
    /// Gap between consecutive user events in [`SerfCluster::measure_event_propagation`].
    pub event_spacing: Duration,
}

impl SerfOptions {
    /// Defaults: subnet 1, `lan` profile, 30 s convergence bound, 10 min
    /// lifetime cap, 75 ms between events.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            subnet: 1,
            profile: "lan".to_owned(),
            converge_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(600),
            event_spacing: Duration::from_millis(75),
        }
    }
}

/// One user event's timing, see [`SerfCluster::measure_event_samples`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSample {
    /// From the origin delivering the event to itself until the last alive node
    /// delivered it. This is the propagation figure.
    pub from_origin: Duration,
    /// From just before `serf event` was spawned until the last alive node
    /// delivered it (includes process spawn and the RPC round trip).
    pub from_send: Duration,
}

/// A member as reported by `serf members -format=json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Gossip address, `ip:port`.
    pub addr: String,
    /// `alive`, `failed`, `leaving`, `left`, ...
    pub status: String,
}

#[derive(Debug, Deserialize)]
struct MembersOutput {
    members: Vec<Member>,
}

/// Returns whether `serf version` can be run.
pub fn serf_available() -> bool {
    check_serf_installed().is_ok()
}

/// Returns the first line of `serf version`, or an error containing
/// "serf not installed".
pub fn check_serf_installed() -> Result<String> {
    let out = Command::new(SERF_BIN)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            anyhow!(
                "serf not installed: cannot run `{SERF_BIN} version` ({e}); \
                 install it with `apt-get install serf`"
            )
        })?;
    ensure!(
        out.status.success(),
        "serf not installed: `{SERF_BIN} version` failed with {}",
        out.status
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned())
}

/// Nearest-rank percentile of `samples`; `p` is in percent (`50.0`, `99.0`)
/// and is clamped to `0..=100`. Returns zero for an empty slice.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    // Nearest rank: the smallest value with at least p% of samples <= it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A running serf cluster on loopback; every process is killed on drop.
#[derive(Debug)]
pub struct SerfCluster {
    opts: SerfOptions,
    run_id: String,
    log_dir: PathBuf,
    nodes: Vec<Node>,
    shared: Arc<Shared>,
    event_seq: AtomicUsize,
}

#[derive(Debug)]
struct Node {
    name: String,
    bind: SocketAddrV4,
    rpc: SocketAddrV4,
    log: PathBuf,
    agent: Option<Proc>,
    monitor: Option<Proc>,
    reader: Option<JoinHandle<()>>,
    alive: bool,
}

impl SerfCluster {
    /// Starts `nodes` agents with default [`SerfOptions`] (subnet 127.0.1.x).
    pub fn start(nodes: usize) -> Result<Self> {
        Self::start_with(SerfOptions::new(nodes))
    }

    /// Starts a cluster: agents, join to node 0, convergence, monitors.
    pub fn start_with(opts: SerfOptions) -> Result<Self> {
        ensure!(
            (1..=MAX_NODES).contains(&opts.nodes),
            "node count {} out of range 1..={MAX_NODES}",
            opts.nodes
        );
        check_serf_installed()?;

        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let run_id = format!("{}-{:x}", std::process::id(), nanos % 0xffff_ffff);
        let log_dir = std::env::temp_dir().join(format!("swarmnet-serf-{run_id}"));
        fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating log dir {}", log_dir.display()))?;

        let nodes = (0..opts.nodes)
            .map(|i| {
                let ip = Ipv4Addr::new(127, 0, opts.subnet, (i + 1) as u8);
                Node {
                    name: format!("ref{i}"),
                    bind: SocketAddrV4::new(ip, BIND_PORT),
                    rpc: SocketAddrV4::new(ip, RPC_PORT),
                    log: log_dir.join(format!("agent-{i}.log")),
                    agent: None,
                    monitor: None,
                    reader: None,
                    alive: false,
                }
            })
            .collect();
        let shared = Arc::new(Shared {
            state: Mutex::new(ObsState {
                attached: vec![false; opts.nodes],
                ..ObsState::default()
            }),
            cond: Condvar::new(),
        });
        // Built before spawning anything so a failed start is cleaned up by Drop.
        let mut cluster = SerfCluster {
            opts,
            run_id,
            log_dir,
            nodes,
            shared,
            event_seq: AtomicUsize::new(0),
        };
        let deadline = Instant::now() + cluster.opts.converge_timeout;

        cluster.spawn_agent(0)?;
        cluster.wait_rpc(0, deadline)?;
        for i in 1..cluster.nodes.len() {
            cluster.spawn_agent(i)?;
        }
        cluster.wait_converged(deadline)?;
        for i in 0..cluster.nodes.len() {
            cluster.spawn_monitor(i)?;
        }
        cluster.wait_monitors_attached(deadline)?;
        Ok(cluster)
    }

    /// Number of nodes started (dead ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// serf node name of node `i`.
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Gossip bind address of node `i`.
    pub fn bind_addr(&self, i: usize) -> SocketAddrV4 {
        self.nodes[i].bind
    }

    /// RPC address of node `i`.
    pub fn rpc_addr(&self, i: usize) -> SocketAddrV4 {
        self.nodes[i].rpc
    }

    /// Whether node `i` has not been killed.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes[i].alive
    }

    /// Directory holding the agents' stdout/stderr (removed on drop).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// `serf members` as seen by node `i`.
    pub fn members(&self, i: usize) -> Result<Vec<Member>> {
        let rpc = format!("-rpc-addr={}", self.nodes[i].rpc);
        let out = run_cli(&["members", "-format=json", &rpc])?;
        ensure!(
            out.status.success(),
            "`serf members {rpc}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let parsed: MembersOutput =
            serde_json::from_slice(&out.stdout).context("parsing `serf members -format=json`")?;
        Ok(parsed.members)
    }

    /// Sends `events` user events from the lowest-numbered alive node (node 0
    /// unless it was killed), `event_spacing` apart, each with a unique name,
    /// and returns for each the time from the origin's own delivery until the
    /// last alive node delivered it. Fails if any alive node misses any event
    /// within `timeout` of that event being sent.
    pub fn measure_event_propagation(
        &self,
        events: usize,
        timeout: Duration,
    ) -> Result<Vec<Duration>> {
        Ok(self
            .measure_event_samples(events, timeout)?
            .into_iter()
            .map(|s| s.from_origin)
            .collect())
    }

    /// Like [`Self::measure_event_propagation`], also reporting the time from
    /// the `serf event` invocation.
    pub fn measure_event_samples(
        &self,
        events: usize,
        timeout: Duration,
    ) -> Result<Vec<EventSample>> {
        let origin = (0..self.nodes.len())
            .find(|&i| self.nodes[i].alive)
            .ok_or_else(|| anyhow!("no alive node to send events from"))?;
        let receivers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect();
        let names: Vec<String> = (0..events)
            .map(|_| {
                let seq = self.event_seq.fetch_add(1, Ordering::Relaxed);
                format!("swarmnet-ref-{}-{seq}", self.run_id)
            })
            .collect();

        // Send at a fixed cadence; bounded by `events`.
        let start = Instant::now();
        let mut sent = Vec::with_capacity(events);
        for (k, name) in names.iter().enumerate() {
            let slot = start + self.opts.event_spacing * k as u32;
            if let Some(wait) = slot.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            sent.push(Instant::now());
            self.send_event(origin, name, &k.to_string())?;
        }

        let deadline = sent.last().map_or_else(Instant::now, |&t| t + timeout);
        let state = self.shared.wait_until(deadline, |st| {
            names.iter().all(|n| {
                st.user_events
                    .get(n)
                    .is_some_and(|got| receivers.iter().all(|r| got.contains_key(r)))
            })
        });

        let mut samples = Vec::with_capacity(events);
        let mut problems = Vec::new();
        for (k, name) in names.iter().enumerate() {
            let got = state.user_events.get(name);
            let missing: Vec<&str> = receivers
                .iter()
                .filter(|r| !got.is_some_and(|g| g.contains_key(r)))
                .map(|&r| self.nodes[r].name.as_str())
                .collect();
            if !missing.is_empty() {
                problems.push(format!("event {k} ({name}) not delivered to {missing:?}"));
                continue;
            }
            let got = got.expect("checked above");
            let t0 = got[&origin];
            let last = receivers
                .iter()
                .map(|r| got[r])
                .max()
                .expect("origin is a receiver");
            let from_send = last.saturating_duration_since(sent[k]);
            if from_send > timeout {
                problems.push(format!(
                    "event {k} ({name}) took {from_send:?} > timeout {timeout:?}"
                ));
                continue;
            }
            samples.push(EventSample {
                from_origin: last.saturating_duration_since(t0),
                from_send,
            });
        }
        if !problems.is_empty() {
            bail!(
                "{} of {events} events incomplete across {} nodes: {}",
                problems.len(),
                receivers.len(),
                problems.join("; ")
            );
        }
        Ok(samples)
    }

    /// Kills node `victim` with SIGKILL and returns the time until every other
    /// alive node has marked it failed (`serf: EventMemberFailed`), then checks
    /// that every observer's `serf members` reports it as `failed`.
    pub fn measure_failure_detection(
        &mut self,
        victim: usize,
        timeout: Duration,
    ) -> Result<Duration> {
        ensure!(victim < self.nodes.len(), "victim {victim} out of range");
        ensure!(self.nodes[victim].alive, "victim {victim} is already dead");
        let observers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| i != victim && self.nodes[i].alive)
            .collect();
        ensure!(
            !observers.is_empty(),
            "no other alive node to observe the failure"
        );
        let name = self.nodes[victim].name.clone();

        let mut agent = self.nodes[victim]
            .agent
            .take()
            .context("victim has no agent process")?;
        let pid = agent
            .inner_pid()
            .context("cannot find the victim's serf pid")?;
        let t_kill = Instant::now();
        kill_pid(pid, "KILL")?;
        self.nodes[victim].alive = false;
        agent.kill_and_reap();
        if let Some(mut monitor) = self.nodes[victim].monitor.take() {
            monitor.kill_and_reap();
        }

        let state = self.shared.wait_until(t_kill + timeout, |st| {
            observers
                .iter()
                .all(|o| st.first_failed_after(&name, *o, t_kill).is_some())
        });
        let mut missing = Vec::new();
        let mut last = t_kill;
        for &o in &observers {
            match state.first_failed_after(&name, o, t_kill) {
                Some(at) => last = last.max(at),
                None => missing.push(self.nodes[o].name.as_str()),
            }
        }
        ensure!(
            missing.is_empty(),
            "failure of {name} not detected within {timeout:?} by {missing:?}"
        );
        drop(state);
        let detected = last.saturating_duration_since(t_kill);

        for &o in &observers {
            let members = self.members(o)?;
            let status = members
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.status.as_str());
            ensure!(
                status == Some("failed"),
                "{} logged {name} failed but `serf members` says {status:?}",
                self.nodes[o].name
            );
        }
        Ok(detected)
    }

    fn spawn_agent(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        // Catch a stale agent (or another cluster on the same subnet) before
        // our RPC polls could be answered by it.
        for (addr, what) in [(node.bind, "gossip"), (node.rpc, "RPC")] {
            TcpListener::bind(addr).map(drop).with_context(|| {
                format!(
                    "{what} address {addr} for {} is not free (stale serf agent, or another \
                     cluster on subnet 127.0.{}.x?)",
                    node.name, self.opts.subnet
                )
            })?;
        }
        UdpSocket::bind(node.bind).map(drop).with_context(|| {
            format!(
                "UDP gossip address {} for {} is not free",
                node.bind, node.name
            )
        })?;
        let log =
            File::create(&node.log).with_context(|| format!("creating {}", node.log.display()))?;
        let mut args = vec![
            "agent".to_owned(),
            format!("-node={}", node.name),
            format!("-bind={}", node.bind),
            format!("-rpc-addr={}", node.rpc),
            format!("-profile={}", self.opts.profile),
            "-log-level=warn".to_owned(),
        ];
        if i > 0 {
            args.push(format!("-join={}", self.nodes[0].bind));
        }
        let proc = Proc::spawn(
            &format!("serf agent {}", node.name),
            &args,
            self.opts.max_lifetime,
            Stdio::from(log.try_clone()?),
            Stdio::from(log),
        )?;
        self.nodes[i].agent = Some(proc);
        self.nodes[i].alive = true;
        Ok(())
    }

    fn spawn_monitor(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        let err_log = self.log_dir.join(format!("monitor-{i}.stderr"));
        let err = File::create(&err_log)?;
        let args = [
            "monitor".to_owned(),
            "-log-level=debug".to_owned(),
            format!("-rpc-addr={}", node.rpc),
        ];
        let mut proc = Proc::spawn(
            &format!("serf monitor {}", node.name),
            &args,
            self.opts.max_lifetime,
            Stdio::piped(),
            Stdio::from(err),
        )?;
        let stdout = proc
            .child
            .stdout
            .take()
            .context("monitor stdout not piped")?;
        let shared = Arc::clone(&self.shared);
        let reader = thread::Builder::new()
            .name(format!("serf-monitor-{i}"))
            .spawn(move || read_monitor(i, stdout, &shared))
            .context("spawning monitor reader thread")?;
        self.nodes[i].monitor = Some(proc);
        self.nodes[i].reader = Some(reader);
        Ok(())
    }

    fn send_event(&self, from: usize, name: &str, payload: &str) -> Result<()> {
        let rpc = format!("-rpc-addr={}", self.nodes[from].rpc);
        let out = run_cli(&["event", "-coalesce=false", &rpc, name, payload])?;
        ensure!(
            out.status.success(),
            "`serf event {name}` via {} failed ({}): {}",
            self.nodes[from].name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Fails early (with the agent's log) if node `i`'s agent has exited.
    fn check_agent_running(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        if let Some(agent) = node.agent.as_mut()
            && let Some(status) = agent.try_wait()?
        {
            node.alive = false;
            bail!(
                "serf agent {} ({}) exited with {status}: {}",
                node.name,
                node.bind,
                log_tail(&node.log)
            );
        }
        Ok(())
    }

    fn wait_rpc(&mut self, i: usize, deadline: Instant) -> Result<()> {
        loop {
            self.check_agent_running(i)?;
            let err = match self.members(i) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(err.context(format!("agent {} RPC not up in time", self.nodes[i].name)));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_converged(&mut self, deadline: Instant) -> Result<()> {
        let n = self.nodes.len();
        loop {
            let mut lagging = Vec::new();
            for i in 0..n {
                self.check_agent_running(i)?;
                let alive = match self.members(i) {
                    Ok(m) => m.iter().filter(|m| m.status == "alive").count(),
                    Err(_) => 0,
                };
                if alive != n {
                    lagging.push(format!("{}: {alive}/{n}", self.nodes[i].name));
                }
            }
            if lagging.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("serf cluster of {n} did not converge in time; alive counts {lagging:?}");
            }
            thread::sleep(CONVERGE_POLL);
        }
    }

    fn wait_monitors_attached(&self, deadline: Instant) -> Result<()> {
        let st = self
            .shared
            .wait_until(deadline, |st| st.attached.iter().all(|a| *a));
        let missing: Vec<&str> = st
            .attached
            .iter()
            .enumerate()
            .filter(|(_, a)| !**a)
            .map(|(i, _)| self.nodes[i].name.as_str())
            .collect();
        ensure!(
            missing.is_empty(),
            "serf monitor produced no output for {missing:?}"
        );
        Ok(())
    }
}

impl Drop for SerfCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut monitor) = node.monitor.take() {
                monitor.kill_and_reap();
            }
            if let Some(mut agent) = node.agent.take() {
                agent.kill_and_reap();
            }
            node.alive = false;
        }
        // Monitors are dead, so their pipes hit EOF and the readers finish.
        for node in &mut self.nodes {
            if let Some(reader) = node.reader.take() {
                let _ = reader.join();
            }
        }
        if std::env::var_os("SWARMNET_KEEP_SERF_LOGS").is_none() {
            let _ = fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// Everything the monitor readers have seen.
#[derive(Debug, Default)]
struct ObsState {
    /// Event name -> node -> first delivery instant.
    user_events: HashMap<String, HashMap<usize, Instant>>,
    /// Failed member name -> (observer node, instant) for every line seen.
    failed: HashMap<String, Vec<(usize, Instant)>>,
    /// Whether node i's monitor has produced any output yet.
    attached: Vec<bool>,
}

impl ObsState {
    fn first_failed_after(&self, name: &str, observer: usize, after: Instant) -> Option<Instant> {
        self.failed
            .get(name)?
            .iter()
            .filter(|(o, at)| *o == observer && *at >= after)
            .map(|(_, at)| *at)
            .min()
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<ObsState>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ObsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done` holds or `deadline` passes; returns the state either way.
    fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&ObsState) -> bool,
    ) -> MutexGuard<'_, ObsState> {
        let mut st = self.lock();
        while !done(&st) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            if left.is_zero() {
                break;
            }
            st = self
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st
    }
}

enum LogLine<'a> {
    UserEvent(&'a str),
    MemberFailed(&'a str),
    Other,
}

fn parse_line(line: &str) -> LogLine<'_> {
    if let Some((_, rest)) = line.split_once(USER_EVENT_MARK) {
        LogLine::UserEvent(rest.trim())
    } else if let Some((_, rest)) = line.split_once(MEMBER_FAILED_MARK) {
        // "<name> <ip>"
        LogLine::MemberFailed(rest.split_whitespace().next().unwrap_or(""))
    } else {
        LogLine::Other
    }
}

fn read_monitor(node: usize, stdout: ChildStdout, shared: &Shared) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // Timestamp first: this is the receive time.
        let at = Instant::now();
        let line = String::from_utf8_lossy(&buf);
        let mut st = shared.lock();
        st.attached[node] = true;
        match parse_line(&line) {
            LogLine::UserEvent(name) => {
                st.user_events
                    .entry(name.to_owned())
                    .or_default()
                    .entry(node)
                    .or_insert(at);
            }
            LogLine::MemberFailed(name) => {
                st.failed
                    .entry(name.to_owned())
                    .or_default()
                    .push((node, at));
            }
            LogLine::Other => {}
        }
        drop(st);
        shared.cond.notify_all();
    }
}

/// A serf process running under `timeout --foreground -s KILL <lifetime>`.
#[derive(Debug)]
struct Proc {
    what: String,
    /// The `timeout` wrapper.
    child: Child,
    /// pid of serf itself (the wrapper's child), once known.
    inner: Option<u32>,
    reaped: bool,
}

impl Proc {
    fn spawn(
        what: &str,
        serf_args: &[String],
        lifetime: Duration,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<Self> {
        let child = Command::new("timeout")
            .args([
                "--foreground",
                "-s",
                "KILL",
                &format!("{}s", lifetime.as_secs().max(1)),
            ])
            .arg(SERF_BIN)
            .args(serf_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning `timeout {SERF_BIN} ...` for {what}"))?;
        Ok(Self {
            what: what.to_owned(),
            child,
            inner: None,
            reaped: false,
        })
    }

    /// pid of the serf process, read from /proc/<wrapper>/task/<wrapper>/children.
    fn inner_pid(&mut self) -> Option<u32> {
        if self.inner.is_none() && !self.reaped {
            let pid = self.child.id();
            let path = format!("/proc/{pid}/task/{pid}/children");
            let mut s = String::new();
            if File::open(path)
                .and_then(|mut f| f.read_to_string(&mut s))
                .is_ok()
            {
                self.inner = s.split_whitespace().next().and_then(|p| p.parse().ok());
            }
        }
        self.inner
    }

    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("waiting for {}", self.what))?;
        if status.is_some() {
            self.reaped = true;
        }
        Ok(status)
    }

    /// SIGKILLs serf, then makes sure the wrapper is gone and reaped. Bounded.
    fn kill_and_reap(&mut self) {
        if self.reaped {
            return;
        }
        match self.inner_pid() {
            Some(pid) => {
                let _ = kill_pid(pid, "KILL");
            }
            // serf not forked yet: timeout forwards TERM to its child if any.
            None => {
                let _ = kill_pid(self.child.id(), "TERM");
            }
        }
        let deadline = Instant::now() + REAP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                self.reaped = true;
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

fn kill_pid(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    ensure!(
        status.success(),
        "kill -{signal} {pid} failed with {status}"
    );
    Ok(())
}

/// Runs a one-shot serf CLI command, bounded by [`CLI_TIMEOUT`].
fn run_cli(args: &[&str]) -> Result<Output> {
    Command::new("timeout")
        .args(["-s", "KILL", &format!("{}s", CLI_TIMEOUT.as_secs())])
        .arg(SERF_BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{SERF_BIN} {}`", args.join(" ")))
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let s: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(5));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(10));
        assert_eq!(percentile(&s, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&s, 100.0), Duration::from_millis(10));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn parses_monitor_lines() {
        let ev = "2026/11/27 21:39:12 [INFO] agent: Received event: user-event: swarmnet-ref-1-3\n";
        assert!(matches!(
            parse_line(ev),
            LogLine::UserEvent("swarmnet-ref-1-3")
        ));
        let failed = "2026/11/27 21:39:27 [INFO] serf: EventMemberFailed: ref3 127.0.1.4\n";
        assert!(matches!(parse_line(failed), LogLine::MemberFailed("ref3")));
        let coalesced = "2026/11/27 21:39:28 [INFO] agent: Received event: member-failed\n";
        assert!(matches!(parse_line(coalesced), LogLine::Other));
    }
}
