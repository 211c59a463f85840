//! Tier 5: the tier-4 services tests (`services.rs`: three real agents in namespaces,
//! backends, clients, drain, removal, a killed host) with every agent on `--lb ipvs`, inside
//! ONE kernel-VM guest whose kernel has IPVS. The guest gets the services test binary, the
//! `swarmnet` and `probe` binaries at their host paths, and the lab's tools from the base
//! image (ip, bridge, nft, nsenter, ping).

use std::time::{Duration, Instant};

use cluster_tests::vm::{self, Guest, Outcome};

#[test]
fn serial_vm_three_agents_balance_drain_and_remove_backends_with_the_ipvs_balancer() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let services = vm::test_binary("cluster-tests", "services").expect("services test binary");
    let swarmnet = cluster_tests::harness::swarmnet();
    let probe = env!("CARGO_BIN_EXE_probe");
    let g = Guest::test_binary(
        "services-ipvs",
        &services,
        &["--test-threads=1", "--nocapture"],
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
        l.starts_with("test ")
            || l.starts_with("test result:")
            || l.contains("Load balancer:")
            || l.contains(" in ")
    }) {
        println!("  {l}");
    }
    r.expect_success();
    assert!(!r.console.contains("skipped:"), "log {}", r.log.display());
    assert!(
        r.console.contains("test result: ok. 3 passed"),
        "log {}",
        r.log.display()
    );
    let chosen: Vec<&str> = r
        .console
        .lines()
        .filter_map(|l| l.split("Load balancer:").nth(1))
        .map(str::trim)
        .collect();
    assert!(
        !chosen.is_empty() && chosen.iter().all(|c| c.starts_with("ipvs")),
        "the agents chose IPVS: {chosen:?}; log {}",
        r.log.display()
    );
}
