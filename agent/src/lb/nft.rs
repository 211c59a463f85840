//! The nftables balancer: reads table `ip swarmnet_lb` in the container's namespace, plans
//! with [`super::nft_plan`], applies the script in ONE `nft -f -` run (one netlink
//! transaction), then deletes the conntrack entries of removed backends
//! ([`super::conntrack`]).
//!
//! `nft` runs as `nsenter --net=<netns> nft ...`; both are looked up in `$PATH` and the sbin
//! directories. Blocking: call from a blocking thread; calls for different namespaces may
//! run concurrently.
//!
//! Cost per call: one netlink round trip for the namespace's nf_tables generation; an
//! `nft -j list` only when the generation moved since this balancer last saw the table (a
//! hand edit, another table's change, a restart of the agent); one `nft -f` only when
//! something differs; a conntrack dump only when a backend left. The last state per
//! namespace is cached in memory (keyed by the namespace file's device and inode, valid only
//! for the generation it was read or written at, so it never hides a change made by anyone
//! else); call [`NftLoadBalancer::forget`] when a namespace goes away.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::nft_plan::{self, Actual, TABLE};
use super::{LbError, LbKind, LbReport, LbSpec, LoadBalancer, conntrack, nfnl, nft_state};

/// Most namespaces whose table is cached; beyond it the cache starts over (correctness
/// never depends on it).
const MAX_CACHED: usize = 4096;

/// The nftables implementation of [`LoadBalancer`].
#[derive(Debug, Default)]
pub struct NftLoadBalancer {
    /// VIPs whose conntrack sweep failed after their nft change was applied, per namespace:
    /// retried on the next call (the kernel no longer shows the removed backend).
    pending: Mutex<BTreeMap<PathBuf, BTreeSet<Ipv4Addr>>>,
    /// The table as last read or written, per namespace path.
    cache: Mutex<BTreeMap<PathBuf, Cached>>,
}

/// What a namespace's table was at one nf_tables generation.
#[derive(Debug)]
struct Cached {
    /// (device, inode) of the namespace file: a new namespace at the same path is another.
    ns: (u64, u64),
    generation: u32,
    table: Option<Actual>,
}

impl NftLoadBalancer {
    pub fn new() -> NftLoadBalancer {
        NftLoadBalancer::default()
    }

    /// Drops what is remembered about the namespace at `netns` (call when it goes away).
    pub fn forget(&self, netns: &Path) {
        lock(&self.cache).remove(netns);
        lock(&self.pending).remove(netns);
    }

    /// Whether this machine can run the balancer: `nft` and `nsenter` are installed.
    pub fn available() -> Result<(), LbError> {
        crate::sys::tool("nft")?;
        crate::sys::tool("nsenter")?;
        Ok(())
    }
}

impl LoadBalancer for NftLoadBalancer {
    fn forget(&self, netns: &Path) {
        NftLoadBalancer::forget(self, netns);
    }

    fn kind(&self) -> LbKind {
        LbKind::Nftables
    }

    fn program(&self, netns: &Path, spec: &LbSpec) -> Result<LbReport, LbError> {
        let meta = std::fs::metadata(netns).map_err(|source| LbError::Netns {
            path: netns.display().to_string(),
            source,
        })?;
        let ns = (meta.dev(), meta.ino());
        let g0 = nfnl::generation(netns)?;
        let cached = lock(&self.cache)
            .remove(netns)
            .filter(|c| c.ns == ns && c.generation == g0);
        let (actual, mut known_at) = match cached {
            Some(c) => (c.table, Some(g0)),
            None => {
                let table = read(netns)?;
                // Cacheable only if nobody committed while we listed.
                let g1 = nfnl::generation(netns)?;
                (table, (g1 == g0).then_some(g0))
            }
        };
        let (desired, warnings) =
            nft_plan::desired(spec, nft_plan::seed_for(&netns.display().to_string()));
        for w in warnings {
            tracing::warn!(netns = %netns.display(), "load balancer: {w}");
        }
        let plan = nft_plan::plan(&desired, actual.as_ref());
        let mut changes = plan.changes;
        let mut table = actual;
        if !plan.script.is_empty() {
            let applied = match apply(netns, &plan.script) {
                Ok(()) => Ok(()),
                Err(first) => {
                    let full = nft_plan::rebuild(&desired, table.is_some());
                    if full.script == plan.script || full.script.is_empty() {
                        Err(first)
                    } else {
                        tracing::warn!(netns = %netns.display(), error = %first,
                            "load balancer: incremental update refused; rebuilding the table");
                        changes = full.changes;
                        apply(netns, &full.script)
                    }
                }
            };
            applied?;
            // Our transaction is the only one since the read iff the generation moved by 1.
            let g2 = nfnl::generation(netns)?;
            known_at = known_at.filter(|g| g.wrapping_add(1) == g2).map(|_| g2);
            table = (!desired.is_empty()).then(|| Actual {
                skeleton_ok: true,
                state: desired.clone(),
            });
        }
        if let Some(generation) = known_at {
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                netns.to_path_buf(),
                Cached {
                    ns,
                    generation,
                    table,
                },
            );
        }
        let mut sweep = plan.sweep;
        let retry = lock(&self.pending).remove(netns);
        for vip in retry.into_iter().flatten() {
            sweep
                .entry(vip)
                .or_insert_with(|| nft_plan::keep_of(&desired, vip));
        }
        let conntrack_flushed = match conntrack::flush_stale(netns, &sweep) {
            Ok(n) => n,
            Err(e) => {
                lock(&self.pending)
                    .entry(netns.to_path_buf())
                    .or_default()
                    .extend(sweep.keys().copied());
                return Err(e);
            }
        };
        Ok(LbReport {
            changes,
            conntrack_flushed,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The table as the kernel has it; `None` when there is none.
pub fn read(netns: &Path) -> Result<Option<Actual>, LbError> {
    let out = crate::sys::nft(Some(netns), &["-j", "list", "table", "ip", TABLE], None)?;
    if out.table_absent() {
        return Ok(None);
    }
    let what = || format!("nft list table ip {TABLE} in {}", netns.display());
    if !out.ok {
        return Err(LbError::Kernel {
            what: what(),
            detail: out.stderr,
        });
    }
    nft_state::parse(&out.stdout)
        .map(Some)
        .map_err(|detail| LbError::Kernel {
            what: what(),
            detail,
        })
}

/// Applies `script` with one `nft -f -` (one transaction: all or nothing).
pub fn apply(netns: &Path, script: &str) -> Result<(), LbError> {
    Ok(crate::sys::nft_apply(Some(netns), script)?)
}

/// Timings of [`bench_program`].
#[derive(Clone, Debug)]
pub struct BenchTimes {
    /// First `program` into an empty namespace.
    pub first: Duration,
    pub first_changes: usize,
    /// `program` after one backend of one service was removed (cached table).
    pub one_backend_removed: Duration,
    pub one_backend_changes: usize,
    /// `program` with an unchanged spec (cached table: a generation check only).
    pub no_op: Duration,
    /// `program` with an unchanged spec by a fresh balancer (lists and parses the table).
    pub no_op_uncached: Duration,
    /// `program` after one backend was removed, by a fresh balancer.
    pub one_backend_uncached: Duration,
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
    let timed = |lb: &NftLoadBalancer, spec: &LbSpec| -> Result<(Duration, usize), LbError> {
        let t = Instant::now();
        let r = lb.program(netns, spec)?;
        Ok((t.elapsed(), r.changes))
    };
    let lb = NftLoadBalancer::new();
    let (first, first_changes) = timed(&lb, &spec)?;
    let remove_one = |spec: &mut LbSpec, i: usize| {
        if let Some(svc) = spec.services.get_mut(i) {
            svc.backends.pop();
        }
    };
    remove_one(&mut spec, services / 2);
    let (one_backend_removed, one_backend_changes) = timed(&lb, &spec)?;
    let (no_op, _) = timed(&lb, &spec)?;
    let (no_op_uncached, _) = timed(&NftLoadBalancer::new(), &spec)?;
    remove_one(&mut spec, services / 3);
    let (one_backend_uncached, _) = timed(&NftLoadBalancer::new(), &spec)?;
    lb.program(netns, &LbSpec::default())?;
    Ok(BenchTimes {
        first,
        first_changes,
        one_backend_removed,
        one_backend_changes,
        no_op,
        no_op_uncached,
        one_backend_uncached,
    })
}
