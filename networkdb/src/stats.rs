//! Counters of the core. The runtime adds its own (bytes, sealing) beside them.

/// Monotonic counters, readable at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub foca_in: u64,
    pub foca_out: u64,
    pub gossip_in: u64,
    pub gossip_out: u64,
    pub sync_in: u64,
    pub sync_out: u64,
    pub gossip_rounds: u64,
    pub sync_rounds: u64,
    /// Frames that failed to decode or that foca refused.
    pub rejected_frames: u64,
    pub entries_applied: u64,
    pub dropped_stale: u64,
    pub dropped_not_member: u64,
    pub dropped_reaped: u64,
    /// Own entries of an earlier life re-asserted or tombstoned.
    pub reclaimed: u64,
    pub tombstones_reaped: u64,
    pub nodes_reaped: u64,
    /// Anti-entropy requests (or parts of them) not answered: about a network the asker is
    /// not attached to, or from a peer that named no gossip address.
    pub sync_refused: u64,
}
