//! Tier 5, IPVS for real: test binaries that need IPVS, built on the host, run inside a guest
//! booted from Debian's stock kernel (where a missing IPVS fails them instead of skipping).
//!
//! * `ipvs/tests/kernel_ipvs.rs`: the `ipvs` crate against the guest's IPVS; its raw
//!   replies come back through a shared directory and are compared with the committed
//!   `ipvs/tests/fixtures/kernel_*.hex` (`SWARMNET_CAPTURE_FIXTURES=1` rewrites those);
//! * the agent's IPVS balancer: its unit tests' kernel part and `agent/tests/lb_kernel.rs`
//!   with `SWARMNET_TEST_LB=ipvs` (the same traffic tests the nftables balancer passes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_tests::vm::{self, Guest};

/// Hex digits of a fixture, comments and layout ignored.
fn digits(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ipvs/tests/fixtures")
}

/// Runs `binary` with `args` in a guest; fails unless every selected test passed and none
/// skipped. Returns the console.
fn run_tests_in_guest(
    name: &str,
    binary: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    share: Option<&Path>,
) -> Option<String> {
    let mut g = Guest::test_binary(name, binary, args, env).with_timeout(Duration::from_secs(300));
    if let Some(dir) = share {
        g = g.with_share(dir);
    }
    let t0 = Instant::now();
    let r = vm::run(&g);
    println!("{} (test {:.1?})", r.summary(), t0.elapsed());
    if let vm::Outcome::Unavailable(why) = &r.outcome {
        println!("skipped: {why}");
        return None;
    }
    r.expect_success();
    let results: Vec<&str> = r
        .console
        .lines()
        .filter(|l| l.starts_with("test result:") || l.starts_with("test "))
        .collect();
    println!("{}", results.join("\n"));
    assert!(
        !r.console.contains("skipped:"),
        "a test skipped inside the VM; log {}",
        r.log.display()
    );
    assert!(
        !r.console.contains("running 0 tests"),
        "no test selected; log {}",
        r.log.display()
    );
    Some(r.console)
}

#[test]
fn serial_vm_the_ipvs_crate_drives_a_real_kernels_ipvs_and_its_replies_match_the_fixtures() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let bin = vm::test_binary("ipvs", "kernel_ipvs").expect("ipvs kernel_ipvs test binary");
    let share = vm::target_dir().join(format!("vm-tmp/ipvs-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(&share).unwrap();
    let Some(console) = run_tests_in_guest(
        "ipvs-crate",
        &bin,
        &["--test-threads=1"],
        &[("IPVS_CAPTURE_DIR", "/host")],
        Some(&share),
    ) else {
        return;
    };
    assert!(console.contains("test result: ok. 6 passed"), "{console}");

    let capture = std::env::var_os("SWARMNET_CAPTURE_FIXTURES").is_some();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&share)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    assert!(names.len() >= 8, "captured fixtures: {names:?}");
    let mut differ = Vec::new();
    for p in &names {
        let name = p.file_name().unwrap();
        let committed = fixtures_dir().join(name);
        let live = std::fs::read_to_string(p).unwrap();
        if capture {
            std::fs::write(&committed, &live).unwrap();
            println!("captured {}", committed.display());
        } else {
            let old = std::fs::read_to_string(&committed).unwrap_or_default();
            if digits(&old) != digits(&live) {
                differ.push(name.to_string_lossy().into_owned());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&share);
    // A different kernel may answer differently (new attributes): that is news, not a
    // failure of this kernel's test; the fixtures stay as committed until recaptured.
    if capture {
        println!("recaptured {} fixtures; review with git diff", names.len());
    } else if differ.is_empty() {
        println!("the guest kernel's replies match the committed kernel_*.hex fixtures");
    } else {
        println!(
            "NOTE: the guest kernel's replies differ from the committed fixtures {differ:?}; \
             recapture with SWARMNET_CAPTURE_FIXTURES=1 (see ipvs/tests/fixtures/README.md)"
        );
    }
}

#[test]
fn serial_vm_the_ipvs_balancer_programs_a_real_kernel_and_passes_its_unit_kernel_tests() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let bin = vm::test_binary("agent", "lib").expect("agent unit test binary");
    let Some(console) = run_tests_in_guest(
        "agent-ipvs-unit",
        &bin,
        &["--test-threads=1", "lb::ipvs_backend::tests::serial_"],
        &[],
        None,
    ) else {
        return;
    };
    assert!(console.contains("test result: ok. 2 passed"), "{console}");
}

#[test]
fn serial_vm_the_ipvs_balancer_balances_drains_removes_and_repairs_like_the_nftables_one() {
    if vm::kit_or_skip().is_none() {
        return;
    }
    let bin = vm::test_binary("agent", "lb_kernel").expect("agent lb_kernel test binary");
    let Some(console) = run_tests_in_guest(
        "agent-lb-ipvs",
        &bin,
        &["--test-threads=1", "serial_ipvs_"],
        &[],
        None,
    ) else {
        return;
    };
    assert!(console.contains("test result: ok. 8 passed"), "{console}");
}
