//! Tier 5: the main published-port test (`published.rs`: three agents, an outside client,
//! every host answering from every backend with the client's address, TCP and UDP, the
//! creator killed) with every agent on `--lb ipvs`, inside ONE kernel-VM guest booting
//! Debian's stock 6.1 kernel: agents that balance VIPs with IPVS still publish ports through
//! nftables, and the mesh (netdev egress, `meta time`, `ct timeout` objects, modules loaded
//! on demand) works on a second kernel. The guest gets the test binary, `swarmnet`, `probe`,
//! and the lab's tools from the base image (curl among them).

use std::time::{Duration, Instant};

use cluster_tests::vm::{self, Guest, Outcome};

#[test]
fn serial_vm_ipvs_agents_publish_ports_through_the_nftables_mesh_on_debians_kernel() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let published = vm::test_binary("cluster-tests", "published").expect("published test binary");
    let swarmnet = cluster_tests::harness::swarmnet();
    let probe = env!("CARGO_BIN_EXE_probe");
    let g = Guest::test_binary(
        "published-ipvs",
        &published,
        &[
            "--test-threads=1",
            "--nocapture",
            "serial_a_published_port_answers_on_every_host",
        ],
        &[("SWARMNET_TEST_LB", "ipvs")],
    )
    .with_binary(&swarmnet)
    .with_binary(std::path::Path::new(probe))
    .with_mem_mb(2048)
    .with_timeout(Duration::from_secs(420));
    let t0 = Instant::now();
    let r = vm::run(&g);
    println!("{} (test {:.1?})", r.summary(), t0.elapsed());
    if let Outcome::Unavailable(why) = &r.outcome {
        println!("skipped: {why}");
        return;
    }
    for l in r.console.lines().filter(|l| {
        l.starts_with("test ") || l.starts_with("host ") || l.contains("Load balancer:")
    }) {
        println!("  {l}");
    }
    r.expect_success();
    assert!(!r.console.contains("skipped:"), "log {}", r.log.display());
    assert!(
        r.console.contains("test result: ok. 1 passed"),
        "log {}",
        r.log.display()
    );
}
