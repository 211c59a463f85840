//! Tier-4 tests of encrypted networks and key rings on THIS machine's kernel, which has no
//! IPsec ESP: an encrypted network can be defined, every host installs the guard that drops
//! clear VXLAN of its VNI (on both VXLAN ports), an attach to it is refused with the kernel's
//! reason, status and metrics say so, and an unencrypted network on the same hosts works.
//! Key rings are set through the CLI, refused when invalid (naming the field), kept across a
//! restart; the gossip ring is rotated step by step on a running cluster without losing it.
//!
//! ESP itself (SAs, policies, pings over encrypted VXLAN, rotation under traffic) needs a
//! kernel with ESP: `cluster-tests/tests/vm_*.rs` run it in VMs.
//!
//! Needs root and the lab tools; otherwise prints "skipped: <reason>".

use std::time::Duration;

use cluster_tests::harness::cluster_with;

const K1: &str = "000102030405060708090a0b0c0d0e0f";
const K2: &str = "101112131415161718191a1b1c1d1e1f";
const K3: &str = "202122232425262728292a2b2c2d2e2f";
const D1: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
const PROPAGATION: Duration = Duration::from_secs(15);

/// (chain, port, vni) of every drop rule in an `nft list table inet swarmnet_esp` listing.
fn guarded(listing: &str) -> Vec<(&'static str, u16, u32)> {
    let mut chain = "";
    let mut out = Vec::new();
    for line in listing.lines().map(str::trim) {
        if line.starts_with("chain output") {
            chain = "output";
        } else if line.starts_with("chain input") {
            chain = "input";
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |w: &str| {
            words
                .iter()
                .position(|x| *x == w)
                .and_then(|i| words.get(i + 1))
        };
        let (Some(port), Some(vni)) = (after("dport"), after("@th,96,24")) else {
            continue;
        };
        let vni = match vni.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => vni.parse().ok(),
        };
        if let (Ok(port), Some(vni)) = (port.parse(), vni)
            && line.ends_with("drop")
        {
            out.push((chain, port, vni));
        }
    }
    out
}

#[test]
fn serial_encrypted_networks_fail_closed_on_a_kernel_without_esp_and_key_rings_rotate() {
    let Some(mut c) = cluster_with("esp", |o| {
        o.agent_args.extend(["--gossip-key".into(), K1.into()]);
    }) else {
        return;
    };
    let status = c.cli_ok(0, &["cluster", "status"]).expect("status");
    println!("{status}");
    assert!(
        status.contains("encrypted networks cannot attach here"),
        "status says ESP is missing: {status}"
    );
    let st = c.cli_json(1, &["cluster", "status"]).expect("status");
    assert_eq!(st["esp"], false);
    assert!(!st["esp_note"].as_str().unwrap_or("").is_empty(), "{st}");

    // Invalid rings are refused naming the field.
    let bad = c
        .cli(0, &["cluster", "keys", "set", "--dataplane", "1:0011"])
        .expect("cli");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("dataplane: keys[0].key: must be 16 or 32 bytes (got 2)"),
        "{err}"
    );
    // Dataplane keys on every node.
    for h in 0..3 {
        c.cli_ok(
            h,
            &["cluster", "keys", "set", "--dataplane", &format!("1:{D1}")],
        )
        .expect("keys set");
    }

    let enc = c
        .create_network(0, "secret", &["--encrypted"])
        .expect("an encrypted network can be defined");
    let clear = c.create_network(0, "open", &[]).expect("network create");
    // Every host drops clear VXLAN of the encrypted VNI, on both ports, whether or not it is
    // on the network.
    for h in 0..3 {
        let netns = c.hosts[h].netns.clone();
        let mut last = String::new();
        c.wait_until(PROPAGATION, "the guard lists the encrypted VNI", || {
            let out = c
                .lab
                .exec(&netns, &["nft", "list", "table", "inet", "swarmnet_esp"])?;
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            last = text.clone();
            let rules = guarded(&text);
            let has = |port: u16| {
                rules.contains(&("output", port, enc.vni))
                    && rules.contains(&("input", port, enc.vni))
            };
            Ok(has(4789) && has(4790) && !rules.iter().any(|r| r.2 == clear.vni))
        })
        .unwrap_or_else(|e| panic!("host {}: {e:#}; last listing:\n{last}", h + 1));
    }
    let guard = c
        .lab
        .exec_ok(
            &c.hosts[1].netns,
            &["nft", "list", "table", "inet", "swarmnet_esp"],
        )
        .expect("guard");
    println!("host 2's guard:\n{guard}");

    // Attaching is refused with the kernel's reason; nothing is left behind.
    let ns = c.lab.add_container(1, "s1").expect("namespace");
    let path = ns.display().to_string();
    let out = c
        .cli(
            1,
            &[
                "endpoint", "attach", "secret", "--netns", &path, "--name", "s1",
            ],
        )
        .expect("cli");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "attach to an encrypted network must fail here"
    );
    assert!(
        err.contains("network secret is encrypted and this node cannot do IPsec ESP"),
        "{err}"
    );
    let links = c.lab.exec_ok(&ns, &["ip", "-o", "link"]).expect("links");
    assert_eq!(
        links.lines().count(),
        1,
        "only lo in the container: {links}"
    );
    let eps = c.cli_json(1, &["endpoint", "ls"]).expect("endpoint ls");
    assert_eq!(eps.as_array().map(Vec::len), Some(0), "{eps}");

    // The unencrypted network on the same hosts works as ever.
    let a = c.attach(0, "open", "o1").expect("attach");
    let b = c.attach(2, "open", "o3").expect("attach");
    c.wait_until(PROPAGATION, "o1 pings o3", || Ok(c.ping(&a, b.ip, 1)))
        .expect("ping over the clear network");

    // Gossip ring rotation on the running cluster: {1} -> {1,2} -> {1,2,3} -> {2,3}, each step
    // on every node before the next; the cluster stays one and keeps gossiping.
    let steps: [&[(u64, &str)]; 3] = [
        &[(1, K1), (2, K2)],
        &[(1, K1), (2, K2), (3, K3)],
        &[(2, K2), (3, K3)],
    ];
    for (n, ring) in steps.iter().enumerate() {
        for h in 0..3 {
            let mut args = vec!["cluster".to_string(), "keys".into(), "set".into()];
            for (tag, key) in *ring {
                args.push("--gossip".into());
                args.push(format!("{tag}:{key}"));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            c.cli_ok(h, &args).expect("keys set");
        }
        let name = format!("after-step-{n}");
        c.create_network(2, &name, &[]).expect("network create");
        for h in 0..2 {
            c.wait_until(PROPAGATION, "the new network reaches every host", || {
                let ls = c.cli_ok(h, &["network", "ls"])?;
                Ok(ls.contains(&name))
            })
            .unwrap_or_else(|e| panic!("step {n}, host {}: {e:#}", h + 1));
        }
        let members = c.members(0).expect("members");
        assert!(members.iter().all(|m| m.up), "step {n}: {members:?}");
    }
    let keys = c.cli_ok(1, &["cluster", "keys", "ls"]).expect("keys ls");
    println!("{keys}");
    assert!(keys.contains("gossip     tags 2, 3 (primary 2)"), "{keys}");
    assert!(keys.contains("dataplane  tags 1 (primary 1)"), "{keys}");

    // The rings survive a restart: the agent comes back sealing with the rotated ring (not
    // its --gossip-key flag, which the others no longer accept).
    c.kill_agent(1).expect("kill -9");
    c.start_agent(1).expect("restart");
    c.wait_members(Duration::from_secs(20))
        .expect("host 2 is back in the cluster");
    let keys = c.cli_ok(1, &["cluster", "keys", "ls"]).expect("keys ls");
    assert!(keys.contains("gossip     tags 2, 3 (primary 2)"), "{keys}");
    c.create_network(1, "after-restart", &[])
        .expect("network create");
    c.wait_until(PROPAGATION, "host 1 learns it", || {
        Ok(c.cli_ok(0, &["network", "ls"])?.contains("after-restart"))
    })
    .expect("gossip after the restart");
}
