//! Five `networkdb-node` processes on 127.0.0.2..=6 with encryption on: convergence, failure
//! detection after `kill -9`, restart with the same id, and key rotation under writes.
//!
//! Every wait is bounded; measured times are printed (run with `--nocapture` to see them).
//! Children are killed when the test ends, whether it passed or panicked.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_networkdb-node");
const NET: &str = "blue";
const TABLE: &str = "ep";
const KEY1: &str = "000102030405060708090a0b0c0d0e0f";
const KEY2: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";
/// Generous bound of failure detection (foca with the default 500 ms probe period and 1.5 s
/// suspicion detects in a few seconds).
const DETECTION_BOUND: Duration = Duration::from_secs(15);
/// Bound of every other wait.
const WAIT: Duration = Duration::from_secs(30);
const NODES: usize = 5;

/// What the test knows of one process, filled by the thread reading its stdout.
#[derive(Default, Debug)]
struct State {
    ready: Option<Value>,
    /// (network, table, key) -> value, rebuilt from watch events.
    table: BTreeMap<(String, String, String), String>,
    /// First time (test clock) each (network, table, key, value) was seen.
    seen: BTreeMap<(String, String, String, String), Instant>,
    /// Last time each (network, table, key) was deleted.
    deleted: BTreeMap<(String, String, String), Instant>,
    /// Every entry event: (when, kind, key, value) of [`NET`]/[`TABLE`].
    log: Vec<(Instant, String, String, String)>,
    replies: Vec<Value>,
    members_up: BTreeSet<String>,
    resets: usize,
    exited: bool,
}

#[derive(Default, Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

fn s(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_line(&self, line: &str) {
        let at = Instant::now();
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            eprintln!("unparsable line: {line}");
            return;
        };
        let mut st = self.lock();
        let k = (s(&v, "net"), s(&v, "table"), s(&v, "key"));
        let ev = s(&v, "ev");
        if k.0 == NET && k.1 == TABLE {
            st.log.push((at, ev.clone(), k.2.clone(), s(&v, "value")));
        }
        match v["ev"].as_str().unwrap_or_default() {
            "ready" => st.ready = Some(v.clone()),
            "create" | "update" => {
                let value = s(&v, "value");
                st.table.insert(k.clone(), value.clone());
                let (n, t, key) = k;
                st.seen.entry((n, t, key, value)).or_insert(at);
            }
            "delete" => {
                st.table.remove(&k);
                st.deleted.insert(k, at);
            }
            "member" => {
                if v["up"].as_bool() == Some(true) {
                    st.members_up.insert(s(&v, "id"));
                } else {
                    st.members_up.remove(&s(&v, "id"));
                }
            }
            "reset" => {
                st.resets += 1;
                st.table.clear();
            }
            "ok" | "error" => st.replies.push(v.clone()),
            _ => {}
        }
        drop(st);
        self.changed.notify_all();
    }
}

/// One `networkdb-node` child process.
struct Node {
    name: String,
    id: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
}

fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

impl Node {
    fn spawn(id: u64, bind: &str, seed: Option<&str>, keys: &[&str]) -> Node {
        let name = format!("node{id}");
        let mut cmd = Command::new(BIN);
        cmd.args(["--id", &hex_id(id), "--bind", bind, "--net", NET])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(seed) = seed {
            cmd.args(["--join", seed]);
        }
        for k in keys {
            cmd.args(["--key", k]);
        }
        let mut child = cmd.spawn().expect("spawn networkdb-node");
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("stdout");
        let sh = shared.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => sh.on_line(&l),
                    Err(_) => break,
                }
            }
            sh.lock().exited = true;
            sh.changed.notify_all();
        });
        let stderr = child.stderr.take().expect("stderr");
        let prefix = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{prefix}] {line}");
            }
        });
        let stdin = child.stdin.take();
        Node {
            name,
            id,
            child,
            stdin,
            shared,
        }
    }

    /// Wait until `f` returns Some, at most `timeout`; panics with `what` otherwise.
    fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut(&State) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(v) = f(&st) {
                return v;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}; table: {:?}",
                    self.name, st.table
                );
            }
            if st.exited {
                panic!("{}: exited while waiting for {what}", self.name);
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn ready(&self) -> Value {
        self.wait("ready", WAIT, |st| st.ready.clone())
    }

    fn addr(&self) -> String {
        s(&self.ready(), "addr")
    }

    /// Send a command and wait for its reply; panics on an error reply.
    fn cmd(&mut self, line: &str) -> Value {
        let before = self.shared.lock().replies.len();
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write command");
        stdin.flush().expect("flush command");
        let reply = self.wait(&format!("reply to {line:?}"), WAIT, |st| {
            st.replies.get(before).cloned()
        });
        assert_eq!(reply["ev"], "ok", "{}: {line:?} failed: {reply}", self.name);
        reply
    }

    /// Wait until this node sees `key = value`; returns when it first saw it.
    fn wait_value(&self, key: &str, value: &str, timeout: Duration) -> Instant {
        let k = (NET.to_owned(), TABLE.to_owned(), key.to_owned());
        self.wait(&format!("{key}={value}"), timeout, |st| {
            (st.table.get(&k).map(String::as_str) == Some(value))
                .then(|| st.seen[&(k.0.clone(), k.1.clone(), k.2.clone(), value.to_owned())])
        })
    }

    /// (payloads no key opened, payloads opened by a key removed moments ago)
    fn key_stats(&mut self) -> (u64, u64) {
        let stats = self.cmd("stats")["stats"].clone();
        let n = |f: &str| stats[f].as_u64().unwrap_or(u64::MAX);
        (n("open_failures"), n("removed_key_opens"))
    }

    fn quit(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "quit");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Owns the children: kills every one still running when dropped, on panic too.
#[derive(Default)]
struct Cluster {
    nodes: Vec<Option<Node>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut().flatten() {
            n.kill();
        }
    }
}

impl Cluster {
    fn node(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("node running")
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }
}

fn bind(i: usize) -> String {
    format!("127.0.0.{}:0", i + 2)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[test]
fn serial_five_processes_converge_detect_a_kill_restart_and_rotate_keys() {
    let mut c = Cluster::default();
    let t_start = Instant::now();
    c.nodes.push(Some(Node::spawn(1, &bind(0), None, &[KEY1])));
    let seed = c.node(0).addr();
    for i in 1..NODES {
        c.nodes.push(Some(Node::spawn(
            i as u64 + 1,
            &bind(i),
            Some(&seed),
            &[KEY1],
        )));
    }
    let addrs: Vec<String> = c.live().map(Node::addr).collect();
    println!("nodes at {addrs:?}");

    // Everyone up and attached to the network everywhere.
    let ids: Vec<String> = (1..=NODES as u64).map(hex_id).collect();
    for n in c.live() {
        let others: BTreeSet<String> = ids
            .iter()
            .filter(|id| **id != hex_id(n.id))
            .cloned()
            .collect();
        n.wait("all members up and attached", WAIT, |st| {
            let attached = ids.iter().all(|id| {
                st.table
                    .contains_key(&(String::new(), "_attach".into(), format!("{NET}/{id}")))
            });
            (st.members_up == others && attached).then_some(())
        });
    }
    println!(
        "join: all {NODES} nodes up and attached everywhere after {}",
        ms(t_start.elapsed())
    );

    // A write on each node is seen by all.
    let t_put = Instant::now();
    for i in 0..NODES {
        c.node(i)
            .cmd(&format!("put {NET} {TABLE} ep{} gen1-{}", i + 1, i + 1));
    }
    let mut slowest = Duration::ZERO;
    for n in c.live() {
        for i in 1..=NODES {
            let at = n.wait_value(&format!("ep{i}"), &format!("gen1-{i}"), WAIT);
            slowest = slowest.max(at.saturating_duration_since(t_put));
        }
    }
    println!(
        "propagation: {NODES} writes (one per node) seen by all nodes within {}",
        ms(slowest)
    );

    // kill -9 node 5: its entry is deleted on every other node by failure detection.
    let victim = NODES - 1;
    let victim_addr = addrs[victim].clone();
    let victim_generation = c.node(victim).ready()["generation"].as_u64().unwrap_or(0);
    let t_kill = Instant::now();
    c.nodes[victim].take().expect("victim").kill();
    let mut detection = Vec::new();
    for n in c.live() {
        let k = (NET.to_owned(), TABLE.to_owned(), format!("ep{NODES}"));
        let at = n.wait(
            "the killed node's entry to be deleted",
            DETECTION_BOUND,
            |st| (!st.table.contains_key(&k)).then(|| st.deleted[&k]),
        );
        detection.push(at.saturating_duration_since(t_kill));
    }
    let worst = detection.iter().max().copied().unwrap_or_default();
    println!(
        "failure detection after kill -9: delete seen on each survivor after {:?}, worst {}",
        detection.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        ms(worst)
    );
    assert!(worst < DETECTION_BOUND);

    // Restart it with the same id and address (a later generation) and put its entry again.
    let t_restart = Instant::now();
    c.nodes[victim] = Some(Node::spawn(
        NODES as u64,
        &victim_addr,
        Some(&seed),
        &[KEY1],
    ));
    // Generations are start times in ms: the new life's is higher.
    let g2 = c.node(victim).ready()["generation"].as_u64().unwrap_or(0);
    assert!(g2 > victim_generation, "{g2} > {victim_generation}");
    c.node(victim)
        .cmd(&format!("put {NET} {TABLE} ep{NODES} gen2-{NODES}"));
    let mut back = Duration::ZERO;
    let mut first_after_restart = Vec::new();
    for n in c.live() {
        let at = n.wait_value(&format!("ep{NODES}"), &format!("gen2-{NODES}"), WAIT);
        back = back.max(at.saturating_duration_since(t_restart));
        if n.id == NODES as u64 {
            continue;
        }
        let st = n.shared.lock();
        let first = st
            .log
            .iter()
            .find(|(t, _, key, _)| *t > t_restart && *key == format!("ep{NODES}"))
            .map(|(t, ev, _, v)| {
                format!(
                    "{ev} {v} after {}",
                    ms(t.saturating_duration_since(t_restart))
                )
            });
        first_after_restart.push(first.unwrap_or_default());
    }
    for i in 1..NODES {
        c.node(victim)
            .wait_value(&format!("ep{i}"), &format!("gen1-{i}"), WAIT);
    }
    println!(
        "restart: first event of the restarted node's entry on each survivor: {first_after_restart:?}; re-put value seen everywhere within {} of the restart",
        ms(back)
    );

    // Key rotation while writes go on: add KEY2 everywhere, make it primary everywhere,
    // remove KEY1 everywhere, with a write on some node after every step.
    let t_rot = Instant::now();
    let mut writes = 0;
    let write = |c: &mut Cluster, writes: &mut usize| {
        let i = *writes;
        c.node(i % NODES)
            .cmd(&format!("put {NET} {TABLE} rot{i} r{i}"));
        *writes += 1;
    };
    for _ in 0..5 {
        write(&mut c, &mut writes);
    }
    for step in [
        format!("add-key {KEY2}"),
        format!("primary {KEY2}"),
        format!("remove-key {KEY1}"),
    ] {
        for i in 0..NODES {
            c.node(i).cmd(&step);
            write(&mut c, &mut writes);
        }
    }
    for _ in 0..5 {
        write(&mut c, &mut writes);
    }
    let mut slowest = Duration::ZERO;
    for n in c.live() {
        for i in 0..writes {
            let at = n.wait_value(&format!("rot{i}"), &format!("r{i}"), WAIT);
            slowest = slowest.max(at.saturating_duration_since(t_rot));
        }
    }
    let failures: Vec<(u64, u64)> = (0..NODES).map(|i| c.node(i).key_stats()).collect();
    println!(
        "key rotation: {writes} writes during the rotation all seen everywhere within {} of its start; (open failures, opened by the removed key) per node: {failures:?}",
        ms(slowest)
    );
    // Nothing was lost, and nothing may be left in anyone's table but the expected entries.
    for n in c.live() {
        let st = n.shared.lock();
        assert_eq!(st.resets, 0);
        let entries = st
            .table
            .keys()
            .filter(|(net, t, _)| net == NET && t == TABLE);
        assert_eq!(
            entries.count(),
            NODES + writes,
            "{}: {:?}",
            n.name,
            st.table
        );
    }

    for i in 0..NODES {
        c.node(i).quit();
    }
    println!("total {}", ms(t_start.elapsed()));
}
