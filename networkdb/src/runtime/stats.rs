//! Counters of the runtime, kept beside the core's [`Stats`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::Stats;

/// What [`super::Handle::stats`] returns: the core's counters plus the runtime's own.
///
/// Counters are monotonic since the node started; `watchers`, `queue_depth` and `members_up`
/// are gauges read at the time of the call.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStats {
    /// Counters of the core (decode errors are its `rejected_frames`).
    pub core: Stats,
    pub udp_bytes_in: u64,
    pub udp_bytes_out: u64,
    pub tcp_bytes_in: u64,
    pub tcp_bytes_out: u64,
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Stream frames received and handed on (opened or not).
    pub streams_in: u64,
    /// Stream frames delivered to a peer's socket.
    pub streams_out: u64,
    /// Payloads (datagram or stream) that no key of the ring opened: dropped.
    pub open_failures: u64,
    /// Payloads opened by a key removed less than `REMOVED_KEY_GRACE` ago (a rotation's
    /// stragglers).
    pub removed_key_opens: u64,
    /// Datagrams the socket refused to send.
    pub send_errors: u64,
    /// Outgoing streams that failed (connect, write or timeout) and incoming streams cut off
    /// (oversized length, read error or timeout).
    pub stream_errors: u64,
    /// Incoming connections refused because too many were open.
    pub streams_rejected: u64,
    /// Watches registered now.
    pub watchers: usize,
    /// Times a slow watcher's queue overflowed and was replaced by Reset and a snapshot.
    pub watch_overflows: u64,
    /// Entries waiting in the core's retransmit queues.
    pub queue_depth: usize,
    /// Other nodes that foca reports up.
    pub members_up: usize,
    /// Keys in the keyring (0: gossip travels in clear).
    pub keys: usize,
}

/// Counters shared between the core task and the socket tasks.
#[derive(Debug, Default)]
pub(crate) struct IoCounters {
    pub udp_bytes_in: AtomicU64,
    pub udp_bytes_out: AtomicU64,
    pub tcp_bytes_in: AtomicU64,
    pub tcp_bytes_out: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub streams_in: AtomicU64,
    pub streams_out: AtomicU64,
    pub open_failures: AtomicU64,
    pub removed_key_opens: AtomicU64,
    pub send_errors: AtomicU64,
    pub stream_errors: AtomicU64,
    pub streams_rejected: AtomicU64,
}

/// Add `n` to a counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl IoCounters {
    /// Fill the runtime counters of `out` from these.
    pub fn read_into(&self, out: &mut RuntimeStats) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.udp_bytes_in = r(&self.udp_bytes_in);
        out.udp_bytes_out = r(&self.udp_bytes_out);
        out.tcp_bytes_in = r(&self.tcp_bytes_in);
        out.tcp_bytes_out = r(&self.tcp_bytes_out);
        out.datagrams_in = r(&self.datagrams_in);
        out.datagrams_out = r(&self.datagrams_out);
        out.streams_in = r(&self.streams_in);
        out.streams_out = r(&self.streams_out);
        out.open_failures = r(&self.open_failures);
        out.removed_key_opens = r(&self.removed_key_opens);
        out.send_errors = r(&self.send_errors);
        out.stream_errors = r(&self.stream_errors);
        out.streams_rejected = r(&self.streams_rejected);
    }
}
