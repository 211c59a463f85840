use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use networkdb::NodeId;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::*;

fn net(s: &str) -> Ipv4Network {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn layout24() -> Layout {
    Layout::new(net("10.1.0.0/24"), ip("10.1.0.1"), 28)
}

fn input<'a>(me: u64, claims: &'a [Claim], used: &'a BTreeSet<Ipv4Addr>, now: u64) -> Input<'a> {
    Input {
        layout: layout24(),
        me: NodeId(me),
        claims,
        used,
        now_ms: now,
        settle_ms: 1000,
        low_water: 4,
    }
}

fn claim(block: &str, node: u64, at: u64) -> Claim {
    Claim {
        block: net(block),
        node: NodeId(node),
        at_ms: at,
    }
}

#[test]
fn a_slash_24_has_sixteen_blocks_and_never_hands_out_network_broadcast_or_gateway() {
    let l = layout24();
    assert_eq!(l.block_count(), 16);
    let first: Vec<_> = l.addresses(l.block(0)).collect();
    assert_eq!(first.first(), Some(&ip("10.1.0.2")));
    assert_eq!(first.len(), 14);
    let last: Vec<_> = l.addresses(l.block(15)).collect();
    assert_eq!(last.last(), Some(&ip("10.1.0.254")));
    assert_eq!(last.len(), 15);
    let all: usize = (0..16).map(|i| l.addresses(l.block(i)).count()).sum();
    assert_eq!(all, 256 - 3);
}

#[test]
fn a_subnet_smaller_than_a_block_is_one_block() {
    let l = Layout::new(net("10.2.0.0/29"), ip("10.2.0.1"), 28);
    assert_eq!(l.block_count(), 1);
    assert_eq!(l.block(0), net("10.2.0.0/29"));
    assert_eq!(l.addresses(l.block(0)).count(), 5);
}

#[test]
fn claim_keys_round_trip_and_garbage_is_refused() {
    let k = claim_key(net("10.1.0.16/28"), NodeId(0xab));
    assert_eq!(k, "10.1.0.16/28@00000000000000ab");
    assert_eq!(
        parse_claim_key(&k),
        Some((net("10.1.0.16/28"), NodeId(0xab)))
    );
    for bad in [
        "",
        "x",
        "10.1.0.17/28@1",
        "10.1.0.16/28",
        "10.1.0.16/40@1",
        "10.1.0.16/28@zz",
    ] {
        assert_eq!(parse_claim_key(bad), None, "{bad}");
    }
}

#[test]
fn the_first_attach_claims_a_block_and_waits_for_the_settle_period() {
    let used = BTreeSet::new();
    let a = input(1, &[], &used, 5_000).allocate();
    let Alloc::Claim { block, wait_ms } = a else {
        panic!("{a:?}")
    };
    assert_eq!(wait_ms, 1000);
    let claims = [Claim {
        block,
        node: NodeId(1),
        at_ms: 5_000,
    }];
    assert_eq!(
        input(1, &claims, &used, 5_400).allocate(),
        Alloc::Wait { ms: 600 }
    );
    let Alloc::Ip(got) = input(1, &claims, &used, 6_000).allocate() else {
        panic!()
    };
    assert!(block.contains(got));
    assert!(layout24().is_assignable(got));
}

#[test]
fn addresses_come_out_in_order_and_skip_used_ones() {
    let claims = [claim("10.1.0.0/28", 1, 0)];
    let mut used = BTreeSet::new();
    let mut got = Vec::new();
    for _ in 0..3 {
        let Alloc::Ip(a) = input(1, &claims, &used, 10_000).allocate() else {
            panic!()
        };
        used.insert(a);
        got.push(a);
    }
    assert_eq!(got, [ip("10.1.0.2"), ip("10.1.0.3"), ip("10.1.0.4")]);
}

#[test]
fn conflicting_claims_go_to_the_earliest_then_to_the_lowest_node() {
    let claims = [
        claim("10.1.0.16/28", 5, 100),
        claim("10.1.0.16/28", 3, 200),
        claim("10.1.0.32/28", 9, 100),
        claim("10.1.0.32/28", 4, 100),
    ];
    let by = by_block(&layout24(), &claims);
    assert_eq!(winner(&by[&net("10.1.0.16/28")]).unwrap().node, NodeId(5));
    assert_eq!(winner(&by[&net("10.1.0.32/28")]).unwrap().node, NodeId(4));
    let used = BTreeSet::new();
    // Every node agrees, whatever the order it sees the claims in.
    let mut reversed = claims;
    reversed.reverse();
    for me in [3, 4, 5, 9] {
        let a = input(me, &claims, &used, 10_000).own_blocks();
        let b = input(me, &reversed, &used, 10_000).own_blocks();
        assert_eq!(a, b);
    }
    let s3 = input(3, &claims, &used, 10_000).own_blocks();
    assert_eq!(s3[&net("10.1.0.16/28")], BlockState::Lost { to: NodeId(5) });
    let s9 = input(9, &claims, &used, 10_000).own_blocks();
    assert_eq!(s9[&net("10.1.0.32/28")], BlockState::Lost { to: NodeId(4) });
}

#[test]
fn a_later_claim_never_takes_over_a_settled_block() {
    let claims = [
        claim("10.1.0.0/28", 7, 1_000),
        claim("10.1.0.0/28", 1, 50_000),
    ];
    let used = BTreeSet::new();
    assert_eq!(
        input(7, &claims, &used, 60_000).own_blocks()[&net("10.1.0.0/28")],
        BlockState::Usable
    );
    assert_eq!(
        input(1, &claims, &used, 60_000).own_blocks()[&net("10.1.0.0/28")],
        BlockState::Lost { to: NodeId(7) }
    );
}

#[test]
fn a_lost_claim_is_released_only_when_no_local_endpoint_uses_it() {
    let claims = [
        claim("10.1.0.0/28", 7, 1_000),
        claim("10.1.0.0/28", 1, 2_000),
    ];
    let used = BTreeSet::new();
    let i = input(1, &claims, &used, 60_000);
    assert_eq!(i.releasable(&BTreeSet::new()), vec![net("10.1.0.0/28")]);
    assert!(i.releasable(&BTreeSet::from([ip("10.1.0.5")])).is_empty());
}

#[test]
fn the_next_block_is_claimed_before_the_current_one_runs_out() {
    let claims = [claim("10.1.0.0/28", 1, 0)];
    let mut used = BTreeSet::new();
    // 14 assignable addresses; low water 4: prefetch once 11 are used.
    for i in 2..12u8 {
        used.insert(Ipv4Addr::new(10, 1, 0, i));
    }
    assert_eq!(input(1, &claims, &used, 10_000).prefetch(), None);
    used.insert(ip("10.1.0.12"));
    let next = input(1, &claims, &used, 10_000)
        .prefetch()
        .expect("prefetch");
    assert_ne!(next, net("10.1.0.0/28"));
    // While that claim settles nothing more is claimed, and allocation still succeeds
    // without waiting.
    let claims2 = [
        claim("10.1.0.0/28", 1, 0),
        Claim {
            block: next,
            node: NodeId(1),
            at_ms: 10_000,
        },
    ];
    let i = input(1, &claims2, &used, 10_100);
    assert_eq!(i.prefetch(), None);
    assert_eq!(i.allocate(), Alloc::Ip(ip("10.1.0.13")));
}

#[test]
fn a_network_with_every_block_claimed_by_others_is_exhausted() {
    let l = layout24();
    let claims: Vec<Claim> = (0..16)
        .map(|i| Claim {
            block: l.block(i),
            node: NodeId(100 + i),
            at_ms: 1,
        })
        .collect();
    let used = BTreeSet::new();
    assert_eq!(
        input(1, &claims, &used, 10_000).allocate(),
        Alloc::Exhausted
    );
}

#[test]
fn a_full_own_block_and_no_free_block_is_exhausted() {
    let l = Layout::new(net("10.2.0.0/29"), ip("10.2.0.1"), 28);
    let claims = [Claim {
        block: net("10.2.0.0/29"),
        node: NodeId(1),
        at_ms: 0,
    }];
    let used: BTreeSet<_> = l.addresses(l.block(0)).collect();
    let i = Input {
        layout: l,
        me: NodeId(1),
        claims: &claims,
        used: &used,
        now_ms: 10_000,
        settle_ms: 1000,
        low_water: 4,
    };
    assert_eq!(i.allocate(), Alloc::Exhausted);
}

#[test]
fn requested_addresses_are_checked_and_conflicts_name_the_holder() {
    let l = layout24();
    let holders = BTreeMap::from([(ip("10.1.0.9"), "web".to_string())]);
    assert_eq!(check_requested(&l, ip("10.1.0.10"), &holders), Ok(()));
    let e = check_requested(&l, ip("10.1.0.9"), &holders).unwrap_err();
    assert_eq!(e.to_string(), "10.1.0.9 is already in use by endpoint web");
    assert!(matches!(
        check_requested(&l, ip("10.1.0.1"), &holders),
        Err(RequestError::Reserved { .. })
    ));
    assert!(matches!(
        check_requested(&l, ip("10.1.0.255"), &holders),
        Err(RequestError::Reserved { .. })
    ));
    assert!(matches!(
        check_requested(&l, ip("10.9.0.3"), &holders),
        Err(RequestError::OutsideSubnet { .. })
    ));
}

#[test]
fn claims_outside_the_layout_are_ignored() {
    let claims = [claim("10.9.0.0/28", 1, 0), claim("10.1.0.0/27", 1, 0)];
    let used = BTreeSet::new();
    assert!(input(1, &claims, &used, 10_000).own_blocks().is_empty());
}

/// Seeded simulation: nodes claim blocks at random times; claims become visible to the
/// others after a random delay shorter than the settle period. Whatever the interleaving,
/// no address is ever handed out twice and every node ends up with addresses.
#[test]
fn concurrent_claims_never_hand_out_an_address_twice() {
    for seed in 0..200u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes: Vec<u64> = (0..4).map(|_| rng.random_range(1..1000u64)).collect();
        let mut nodes = nodes;
        nodes.sort();
        nodes.dedup();
        // (claim, time it becomes visible to others)
        let mut published: Vec<(Claim, u64)> = Vec::new();
        let mut used_by: BTreeMap<Ipv4Addr, u64> = BTreeMap::new();
        let mut pending: BTreeMap<u64, u64> = BTreeMap::new(); // node -> retry time
        let mut now = 0u64;
        let mut handed = 0;
        while now < 20_000 && handed < 40 {
            now += rng.random_range(1..150u64);
            let me = nodes[rng.random_range(0..nodes.len())];
            if pending.get(&me).is_some_and(|t| *t > now) {
                continue;
            }
            let visible: Vec<Claim> = published
                .iter()
                .filter(|(c, t)| c.node == NodeId(me) || *t <= now)
                .map(|(c, _)| *c)
                .collect();
            // Addresses become visible to all at once (the endpoints table is not needed
            // for safety here: blocks alone must keep nodes apart).
            let used: BTreeSet<Ipv4Addr> = used_by.keys().copied().collect();
            let i = Input {
                layout: layout24(),
                me: NodeId(me),
                claims: &visible,
                used: &used,
                now_ms: now,
                settle_ms: 1000,
                low_water: 4,
            };
            match i.allocate() {
                Alloc::Ip(a) => {
                    assert!(
                        used_by.insert(a, me).is_none(),
                        "seed {seed}: {a} handed out twice"
                    );
                    handed += 1;
                }
                Alloc::Wait { ms } => {
                    pending.insert(me, now + ms);
                }
                Alloc::Claim { block, wait_ms } => {
                    let delay = rng.random_range(0..900u64);
                    published.push((
                        Claim {
                            block,
                            node: NodeId(me),
                            at_ms: now,
                        },
                        now + delay,
                    ));
                    pending.insert(me, now + wait_ms);
                }
                Alloc::Exhausted => break,
            }
        }
        assert!(handed > 0, "seed {seed}: nothing handed out");
        // Every address handed out lies in a block its node won.
        let all: Vec<Claim> = published.iter().map(|(c, _)| *c).collect();
        let by = by_block(&layout24(), &all);
        for (a, node) in &used_by {
            let block = by
                .keys()
                .find(|b| b.contains(*a))
                .expect("address from a claimed block");
            assert_eq!(
                winner(&by[block]).unwrap().node,
                NodeId(*node),
                "seed {seed}"
            );
        }
    }
}
