use networkdb::NodeId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::*;

fn def(id: &str, name: &str, vni: u32, subnet: &str, creator: u64, created: u64) -> NetworkDef {
    let subnet: Ipv4Network = subnet.parse().unwrap();
    NetworkDef {
        id: id.into(),
        name: name.into(),
        vni,
        subnet_addr: subnet.network(),
        subnet_prefix: subnet.prefix(),
        gateway: pools::first_host(subnet),
        mtu: 0,
        encrypted: false,
        creator: NodeId(creator),
        created,
        revision: 0,
        note: String::new(),
    }
}

#[test]
fn the_older_definition_wins_a_name_clash_and_the_younger_is_renamed() {
    let a = def("aaaa1111", "blue", 4096, "10.128.0.0/24", 2, 100);
    let b = def("bbbb2222", "blue", 4097, "10.128.1.0/24", 1, 200);
    let all = vec![b.clone(), a.clone()];
    let v = resolve(&all);
    assert_eq!(v["aaaa1111"], Verdict::Accepted);
    assert_eq!(
        v["bbbb2222"],
        Verdict::NameTaken {
            by: "aaaa1111".into()
        }
    );
    let fixed = repair(&b, &v["bbbb2222"], &all, &Pools::default(), &[]).unwrap();
    assert_eq!(fixed.name, "blue-bbbb2222");
    assert_eq!(fixed.revision, 1);
    assert!(fixed.note.contains("renamed"), "{}", fixed.note);
    let all = vec![a, fixed];
    assert!(resolve(&all).values().all(Verdict::is_accepted));
}

#[test]
fn equal_creation_stamps_are_broken_by_the_lower_node_id() {
    let a = def("a", "x", 4096, "10.128.0.0/24", 9, 100);
    let b = def("b", "y", 4096, "10.128.1.0/24", 3, 100);
    let v = resolve(&[a, b]);
    assert_eq!(v["b"], Verdict::Accepted);
    assert_eq!(v["a"], Verdict::VniTaken { by: "b".into() });
}

#[test]
fn a_vni_clash_reallocates_the_vni_and_a_subnet_clash_the_subnet() {
    let a = def("a", "x", 4096, "10.128.0.0/24", 1, 100);
    let b = def("b", "y", 4096, "10.128.1.0/24", 2, 200);
    let c = def("c", "z", 5000, "10.128.0.0/16", 3, 300);
    let all = vec![a.clone(), b.clone(), c.clone()];
    let v = resolve(&all);
    assert_eq!(v["b"], Verdict::VniTaken { by: "a".into() });
    assert_eq!(v["c"], Verdict::SubnetTaken { by: "a".into() });
    let p = Pools::default();
    let b2 = repair(&b, &v["b"], &all, &p, &[]).unwrap();
    assert_eq!(b2.vni, 4097);
    assert_eq!(b2.subnet(), b.subnet());
    let c2 = repair(&c, &v["c"], &all, &p, &[]).unwrap();
    assert_eq!(c2.subnet().to_string(), "10.128.2.0/24");
    assert_eq!(c2.gateway.to_string(), "10.128.2.1");
    assert!(resolve(&[a, b2, c2]).values().all(Verdict::is_accepted));
}

#[test]
fn a_clash_with_a_loser_does_not_count() {
    // b loses to a (name); c clashes only with b's subnet: c stays.
    let a = def("a", "n", 4096, "10.128.0.0/24", 1, 100);
    let b = def("b", "n", 4097, "10.128.1.0/24", 1, 200);
    let c = def("c", "m", 4098, "10.128.1.0/24", 1, 300);
    let v = resolve(&[a, b, c]);
    assert!(v["c"].is_accepted());
    assert!(!v["b"].is_accepted());
}

#[test]
fn repairs_avoid_host_routes() {
    let a = def("a", "x", 4096, "10.128.0.0/24", 1, 100);
    let b = def("b", "y", 4097, "10.128.0.0/24", 2, 200);
    let all = vec![a, b.clone()];
    let v = resolve(&all);
    let routes: Vec<Ipv4Network> = vec!["10.128.1.0/24".parse().unwrap()];
    let b2 = repair(&b, &v["b"], &all, &Pools::default(), &routes).unwrap();
    assert_eq!(b2.subnet().to_string(), "10.128.2.0/24");
}

/// Seeded: many agents create networks concurrently from the same view (so they all pick the
/// same first-free values and names clash). Repeatedly applying every creator's repair,
/// in a random order, converges to a state where every definition is accepted, the oldest
/// never changed, and verdicts are the same whatever order the definitions are listed in.
#[test]
fn concurrent_creations_converge_whatever_the_order() {
    let pools = Pools::default();
    for seed in 0..100u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(2..8);
        let names = ["a", "b", "c"];
        let mut defs: Vec<NetworkDef> = (0..n)
            .map(|i| {
                def(
                    &format!("{seed:04}{i:04}"),
                    names[rng.random_range(0..names.len())],
                    4096 + rng.random_range(0..2u32),
                    ["10.128.0.0/24", "10.128.1.0/24", "10.128.0.0/23"][rng.random_range(0..3)],
                    rng.random_range(1..4u64),
                    rng.random_range(100..103u64),
                )
            })
            .collect();
        let oldest = defs
            .iter()
            .min_by(|a, b| a.age().cmp(&b.age()))
            .unwrap()
            .clone();
        for _round in 0..20 {
            let mut shuffled = defs.clone();
            shuffled.shuffle(&mut rng);
            let v = resolve(&shuffled);
            assert_eq!(v, resolve(&defs), "seed {seed}: order matters");
            if v.values().all(Verdict::is_accepted) {
                break;
            }
            // Every creator repairs its losers (each from the same snapshot).
            let snapshot = defs.clone();
            for d in defs.iter_mut() {
                if !v[&d.id].is_accepted() {
                    *d = repair(d, &v[&d.id], &snapshot, &pools, &[]).unwrap();
                }
            }
        }
        let v = resolve(&defs);
        assert!(
            v.values().all(Verdict::is_accepted),
            "seed {seed}: did not converge: {v:?}"
        );
        assert!(defs.contains(&oldest), "seed {seed}: the oldest changed");
    }
}
