//! The IPsec key ring: up to three keys from the orchestrator, each with a Lamport tag.
//!
//! Contract (who calls, what must hold):
//! * The orchestrator hands the agent the whole ring on every change (`SetKeys`); the agent
//!   builds a [`KeyRing`] with [`KeyRing::new`] and puts it in
//!   [`EspDesired::ring`](super::EspDesired::ring). A ring that fails validation is never
//!   applied: the previous one stays in the kernel.
//! * Tags are the keys' Lamport times: a newer key has a larger tag. Rotation appends a key
//!   with a new largest tag and drops the smallest one.
//! * The **primary** (the key used to send) is the second-newest key when the ring holds at
//!   least two, else the only key. So a key is installed everywhere for receiving one
//!   rotation before anyone sends with it, and the key that stops being primary is still
//!   accepted until the rotation after.

use std::collections::BTreeMap;
use std::fmt;

use crate::Error;

/// Most keys a ring holds.
pub const MAX_KEYS: usize = 3;

/// Accepted key lengths in bytes: AES-128 and AES-256. The 4-byte salt that
/// `rfc4106(gcm(aes))` needs is not carried by the orchestrator: it is derived per SA with
/// the SA's key (see [`sa_key`](super::sa_key)).
pub const KEY_LENGTHS: [usize; 2] = [16, 32];

/// One key of the ring. `Debug` never shows the key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct EspKey {
    /// Lamport time of the key (larger = newer); unique within a ring. Part of the SPI and
    /// of the per-SA key derivation, so every node must receive the same tag for a key.
    pub tag: u64,
    /// 16 or 32 secret bytes.
    pub key: Vec<u8>,
}

impl fmt::Debug for EspKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EspKey")
            .field("tag", &self.tag)
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .finish()
    }
}

/// A validated ring of 1 to [`MAX_KEYS`] keys, ordered oldest first.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyRing {
    keys: Vec<EspKey>,
}

impl KeyRing {
    /// Validates and orders the keys (any input order).
    ///
    /// Errors ([`Error::Invalid`], naming the key by tag): the ring is empty; it has more than
    /// [`MAX_KEYS`] keys; a tag appears twice; a key is not 16 or 32 bytes long; a key is all
    /// zeros; two tags carry the same key bytes.
    pub fn new(keys: impl IntoIterator<Item = EspKey>) -> Result<KeyRing, Error> {
        let mut by_tag: BTreeMap<u64, EspKey> = BTreeMap::new();
        let mut count = 0usize;
        for k in keys {
            count += 1;
            let invalid = |reason: String| Error::Invalid {
                object: format!("IPsec key with tag {}", k.tag),
                reason,
            };
            if !KEY_LENGTHS.contains(&k.key.len()) {
                return Err(invalid(format!(
                    "key length must be 16 or 32 bytes, got {}",
                    k.key.len()
                )));
            }
            if k.key.iter().all(|b| *b == 0) {
                return Err(invalid("key is all zeros".into()));
            }
            if let Some(other) = by_tag.values().find(|o| o.key == k.key) {
                return Err(invalid(format!(
                    "key is identical to the key with tag {}",
                    other.tag
                )));
            }
            if by_tag.contains_key(&k.tag) {
                return Err(invalid("tag appears twice in the ring".into()));
            }
            by_tag.insert(k.tag, k);
        }
        let ring = || "IPsec key ring".to_string();
        if count == 0 {
            return Err(Error::Invalid {
                object: ring(),
                reason: "the ring is empty".into(),
            });
        }
        if count > MAX_KEYS {
            return Err(Error::Invalid {
                object: ring(),
                reason: format!("more than {MAX_KEYS} keys ({count})"),
            });
        }
        Ok(KeyRing {
            keys: by_tag.into_values().collect(),
        })
    }

    /// The keys, oldest (smallest tag) first.
    pub fn keys(&self) -> &[EspKey] {
        &self.keys
    }

    /// The tags, oldest first.
    pub fn tags(&self) -> Vec<u64> {
        self.keys.iter().map(|k| k.tag).collect()
    }

    /// The key used to send: the second-newest when there are at least two, else the only
    /// one.
    pub fn primary(&self) -> &EspKey {
        let n = self.keys.len();
        &self.keys[n.saturating_sub(2)]
    }

    /// The key with tag `tag`.
    pub fn get(&self, tag: u64) -> Option<&EspKey> {
        self.keys.iter().find(|k| k.tag == tag)
    }

    /// What changes from `self` to `next` (for logs and metrics; the planner works from
    /// desired versus actual state and does not need it).
    pub fn diff(&self, next: &KeyRing) -> RingDiff {
        RingDiff::between(Some(self), Some(next))
    }
}

/// The difference between two rings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingDiff {
    /// Tags in the new ring only (installed for receiving first).
    pub added: Vec<u64>,
    /// Tags in the old ring only (their SAs are removed last).
    pub pruned: Vec<u64>,
    /// Tags in both rings whose key bytes differ (an orchestrator error: the SAs of that tag
    /// are replaced, which can drop packets in flight).
    pub changed: Vec<u64>,
    /// `(old, new)` primary tag when the primary changes; `None` for no change (or no ring on
    /// either side).
    pub primary: Option<(u64, u64)>,
}

impl RingDiff {
    /// The difference from `old` to `new`; `None` stands for "no ring".
    pub fn between(old: Option<&KeyRing>, new: Option<&KeyRing>) -> RingDiff {
        let empty: &[EspKey] = &[];
        let o = old.map_or(empty, |r| r.keys());
        let n = new.map_or(empty, |r| r.keys());
        let mut d = RingDiff::default();
        for k in n {
            match o.iter().find(|x| x.tag == k.tag) {
                None => d.added.push(k.tag),
                Some(x) if x.key != k.key => d.changed.push(k.tag),
                Some(_) => {}
            }
        }
        for k in o {
            if !n.iter().any(|x| x.tag == k.tag) {
                d.pruned.push(k.tag);
            }
        }
        if let (Some(o), Some(n)) = (old, new)
            && o.primary().tag != n.primary().tag
        {
            d.primary = Some((o.primary().tag, n.primary().tag));
        }
        d
    }

    /// `true` when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.pruned.is_empty()
            && self.changed.is_empty()
            && self.primary.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: u64, byte: u8) -> EspKey {
        EspKey {
            tag,
            key: vec![byte; 16],
        }
    }

    fn reason(r: Result<KeyRing, Error>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_ring_is_ordered_oldest_first_whatever_the_input_order() {
        let r = KeyRing::new([key(9, 3), key(7, 1), key(8, 2)]).unwrap();
        assert_eq!(r.tags(), vec![7, 8, 9]);
        assert_eq!(r.get(8).unwrap().key, vec![2; 16]);
        assert!(r.get(6).is_none());
    }

    #[test]
    fn the_primary_is_the_second_newest_key() {
        assert_eq!(KeyRing::new([key(1, 1)]).unwrap().primary().tag, 1);
        assert_eq!(
            KeyRing::new([key(1, 1), key(2, 2)]).unwrap().primary().tag,
            1
        );
        assert_eq!(
            KeyRing::new([key(3, 3), key(1, 1), key(2, 2)])
                .unwrap()
                .primary()
                .tag,
            2
        );
    }

    #[test]
    fn an_empty_ring_is_rejected() {
        assert!(reason(KeyRing::new([])).contains("the ring is empty"));
    }

    #[test]
    fn more_than_three_keys_are_rejected() {
        let e = reason(KeyRing::new([key(1, 1), key(2, 2), key(3, 3), key(4, 4)]));
        assert!(e.contains("more than 3 keys (4)"), "{e}");
    }

    #[test]
    fn a_duplicate_tag_is_rejected_and_named() {
        let e = reason(KeyRing::new([key(5, 1), key(5, 2)]));
        assert!(e.contains("tag 5") && e.contains("appears twice"), "{e}");
    }

    #[test]
    fn keys_of_other_lengths_than_16_or_32_bytes_are_rejected() {
        for len in [0, 15, 20, 24, 33] {
            let e = reason(KeyRing::new([EspKey {
                tag: 4,
                key: vec![1; len],
            }]));
            assert!(
                e.contains("tag 4") && e.contains(&format!("must be 16 or 32 bytes, got {len}")),
                "{e}"
            );
        }
        assert!(
            KeyRing::new([EspKey {
                tag: 4,
                key: vec![1; 32]
            }])
            .is_ok()
        );
    }

    #[test]
    fn an_all_zero_key_and_a_key_reused_under_two_tags_are_rejected() {
        assert!(reason(KeyRing::new([key(1, 0)])).contains("all zeros"));
        let e = reason(KeyRing::new([key(1, 7), key(2, 7)]));
        assert!(e.contains("tag 2") && e.contains("identical to the key with tag 1"));
    }

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let r = KeyRing::new([key(1, 0xab)]).unwrap();
        let s = format!("{r:?}");
        assert!(s.contains("<16 bytes>") && !s.contains("171"), "{s}");
    }

    #[test]
    fn a_rotation_diff_names_the_added_key_the_primary_switch_and_the_pruned_key() {
        let old = KeyRing::new([key(1, 1), key(2, 2), key(3, 3)]).unwrap();
        let new = KeyRing::new([key(2, 2), key(3, 3), key(4, 4)]).unwrap();
        let d = old.diff(&new);
        assert_eq!(
            d,
            RingDiff {
                added: vec![4],
                pruned: vec![1],
                changed: vec![],
                primary: Some((2, 3)),
            }
        );
        assert!(old.diff(&old).is_empty());
        let first = RingDiff::between(None, Some(&old));
        assert_eq!(first.added, vec![1, 2, 3]);
        assert_eq!(first.primary, None);
        let changed = KeyRing::new([key(1, 1), key(2, 9), key(3, 3)]).unwrap();
        assert_eq!(old.diff(&changed).changed, vec![2]);
    }
}
