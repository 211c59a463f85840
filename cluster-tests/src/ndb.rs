//! Clusters of `networkdb-node` processes on loopback, observed the way [`crate::serf`]
//! observes serf: one reader thread per node stamps every stdout line with [`Instant::now`]
//! as soon as it is read, so both systems are timed through the same kind of path.
//!
//! Node `i` binds `127.0.<subnet>.(i+1):<port>`; node 0 is the seed. Every process is killed
//! (SIGKILL) and reaped on drop, also when a test panics.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// Options of a [`NdbCluster`].
#[derive(Clone, Debug)]
pub struct NdbOptions {
    pub nodes: usize,
    /// Node `i` binds `127.0.<subnet>.(i+1)`.
    pub subnet: u8,
    pub port: u16,
    /// Gossip keys in hex; empty runs unencrypted.
    pub keys: Vec<String>,
    /// Extra flags for every node (config overrides).
    pub args: Vec<String>,
    /// Print per-entry events (`--events all`) or only membership (`--events members`).
    pub entry_events: bool,
    /// Bound on waiting for the cluster to form.
    pub converge_timeout: Duration,
}

impl NdbOptions {
    pub fn new(nodes: usize) -> Self {
        NdbOptions {
            nodes,
            subnet: 3,
            port: 7946,
            keys: vec!["000102030405060708090a0b0c0d0e0f".into()],
            args: Vec::new(),
            entry_events: true,
            converge_timeout: Duration::from_secs(30),
        }
    }
}

/// What one node's stdout told us so far.
#[derive(Debug, Default)]
pub struct NodeLog {
    /// (net, table, key, value) -> when it first became visible here.
    pub seen: HashMap<(String, String, String, String), Instant>,
    /// (net, table, key) -> when a delete was first seen here.
    pub deleted: HashMap<(String, String, String), Instant>,
    /// (node id, up, when).
    pub members: Vec<(String, bool, Instant)>,
    /// Command replies, oldest first.
    pub replies: VecDeque<Value>,
    pub ready: Option<(String, String)>,
    pub resets: usize,
    pub closed: bool,
}

struct Shared {
    log: Mutex<NodeLog>,
    cv: Condvar,
}

/// One node process.
pub struct NdbNode {
    pub id: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NdbNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdbNode")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish()
    }
}

/// Path of the `networkdb-node` binary: `$NETWORKDB_NODE`, else beside the current
/// executable (or its parent, for test binaries in `deps/`).
pub fn node_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("NETWORKDB_NODE") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(2) {
        let p = dir.join("networkdb-node");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "networkdb-node not found beside {}: build it (cargo build -p cluster-tests --bin networkdb-node) or set NETWORKDB_NODE",
        exe.display()
    )
}

impl NdbNode {
    fn spawn(
        bin: &PathBuf,
        i: usize,
        opts: &NdbOptions,
        join: Option<SocketAddr>,
        generation: Option<u64>,
    ) -> Result<NdbNode> {
        let addr: SocketAddr = format!("127.0.{}.{}:{}", opts.subnet, i + 1, opts.port).parse()?;
        // The same rendering as networkdb-node prints in member events.
        let id = format!("{:016x}", i + 1);
        let mut cmd = Command::new(bin);
        cmd.arg("--id").arg(&id).arg("--bind").arg(addr.to_string());
        cmd.arg("--events")
            .arg(if opts.entry_events { "all" } else { "members" });
        if let Some(g) = generation {
            cmd.arg("--generation").arg(g.to_string());
        }
        if let Some(j) = join {
            cmd.arg("--join").arg(j.to_string());
        }
        for k in &opts.keys {
            cmd.arg("--key").arg(k);
        }
        cmd.args(&opts.args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("stdout")?;
        let shared = Arc::new(Shared {
            log: Mutex::new(NodeLog::default()),
            cv: Condvar::new(),
        });
        let s2 = shared.clone();
        let reader = thread::spawn(move || read_lines(stdout, s2));
        let node = NdbNode {
            id,
            addr,
            child: Some(child),
            stdin,
            shared,
            reader: Some(reader),
        };
        node.wait(Duration::from_secs(10), |l| l.ready.is_some() || l.closed)?;
        if node.log().ready.is_none() {
            bail!("node {i} at {addr} exited before it was ready (address in use?)");
        }
        Ok(node)
    }

    /// Lock this node's log.
    pub fn log(&self) -> std::sync::MutexGuard<'_, NodeLog> {
        self.shared.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait (bounded) until `pred` holds on the log; true if it did.
    pub fn wait(&self, timeout: Duration, pred: impl Fn(&NodeLog) -> bool) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut log = self.log();
        loop {
            if pred(&log) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            log = self
                .shared
                .cv
                .wait_timeout(log, left.min(Duration::from_millis(100)))
                .map_err(|_| anyhow!("poisoned"))?
                .0;
        }
    }

    /// Send one command line (no reply awaited).
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("node is stopped")?;
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        Ok(())
    }

    /// Send many command lines in one write.
    pub fn send_many(&mut self, lines: &[String]) -> Result<()> {
        let mut buf = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        let stdin = self.stdin.as_mut().context("node is stopped")?;
        stdin.write_all(buf.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Send a command and wait (bounded) for its reply.
    pub fn request(&mut self, line: &str, timeout: Duration) -> Result<Value> {
        self.log().replies.clear();
        self.send(line)?;
        if !self.wait(timeout, |l| !l.replies.is_empty())? {
            bail!("no reply to {line:?} from {} within {timeout:?}", self.addr);
        }
        let reply = self.log().replies.pop_front().context("reply")?;
        if reply["ev"] == "error" {
            bail!("{line:?} failed on {}: {}", self.addr, reply["error"]);
        }
        Ok(reply)
    }

    /// SIGKILL the process (no graceful leave).
    pub fn kill(&mut self) {
        // SIGKILL before closing stdin: end of stdin makes the node leave gracefully.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stdin = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NdbNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_lines(stdout: std::process::ChildStdout, shared: Arc<Shared>) {
    let mut r = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let at = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
        match v["ev"].as_str().unwrap_or_default() {
            "create" | "update" => {
                log.seen
                    .entry((s("net"), s("table"), s("key"), s("value")))
                    .or_insert(at);
            }
            "delete" => {
                log.deleted
                    .entry((s("net"), s("table"), s("key")))
                    .or_insert(at);
            }
            "member" => {
                let up = v["up"].as_bool().unwrap_or(false);
                log.members.push((s("id"), up, at));
            }
            "ready" => log.ready = Some((s("addr"), s("id"))),
            "reset" => log.resets += 1,
            "ok" | "error" => log.replies.push_back(v),
            _ => {}
        }
        drop(log);
        shared.cv.notify_all();
    }
    shared.log.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
    shared.cv.notify_all();
}

/// A running cluster of node processes.
#[derive(Debug)]
pub struct NdbCluster {
    pub opts: NdbOptions,
    pub nodes: Vec<NdbNode>,
    bin: PathBuf,
}

impl NdbCluster {
    /// Start `opts.nodes` nodes joined through node 0 and wait until every node sees every
    /// other one up.
    pub fn start(opts: NdbOptions) -> Result<NdbCluster> {
        let bin = node_binary()?;
        let mut c = NdbCluster {
            opts,
            nodes: Vec::new(),
            bin,
        };
        let seed = None;
        let first = NdbNode::spawn(&c.bin, 0, &c.opts, seed, None)?;
        let seed = Some(first.addr);
        c.nodes.push(first);
        for i in 1..c.opts.nodes {
            c.nodes
                .push(NdbNode::spawn(&c.bin, i, &c.opts, seed, None)?);
        }
        let n = c.opts.nodes;
        for (i, node) in c.nodes.iter().enumerate() {
            let ok = node.wait(c.opts.converge_timeout, |l| up_count(l) >= n - 1)?;
            if !ok {
                bail!(
                    "node {i} sees {} of {} members up after {:?}",
                    up_count(&node.log()),
                    n - 1,
                    c.opts.converge_timeout
                );
            }
        }
        Ok(c)
    }

    /// Restart node `i` (same id, higher generation) joined through node 0 (or 1 if i = 0).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.nodes[i].kill();
        let seed = self.nodes[if i == 0 { 1 } else { 0 }].addr;
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        self.nodes[i] = NdbNode::spawn(&self.bin, i, &self.opts, Some(seed), Some(generation))?;
        Ok(())
    }

    /// Spawn one more node (index = current length) joined through node 0.
    pub fn add_node(&mut self, opts: &NdbOptions) -> Result<&mut NdbNode> {
        let i = self.nodes.len();
        let node = NdbNode::spawn(&self.bin, i, opts, Some(self.nodes[0].addr), None)?;
        self.nodes.push(node);
        Ok(self.nodes.last_mut().expect("just pushed"))
    }

    /// Wait until every running node except `except` has seen `(net, table, key, value)`;
    /// returns the latest first-seen instant among them.
    pub fn wait_seen_all(
        &self,
        key: &(String, String, String, String),
        except: Option<usize>,
        timeout: Duration,
    ) -> Result<Option<Instant>> {
        let deadline = Instant::now() + timeout;
        let mut latest: Option<Instant> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if Some(i) == except || !n.is_running() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !n.wait(left, |l| l.seen.contains_key(key))? {
                return Ok(None);
            }
            let t = n.log().seen[key];
            latest = Some(latest.map_or(t, |l| l.max(t)));
        }
        Ok(latest)
    }

    /// Sum of a numeric field of every running node's `stats` reply.
    pub fn sum_stat(&mut self, field: &str) -> Result<u64> {
        let mut total = 0;
        for n in self.nodes.iter_mut().filter(|n| n.is_running()) {
            let v = n.request("stats", Duration::from_secs(10))?;
            total += v["stats"][field]
                .as_u64()
                .or_else(|| v[field].as_u64())
                .unwrap_or(0);
        }
        Ok(total)
    }
}

/// Members this log currently shows up (last event per id wins).
pub fn up_count(l: &NodeLog) -> usize {
    let mut state: HashMap<&str, bool> = HashMap::new();
    for (id, up, _) in &l.members {
        state.insert(id, *up);
    }
    state.values().filter(|u| **u).count()
}
