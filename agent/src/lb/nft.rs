//! The nftables balancer: reads table `ip swarmnet_lb` in the container's namespace, plans
//! with [`super::nft_plan`], applies the script in ONE `nft -f -` run (one netlink
//! transaction), then deletes the conntrack entries of removed backends
//! ([`super::conntrack`]).
//!
//! `nft` runs as `nsenter --net=<netns> nft ...`; both are looked up in `$PATH` and the sbin
//! directories. Blocking: call from a blocking thread. Cost per call: one `nft -j list`, one
//! `nft -f` only when something differs, and a conntrack dump only when a backend left.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::nft_plan::{self, Actual, TABLE};
use super::{LbError, LbKind, LbReport, LbSpec, LoadBalancer, conntrack, nft_state};

/// The nftables implementation of [`LoadBalancer`].
#[derive(Debug, Default)]
pub struct NftLoadBalancer {
    /// VIPs whose conntrack sweep failed after their nft change was applied, per namespace:
    /// retried on the next call (the kernel no longer shows the removed backend).
    pending: Mutex<BTreeMap<PathBuf, BTreeSet<Ipv4Addr>>>,
}

impl NftLoadBalancer {
    pub fn new() -> NftLoadBalancer {
        NftLoadBalancer::default()
    }

    /// Whether this machine can run the balancer: `nft` and `nsenter` are installed.
    pub fn available() -> Result<(), LbError> {
        tool("nft")?;
        tool("nsenter")?;
        Ok(())
    }
}

impl LoadBalancer for NftLoadBalancer {
    fn kind(&self) -> LbKind {
        LbKind::Nftables
    }

    fn program(&self, netns: &Path, spec: &LbSpec) -> Result<LbReport, LbError> {
        std::fs::metadata(netns).map_err(|source| LbError::Netns {
            path: netns.display().to_string(),
            source,
        })?;
        let actual = read(netns)?;
        let (desired, warnings) =
            nft_plan::desired(spec, nft_plan::seed_for(&netns.display().to_string()));
        for w in warnings {
            tracing::warn!(netns = %netns.display(), "load balancer: {w}");
        }
        let plan = nft_plan::plan(&desired, actual.as_ref());
        let mut changes = plan.changes;
        if !plan.script.is_empty()
            && let Err(first) = apply(netns, &plan.script)
        {
            let full = nft_plan::rebuild(&desired, actual.is_some());
            if full.script == plan.script || full.script.is_empty() {
                return Err(first);
            }
            tracing::warn!(netns = %netns.display(), error = %first,
                "load balancer: incremental update refused; rebuilding the table");
            apply(netns, &full.script)?;
            changes = full.changes;
        }
        let mut sweep = plan.sweep;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(vips) = pending.remove(netns) {
            for vip in vips {
                sweep
                    .entry(vip)
                    .or_insert_with(|| nft_plan::keep_of(&desired, vip));
            }
        }
        let conntrack_flushed = match conntrack::flush_stale(netns, &sweep) {
            Ok(n) => n,
            Err(e) => {
                pending.insert(netns.to_path_buf(), sweep.keys().copied().collect());
                return Err(e);
            }
        };
        Ok(LbReport {
            changes,
            conntrack_flushed,
        })
    }
}

fn tool(name: &str) -> Result<PathBuf, LbError> {
    crate::lab::find_tool(name).ok_or_else(|| LbError::Kernel {
        what: format!("`{name}`"),
        detail: "not installed (scripts/install-deps.sh installs it)".into(),
    })
}

fn nft_in(netns: &Path) -> Result<Command, LbError> {
    let mut c = Command::new(tool("nsenter")?);
    c.arg(format!("--net={}", netns.display()))
        .arg("--")
        .arg(tool("nft")?);
    Ok(c)
}

/// The table as the kernel has it; `None` when there is none.
pub fn read(netns: &Path) -> Result<Option<Actual>, LbError> {
    let out = nft_in(netns)?
        .args(["-j", "list", "table", "ip", TABLE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LbError::Kernel {
            what: "run nft".into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(LbError::Kernel {
            what: format!("nft list table ip {TABLE} in {}", netns.display()),
            detail: err.trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    nft_state::parse(&text)
        .map(Some)
        .map_err(|detail| LbError::Kernel {
            what: format!("nft list table ip {TABLE} in {}", netns.display()),
            detail,
        })
}

/// Applies `script` with one `nft -f -` (one transaction: all or nothing).
pub fn apply(netns: &Path, script: &str) -> Result<(), LbError> {
    let err = |detail: String| LbError::Kernel {
        what: format!("nft -f in {}", netns.display()),
        detail,
    };
    let mut child = nft_in(netns)?
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// Timings of [`bench_program`].
#[derive(Clone, Debug)]
pub struct BenchTimes {
    /// First `program` into an empty namespace.
    pub first: Duration,
    pub first_changes: usize,
    /// `program` after one backend of one service was removed.
    pub one_backend_removed: Duration,
    pub one_backend_changes: usize,
    /// `program` with an unchanged spec.
    pub no_op: Duration,
}

/// Micro-benchmark: `services` VIP services (one TCP port each, 10.128.0.0/16 VIPs) with
/// `backends` backends each (10.200.0.0/16), programmed into `netns` (which should be an
/// otherwise empty namespace; the table is removed at the end).
pub fn bench_program(
    netns: &Path,
    services: usize,
    backends: usize,
) -> Result<BenchTimes, LbError> {
    use crate::records::{Protocol, ServicePort};
    let ip = |base: u32, i: usize| Ipv4Addr::from(base + i as u32);
    let mut spec = LbSpec {
        services: (0..services)
            .map(|s| super::VipService {
                id: format!("svc{s:05}bench"),
                vip: ip(0x0a80_0000 + 1, s),
                ports: vec![ServicePort {
                    protocol: Protocol::Tcp,
                    port: 80,
                    target: 8080,
                }],
                backends: (0..backends)
                    .map(|b| super::Backend {
                        ip: ip(0x0ac8_0000 + 1, s * backends + b),
                        enabled: true,
                    })
                    .collect(),
            })
            .collect(),
    };
    let lb = NftLoadBalancer::new();
    let t = Instant::now();
    let r1 = lb.program(netns, &spec)?;
    let first = t.elapsed();
    if let Some(svc) = spec.services.get_mut(services / 2) {
        svc.backends.pop();
    }
    let t = Instant::now();
    let r2 = lb.program(netns, &spec)?;
    let one = t.elapsed();
    let t = Instant::now();
    lb.program(netns, &spec)?;
    let no_op = t.elapsed();
    lb.program(netns, &LbSpec::default())?;
    Ok(BenchTimes {
        first,
        first_changes: r1.changes,
        one_backend_removed: one,
        one_backend_changes: r2.changes,
        no_op,
    })
}
