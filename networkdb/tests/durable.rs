//! Durable tables ([`Config::durable_tables`]): entries that describe the cluster survive the
//! failure, the reaping and the restart of the node that wrote them; only a delete removes
//! them. Scenario tests (tier 1) and the simulation invariant (tier 3): under crashes,
//! partitions and restarts (every node at once included), a definition created and never
//! deleted is present on every live node after healing, and one that was deleted is present on
//! none.
//!
//! Seeds are fixed and printed; `SIM_SEED` replays one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use networkdb::sim::{Restart, Sim, SimConfig};
use networkdb::{CLUSTER, Config, EntryRecord, NodeId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

const DEFS: &str = "defs";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be an unsigned integer")],
        Err(_) => defaults.to_vec(),
    }
}

fn durable_config(node_reap: Duration) -> Config {
    Config {
        durable_tables: [DEFS.to_string()].into(),
        node_reap,
        ..Config::default()
    }
}

fn formed(n: usize, seed: u64, core: Config, loss: f64) -> Sim {
    println!("seed {seed}");
    let mut s = Sim::new(SimConfig {
        nodes: n,
        seed,
        core,
        loss,
        ..SimConfig::default()
    });
    s.run_until_members_agree(secs(60.0), secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: cluster never formed: {e}"));
    s
}

fn record(s: &Sim, i: usize, table: &str, key: &str) -> Option<EntryRecord> {
    s.core(i)
        .and_then(|c| c.record(s.now(), CLUSTER, table, key))
}

fn visible(s: &Sim, i: usize, table: &str, key: &str) -> Option<Vec<u8>> {
    s.core(i)
        .and_then(|c| c.get(CLUSTER, table, key).map(<[u8]>::to_vec))
}

/// Run until node `observer` sees node `dead` down.
fn until_down(s: &mut Sim, observer: usize, dead: usize) {
    let id = s.id(dead);
    for _ in 0..300 {
        let down = s
            .core(observer)
            .is_some_and(|c| c.members().iter().any(|m| m.peer.id == id && !m.up));
        if down {
            return;
        }
        s.run_for(secs(0.1));
    }
    panic!("node {observer} never saw node {dead} down");
}

#[test]
fn a_durable_entry_stays_visible_while_its_writer_is_down_and_after_it_is_reaped() {
    let mut s = formed(3, 7, durable_config(secs(20.0)), 0.0);
    s.put(2, CLUSTER, DEFS, "net1", "blue").expect("put");
    s.put(2, CLUSTER, "plain", "rec", "x").expect("put");
    s.run_for(secs(1.0));
    s.crash(2);
    until_down(&mut s, 0, 2);
    assert_eq!(
        visible(&s, 0, DEFS, "net1").as_deref(),
        Some(b"blue".as_slice())
    );
    assert_eq!(
        visible(&s, 0, "plain", "rec"),
        None,
        "plain entries are suspended"
    );
    s.run_for(secs(25.0));
    assert!(
        s.core(0).unwrap().stats().nodes_reaped > 0,
        "node 2 was reaped"
    );
    assert_eq!(
        visible(&s, 1, DEFS, "net1").as_deref(),
        Some(b"blue".as_slice())
    );
    assert!(
        record(&s, 1, "plain", "rec").is_none(),
        "plain entries are reaped"
    );
}

#[test]
fn any_node_updates_or_deletes_a_durable_entry_and_the_delete_holds_when_the_writer_returns() {
    let mut s = formed(3, 8, durable_config(secs(20.0)), 0.0);
    s.put(2, CLUSTER, DEFS, "svc", "v1").expect("put");
    s.put(2, CLUSTER, DEFS, "net", "n1").expect("put");
    s.run_for(secs(1.0));
    s.crash(2);
    until_down(&mut s, 0, 2);
    s.put(0, CLUSTER, DEFS, "net", "n2")
        .expect("update by another node");
    assert!(s.delete(1, CLUSTER, DEFS, "svc").expect("delete"));
    s.run_for(secs(1.0));
    // The writer comes back with its saved records (older versions): they lose.
    s.restart(2, Restart::default());
    s.run_until_members_agree(s.now() + secs(30.0), secs(0.1))
        .expect("members agree");
    s.run_until_converged(s.now() + secs(8.0), secs(0.1))
        .expect("converged");
    for i in 0..3 {
        assert_eq!(visible(&s, i, DEFS, "svc"), None, "node {i}: delete holds");
        assert_eq!(
            visible(&s, i, DEFS, "net").as_deref(),
            Some(b"n2".as_slice()),
            "node {i}: update holds"
        );
    }
    assert_eq!(
        s.core(2).unwrap().stats().reclaimed,
        0,
        "nothing re-asserted"
    );
}

#[test]
fn a_restarted_node_keeps_durable_entries_it_wrote_in_an_earlier_life() {
    let mut s = formed(3, 9, durable_config(secs(600.0)), 0.0);
    s.put(1, CLUSTER, DEFS, "mine", "v").expect("put");
    s.run_for(secs(1.0));
    // Restarted without what it saved (a lost disk): peers hold its entry, newer than
    // anything it has, and it must take it rather than tombstone it as a forgotten own entry.
    s.crash(1);
    until_down(&mut s, 0, 1);
    s.lose_disk(1);
    s.restart(1, Restart::default());
    s.run_until_members_agree(s.now() + secs(30.0), secs(0.1))
        .expect("members agree");
    s.run_until_converged(s.now() + secs(8.0), secs(0.1))
        .expect("converged");
    for i in 0..3 {
        assert_eq!(
            visible(&s, i, DEFS, "mine").as_deref(),
            Some(b"v".as_slice())
        );
    }
}

#[test]
fn every_node_restarting_at_once_brings_every_definition_back() {
    let n = 4;
    let mut s = formed(n, 10, durable_config(secs(600.0)), 0.0);
    for i in 0..n {
        s.put(i, CLUSTER, DEFS, &format!("d{i}"), format!("from {i}"))
            .expect("put");
    }
    s.run_until_quiet(s.now() + secs(10.0));
    s.run_for(secs(6.0));
    for i in 0..n {
        s.crash(i);
    }
    s.run_for(secs(5.0));
    // Only nodes 1 and 3 come back: each holds everything it saw.
    s.restart(3, Restart::default());
    s.run_for(secs(2.0));
    s.restart(1, Restart::default());
    s.run_until_members_agree(s.now() + secs(60.0), secs(0.1))
        .expect("members agree");
    s.run_until_converged(s.now() + secs(8.0), secs(0.1))
        .expect("converged");
    for i in [1, 3] {
        for d in 0..n {
            assert_eq!(
                visible(&s, i, DEFS, &format!("d{d}")),
                Some(format!("from {d}").into_bytes()),
                "node {i}: d{d}"
            );
        }
    }
}

// ------------------------------------------------------------------ simulation invariant

/// What the test knows of each definition: created by a write that returned, deleted by a
/// delete that returned true (on a node where it was live, so the tombstone is newer).
#[derive(Default)]
struct Ledger {
    created: BTreeSet<String>,
    deleted: BTreeSet<String>,
    counter: usize,
}

impl Ledger {
    fn create(&mut self, s: &mut Sim, i: usize) {
        self.counter += 1;
        let key = format!("def{}", self.counter);
        if s.put(i, CLUSTER, DEFS, &key, format!("by {i}")).is_ok() {
            self.created.insert(key);
        }
    }

    /// Delete a random definition node `i` sees live.
    fn delete(&mut self, s: &mut Sim, i: usize, rng: &mut StdRng) {
        let live: Vec<String> = self
            .created
            .iter()
            .filter(|k| visible(s, i, DEFS, k).is_some())
            .cloned()
            .collect();
        let Some(key) = live.get(rng.random_range(0..live.len().max(1))) else {
            return;
        };
        if s.delete(i, CLUSTER, DEFS, key).unwrap_or(false) {
            self.deleted.insert(key.clone());
        }
    }

    /// Some writes on random live nodes of `nodes`.
    fn burst(&mut self, s: &mut Sim, nodes: &[usize], count: usize, rng: &mut StdRng) {
        for _ in 0..count {
            let live: Vec<usize> = nodes.iter().copied().filter(|i| s.is_live(*i)).collect();
            let Some(&i) = live.get(rng.random_range(0..live.len().max(1))) else {
                return;
            };
            if rng.random_bool(0.7) {
                self.create(s, i);
            } else {
                self.delete(s, i, rng);
            }
            s.run_for(secs(rng.random_range(0.01..0.2)));
        }
    }

    /// The invariant, on every live node.
    fn check(&self, s: &Sim, seed: u64, when: &str) {
        for i in s.live() {
            for key in &self.created {
                let v = visible(s, i, DEFS, key);
                if self.deleted.contains(key) {
                    assert!(
                        v.is_none(),
                        "seed {seed} ({when}): node {i} still shows deleted {key}"
                    );
                } else {
                    assert!(
                        v.is_some(),
                        "seed {seed} ({when}): node {i} lost {key} ({:?})",
                        record(s, i, DEFS, key)
                    );
                }
            }
        }
    }
}

fn converge(s: &mut Sim, seed: u64, what: &str) {
    let since = s.now();
    let members = s
        .run_until_members_agree(since + secs(120.0), secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: membership never agreed after {what}: {e}"));
    s.run_until_converged(members + secs(7.0), secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: not converged after {what}: {e}"));
}

/// Writes, a partition with crashes and restarts on both sides and writes during it, long
/// enough for the crashed nodes to be reaped; heal; then every node crashes and all but one
/// come back, in random order. After each heal the invariant holds on every live node.
fn definitions_outlive_their_writers(n: usize, seed: u64) {
    println!("definitions_outlive_their_writers n={n} seed={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = formed(n, seed, durable_config(secs(30.0)), 0.05);
    let all: Vec<usize> = (0..n).collect();
    let mut ledger = Ledger::default();
    ledger.burst(&mut s, &all, 3 * n, &mut rng);
    s.run_until_quiet(s.now() + secs(10.0));
    s.run_for(secs(6.0));

    let existing: BTreeSet<String> = ledger
        .created
        .difference(&ledger.deleted)
        .cloned()
        .collect();
    // Partition; crash one node per side (a writer), write on both sides.
    let mut order = all.clone();
    order.shuffle(&mut rng);
    let (a, b) = order.split_at(n / 2);
    let sides = [a.to_vec(), b.to_vec()];
    s.partition(&sides);
    let crashed: Vec<usize> = sides.iter().map(|side| side[side.len() - 1]).collect();
    for &c in &crashed {
        s.crash(c);
    }
    ledger.burst(&mut s, &all, 2 * n, &mut rng);
    // Past node_reap: the crashed nodes are reaped where they were seen down.
    s.run_for(secs(40.0));
    // Still partitioned: whatever was defined before and not deleted is still visible on
    // its side (nothing was suspended or reaped with its writer). Only deletes made on the
    // same side count here: check keys no one deleted at all.
    for i in s.live() {
        for key in &existing {
            if !ledger.deleted.contains(key) {
                assert!(
                    visible(&s, i, DEFS, key).is_some(),
                    "seed {seed}: node {i} lost {key} while its writer was down"
                );
            }
        }
    }
    // One crashed node comes back during the partition, and writes.
    s.restart(crashed[0], Restart::default());
    s.run_for(secs(3.0));
    ledger.burst(&mut s, &all, n, &mut rng);
    s.heal();
    for &c in &crashed[1..] {
        s.restart(c, Restart::default());
    }
    converge(&mut s, seed, "the partition healed");
    ledger.check(&s, seed, "after the partition healed");

    // Everyone goes down; all but one come back, at random times and in random order.
    ledger.burst(&mut s, &all, n, &mut rng);
    s.run_until_quiet(s.now() + secs(10.0));
    s.run_for(secs(1.0));
    for i in 0..n {
        s.crash(i);
    }
    let mut back = all.clone();
    back.shuffle(&mut rng);
    let never = back.pop().expect("n > 1");
    s.run_for(secs(3.0));
    for i in back {
        s.restart(i, Restart::default());
        s.run_for(secs(rng.random_range(0.0..3.0)));
    }
    converge(&mut s, seed, "every node restarted");
    ledger.check(
        &s,
        seed,
        &format!("after a full restart without node {never}"),
    );
    println!(
        "n={n} seed={seed}: {} definitions created, {} deleted; invariant held",
        ledger.created.len(),
        ledger.deleted.len()
    );
}

#[test]
fn definitions_created_and_never_deleted_are_on_every_live_node_after_faults_and_deleted_ones_on_none()
 {
    for seed in seeds(&[1, 2, 3, 4, 5]) {
        definitions_outlive_their_writers(5, seed);
    }
    for seed in seeds(&[11, 12, 13]) {
        definitions_outlive_their_writers(12, seed);
    }
}

/// The durable records a crashed node would restore are exactly what it held.
#[test]
fn a_crash_keeps_the_durable_records_the_node_held() {
    let mut s = formed(2, 12, durable_config(secs(600.0)), 0.0);
    s.put(0, CLUSTER, DEFS, "a", "1").expect("put");
    s.put(0, CLUSTER, "plain", "b", "2").expect("put");
    s.run_for(secs(1.0));
    let held: BTreeMap<String, u64> = s
        .core(1)
        .unwrap()
        .durable_records(s.now())
        .into_iter()
        .map(|r| (r.key, r.version))
        .collect();
    s.crash(1);
    let disk: BTreeMap<String, u64> = s
        .disk(1)
        .iter()
        .map(|r| (r.key.clone(), r.version))
        .collect();
    assert_eq!(held, disk);
    assert!(disk.contains_key("a") && !disk.contains_key("b"));
    assert!(s.disk(1).iter().all(|r| r.owner == NodeId(1)));
}
