//! Deterministic cluster simulations of the networkdb core (testing tier 3).
//!
//! Every test prints its seed; every failure message names it. `SIM_SEED=<u64>` replays one
//! seed instead of the defaults.
//!
//! The convergence bound asserted after faults heal is: the time membership takes to agree
//! again (measured here and printed: foca's failure detection and rejoin, not networkdb's
//! business) plus ONE anti-entropy period (`sync_interval` with its +25% jitter) plus a little
//! for frames in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use networkdb::sim::{Restart, Sim, SimConfig};
use networkdb::{CLUSTER, Config, NodeId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

const NETWORKS: [&str; 2] = ["blue", "red"];
const TABLES: [&str; 2] = ["peers", "endpoints"];
/// Frames in flight and the last gossip rounds after the sync period.
const SLACK: Duration = Duration::from_millis(500);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED must be an unsigned integer")],
        Err(_) => defaults.to_vec(),
    }
}

/// One anti-entropy period, jitter included.
fn sync_period(sim: &Sim) -> Duration {
    sim.config().core.sync_interval * 5 / 4
}

fn cluster(n: usize, seed: u64, loss: f64) -> Sim {
    Sim::new(SimConfig {
        nodes: n,
        seed,
        core: Config::default(),
        loss,
        seeds: 3,
        ..SimConfig::default()
    })
}

/// Random writes and deletes, remembering the highest (version, owner) written per key.
struct Workload {
    rng: StdRng,
    keys: usize,
    counter: u64,
    latest: BTreeMap<(String, String, String), (u64, NodeId)>,
}

impl Workload {
    fn new(seed: u64, keys: usize) -> Workload {
        Workload {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            keys,
            counter: 0,
            latest: BTreeMap::new(),
        }
    }

    /// One write on a random node of `nodes` (live ones), in a random network it is on.
    fn step(&mut self, sim: &mut Sim, nodes: &[usize]) {
        let live: Vec<usize> = nodes.iter().copied().filter(|i| sim.is_live(*i)).collect();
        let Some(&i) = live.get(self.rng.random_range(0..live.len().max(1))) else {
            return;
        };
        let nets = sim.core(i).expect("live").networks();
        let net = nets[self.rng.random_range(0..nets.len())].clone();
        let table = TABLES[self.rng.random_range(0..TABLES.len())];
        let key = format!("k{}", self.rng.random_range(0..self.keys));
        self.counter += 1;
        if self.rng.random_bool(0.8) {
            let value = format!("v{}@{}", self.counter, i);
            sim.put(i, &net, table, &key, value)
                .expect("put on a member");
        } else if !sim
            .delete(i, &net, table, &key)
            .expect("delete on a member")
        {
            return;
        }
        let rec = sim
            .core(i)
            .and_then(|c| c.record(sim.now(), &net, table, &key))
            .expect("a write stores a record");
        let slot = self.latest.entry((net, table.into(), key)).or_default();
        *slot = (*slot).max((rec.version, rec.owner));
    }

    /// `count` writes spread over `over`, on nodes of `nodes`.
    fn burst(&mut self, sim: &mut Sim, nodes: &[usize], count: usize, over: Duration) {
        let gap = over / count.max(1) as u32;
        for _ in 0..count {
            self.step(sim, nodes);
            sim.run_for(gap);
        }
    }

    /// Every live member holds, for every key written, a record at least as new as the newest
    /// write: no write was lost to an older one. (Writes of a node that has left the network
    /// since are obsolete: its entries there are dropped everywhere.)
    fn check_latest(&self, sim: &Sim) -> Result<(), String> {
        for ((net, table, key), want) in &self.latest {
            let writer = sim.index(want.1).expect("sim node");
            if !sim.members_of(net).contains(&writer) {
                continue;
            }
            for i in sim.members_of(net) {
                let rec = sim
                    .core(i)
                    .and_then(|c| c.record(sim.now(), net, table, key));
                let got = rec.as_ref().map(|r| (r.version, r.owner));
                if got < Some(*want) {
                    return Err(format!(
                        "node {i}: {net:?}/{table}/{key} holds {got:?}, older than the newest \
                         write {want:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Each node joins each network with probability 1/2; every network gets at least 2 members.
fn join_networks(sim: &mut Sim, rng: &mut StdRng) {
    let n = sim.len();
    for net in NETWORKS {
        let mut members: Vec<usize> = (0..n).filter(|_| rng.random_bool(0.5)).collect();
        while members.len() < 2.min(n) {
            let i = rng.random_range(0..n);
            if !members.contains(&i) {
                members.push(i);
            }
        }
        for i in members {
            sim.join_network(i, net);
        }
    }
}

/// Run until every node of `side` sees every node of `others` down; the time it took.
fn until_detected(sim: &mut Sim, sides: &[Vec<usize>], limit: Duration) -> Option<Duration> {
    let start = sim.now();
    loop {
        let done = sides.iter().all(|side| {
            side.iter().all(|&i| {
                sim.core(i).is_none_or(|c| {
                    c.members()
                        .iter()
                        .filter(|m| m.up)
                        .all(|m| side.contains(&sim.index(m.peer.id).expect("sim node")))
                })
            })
        });
        if done {
            return Some(sim.now() - start);
        }
        if sim.now() - start >= limit {
            return None;
        }
        sim.run_for(secs(0.1));
    }
}

/// After a fault heals: membership must agree again, then the entries converge within one
/// sync period. Returns (membership time, convergence time), both from `since`.
fn converge_after(sim: &mut Sim, since: Duration, seed: u64) -> (Duration, Duration) {
    let members = sim
        .run_until_members_agree(since + secs(90.0), secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: membership never agreed again: {e}"));
    let limit = members + sync_period(sim) + SLACK;
    let converged = sim
        .run_until_converged(limit, secs(0.1))
        .unwrap_or_else(|e| {
            panic!(
                "seed {seed}: not converged one sync period after membership agreed \
                 ({:?} after the heal): {e}",
                limit - since
            )
        });
    (members - since, converged - since)
}

/// Partition the cluster in two for longer than failure detection, write on both sides,
/// heal, stop writing: every live member of every network must converge within one sync
/// period of membership agreeing again, and no write may be lost to an older one.
fn partition_and_heal(n: usize, seed: u64) {
    println!("partition_and_heal n={n} seed={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = cluster(n, seed, 0.10);
    let joined = sim
        .run_until_members_agree(secs(60.0), secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: cluster never formed: {e}"));
    join_networks(&mut sim, &mut rng);
    sim.run_for(secs(1.0));
    let all: Vec<usize> = (0..n).collect();
    let mut wl = Workload::new(seed, 3 * n);
    wl.burst(&mut sim, &all, 4 * n, secs(3.0));

    let mut order = all.clone();
    order.shuffle(&mut rng);
    let (a, b) = order.split_at(n / 2);
    let sides = [a.to_vec(), b.to_vec()];
    sim.partition(&sides);
    let t_split = sim.now();
    // Writes on both sides while failure detection runs, then until it is complete.
    wl.burst(&mut sim, &all, 2 * n, secs(2.0));
    if until_detected(&mut sim, &sides, secs(90.0)).is_none() {
        panic!("seed {seed}: the sides never saw each other down");
    }
    // From the split (the writes above ran during detection).
    let detected = sim.now() - t_split;
    // Membership changes on both sides during the partition.
    let leaver = a[0];
    if sim
        .core(leaver)
        .is_some_and(|c| c.networks().iter().any(|x| x == "red"))
    {
        sim.leave_network(leaver, "red");
    } else {
        sim.join_network(leaver, "red");
    }
    if let Some(&joiner) = b.first() {
        sim.join_network(joiner, "blue");
    }
    wl.burst(&mut sim, &all, 2 * n, secs(3.0));
    sim.run_for(secs(1.0));

    sim.heal();
    let t_heal = sim.now();
    let (members, converged) = converge_after(&mut sim, t_heal, seed);
    wl.check_latest(&sim)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    println!(
        "n={n} seed={seed}: joined {joined:?}; partition detected in {detected:?}; after heal \
         membership agreed in {members:?}, entries converged in {converged:?}; traffic {:?}",
        sim.total_stats()
    );
}

/// What a restarted node does, and what that must lead to.
struct Plan {
    restart: Restart,
    /// (network, key) of the own entries it puts again.
    kept: BTreeSet<(String, String)>,
    /// The network it no longer joins.
    dropped: Option<String>,
    /// Own entries it does not put again (its attachment to `dropped` included).
    forgotten: usize,
}

/// Crash a fifth of the nodes while writes go on; restart half of them with part of what
/// they owned (and one network fewer); the others stay down. Every live member converges
/// within one sync period of membership agreeing; re-put entries win everywhere, entries the
/// restarted nodes no longer have are tombstoned everywhere, and the entries of nodes still
/// down stay stored but hidden.
fn crash_and_restart(n: usize, seed: u64) {
    println!("crash_and_restart n={n} seed={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = cluster(n, seed, 0.05);
    sim.run_until_members_agree(secs(60.0), secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: cluster never formed: {e}"));
    join_networks(&mut sim, &mut rng);
    sim.run_for(secs(1.0));
    let all: Vec<usize> = (0..n).collect();
    // Keys only their node writes, so that what a restart must do is exact.
    for i in 0..n {
        let nets = sim.core(i).expect("live").networks();
        for k in 0..4 {
            let net = &nets[rng.random_range(0..nets.len())];
            sim.put(i, net, "own", &format!("n{i}-{k}"), format!("life1-{k}"))
                .expect("put");
        }
    }
    let mut wl = Workload::new(seed, 2 * n);
    wl.burst(&mut sim, &all, 3 * n, secs(3.0));
    sim.run_until_quiet(sim.now() + secs(30.0));

    // Node 0 (a seed) never crashes, so there is always someone to rejoin through.
    let mut victims: Vec<usize> = (1..n).collect();
    victims.shuffle(&mut rng);
    victims.truncate((n / 5).max(1));
    let (restarted, stay_down) = victims.split_at(victims.len().div_ceil(2));
    let now = sim.now();
    let mut plans: BTreeMap<usize, Plan> = BTreeMap::new();
    for &v in restarted {
        let core = sim.core(v).expect("live");
        let mut networks: Vec<String> = core
            .networks()
            .into_iter()
            .filter(|x| x != CLUSTER)
            .collect();
        // Forget one network: what it owned there must be tombstoned too.
        let dropped = (!networks.is_empty()).then(|| networks.remove(0));
        let mut plan = Restart {
            networks: networks.clone(),
            entries: Vec::new(),
        };
        let mut kept = BTreeSet::new();
        // Its attachment to the dropped network must be reclaimed, like every own entry it
        // does not put again.
        let mut forgotten = usize::from(dropped.is_some());
        for net in std::iter::once(CLUSTER.to_owned()).chain(networks) {
            for r in core.records(now, &net) {
                if r.owner == sim.id(v)
                    && r.value.is_some()
                    && r.table == "own"
                    && rng.random_bool(0.5)
                {
                    kept.insert((net.clone(), r.key.clone()));
                    plan.entries
                        .push((net.clone(), r.table, r.key, b"life2".to_vec()));
                } else if r.owner == sim.id(v) && r.value.is_some() && r.table == "own" {
                    forgotten += 1;
                }
            }
        }
        plans.insert(
            v,
            Plan {
                restart: plan,
                kept,
                dropped,
                forgotten,
            },
        );
    }
    for &v in &victims {
        sim.crash(v);
    }
    let t_crash = sim.now();
    let survivors: Vec<usize> = all
        .iter()
        .copied()
        .filter(|i| !victims.contains(i))
        .collect();
    wl.burst(&mut sim, &survivors, 2 * n, secs(2.0));
    let detected = until_detected(&mut sim, std::slice::from_ref(&survivors), secs(90.0))
        .map(|_| sim.now() - t_crash)
        .unwrap_or_else(|| panic!("seed {seed}: crashes never detected"));
    for (&v, plan) in &plans {
        sim.restart(v, plan.restart.clone());
    }
    let t_restart = sim.now();
    let (members, converged) = converge_after(&mut sim, t_restart, seed);
    wl.check_latest(&sim)
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));

    // What the restarted nodes owned: re-put entries hold the new value, the rest are
    // tombstones, on every live member.
    let now = sim.now();
    for (&v, plan) in &plans {
        let (kept, dropped) = (&plan.kept, &plan.dropped);
        for net in std::iter::once(CLUSTER).chain(NETWORKS) {
            for i in sim.members_of(net) {
                for r in sim.core(i).expect("live").records(now, net) {
                    if r.owner != sim.id(v) || r.table != "own" {
                        continue;
                    }
                    let should_live = kept.contains(&(net.to_owned(), r.key.clone()));
                    let ok = if should_live {
                        r.value.as_deref() == Some(b"life2".as_slice())
                    } else {
                        r.value.is_none()
                    };
                    assert!(
                        ok,
                        "seed {seed}: node {i} holds {net:?}/own/{} of restarted node {v} as \
                         {:?}; expected {} (dropped network {dropped:?})",
                        r.key,
                        r.value.as_deref().map(String::from_utf8_lossy),
                        if should_live {
                            "the re-put value"
                        } else {
                            "a tombstone or nothing"
                        },
                    );
                }
            }
        }
        let reclaimed = sim.core(v).expect("restarted").stats().reclaimed;
        assert!(
            plan.forgotten == 0 || reclaimed > 0,
            "seed {seed}: restarted node {v} reclaimed nothing of the {} entries it forgot",
            plan.forgotten
        );
    }
    // Nodes still down: their entries stay stored (suspended) but are hidden everywhere.
    for &d in stay_down {
        for i in sim.live() {
            let core = sim.core(i).expect("live");
            let visible = core
                .snapshot(None, None)
                .iter()
                .filter(|e| e.owner == sim.id(d))
                .count();
            assert_eq!(
                visible, 0,
                "seed {seed}: node {i} shows entries of crashed node {d}"
            );
        }
    }
    let stored_of_down: usize = sim
        .core(0)
        .map(|c| {
            c.records(now, CLUSTER)
                .iter()
                .filter(|r| stay_down.iter().any(|&d| r.owner == sim.id(d)))
                .count()
        })
        .unwrap_or(0);
    assert!(
        stay_down.is_empty() || stored_of_down > 0,
        "seed {seed}: entries of crashed nodes were dropped before node_reap"
    );
    println!(
        "n={n} seed={seed}: crashes detected in {detected:?}; after restart membership agreed \
         in {members:?}, entries converged in {converged:?}"
    );
}

#[test]
fn three_nodes_converge_after_a_partition_heals() {
    for seed in seeds(&[1, 2, 3, 4, 5, 6, 7, 8]) {
        partition_and_heal(3, seed);
    }
}

#[test]
fn ten_nodes_converge_after_a_partition_heals() {
    for seed in seeds(&[11, 12, 13, 14, 15, 16]) {
        partition_and_heal(10, seed);
    }
}

#[test]
fn twenty_five_nodes_converge_after_a_partition_heals() {
    for seed in seeds(&[21, 22, 23, 24]) {
        partition_and_heal(25, seed);
    }
}

#[test]
fn fifty_nodes_converge_after_a_partition_heals() {
    for seed in seeds(&[51, 52]) {
        partition_and_heal(50, seed);
    }
}

#[test]
fn ten_nodes_converge_after_crashes_and_restarts() {
    for seed in seeds(&[101, 102, 103, 104, 105, 106]) {
        crash_and_restart(10, seed);
    }
}

#[test]
fn twenty_five_nodes_converge_after_crashes_and_restarts() {
    for seed in seeds(&[121, 122, 123]) {
        crash_and_restart(25, seed);
    }
}

#[test]
fn fifty_nodes_converge_after_crashes_and_restarts() {
    for seed in seeds(&[151]) {
        crash_and_restart(50, seed);
    }
}
