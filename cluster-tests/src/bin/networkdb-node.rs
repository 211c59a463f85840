//! `networkdb-node`: one networkdb node as a process, for multi-process tests and benchmarks.
//!
//! Reads line commands on stdin and prints one JSON object per line on stdout (flushed per
//! line): `{"ev":"ready",..}` once the sockets are bound, every watch event of every table
//! (membership included), and one reply per command. Logs go to stderr (`RUST_LOG`, default
//! `warn`). It stops gracefully on `quit`, at the end of stdin, on SIGINT and on SIGTERM.
//!
//! Commands (`NET` is a network id; `-` is the cluster scope):
//!
//! ```text
//! put NET TABLE KEY VALUE      VALUE is the rest of the line (UTF-8)
//! del NET TABLE KEY
//! get NET TABLE KEY
//! join-net NET | leave-net NET
//! join ADDR...                 join (more) seeds
//! add-key HEX | primary HEX | remove-key HEX
//! stats | members | me | dump NET | count NET TABLE
//! quit
//! ```
//!
//! Output lines (`t_us`: monotonic microseconds since the process started):
//!
//! ```text
//! {"ev":"ready","addr":"127.0.0.2:7946","id":"..","generation":..,"t_us":..}
//! {"ev":"create"|"update"|"delete","net":..,"table":..,"key":..,"value":..,"old":..,"owner":..,"t_us":..}
//! {"ev":"member","id":..,"addr":..,"generation":..,"up":true|false,"t_us":..}
//! {"ev":"reset","t_us":..}                 the watch overflowed; a snapshot follows
//! {"ev":"ok","cmd":..,..} | {"ev":"error","cmd":..,"error":..}
//! {"ev":"bye","t_us":..}
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use networkdb::runtime::{self, Handle, NodeConfig, WatchEvent, WatchOptions};
use networkdb::{CLUSTER, Config, Event, EventKind, NodeId};
use serde_json::{Value, json};

/// One networkdb node driven by line commands on stdin, reporting JSON lines on stdout.
///
/// Tunables left unset keep networkdb's defaults (`networkdb::Config::default()`).
#[derive(Parser, Debug)]
#[command(version, after_help = COMMANDS)]
struct Args {
    /// Node id, hexadecimal, not 0.
    #[arg(long)]
    id: NodeId,
    /// Life of this node; must grow across restarts with the same id [default: now, in ms
    /// since the UNIX epoch].
    #[arg(long)]
    generation: Option<u64>,
    /// Address of the UDP socket and TCP listener (port 0: any free port for both).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Address peers reach this node at [default: the bound address].
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// Seed address to join through (repeatable).
    #[arg(long = "join")]
    join: Vec<SocketAddr>,
    /// Gossip key, 16 or 32 bytes in hex (repeatable; the first is the primary).
    #[arg(long = "key")]
    keys: Vec<String>,
    /// Network to join at start (repeatable).
    #[arg(long = "net")]
    nets: Vec<String>,
    /// Seed of the core's RNG [default: from the OS].
    #[arg(long)]
    seed: Option<u64>,
    /// Watch queue capacity before a Reset.
    #[arg(long, default_value_t = runtime::DEFAULT_WATCH_CAPACITY)]
    watch_capacity: usize,
    /// Period of anti-entropy with a random peer per network.
    #[arg(long)]
    sync_interval_ms: Option<u64>,
    /// Interval of gossip rounds while anything is queued.
    #[arg(long)]
    gossip_interval_ms: Option<u64>,
    /// foca's probe period; the probe timeout is lowered to 2/5 of it if it is not shorter.
    #[arg(long)]
    probe_period_ms: Option<u64>,
    /// foca's direct probe timeout.
    #[arg(long)]
    probe_rtt_ms: Option<u64>,
    /// Time a suspect member has to refute before it is declared down.
    #[arg(long)]
    suspect_ms: Option<u64>,
    /// Members each own write is pushed to, and each gossip round sends to.
    #[arg(long)]
    fanout: Option<usize>,
    /// How long tombstones are kept, in seconds.
    #[arg(long)]
    tombstone_ttl_s: Option<u64>,
    /// How long entries of a node that is down are kept, in seconds.
    #[arg(long)]
    node_reap_s: Option<u64>,
    /// Drop this share (0..1) of received datagrams: emulated loss for tests and benchmarks.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Which watch events to print: all (entries and members), members, or none.
    #[arg(long, default_value = "all", value_parser = ["all", "members", "none"])]
    events: String,
}

const COMMANDS: &str = "\
Commands on stdin, one per line (NET `-` is the cluster scope):
  put NET TABLE KEY VALUE      VALUE is the rest of the line (UTF-8)
  del NET TABLE KEY | get NET TABLE KEY
  join-net NET | leave-net NET | join ADDR...
  add-key HEX | primary HEX | remove-key HEX
  stats | members | me | dump NET | count NET TABLE | quit

Output on stdout, one JSON object per line: {\"ev\":\"ready\",\"addr\":..} at start; every
watch event of every table ({\"ev\":\"create\"|\"update\"|\"delete\",\"net\",\"table\",\"key\",
\"value\",\"old\",\"owner\",\"t_us\"}), membership events ({\"ev\":\"member\",..,\"up\"}),
{\"ev\":\"reset\"} when the watch overflowed; one {\"ev\":\"ok\"|\"error\",\"cmd\":..} per
command; {\"ev\":\"bye\"} at the end. t_us: microseconds since the process started.";

static START: OnceLock<Instant> = OnceLock::new();

fn t_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Print one JSON line and flush it (stdout is shared by the watch task and the commands;
/// one locked write per line keeps lines whole).
fn emit(mut v: Value) {
    if let Value::Object(m) = &mut v {
        m.insert("t_us".into(), json!(t_us()));
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout (the parent went away) is not worth dying over mid-shutdown.
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn hex_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        bail!("hex key {s:?} has an odd number of digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .with_context(|| format!("invalid hex key {s:?}"))
        })
        .collect()
}

fn net_arg(s: &str) -> String {
    if s == "-" {
        CLUSTER.to_owned()
    } else {
        s.to_owned()
    }
}

fn text(v: &Option<Vec<u8>>) -> Value {
    v.as_ref().map_or(Value::Null, |b| {
        Value::String(String::from_utf8_lossy(b).into_owned())
    })
}

fn entry_json(e: &Event) -> Value {
    let ev = match e.kind {
        EventKind::Create => "create",
        EventKind::Update => "update",
        EventKind::Delete => "delete",
    };
    json!({
        "ev": ev,
        "net": e.network,
        "table": e.table,
        "key": e.key,
        "value": text(&e.new),
        "old": text(&e.old),
        "owner": e.owner.to_string(),
    })
}

fn config(args: &Args) -> Config {
    let mut c = Config::default();
    let ms = Duration::from_millis;
    if let Some(v) = args.sync_interval_ms {
        c.sync_interval = ms(v);
    }
    if let Some(v) = args.gossip_interval_ms {
        c.gossip_interval = ms(v);
    }
    if let Some(v) = args.probe_period_ms {
        c.probe_period = ms(v);
        if c.probe_rtt >= c.probe_period {
            c.probe_rtt = c.probe_period * 2 / 5;
        }
    }
    if let Some(v) = args.probe_rtt_ms {
        c.probe_rtt = ms(v);
    }
    if let Some(v) = args.suspect_ms {
        c.suspect_to_down = ms(v);
    }
    if let Some(v) = args.fanout {
        c.fanout = v;
    }
    if let Some(v) = args.tombstone_ttl_s {
        c.tombstone_ttl = Duration::from_secs(v);
    }
    if let Some(v) = args.node_reap_s {
        c.node_reap = Duration::from_secs(v);
    }
    c
}

/// Split off `n` whitespace-separated words; the rest of the line (trimmed) comes last.
fn words(line: &str, n: usize) -> Option<(Vec<&str>, &str)> {
    let mut rest = line.trim_start();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    Some((out, rest.trim_end()))
}

/// Run one command line; Ok(false) for `quit`.
async fn command(node: &Handle, line: &str) -> anyhow::Result<bool> {
    let Some((cmd, _)) = words(line, 1) else {
        return Ok(true);
    };
    let cmd = cmd[0];
    let result = run_command(node, cmd, line).await;
    match result {
        Ok(Some(mut reply)) => {
            if let Value::Object(m) = &mut reply {
                m.insert("ev".into(), json!("ok"));
                m.insert("cmd".into(), json!(cmd));
            }
            emit(reply);
            Ok(true)
        }
        Ok(None) => Ok(false),
        Err(e) => {
            emit(json!({"ev": "error", "cmd": cmd, "error": format!("{e:#}")}));
            Ok(true)
        }
    }
}

/// The reply of one command (fields besides `ev` and `cmd`), or None for `quit`.
async fn run_command(node: &Handle, cmd: &str, line: &str) -> anyhow::Result<Option<Value>> {
    let args = |n: usize| {
        words(line, n + 1)
            .filter(|(_, rest)| !rest.is_empty() || n == 0)
            .map(|(w, rest)| (w[1..].to_vec(), rest))
    };
    let exact = |n: usize| -> anyhow::Result<Vec<&str>> {
        match words(line, n + 1) {
            Some((w, "")) => Ok(w[1..].to_vec()),
            _ => bail!("{cmd} takes {n} argument(s)"),
        }
    };
    let reply = match cmd {
        "put" => {
            let (w, value) = args(3).context("usage: put NET TABLE KEY VALUE")?;
            node.put(&net_arg(w[0]), w[1], w[2], value.as_bytes().to_vec())
                .await?;
            json!({})
        }
        "del" => {
            let w = exact(3)?;
            let deleted = node.delete(&net_arg(w[0]), w[1], w[2]).await?;
            json!({ "deleted": deleted })
        }
        "get" => {
            let w = exact(3)?;
            let v = node.get(&net_arg(w[0]), w[1], w[2]).await?;
            json!({ "value": text(&v) })
        }
        "join-net" => {
            node.join_network(&net_arg(exact(1)?[0])).await?;
            json!({})
        }
        "leave-net" => {
            node.leave_network(&net_arg(exact(1)?[0])).await?;
            json!({})
        }
        "join" => {
            let (_, rest) = words(line, 1).unwrap_or_default();
            let seeds = rest
                .split_whitespace()
                .map(|s| s.parse().with_context(|| format!("bad address {s:?}")))
                .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
            node.join(seeds).await?;
            json!({})
        }
        "add-key" => {
            node.add_key(hex_decode(exact(1)?[0])?).await?;
            json!({})
        }
        "primary" => {
            node.set_primary_key(hex_decode(exact(1)?[0])?).await?;
            json!({})
        }
        "remove-key" => {
            node.remove_key(hex_decode(exact(1)?[0])?).await?;
            json!({})
        }
        "stats" => {
            exact(0)?;
            json!({ "stats": node.stats().await? })
        }
        "members" => {
            exact(0)?;
            let members: Vec<Value> = node
                .members()
                .await?
                .into_iter()
                .map(|m| {
                    json!({
                        "id": m.peer.id.to_string(),
                        "addr": m.peer.addr.to_string(),
                        "generation": m.peer.generation,
                        "up": m.up,
                    })
                })
                .collect();
            json!({ "members": members })
        }
        "me" => {
            exact(0)?;
            let me = node.me().await?;
            json!({"id": me.id.to_string(), "addr": me.addr.to_string(), "generation": me.generation})
        }
        "dump" => {
            let net = net_arg(exact(1)?[0]);
            let entries: Vec<Value> = node
                .snapshot(Some(&net), None)
                .await?
                .iter()
                .map(|e| {
                    json!({
                        "table": e.table,
                        "key": e.key,
                        "value": text(&e.new),
                        "owner": e.owner.to_string(),
                    })
                })
                .collect();
            json!({ "net": net, "entries": entries })
        }
        "count" => {
            let w = exact(2)?;
            let net = net_arg(w[0]);
            let count = node.snapshot(Some(&net), Some(w[1])).await?.len();
            json!({ "net": net, "table": w[1], "count": count })
        }
        "quit" => return Ok(None),
        other => bail!("unknown command {other:?}"),
    };
    Ok(Some(reply))
}

async fn watch_loop(mut watch: runtime::Watch) {
    while let Some(ev) = watch.next().await {
        emit(match ev {
            WatchEvent::Entry(e) => entry_json(&e),
            WatchEvent::Member(m) => json!({
                "ev": "member",
                "id": m.peer.id.to_string(),
                "addr": m.peer.addr.to_string(),
                "generation": m.peer.generation,
                "up": m.up,
            }),
            WatchEvent::Reset => json!({"ev": "reset"}),
        });
    }
}

/// Lines of stdin, read on a thread of their own: a blocking read cannot be cancelled, and the
/// process exits without waiting for it. The channel closes at the end of stdin.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line {
                Ok(line) => {
                    if tx.blocking_send(line).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading stdin");
                    return;
                }
            }
        }
    });
    rx
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                tokio::select! {
                    _ = s.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    START.get_or_init(Instant::now);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let keys = args
        .keys
        .iter()
        .map(|k| hex_decode(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = NodeConfig::new(args.id, args.bind);
    if let Some(g) = args.generation {
        cfg.generation = g;
    }
    if let Some(a) = args.advertise {
        cfg.advertise = a;
    }
    cfg.keys = keys;
    cfg.core = config(&args);
    cfg.seed = args.seed;
    cfg.watch_capacity = args.watch_capacity;
    cfg.inbound_loss = args.drop_rate;
    let node = runtime::spawn(cfg).await.context("starting the node")?;
    let me = node.me().await?;
    let watch = node
        .watch_with(WatchOptions {
            entries: args.events == "all",
            members: args.events != "none",
            ..WatchOptions::default()
        })
        .await?;
    emit(json!({
        "ev": "ready",
        "addr": node.addr().to_string(),
        "id": me.id.to_string(),
        "generation": me.generation,
    }));
    let watcher = tokio::spawn(watch_loop(watch));
    for net in &args.nets {
        node.join_network(&net_arg(net)).await?;
    }
    if !args.join.is_empty() {
        node.join(args.join.clone()).await?;
    }

    let mut lines = stdin_lines();
    let stop = terminated();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    if !command(&node, &line).await? {
                        break;
                    }
                }
                None => break,
            },
            () = &mut stop => break,
        }
    }
    node.shutdown().await?;
    // The watch ends once its queued events are printed; do not wait forever for it.
    let _ = tokio::time::timeout(Duration::from_secs(2), watcher).await;
    emit(json!({"ev": "bye"}));
    Ok(())
}
