//! Shared harness of the tier-4 tests: the `swarmnet` binary under test (rebuilt when stale)
//! and a started N-host [`AgentCluster`], or a printed "skipped: <reason>".
//!
//! `SWARMNET_TEST_LB=nftables|ipvs` makes every agent run with `--lb <that>` (unset: the
//! agent's own choice, `auto`). The kernel-VM test `vm_services.rs` runs the services tests
//! with `ipvs` inside a guest whose kernel has IPVS.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use lab::testbed::{self, AgentCluster, ClusterOptions};

/// The `swarmnet` binary under test: `$SWARMNET_BIN`, else `target/<profile>/swarmnet`,
/// rebuilt first when any source it is built from is newer than it (`cargo test -p
/// cluster-tests` alone does not build it, so it could be stale or missing).
pub fn swarmnet() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SWARMNET_BIN") {
            return PathBuf::from(p);
        }
        fresh_binary(
            "agent",
            "swarmnet",
            &[
                "agent/src",
                "overlay/src",
                "networkdb/src",
                "proto",
                "ipvs/src",
                "Cargo.lock",
            ],
        );
        testbed::swarmnet_binary().expect("the swarmnet binary")
    })
    .clone()
}

/// `target/<profile>/<bin>` of the workspace's `package`, built first (with this test's
/// profile) when missing or older than any file under `sources` (paths from the repository
/// root). A failed build is reported and what is there is used.
pub fn fresh_binary(package: &str, bin: &str, sources: &[&str]) -> PathBuf {
    // Tests run from target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = profile_dir.join(bin);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let newest_source = sources.iter().filter_map(|d| newest(&root.join(d))).max();
    if built.is_none() || newest_source > built {
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let status = cargo()
            .current_dir(&root)
            .env(
                "CARGO_TARGET_DIR",
                profile_dir.parent().expect("target dir"),
            )
            .args(["build", "-q", "-p", package, "--bin", bin, "--profile"])
            .arg(&profile)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("cargo build of {bin}: {status:?}; using what is there");
        }
    }
    path
}

/// Newest modification time of a file, or of any file under a directory.
fn newest(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_dir() {
        return m.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| newest(&e.path()))
        .max()
}

/// A started 3-host cluster, or `None` (after printing "skipped: <reason>") when this machine
/// cannot run one.
pub fn cluster(name: &str, reconcile_secs: Option<u64>) -> Option<AgentCluster> {
    cluster_with(name, |o| o.reconcile_interval_secs = reconcile_secs)
}

/// [`cluster`] with options set by `tune` (e.g. more agent flags).
pub fn cluster_with(name: &str, tune: impl FnOnce(&mut ClusterOptions)) -> Option<AgentCluster> {
    if let Some(reason) = testbed::skip_reason() {
        println!("skipped: {reason}");
        return None;
    }
    let mut opts = ClusterOptions::new(name, 3);
    opts.binary = Some(swarmnet());
    if let Some(lb) = test_lb() {
        opts.agent_args.extend(["--lb".to_string(), lb]);
    }
    tune(&mut opts);
    let t0 = Instant::now();
    let c = AgentCluster::start_with(opts).expect("cluster starts");
    println!(
        "3 agents up and joined in {:?} (lab {})",
        t0.elapsed(),
        c.lab.prefix()
    );
    Some(c)
}

/// The balancer the tests ask the agents for: `$SWARMNET_TEST_LB` (`nftables` or `ipvs`).
pub fn test_lb() -> Option<String> {
    let lb = std::env::var("SWARMNET_TEST_LB").ok()?;
    assert!(
        matches!(lb.as_str(), "nftables" | "ipvs" | "auto"),
        "SWARMNET_TEST_LB={lb}: want nftables, ipvs or auto"
    );
    Some(lb)
}

/// A `cargo` command for a test to build with, as the outer build did: `cargo` through rustup
/// (the toolchain file), not `$CARGO` (under cargo-nextest that is another toolchain's cargo,
/// whose different fingerprints rebuild the whole workspace, and the next outer build rebuilds
/// it back), without the variables a test runner sets for test processes (so build scripts
/// see the outer build's environment).
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let runner_set = k == "CARGO"
            || k == "LD_LIBRARY_PATH"
            || k == "OUT_DIR"
            || k.starts_with("NEXTEST")
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_EXE_")
            || k.starts_with("CARGO_MANIFEST_")
            || k.starts_with("CARGO_CRATE_")
            || k == "CARGO_PRIMARY_PACKAGE"
            || k == "CARGO_TARGET_TMPDIR";
        if runner_set {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd
}
