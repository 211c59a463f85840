//! What the simulator measures: traffic per node and how fast writes become visible.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::types::{NetworkId, NodeId};

/// Bytes the simulator adds to every datagram it counts: IPv4 (20) + UDP (8) headers plus the
/// keyring's sealing overhead ([`crate::keyring::OVERHEAD`], 29). The core's frames are
/// unsealed; the runtime seals each one before it goes on the wire.
pub const DATAGRAM_OVERHEAD: usize = 20 + 8 + crate::keyring::OVERHEAD;

/// Bytes the simulator adds to every stream message it counts: IPv4 (20) + TCP (20) headers,
/// a 4-byte length prefix and the sealing overhead. Connection setup is not counted (a
/// runtime that pools connections pays it once per peer).
pub const STREAM_OVERHEAD: usize = 20 + 20 + 4 + crate::keyring::OVERHEAD;

/// Traffic counters of one node, over all its lives. Bytes include the per-packet overhead
/// ([`DATAGRAM_OVERHEAD`], [`STREAM_OVERHEAD`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Every frame the node sent (datagrams and stream messages).
    pub msgs_sent: u64,
    pub bytes_sent: u64,
    /// Frames the node received (delivered to its core).
    pub msgs_received: u64,
    pub bytes_received: u64,
    /// Of the frames sent: foca (membership) datagrams.
    pub foca_msgs: u64,
    pub foca_bytes: u64,
    /// Of the frames sent: table messages (gossip and anti-entropy), datagram or stream.
    pub table_msgs: u64,
    pub table_bytes: u64,
    /// Of the frames sent: those that went by stream.
    pub stream_msgs: u64,
    pub stream_bytes: u64,
    /// Datagrams this node sent that the simulated network lost.
    pub lost: u64,
    /// Frames this node sent that a partition, a crash or the frame filter dropped.
    pub blocked: u64,
}

impl NodeStats {
    pub(crate) fn add(&mut self, o: &NodeStats) {
        self.msgs_sent += o.msgs_sent;
        self.bytes_sent += o.bytes_sent;
        self.msgs_received += o.msgs_received;
        self.bytes_received += o.bytes_received;
        self.foca_msgs += o.foca_msgs;
        self.foca_bytes += o.foca_bytes;
        self.table_msgs += o.table_msgs;
        self.table_bytes += o.table_bytes;
        self.stream_msgs += o.stream_msgs;
        self.stream_bytes += o.stream_bytes;
        self.lost += o.lost;
        self.blocked += o.blocked;
    }
}

/// One write made through the simulator, identified as it is stored.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId {
    pub network: NetworkId,
    pub table: String,
    pub key: String,
    pub owner: NodeId,
    pub version: u64,
}

/// When a tracked write became visible (first Create or Update event carrying it) on each
/// node, by node index. The writer's own event counts too, at `written_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visibility {
    pub writer: usize,
    pub written_at: Duration,
    pub seen: BTreeMap<usize, Duration>,
}

/// How a write spread over the nodes that should see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dissemination {
    /// Live members of the write's network, the writer excluded.
    pub targets: usize,
    /// Of those, how many saw it.
    pub reached: usize,
    /// Delays (from the write) by which 50% / 99% / 100% of the targets saw it; None while
    /// that share has not been reached.
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub all: Option<Duration>,
}

/// The delay by which `share` (0..=1) of `targets` nodes were reached, given the sorted delays
/// of those reached.
pub(crate) fn quantile(sorted: &[Duration], targets: usize, share: f64) -> Option<Duration> {
    if targets == 0 {
        return Some(Duration::ZERO);
    }
    let need = ((targets as f64) * share).ceil().max(1.0) as usize;
    sorted.get(need - 1).copied()
}
