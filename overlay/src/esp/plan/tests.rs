//! Planner scenarios against a model of the kernel: a full key rotation, peers joining and
//! leaving, adoption of what is already there.

use std::net::Ipv4Addr;

use super::super::xfrm::{IPPROTO_ESP, POLICY_PRIORITY, XFRM_MODE_TRANSPORT, XFRM_POLICY_OUT};
use super::*;
use crate::esp::{
    AEAD_NAME, EspKey, GuardCounter, GuardState, ICV_BITS, KeyRing, REPLAY_WINDOW, SaState,
    TemplateState,
};

const REQID: u32 = 0x5357_4e31;
const A: EspNode = node(1, [10, 0, 0, 1]);
const B: EspNode = node(2, [10, 0, 0, 2]);
const C: EspNode = node(3, [10, 0, 0, 3]);

const fn node(id: u64, a: [u8; 4]) -> EspNode {
    EspNode {
        id,
        addr: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
    }
}

fn ring(tags: &[u64]) -> KeyRing {
    KeyRing::new(tags.iter().map(|t| EspKey {
        tag: *t,
        key: vec![*t as u8; 16],
    }))
    .unwrap()
}

fn desired(tags: &[u64], peers: &[EspNode]) -> EspDesired {
    EspDesired {
        local: A,
        ring: (!tags.is_empty()).then(|| ring(tags)),
        peers: peers.to_vec(),
        receive_only: vec![],
        vxlan_ports: vec![4789],
        guard: vec![GuardRule {
            port: 4789,
            vni: 42,
        }],
        idle: vec![],
        generations: Default::default(),
        renew_inbound: vec![],
        keep_unlisted: false,
    }
}

/// The kernel, as far as the planner can see it: applies ops the way the executor does.
fn apply(actual: &mut EspActual, ops: &[EspOp]) {
    for op in ops {
        match op {
            EspOp::SetGuard { rules } => {
                actual.guard = Some(GuardState {
                    rules: rules
                        .iter()
                        .flat_map(|r| {
                            [GuardHook::Output, GuardHook::Input].map(|hook| GuardCounter {
                                hook,
                                rule: *r,
                                packets: 0,
                                bytes: 0,
                            })
                        })
                        .collect(),
                    well_formed: true,
                })
            }
            EspOp::DeleteGuard => actual.guard = None,
            EspOp::AddSa(s) | EspOp::ReplaceSa(s) => {
                actual.sas.retain(|x| (x.dst, x.spi) != (s.dst, s.spi));
                actual.sas.push(SaState {
                    src: s.src,
                    dst: s.dst,
                    spi: s.spi,
                    reqid: s.reqid,
                    mode: XFRM_MODE_TRANSPORT,
                    aead: Some(AEAD_NAME.into()),
                    icv_bits: ICV_BITS,
                    key: s.key.clone(),
                    esn: true,
                    replay_window: REPLAY_WINDOW,
                    selector_empty: true,
                    packets: 0,
                    bytes: 0,
                    replay_drops: 0,
                    integrity_failed: 0,
                });
            }
            EspOp::DeleteSa { dst, spi, .. } => {
                actual.sas.retain(|x| (x.dst, x.spi) != (*dst, *spi));
            }
            // The model has no replay state.
            EspOp::ResetReplay { .. } => {}
            EspOp::SetPolicy(p) => {
                let sel = Selector4::udp_to(p.src, p.dst, p.port);
                actual.policies.retain(|x| {
                    !(x.dir == XFRM_POLICY_OUT && x.selector == sel && x.mark == (0, 0))
                });
                actual.policies.push(PolicyState {
                    dir: XFRM_POLICY_OUT,
                    selector: sel,
                    mark: (0, 0),
                    if_id: 0,
                    action: 0,
                    priority: POLICY_PRIORITY,
                    templates: vec![TemplateState {
                        src: p.src,
                        dst: p.dst,
                        proto: IPPROTO_ESP,
                        spi: p.spi,
                        reqid: p.reqid,
                        mode: XFRM_MODE_TRANSPORT,
                    }],
                });
            }
            EspOp::DeletePolicy {
                dir,
                selector,
                mark,
            } => actual
                .policies
                .retain(|x| !(x.dir == *dir && x.selector == *selector && x.mark == *mark)),
        }
    }
}

/// Plans, applies the plan to the model, and checks that planning again gives nothing.
fn step(actual: &mut EspActual, d: &EspDesired) -> Vec<EspOp> {
    let ops = plan_esp(d, actual);
    apply(actual, &ops);
    let again = plan_esp(d, actual);
    assert!(again.is_empty(), "not converged: {again:#?}");
    ops
}

fn shown(ops: &[EspOp]) -> Vec<String> {
    ops.iter().map(ToString::to_string).collect()
}

fn add_in(from: EspNode, tag: u64) -> String {
    format!(
        "add in sa {} -> {} spi {:#010x} tag {tag}",
        from.addr,
        A.addr,
        spi(tag, from.id, A.id)
    )
}

fn add_out(to: EspNode, tag: u64) -> String {
    format!(
        "add out sa {} -> {} spi {:#010x} tag {tag}",
        A.addr,
        to.addr,
        spi(tag, A.id, to.id)
    )
}

fn set_policy(to: EspNode, tag: u64) -> String {
    format!(
        "set policy out {} -> {} udp dport 4789 via spi {:#010x}",
        A.addr,
        to.addr,
        spi(tag, A.id, to.id)
    )
}

fn del_sa(from: EspNode, to: EspNode, tag: u64) -> String {
    format!(
        "delete sa {} -> {} spi {:#010x}",
        from.addr,
        to.addr,
        spi(tag, from.id, to.id)
    )
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Checks that `ops` are the groups `parts`, in group order; the order within a group is
/// not part of the contract.
fn check(ops: &[EspOp], parts: Vec<Vec<String>>) {
    let got = shown(ops);
    let want: usize = parts.iter().map(Vec::len).sum();
    assert_eq!(got.len(), want, "{got:#?}");
    let mut at = 0;
    for part in parts {
        let n = part.len();
        assert_eq!(sorted(got[at..at + n].to_vec()), sorted(part), "{got:#?}");
        at += n;
    }
}

#[test]
fn a_full_rotation_adds_receive_keys_first_then_switches_the_primary_then_prunes() {
    let mut actual = EspActual::empty(REQID);

    // One key: guard, inbound SAs, outbound SAs, policies (each group sorted).
    let ops = step(&mut actual, &desired(&[1], &[B, C]));
    check(
        &ops,
        vec![
            vec!["set guard: 4789/42".into()],
            vec![add_in(B, 1), add_in(C, 1)],
            vec![add_out(B, 1), add_out(C, 1)],
            vec![set_policy(B, 1), set_policy(C, 1)],
        ],
    );

    // A second key arrives: receive only (the primary stays the older key).
    let ops = step(&mut actual, &desired(&[1, 2], &[B, C]));
    check(&ops, vec![vec![add_in(B, 2), add_in(C, 2)]]);

    // A third: receive with it; the primary becomes key 2, which every node already
    // receives with: add its outbound SAs, switch the policies, then drop the old outbound SAs.
    let ops = step(&mut actual, &desired(&[1, 2, 3], &[B, C]));
    check(
        &ops,
        vec![
            vec![add_in(B, 3), add_in(C, 3)],
            vec![add_out(B, 2), add_out(C, 2)],
            vec![set_policy(B, 2), set_policy(C, 2)],
            vec![del_sa(A, B, 1), del_sa(A, C, 1)],
        ],
    );

    // Rotation: key 4 in, key 1 out, primary 3.
    let ops = step(&mut actual, &desired(&[2, 3, 4], &[B, C]));
    check(
        &ops,
        vec![
            vec![add_in(B, 4), add_in(C, 4)],
            vec![add_out(B, 3), add_out(C, 3)],
            vec![set_policy(B, 3), set_policy(C, 3)],
            vec![del_sa(A, B, 2), del_sa(A, C, 2)],
            vec![del_sa(B, A, 1), del_sa(C, A, 1)],
        ],
    );
    assert_eq!(actual.sas.len(), 2 * 3 + 2);
    assert_eq!(actual.policies.len(), 2);
}

#[test]
fn a_peer_that_leaves_loses_its_policy_then_its_outbound_then_its_inbound_sas() {
    let mut actual = EspActual::empty(REQID);
    step(&mut actual, &desired(&[1, 2, 3], &[B, C]));
    let ops = step(&mut actual, &desired(&[1, 2, 3], &[B]));
    let pol = format!(
        "delete policy dir 1 {}/32 -> {}/32 proto 17 dport 4789",
        A.addr, C.addr
    );
    check(
        &ops,
        vec![
            vec![pol],
            vec![del_sa(A, C, 2)],
            vec![del_sa(C, A, 1), del_sa(C, A, 2), del_sa(C, A, 3)],
        ],
    );
}

#[test]
fn what_is_already_in_the_kernel_is_adopted_without_ops() {
    let mut actual = EspActual::empty(REQID);
    let d = desired(&[1, 2, 3], &[B, C]);
    step(&mut actual, &d);
    // A restarted agent reads the same state back (in any order): nothing to do.
    actual.sas.reverse();
    actual.policies.reverse();
    if let Some(g) = &mut actual.guard {
        g.rules.reverse();
        g.rules[0].packets = 17; // counters do not matter
    }
    assert!(plan_esp(&d, &actual).is_empty());
}

#[test]
fn a_changed_sa_or_policy_is_replaced_and_anything_else_of_ours_is_removed() {
    let mut actual = EspActual::empty(REQID);
    let d = desired(&[1], &[B]);
    step(&mut actual, &d);
    // Someone altered the inbound SA's key and the policy's SPI, and left a stray SA and an
    // inbound policy with our reqid.
    let in_spi = spi(1, B.id, A.id);
    let sa = actual.sas.iter_mut().find(|s| s.spi == in_spi).unwrap();
    sa.key = crate::esp::SaKey::from_bytes(vec![9; 20]);
    actual.policies[0].templates[0].spi = 0x1234_5678;
    let mut stray = actual.policies[0].clone();
    stray.dir = 0;
    actual.policies.push(stray);
    let mut stray_sa = actual.sas[0].clone();
    stray_sa.spi = 0x0bad_0bad;
    actual.sas.push(stray_sa);
    let ops = plan_esp(&d, &actual);
    let s = shown(&ops);
    assert_eq!(s.len(), 4, "{s:#?}");
    assert!(s[0].starts_with("replace in sa") && s[0].contains(&format!("{in_spi:#010x}")));
    assert_eq!(s[1], set_policy(B, 1));
    assert!(s[2].starts_with("delete policy dir 0 "), "{}", s[2]);
    assert!(s[3].starts_with("delete sa ") && s[3].ends_with("spi 0x0bad0bad"));
    apply(&mut actual, &ops);
    assert!(plan_esp(&d, &actual).is_empty());
}

#[test]
fn without_keys_there_are_no_sas_or_policies_but_the_guard_stays() {
    let mut actual = EspActual::empty(REQID);
    step(&mut actual, &desired(&[1], &[B, C]));
    let ops = step(&mut actual, &desired(&[], &[B, C]));
    assert_eq!(ops.len(), 2 + 2 + 2, "{:#?}", shown(&ops));
    assert!(actual.sas.is_empty() && actual.policies.is_empty());
    assert!(actual.guard.is_some());
    // No encrypted network left: the guard goes, last.
    let mut d = desired(&[], &[]);
    d.guard.clear();
    assert_eq!(
        shown(&step(&mut actual, &d)),
        vec!["delete guard".to_string()]
    );
}

#[test]
fn a_new_vxlan_port_gets_its_own_policy_and_a_new_network_replaces_the_guard() {
    let mut actual = EspActual::empty(REQID);
    step(&mut actual, &desired(&[1], &[B]));
    let mut d = desired(&[1], &[B]);
    d.vxlan_ports.push(4790);
    d.guard.push(GuardRule {
        port: 4790,
        vni: 43,
    });
    let ops = step(&mut actual, &d);
    assert_eq!(
        shown(&ops),
        vec![
            "set guard: 4789/42 4790/43".to_string(),
            set_policy(B, 1).replace("4789", "4790"),
        ]
    );
}

#[test]
fn receive_only_nodes_get_inbound_sas_only_and_invalid_peers_are_skipped() {
    let mut d = desired(
        &[1, 2],
        &[B, node(9, [10, 0, 0, 1]), node(1, [10, 0, 0, 9])],
    );
    d.peers.push(node(8, [224, 0, 0, 1]));
    d.peers.push(node(2, [10, 0, 0, 22])); // duplicate id: the smaller address wins
    d.receive_only = vec![C, B];
    let want = desired_xfrm(&d, REQID);
    let ins: Vec<(u64, u64)> = want.inbound.values().map(|s| (s.peer, s.tag)).collect();
    assert_eq!(sorted_pairs(ins), vec![(2, 1), (2, 2), (3, 1), (3, 2)]);
    let outs: Vec<u64> = want.outbound.values().map(|s| s.peer).collect();
    assert_eq!(outs, vec![2]);
    assert_eq!(want.policies.len(), 1);
    assert_eq!(
        want.inbound.values().next().map(|s| s.src.octets()[3] <= 3),
        Some(true)
    );
}

#[test]
fn an_idle_node_keeps_its_sas_in_both_directions_but_loses_its_policy() {
    let mut actual = EspActual::empty(REQID);
    step(&mut actual, &desired(&[1, 2], &[B, C]));
    let mut d = desired(&[1, 2], &[B]);
    d.idle = vec![C, B]; // B is a peer: a peer is never idle
    let ops = step(&mut actual, &d);
    let pol = format!(
        "delete policy dir 1 {}/32 -> {}/32 proto 17 dport 4789",
        A.addr, C.addr
    );
    check(&ops, vec![vec![pol]]);
    assert_eq!(actual.sas.len(), 2 * (2 + 1), "{:#?}", actual.sas);
    assert_eq!(actual.policies.len(), 1);
    // Idle again a peer: only its policy comes back, naming the SA that stayed.
    let ops = step(&mut actual, &desired(&[1, 2], &[B, C]));
    check(&ops, vec![vec![set_policy(C, 1)]]);
}

#[test]
fn renewing_a_node_resets_the_replay_state_of_its_inbound_sas_in_the_kernel_only() {
    let mut actual = EspActual::empty(REQID);
    step(&mut actual, &desired(&[1, 2], &[B]));
    let mut d = desired(&[1, 2, 3], &[B, C]);
    d.renew_inbound = vec![B.id, C.id];
    let ops = plan_esp(&d, &actual);
    let reset = |from: EspNode, tag: u64| {
        format!(
            "reset replay state of sa {} -> {} spi {:#010x}",
            from.addr,
            A.addr,
            spi(tag, from.id, A.id)
        )
    };
    // C's SAs are new (added, nothing to reset); B's key-3 SA is new too.
    check(
        &ops,
        vec![
            vec![add_in(B, 3), add_in(C, 1), add_in(C, 2), add_in(C, 3)],
            vec![add_out(B, 2), add_out(C, 2)],
            vec![reset(B, 1), reset(B, 2)],
            vec![set_policy(B, 2), set_policy(C, 2)],
            vec![del_sa(A, B, 1)],
        ],
    );
    apply(&mut actual, &ops);
    d.renew_inbound.clear();
    assert!(plan_esp(&d, &actual).is_empty());
}

#[test]
fn keeping_unlisted_state_deletes_nothing_but_adds_what_is_missing() {
    let mut actual = EspActual::empty(REQID);
    step(&mut actual, &desired(&[1], &[B, C]));
    let before = (actual.sas.len(), actual.policies.len());
    // Right after a restart: the tables know only B so far, and a new key is set.
    let mut d = desired(&[1, 2], &[B]);
    d.keep_unlisted = true;
    let ops = step(&mut actual, &d);
    check(&ops, vec![vec![add_in(B, 2)]]);
    assert_eq!(
        (actual.sas.len(), actual.policies.len()),
        (before.0 + 1, before.1)
    );
    // Once the tables are complete, what is not desired goes.
    let ops = step(&mut actual, &desired(&[1, 2], &[B]));
    assert_eq!(
        ops.len(),
        1 + 2,
        "C's policy, outbound and inbound SA: {ops:#?}"
    );
}

fn sorted_pairs(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort();
    v
}

#[test]
fn an_spi_collision_between_two_peers_keeps_one_and_reports_the_other() {
    // spi(1, 35298, 1) == spi(1, 74012, 1) == 0x238b2636 (found by search; see derive.rs).
    let p = node(35298, [10, 1, 0, 1]);
    let q = node(74012, [10, 1, 0, 2]);
    assert_eq!(spi(1, p.id, A.id), spi(1, q.id, A.id));
    let d = desired(&[1], &[p, q]);
    let want = desired_xfrm(&d, REQID);
    assert_eq!(want.inbound.len(), 1);
    assert_eq!(
        want.conflicts,
        vec![SpiConflict {
            spi: 0x238b_2636,
            kept: (35298, 1),
            skipped: (74012, 1),
        }]
    );
    assert_eq!(spi_conflicts(&d), want.conflicts);
    // Outbound is unaffected (different destinations).
    assert_eq!(want.outbound.len(), 2);
}

#[test]
fn both_ends_of_a_pair_derive_matching_sas() {
    let ab = desired_xfrm(&desired(&[1, 2, 3], &[B]), REQID);
    let mut db = desired(&[1, 2, 3], &[A]);
    db.local = B;
    let ba = desired_xfrm(&db, REQID);
    // A's outbound SA is one of B's inbound SAs, with the same key, and vice versa.
    for (mine, theirs) in [(&ab, &ba), (&ba, &ab)] {
        for out in mine.outbound.values() {
            let twin = theirs
                .inbound
                .get(&(out.dst, out.spi))
                .expect("peer has it");
            assert_eq!((twin.src, twin.key.clone()), (out.src, out.key.clone()));
        }
    }
}
