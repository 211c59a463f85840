//! A network's retransmit queue.
//!
//! Keyed by (table, key), so a newer write of a key replaces the queued older one (the current
//! stored state is read when sending). Own writes go ahead of relayed ones; among equals the
//! fewest-sent, then newest, go first. Each item is sent in at most `budget` rounds, the eager
//! push counting as one.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Item {
    own: bool,
    left: u32,
    eager: bool,
    seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    items: BTreeMap<(String, String), Item>,
    seq: u64,
}

/// Most items one gossip round sends per network; the rest wait for the next round.
const ROUND_ITEMS: usize = 1024;

impl Queue {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn has_eager(&self) -> bool {
        self.items.values().any(|i| i.eager)
    }

    /// Queue (or re-queue) a key with a fresh budget (never less than what a queued item of
    /// the same key had left: a relay must not shorten the retransmissions of a write).
    pub fn push(&mut self, table: &str, key: &str, own: bool, budget: u32) {
        self.seq += 1;
        let k = (table.to_owned(), key.to_owned());
        let left = self.items.get(&k).map_or(0, |i| i.left);
        let item = Item {
            own,
            left: budget.max(left).max(1),
            eager: true,
            seq: self.seq,
        };
        self.items.insert(k, item);
    }

    /// Keys waiting for eager push, in send order; each is charged one transmission.
    pub fn take_eager(&mut self) -> Vec<(String, String)> {
        self.take(|i| i.eager, usize::MAX)
    }

    /// Keys for one gossip round, in send order; each is charged one transmission.
    pub fn take_round(&mut self) -> Vec<(String, String)> {
        self.take(|_| true, ROUND_ITEMS)
    }

    fn take(&mut self, pick: impl Fn(&Item) -> bool, max: usize) -> Vec<(String, String)> {
        let mut chosen: Vec<(&(String, String), &Item)> =
            self.items.iter().filter(|(_, i)| pick(i)).collect();
        chosen.sort_by_key(|(_, i)| (!i.own, std::cmp::Reverse(i.left), std::cmp::Reverse(i.seq)));
        chosen.truncate(max);
        let keys: Vec<(String, String)> = chosen.into_iter().map(|(k, _)| k.clone()).collect();
        for k in &keys {
            if let Some(i) = self.items.get_mut(k) {
                i.eager = false;
                i.left -= 1;
                if i.left == 0 {
                    self.items.remove(k);
                }
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_writes_go_before_relays_and_newer_writes_replace_queued_ones() {
        let mut q = Queue::default();
        q.push("t", "relay", false, 3);
        q.push("t", "own", true, 3);
        q.push("t", "own", true, 3);
        assert_eq!(q.len(), 2);
        let keys = q.take_eager();
        assert_eq!(keys[0].1, "own");
        assert_eq!(keys[1].1, "relay");
        assert!(!q.has_eager());
    }

    #[test]
    fn an_item_is_sent_at_most_its_budget() {
        let mut q = Queue::default();
        q.push("t", "k", true, 2);
        assert_eq!(q.take_eager().len(), 1);
        assert_eq!(q.take_round().len(), 1);
        assert!(q.is_empty());
        assert!(q.take_round().is_empty());
    }
}
