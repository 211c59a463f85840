//! One network's entries, with per-owner digests kept up to date on every change.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::types::{EntryRecord, NetworkId, NodeId};
use crate::wire::{self, BucketDigest, OwnerDigest};

/// A stored entry. `value == None` is a tombstone reaped at `reap_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub owner: NodeId,
    pub version: u64,
    pub value: Option<Vec<u8>>,
    pub reap_at: Duration,
    /// Fingerprint of (table, key, owner, version, value): digest contribution and final
    /// tie-break of the last-writer-wins order.
    pub fp: u64,
    /// Of a durable table (see [`crate::Config::durable_tables`]): visible whatever the
    /// owner's state, never reaped with it.
    pub durable: bool,
}

impl Stored {
    /// Last-writer-wins order: version, then owner, then content fingerprint (so that two
    /// different writes with the same version and owner, possible only across a restart that
    /// lost the clock, still resolve the same way on every node).
    pub fn order(&self) -> (u64, NodeId, u64) {
        (self.version, self.owner, self.fp)
    }
}

/// Order of a record on the wire, comparable with [`Stored::order`].
pub(crate) fn record_order(r: &EntryRecord) -> (u64, NodeId, u64) {
    (r.version, r.owner, wire::fingerprint(r))
}

/// Entries of one network, keyed by (table, key).
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub entries: BTreeMap<(String, String), Stored>,
    pub owners: BTreeMap<NodeId, OwnerDigest>,
}

impl Store {
    pub fn get(&self, table: &str, key: &str) -> Option<&Stored> {
        // BTreeMap<(String, String)> cannot be queried by (&str, &str) without allocating.
        self.entries.get(&(table.to_owned(), key.to_owned()))
    }

    /// Insert or replace, keeping the owner digests right. Returns the previous entry.
    pub fn put(&mut self, table: String, key: String, s: Stored) -> Option<Stored> {
        self.add_digest(s.owner, s.fp, 1);
        let old = self.entries.insert((table, key), s);
        if let Some(o) = &old {
            self.add_digest(o.owner, o.fp, -1);
        }
        old
    }

    pub fn remove(&mut self, table: &str, key: &str) -> Option<Stored> {
        let old = self.entries.remove(&(table.to_owned(), key.to_owned()));
        if let Some(o) = &old {
            self.add_digest(o.owner, o.fp, -1);
        }
        old
    }

    fn add_digest(&mut self, owner: NodeId, fp: u64, sign: i32) {
        let d = self.owners.entry(owner).or_insert(OwnerDigest {
            owner,
            count: 0,
            hash: 0,
        });
        if sign > 0 {
            d.count += 1;
            d.hash = d.hash.wrapping_add(fp);
        } else {
            d.count -= 1;
            d.hash = d.hash.wrapping_sub(fp);
            if d.count == 0 {
                self.owners.remove(&owner);
            }
        }
    }

    pub fn digests(&self) -> Vec<OwnerDigest> {
        self.owners.values().copied().collect()
    }

    /// Non-empty bucket digests of one owner's entries.
    pub fn buckets(&self, owner: NodeId) -> Vec<BucketDigest> {
        let mut b: BTreeMap<u16, BucketDigest> = BTreeMap::new();
        for ((t, k), s) in &self.entries {
            if s.owner != owner {
                continue;
            }
            let bucket = wire::bucket_of(t, k);
            let d = b.entry(bucket).or_insert(BucketDigest {
                bucket,
                count: 0,
                hash: 0,
            });
            d.count += 1;
            d.hash = d.hash.wrapping_add(s.fp);
        }
        b.into_values().collect()
    }

    /// Records of `owner` (all of them, or those in `buckets` when given).
    pub fn records_of(
        &self,
        network: &NetworkId,
        owner: NodeId,
        buckets: Option<&[u16]>,
        now: Duration,
    ) -> Vec<EntryRecord> {
        self.entries
            .iter()
            .filter(|(_, s)| s.owner == owner)
            .filter(|((t, k), _)| buckets.is_none_or(|b| b.contains(&wire::bucket_of(t, k))))
            .map(|((t, k), s)| to_record(network, t, k, s, now))
            .collect()
    }
}

pub(crate) fn to_record(
    network: &NetworkId,
    table: &str,
    key: &str,
    s: &Stored,
    now: Duration,
) -> EntryRecord {
    EntryRecord {
        network: network.clone(),
        table: table.to_owned(),
        key: key.to_owned(),
        owner: s.owner,
        version: s.version,
        value: s.value.clone(),
        ttl_ms: if s.value.is_none() {
            // Rounded up, so that only a tombstone that has expired (but was not reaped yet)
            // travels with 0, which receivers refuse instead of keeping it alive again.
            let left = s.reap_at.saturating_sub(now).as_nanos().div_ceil(1_000_000);
            u64::try_from(left).unwrap_or(u64::MAX)
        } else {
            0
        },
    }
}
