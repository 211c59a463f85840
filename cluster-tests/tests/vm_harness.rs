//! Tier 5, the harness itself ([`cluster_tests::vm`]): a guest's exit status reaches the
//! host, a hung guest is reported as timed out, a guest kernel panic as a panic, and several
//! guests, each with its own kernel, reach each other over the virtual network.
//!
//! Each test prints "skipped: <reason>" only when qemu or the kernel package cannot be
//! obtained (or, for the network, without root). Named `serial_*`; all cluster tests run one
//! at a time anyway.

use std::time::{Duration, Instant};

use cluster_tests::vm::{self, Guest, Outcome};

#[test]
fn serial_vm_a_guest_scripts_exit_status_and_output_reach_the_host() {
    let Some(kit) = vm::kit_or_skip() else { return };
    println!(
        "kit {} (kernel {}), prepared or found in {:.1?}",
        kit.dir.display(),
        kit.kernel_release,
        kit.prepare_time
    );
    let r = vm::run(&Guest::new(
        "exit7",
        "echo \"guest says $(uname -r) $(cat /proc/sys/kernel/hostname)\"\nexit 7\n",
    ));
    println!("{}", r.summary());
    r.expect_exit(7);
    assert!(
        r.console
            .contains(&format!("guest says {} exit7", kit.kernel_release)),
        "{}",
        r.console
    );
    assert!(r.boot.is_some(), "the boot marker was seen");
}

#[test]
fn serial_vm_a_guest_that_runs_past_its_timeout_is_reported_as_timed_out() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let t0 = Instant::now();
    let r = vm::run(
        &Guest::new("hang", "echo sleeping; sleep 1000\n").with_timeout(Duration::from_secs(10)),
    );
    println!("{} (test {:.1?})", r.summary(), t0.elapsed());
    assert_eq!(r.outcome, Outcome::TimedOut, "{}", r.console);
    assert!(r.console.contains("sleeping"), "{}", r.console);
}

#[test]
fn serial_vm_a_guest_kernel_panic_is_reported_as_a_panic_not_as_an_exit() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let r = vm::run(&Guest::new(
        "panic",
        "echo 1 > /proc/sys/kernel/sysrq\necho c > /proc/sysrq-trigger\nsleep 30\nexit 0\n",
    ));
    println!("{}", r.summary());
    assert_eq!(r.outcome, Outcome::KernelPanic, "{}", r.console);
}

/// Every guest pings every other one, then stays up until each peer has pinged it (an
/// nftables counter per peer address counts the echo requests from it), so no guest powers
/// off under a peer still pinging it. Bounded: 60 s per wait.
const MESH: &str = r#"
me=$(hostname)
nft add table ip mesh
nft add chain ip mesh in '{ type filter hook input priority 0; }'
for peer in $PEERS; do
  nft add rule ip mesh in ip saddr "$(getent hosts "$peer" | awk '{print $1}')" icmp type echo-request counter
done
for peer in $PEERS; do
  n=0
  until ping -c 1 -W 1 "$peer" >/dev/null 2>&1; do
    n=$((n + 1)); [ $n -lt 60 ] || { echo "FAIL: $me cannot ping $peer"; exit 1; }
  done
  echo "$me reaches $peer: $(ping -c 3 -i 0.2 -W 2 "$peer" | tail -1)"
done
n=0
while nft list chain ip mesh in | grep -q 'packets 0 ' && [ $n -lt 600 ]; do
  sleep 0.1; n=$((n + 1))
done
echo "$me: eth0 $(ip -4 -o addr show eth0 | awk '{print $4}'), $(uname -r), done"
"#;

#[test]
fn serial_vm_three_guests_with_their_own_kernels_ping_each_other() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let names = ["vm1", "vm2", "vm3"];
    let guests: Vec<Guest> = names
        .iter()
        .map(|me| {
            let peers: Vec<&str> = names.iter().copied().filter(|n| n != me).collect();
            Guest::new(me, &format!("PEERS='{}'\n{MESH}", peers.join(" ")))
                .with_cpus(1)
                .with_mem_mb(512)
        })
        .collect();
    let runs = vm::run_network(&guests);
    for r in &runs {
        println!("{}", r.summary());
        if let Outcome::Unavailable(why) = &r.outcome {
            println!("skipped: {why}");
            return;
        }
    }
    for (i, r) in runs.iter().enumerate() {
        r.expect_success();
        for (j, peer) in names.iter().enumerate() {
            if i != j {
                assert!(
                    r.console.contains(&format!("{} reaches {peer}", names[i])),
                    "{}",
                    r.console
                );
            }
        }
        assert!(
            r.console
                .contains(&format!("eth0 {}/24", vm::guest_addr(i))),
            "{}",
            r.console
        );
    }
}
