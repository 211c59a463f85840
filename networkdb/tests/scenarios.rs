//! Scenario tests of the networkdb core (testing tier 1), driven through the deterministic
//! simulator or directly with crafted frames. Seeds are fixed; `SIM_SEED` overrides them.

use std::net::SocketAddr;
use std::time::Duration;

use networkdb::sim::{FrameAction, Restart, Sim, SimConfig, addr_of};
use networkdb::wire::{self, Frame, Gossip, Message};
use networkdb::{
    ATTACH_TABLE, CLUSTER, Config, Core, EntryRecord, EventKind, NodeId, Notification, Peer,
    Runtime, Timer, Transport,
};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn seed() -> u64 {
    std::env::var("SIM_SEED").map_or(7, |s| s.parse().expect("SIM_SEED must be an integer"))
}

fn sim(n: usize, core: Config) -> Sim {
    let seed = seed();
    println!("seed {seed}");
    Sim::new(SimConfig {
        nodes: n,
        seed,
        core,
        ..SimConfig::default()
    })
}

fn formed(n: usize, core: Config) -> Sim {
    let mut s = sim(n, core);
    let seed = s.config().seed;
    s.run_until_members_agree(secs(30.0), secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: cluster never formed: {e}"));
    s
}

fn converge(s: &mut Sim, within: Duration) -> Duration {
    let seed = s.config().seed;
    let start = s.now();
    s.run_until_converged(start + within, secs(0.1))
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
        - start
}

fn record(s: &Sim, i: usize, network: &str, table: &str, key: &str) -> Option<EntryRecord> {
    s.core(i)
        .and_then(|c| c.record(s.now(), network, table, key))
}

/// An entry event as a watcher saw it: kind, old value, new value.
type Seen = (EventKind, Option<Vec<u8>>, Option<Vec<u8>>);

fn entry_events(s: &Sim, i: usize, key: &str) -> Vec<Seen> {
    s.events(i)
        .iter()
        .filter_map(|(_, n)| match n {
            Notification::Entry(e) if e.key == key => Some((e.kind, e.old.clone(), e.new.clone())),
            _ => None,
        })
        .collect()
}

/// A runtime that drops everything: for cores driven by hand with crafted frames.
#[derive(Debug, Default)]
struct Null;

impl Runtime for Null {
    fn send(&mut self, _: SocketAddr, _: Transport, _: Vec<u8>) {}
    fn schedule(&mut self, _: Duration, _: Timer) {}
    fn notify(&mut self, _: Notification) {}
}

fn lone_core(id: u64) -> Core {
    let peer = Peer {
        id: NodeId(id),
        addr: addr_of(id as usize - 1),
        generation: 1,
    };
    let mut c = Core::new(Config::default(), peer, id).expect("core");
    c.start(Duration::ZERO, &mut Null);
    c
}

fn gossip(from: u64, entries: Vec<EntryRecord>) -> Vec<u8> {
    wire::encode(&Message::Gossip(Gossip {
        from: NodeId(from),
        clock: 0,
        entries,
    }))
}

fn rec(owner: u64, version: u64, value: Option<&str>, ttl_ms: u64) -> EntryRecord {
    EntryRecord {
        network: CLUSTER.into(),
        table: "t".into(),
        key: "k".into(),
        owner: NodeId(owner),
        version,
        value: value.map(|v| v.as_bytes().to_vec()),
        ttl_ms,
    }
}

#[test]
fn the_newest_write_wins_on_every_node() {
    let mut s = formed(3, Config::default());
    s.put(0, CLUSTER, "t", "k", "first").expect("put");
    s.run_for(secs(0.5));
    s.put(2, CLUSTER, "t", "k", "second").expect("put");
    converge(&mut s, secs(7.0));
    for i in 0..3 {
        let r = record(&s, i, CLUSTER, "t", "k").expect("stored");
        assert_eq!(r.value.as_deref(), Some(b"second".as_slice()), "node {i}");
        assert_eq!(r.owner, s.id(2), "node {i}");
    }
}

#[test]
fn with_the_same_version_the_higher_owner_id_wins() {
    let mut s = sim(3, Config::default());
    // Before anyone joins, both clocks stand at the same generation: same version.
    let a = s.put(0, CLUSTER, "t", "k", "from-1").expect("put");
    let b = s.put(1, CLUSTER, "t", "k", "from-2").expect("put");
    assert_eq!(a.version, b.version, "the scenario needs equal versions");
    s.run_until_members_agree(secs(30.0), secs(0.1))
        .expect("cluster formed");
    converge(&mut s, secs(7.0));
    for i in 0..3 {
        let r = record(&s, i, CLUSTER, "t", "k").expect("stored");
        assert_eq!(r.owner, s.id(1), "node {i}: the higher owner id wins");
        assert_eq!(r.value.as_deref(), Some(b"from-2".as_slice()));
    }
}

#[test]
fn with_the_same_version_and_owner_the_fingerprint_decides_identically_everywhere() {
    // Two different writes with the same (version, owner): an owner that restarted and lost
    // its clock. Two nodes receive them in opposite orders and must keep the same one.
    let x = rec(9, 5, Some("x"), 0);
    let y = rec(9, 5, Some("y"), 0);
    let from: SocketAddr = addr_of(8);
    let mut one = lone_core(1);
    let mut two = lone_core(2);
    one.handle_frame(secs(1.0), from, &gossip(9, vec![x.clone()]), &mut Null);
    one.handle_frame(secs(1.0), from, &gossip(9, vec![y.clone()]), &mut Null);
    two.handle_frame(secs(1.0), from, &gossip(9, vec![y.clone()]), &mut Null);
    two.handle_frame(secs(1.0), from, &gossip(9, vec![x.clone()]), &mut Null);
    let kept_one = one.record(secs(1.0), CLUSTER, "t", "k").expect("stored");
    let kept_two = two.record(secs(1.0), CLUSTER, "t", "k").expect("stored");
    assert_eq!(kept_one, kept_two);
    let winner = if wire::fingerprint(&x) > wire::fingerprint(&y) {
        x
    } else {
        y
    };
    assert_eq!(kept_one.value, winner.value, "the higher fingerprint wins");
}

#[test]
fn a_tombstone_is_reaped_after_tombstone_ttl_and_an_expired_one_is_not_accepted_again() {
    let config = Config {
        tombstone_ttl: secs(3.0),
        ..Config::default()
    };
    let mut s = formed(3, config);
    s.put(0, CLUSTER, "t", "k", "v").expect("put");
    s.run_for(secs(0.5));
    assert!(s.delete(1, CLUSTER, "t", "k").expect("delete"));
    s.run_for(secs(0.5));
    for i in 0..3 {
        let r = record(&s, i, CLUSTER, "t", "k").expect("tombstone stored");
        assert_eq!(r.value, None, "node {i}");
        assert!(
            r.ttl_ms > 0 && r.ttl_ms <= 3000,
            "node {i}: residual {}",
            r.ttl_ms
        );
    }
    // tombstone_ttl plus one reap period.
    s.run_for(secs(3.0) + secs(1.1));
    for i in 0..3 {
        assert_eq!(record(&s, i, CLUSTER, "t", "k"), None, "node {i}: reaped");
        assert!(s.core(i).expect("live").stats().tombstones_reaped >= 1);
    }
    // A peer that still sends it as expired (residual 0) does not bring it back.
    let stale = rec(2, 10_000, None, 0);
    let before = s.core(2).expect("live").stats().dropped_stale;
    let frame = gossip(2, vec![stale]);
    let from = s.addr(1);
    s.call(2, |c, now, rt| c.handle_frame(now, from, &frame, rt));
    assert_eq!(record(&s, 2, CLUSTER, "t", "k"), None);
    assert_eq!(s.core(2).expect("live").stats().dropped_stale, before + 1);
    // Nor does anti-entropy among the nodes.
    s.run_for(secs(7.0));
    for i in 0..3 {
        assert_eq!(record(&s, i, CLUSTER, "t", "k"), None, "node {i}");
    }
}

#[test]
fn a_coalesced_update_reaches_watchers_as_an_update() {
    let mut s = formed(3, Config::default());
    s.record_events(true);
    s.put(0, CLUSTER, "t", "k", "v1").expect("put");
    s.run_for(secs(0.5));
    // Two writes in the same instant: only the last one travels.
    s.put(0, CLUSTER, "t", "k", "v2").expect("put");
    s.put(0, CLUSTER, "t", "k", "v3").expect("put");
    converge(&mut s, secs(7.0));
    for i in 1..3 {
        let ev = entry_events(&s, i, "k");
        assert_eq!(
            ev,
            vec![
                (EventKind::Create, None, Some(b"v1".to_vec())),
                (
                    EventKind::Update,
                    Some(b"v1".to_vec()),
                    Some(b"v3".to_vec())
                ),
            ],
            "node {i}"
        );
    }
}

#[test]
fn entries_of_a_node_declared_down_are_suspended_and_restored_without_a_new_write() {
    let mut s = formed(3, Config::default());
    s.put(2, CLUSTER, "t", "k", "v").expect("put");
    s.run_for(secs(0.5));
    s.record_events(true);
    s.partition(&[vec![0, 1], vec![2]]);
    s.run_until(s.now() + secs(15.0));
    for i in 0..2 {
        let c = s.core(i).expect("live");
        assert!(
            c.members().iter().any(|m| m.peer.id == s.id(2) && !m.up),
            "node {i} sees node 2 down"
        );
        assert_eq!(c.get(CLUSTER, "t", "k"), None, "node {i}: hidden");
        assert!(record(&s, i, CLUSTER, "t", "k").is_some(), "node {i}: kept");
        assert_eq!(
            entry_events(&s, i, "k"),
            vec![(EventKind::Delete, Some(b"v".to_vec()), None)],
            "node {i}"
        );
    }
    s.heal();
    s.run_until_members_agree(s.now() + secs(30.0), secs(0.1))
        .expect("membership agrees after the heal");
    for i in 0..2 {
        assert_eq!(
            s.core(i).expect("live").get(CLUSTER, "t", "k"),
            Some(b"v".as_slice())
        );
        assert_eq!(
            entry_events(&s, i, "k"),
            vec![
                (EventKind::Delete, Some(b"v".to_vec()), None),
                (EventKind::Create, None, Some(b"v".to_vec())),
            ],
            "node {i}"
        );
    }
    converge(&mut s, secs(7.0));
}

#[test]
fn entries_of_a_node_that_stays_down_are_reaped_after_node_reap() {
    let config = Config {
        node_reap: secs(10.0),
        ..Config::default()
    };
    let mut s = formed(3, config);
    s.put(2, CLUSTER, "t", "k", "v").expect("put");
    s.run_for(secs(0.5));
    s.crash(2);
    s.run_for(secs(6.0));
    for i in 0..2 {
        assert!(
            record(&s, i, CLUSTER, "t", "k").is_some(),
            "node {i}: kept while suspended"
        );
    }
    // Detection took at most the 6 s above; node_reap plus one reap period after it.
    s.run_for(secs(10.0) + secs(1.1));
    for i in 0..2 {
        assert_eq!(record(&s, i, CLUSTER, "t", "k"), None, "node {i}: reaped");
        assert_eq!(s.core(i).expect("live").stats().nodes_reaped, 1);
    }
    // A peer that still has the entry does not bring it back.
    let frame = gossip(2, vec![rec(3, 10_000, Some("v"), 0)]);
    let from = s.addr(1);
    s.call(0, |c, now, rt| c.handle_frame(now, from, &frame, rt));
    assert_eq!(record(&s, 0, CLUSTER, "t", "k"), None);
    assert_eq!(s.core(0).expect("live").stats().dropped_reaped, 1);
}

#[test]
fn a_restarted_node_keeps_what_it_puts_again_and_tombstones_the_rest_everywhere() {
    let mut s = formed(4, Config::default());
    for key in ["a", "b", "c"] {
        s.put(3, CLUSTER, "t", key, format!("{key}-life1"))
            .expect("put");
    }
    s.join_network(3, "blue");
    s.join_network(0, "blue");
    s.run_for(secs(0.5));
    s.put(3, "blue", "t", "d", "d-life1").expect("put");
    converge(&mut s, secs(7.0));
    s.crash(3);
    s.run_for(secs(1.0));
    // The new life remembers only "a" (with a new value) and no longer joins "blue".
    s.restart(
        3,
        Restart {
            networks: vec![],
            entries: vec![(CLUSTER.into(), "t".into(), "a".into(), b"a-life2".to_vec())],
        },
    );
    s.run_until_members_agree(s.now() + secs(30.0), secs(0.1))
        .expect("membership agrees after the restart");
    let took = converge(&mut s, secs(7.0));
    println!("converged {took:?} after membership agreed");
    for i in 0..4 {
        let a = record(&s, i, CLUSTER, "t", "a").expect("a stored");
        assert_eq!(a.value.as_deref(), Some(b"a-life2".as_slice()), "node {i}");
        for key in ["b", "c"] {
            let r = record(&s, i, CLUSTER, "t", key).expect("tombstone stored");
            assert_eq!((r.owner, r.value), (s.id(3), None), "node {i}: {key}");
        }
    }
    // Its entry in the network it did not join again is gone from that network's member.
    let d = record(&s, 0, "blue", "t", "d");
    assert!(
        d.as_ref().is_none_or(|r| r.value.is_none()),
        "node 0 still holds {d:?}"
    );
    let attach = format!("blue/{}", s.id(3));
    for i in 0..4 {
        let r = record(&s, i, CLUSTER, ATTACH_TABLE, &attach).expect("attachment stored");
        assert_eq!(r.value, None, "node {i}: the old attachment is tombstoned");
    }
    assert!(s.core(3).expect("live").stats().reclaimed >= 3);
}

#[test]
fn entries_for_a_network_whose_membership_message_was_lost_are_still_accepted_after_anti_entropy() {
    let mut s = formed(4, Config::default());
    let until = s.now() + secs(5.0);
    // Strip every `_attach` entry from gossip for the first seconds: the nodes do not learn
    // who joined "blue" by gossip, only by anti-entropy.
    s.set_filter(move |m| {
        if m.now >= until {
            return FrameAction::Deliver;
        }
        match wire::decode(m.frame, usize::MAX) {
            Ok(Frame::Table(Message::Gossip(mut g))) => {
                let before = g.entries.len();
                g.entries.retain(|e| e.table != ATTACH_TABLE);
                if g.entries.len() == before {
                    FrameAction::Deliver
                } else if g.entries.is_empty() {
                    FrameAction::Drop
                } else {
                    FrameAction::Replace(wire::encode(&Message::Gossip(g)))
                }
            }
            _ => FrameAction::Deliver,
        }
    });
    let start = s.now();
    for i in [1, 2, 3] {
        s.join_network(i, "blue");
    }
    for i in [1, 2, 3] {
        s.put(i, "blue", "t", &format!("from-{i}"), "v")
            .expect("put");
    }
    s.run_for(secs(0.5));
    let took = converge(&mut s, secs(5.0) + secs(7.0));
    println!("blue converged {:?} after the joins", s.now() - start);
    let _ = took;
    for i in [1, 2, 3] {
        let c = s.core(i).expect("live");
        for j in [1, 2, 3] {
            assert_eq!(
                c.get("blue", "t", &format!("from-{j}")),
                Some(b"v".as_slice()),
                "node {i} lacks the entry of node {j}"
            );
        }
    }
}
