//! What a node needs to start: identity, addresses, keys and tunables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::types::NodeId;

/// Default capacity of a watcher's queue, in events beyond its initial snapshot.
pub const DEFAULT_WATCH_CAPACITY: usize = 4096;

/// Configuration of one node run by [`super::spawn`].
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Stable identity (never 0).
    pub id: NodeId,
    /// Life of this node: strictly higher on every restart with the same `id`
    /// ([`NodeConfig::new`] uses the start time in milliseconds since the UNIX epoch).
    pub generation: u64,
    /// Address of both the UDP socket and the TCP listener. Port 0 picks a free port for both.
    pub bind: SocketAddr,
    /// Address peers reach this node at. An unspecified IP means the bound IP, port 0 the bound
    /// port; the result must not be unspecified (bind to a concrete IP or set this).
    pub advertise: SocketAddr,
    /// Gossip keys (16 or 32 bytes each); the first is the primary. Empty: gossip in clear.
    pub keys: Vec<Vec<u8>>,
    /// Tunables of the core.
    pub core: Config,
    /// Seed of the core's RNG (probe order, gossip targets, jitter). None: from the OS.
    /// Sealing nonces always come from the OS-seeded thread RNG, whatever this is.
    pub seed: Option<u64>,
    /// Queue capacity of a watcher that does not choose its own (see [`super::WatchOptions`]).
    pub watch_capacity: usize,
    /// Share (0..1) of received datagrams dropped on purpose, before opening: emulated packet
    /// loss for tests and benchmarks on loopback (feature `faults`).
    #[cfg(feature = "faults")]
    pub inbound_loss: f64,
    /// File holding the durable tables ([`crate::Config::durable_tables`]): loaded and
    /// restored at start, rewritten (crash-safely, off the core task) on every change. A put
    /// or delete on a durable table returns once the change is on disk. None: durable tables
    /// live in memory only.
    pub durable_path: Option<PathBuf>,
}

impl NodeConfig {
    /// A node bound to `bind`, advertising the bound address, with no keys, default tunables
    /// and the current time as its generation.
    pub fn new(id: NodeId, bind: SocketAddr) -> NodeConfig {
        NodeConfig {
            id,
            generation: generation_now(),
            bind,
            advertise: SocketAddr::new(bind.ip(), 0),
            keys: Vec::new(),
            core: Config::default(),
            seed: None,
            watch_capacity: DEFAULT_WATCH_CAPACITY,
            #[cfg(feature = "faults")]
            inbound_loss: 0.0,
            durable_path: None,
        }
    }
}

/// Milliseconds since the UNIX epoch: a generation that grows across restarts.
pub fn generation_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}
