//! Tunables of the core. Defaults are chosen for a LAN of up to a few hundred nodes.

use std::collections::BTreeSet;
use std::time::Duration;

/// Configuration of a [`crate::Core`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Largest datagram payload (before sealing) the core emits. Larger messages go by stream.
    pub max_packet: usize,
    /// Largest stream message accepted or sent.
    pub max_stream: usize,
    /// Members each own write is pushed to at once, and each gossip round sends to.
    pub fanout: usize,
    /// Interval of gossip rounds while anything is queued. No rounds run while idle.
    pub gossip_interval: Duration,
    /// A queued entry is sent in `retransmit_mult * ceil(log10(n + 1))` rounds (n = members
    /// of its network), at least once.
    pub retransmit_mult: u32,
    /// Period of anti-entropy with one random peer per network (jittered +-25%).
    pub sync_interval: Duration,
    /// How long tombstones are kept.
    pub tombstone_ttl: Duration,
    /// How long entries of a node that is down are kept (suspended) before they are dropped.
    pub node_reap: Duration,
    /// Period of the reaper that expires tombstones and reaps down nodes.
    pub reap_interval: Duration,
    /// foca's probe period (failure detection).
    pub probe_period: Duration,
    /// foca's direct probe timeout.
    pub probe_rtt: Duration,
    /// Time a suspect member has to refute before it is declared down.
    pub suspect_to_down: Duration,
    /// Interval at which seeds are re-announced to while none of them is a live member.
    pub rejoin_interval: Duration,
    /// Cluster-scope tables whose entries are *durable*: they describe the cluster, not a
    /// node, so they are never suspended or reaped because their writer failed; only a
    /// delete (a tombstone kept for `durable_tombstone_ttl`) removes them. Any node may
    /// update or delete them (last writer wins). Every node of a cluster must list the same
    /// tables. See [`crate::Core::restore`] for how they survive restarts.
    pub durable_tables: BTreeSet<String>,
    /// How long tombstones of durable tables are kept: a node that comes back after being
    /// away for longer may bring back a durable entry deleted meanwhile.
    pub durable_tombstone_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_packet: 1400,
            max_stream: 64 << 20,
            fanout: 3,
            gossip_interval: Duration::from_millis(50),
            retransmit_mult: 3,
            sync_interval: Duration::from_secs(5),
            tombstone_ttl: Duration::from_secs(30 * 60),
            node_reap: Duration::from_secs(30 * 60),
            reap_interval: Duration::from_secs(1),
            probe_period: Duration::from_millis(400),
            probe_rtt: Duration::from_millis(200),
            suspect_to_down: Duration::from_millis(1200),
            rejoin_interval: Duration::from_secs(2),
            durable_tables: BTreeSet::new(),
            durable_tombstone_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl Config {
    /// foca's configuration for a cluster of about `cluster_size` nodes: the number of times
    /// a membership update is retransmitted grows with `log10` of the size (as memberlist's
    /// `RetransmitMult`), so the core re-derives it as the cluster grows or shrinks.
    pub(crate) fn foca(&self, cluster_size: usize) -> foca::Config {
        let size = u32::try_from(cluster_size.max(2)).unwrap_or(u32::MAX);
        let mut c = foca::Config::new_lan(std::num::NonZeroU32::new(size).expect("non-zero"));
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down;
        // One byte of every datagram is the frame tag.
        c.max_packet_size = std::num::NonZeroUsize::new(self.max_packet.saturating_sub(1).max(64))
            .expect("non-zero");
        c.remove_down_after = Some(Duration::from_secs(24 * 3600));
        c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: std::num::NonZeroUsize::new(2).expect("non-zero"),
        });
        // Membership updates (suspicions, and above all their refutations) go out every
        // 100 ms to 4 members while any is queued (foca sends nothing when none is), so a
        // refutation reaches every observer well within `suspect_to_down` under loss.
        // Five indirect probes instead of three: at 5% datagram loss a direct probe fails about
        // one time in ten, and each indirect path (4 datagrams) one time in five, so a live
        // member is suspected after 0.2^5 instead of 0.2^3 of failed probes (~30x fewer false
        // suspicions, the only source of false "down"). They cost traffic only when a direct
        // probe fails.
        c.num_indirect_probes = std::num::NonZeroUsize::new(5).expect("non-zero");
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: Duration::from_millis(100),
            num_members: std::num::NonZeroUsize::new(4).expect("non-zero"),
        });
        c
    }

    /// Check the invariants the core relies on; the error names the field.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field, reason: &str| {
            Err(crate::Error::Invalid {
                field,
                reason: reason.into(),
            })
        };
        if self.max_packet < 512 {
            return bad("max_packet", "must be at least 512 bytes");
        }
        if self.fanout == 0 {
            return bad("fanout", "must be at least 1");
        }
        if self.probe_rtt >= self.probe_period {
            return bad("probe_rtt", "must be shorter than probe_period");
        }
        if self.gossip_interval.is_zero() || self.sync_interval.is_zero() {
            return bad("gossip_interval", "intervals must be non-zero");
        }
        if self
            .durable_tables
            .iter()
            .any(|t| t.is_empty() || t.starts_with('_'))
        {
            return bad(
                "durable_tables",
                "table names must be non-empty and not start with '_'",
            );
        }
        if self.durable_tombstone_ttl < self.tombstone_ttl {
            return bad("durable_tombstone_ttl", "must be at least tombstone_ttl");
        }
        Ok(())
    }

    /// Whether entries of `table` in `network` are durable (see [`Config::durable_tables`]).
    pub fn is_durable(&self, network: &str, table: &str) -> bool {
        network == crate::types::CLUSTER && self.durable_tables.contains(table)
    }

    /// How long a tombstone of `table` in `network` is kept.
    pub fn tombstone_ttl_of(&self, network: &str, table: &str) -> Duration {
        if self.is_durable(network, table) {
            self.durable_tombstone_ttl
        } else {
            self.tombstone_ttl
        }
    }
}
