//! The tokio runtime of networkdb: one task owns the [`Core`](crate::Core), its timers, a UDP
//! socket and a TCP listener bound on the same address, and serves a [`Handle`].
//!
//! Every frame is sealed with the node's [`Keyring`](crate::Keyring) before it leaves
//! and opened when it arrives; payloads no key opens are dropped and counted
//! ([`RuntimeStats::open_failures`]). A removed key still opens (never seals) for
//! [`REMOVED_KEY_GRACE`], so that a rotation whose steps follow each other at once loses
//! nothing. Datagrams go by UDP; stream frames by one TCP
//! connection each (`u32` big-endian length, then the sealed payload).
//!
//! ```no_run
//! # async fn demo() -> Result<(), networkdb::Error> {
//! use networkdb::runtime::{NodeConfig, WatchEvent, spawn};
//! use networkdb::NodeId;
//!
//! let a = spawn(NodeConfig::new(NodeId(1), "127.0.0.1:0".parse().unwrap())).await?;
//! let b = spawn(NodeConfig::new(NodeId(2), "127.0.0.1:0".parse().unwrap())).await?;
//! b.join(vec![a.addr()]).await?;
//! a.join_network("blue").await?;
//! b.join_network("blue").await?;
//! let mut watch = b.watch(Some("blue".into()), None).await?;
//! a.put("blue", "endpoints", "ep1", b"10.0.0.2".to_vec()).await?;
//! while let Some(ev) = watch.next().await {
//!     if let WatchEvent::Entry(e) = ev {
//!         println!("{:?} {} = {:?}", e.kind, e.key, e.new);
//!         break;
//!     }
//! }
//! a.shutdown().await?;
//! b.shutdown().await?;
//! # Ok(()) }
//! ```

mod command;
mod driver;
mod handle;
mod keys;
mod node_config;
mod persist;
mod sockets;
mod stats;
mod stream;
mod timers;
mod watch;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::RngExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

pub use self::handle::Handle;
pub use self::keys::REMOVED_KEY_GRACE;
pub use self::node_config::{DEFAULT_WATCH_CAPACITY, NodeConfig, generation_now};
pub use self::stats::RuntimeStats;
pub use self::stream::{CONNECT_TIMEOUT, IO_TIMEOUT, MAX_INBOUND, MAX_OUTBOUND};
pub use self::watch::{Watch, WatchEvent, WatchOptions};

use self::driver::Driver;
use self::keys::Keys;
use self::stats::IoCounters;
use self::timers::TimerQueue;
use self::watch::Watchers;
use crate::core::Core;
use crate::effects::Effects;
use crate::error::Error;
use crate::keyring::{self, Keyring};
use crate::types::Peer;

/// Requests waiting for the core task; callers wait beyond that.
const COMMAND_QUEUE: usize = 1024;
/// Largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65507;
/// Opened stream frames waiting for the core task; connections wait beyond that.
const INBOUND_QUEUE: usize = 64;

/// Start a node: bind its sockets, create its core and spawn the task that runs it.
///
/// Must be called within a tokio runtime with the time and net drivers enabled. The node
/// does not join a cluster by itself: call [`Handle::join`]. Fails on an invalid
/// configuration or key, or when the address cannot be bound.
pub async fn spawn(cfg: NodeConfig) -> Result<Handle, Error> {
    cfg.core.validate()?;
    if cfg.core.max_packet + keyring::OVERHEAD > MAX_UDP_PAYLOAD {
        return Err(Error::Invalid {
            field: "max_packet",
            reason: format!(
                "must leave room for sealing within a UDP datagram: at most {}",
                MAX_UDP_PAYLOAD - keyring::OVERHEAD
            ),
        });
    }
    let ring = Keyring::new(&cfg.keys)?;
    let (udp, listener) = sockets::bind(cfg.bind).await?;
    let bound = udp.local_addr()?;
    let addr = sockets::advertised(cfg.advertise, bound)?;
    let me = Peer {
        id: cfg.id,
        addr,
        generation: cfg.generation,
    };
    let seed = cfg.seed.unwrap_or_else(|| rand::rng().random());
    let mut core = Core::new(cfg.core.clone(), me.clone(), seed)?;
    // At ERROR level so that the span (and the node id) is on every event that is logged
    // at all, whatever the filter.
    let span = tracing::error_span!("networkdb", node = %cfg.id);
    if ring.is_empty() {
        span.in_scope(|| tracing::warn!("gossip encryption disabled: no key configured"));
    }
    span.in_scope(|| tracing::info!(?me, %bound, "started"));
    let start = Instant::now();
    let mut outbox = Effects::default();
    let persister = match &cfg.durable_path {
        Some(path) => {
            let loaded = persist::load(path)?;
            let ttl = cfg.core.durable_tombstone_ttl;
            let n = loaded.records.len();
            let taken = core.restore(Duration::ZERO, loaded.records, &mut outbox);
            span.in_scope(|| {
                if n > 0 && loaded.age > ttl {
                    tracing::warn!(
                        path = %path.display(),
                        age = ?loaded.age,
                        "the durable tables were saved longer ago than their tombstones are kept: \
                         entries deleted in the cluster meanwhile may come back from this node"
                    );
                }
                tracing::info!(path = %path.display(), records = n, taken, "restored the durable tables");
            });
            Some(persist::Persister::start(
                path.clone(),
                core.durable_changes(),
            )?)
        }
        None => None,
    };

    let ring = Arc::new(RwLock::new(Keys::new(ring)));
    let counters = Arc::new(IoCounters::default());
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let acceptor = tokio::spawn(
        stream::accept_loop(
            listener,
            cfg.core.max_stream + keyring::OVERHEAD,
            ring.clone(),
            counters.clone(),
            inbound_tx,
        )
        .instrument(span.clone()),
    );
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (unwatch_tx, unwatch_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        core,
        start,
        udp,
        streams: stream::Sender::new(ring.clone(), counters.clone(), bound),
        ring,
        counters,
        acceptor,
        timers: TimerQueue::default(),
        watchers: Watchers::new(cfg.watch_capacity, unwatch_tx),
        outbox,
        commands: cmd_rx,
        unwatch: unwatch_rx,
        inbound: inbound_rx,
        stop_at: None,
        stop_replies: Vec::new(),
        #[cfg(feature = "faults")]
        inbound_loss: cfg.inbound_loss,
        persister,
        durable_waiters: Vec::new(),
    };
    tokio::spawn(driver.run().instrument(span));
    Ok(Handle::new(cmd_tx, addr, bound))
}
