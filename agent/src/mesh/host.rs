//! The host table's executor: reads table `ip swarmnet_mesh` in the calling thread's
//! namespace (the agent's own),
//! plans with [`super::host_plan`], applies the script in ONE `nft -f -` run, renews the
//! lease, then deletes the conntrack entries of mesh flows whose backend left
//! ([`crate::lb::conntrack::flush_mesh`]). Also the forwarding sysctls the mesh needs.
//!
//! The table is listed only when the namespace's nf_tables generation moved since this
//! executor last read or wrote it (as [`crate::lb::NftLoadBalancer`] does); with 1,000
//! published ports a listing costs hundreds of milliseconds, a generation check one netlink
//! round trip. Blocking: call from a blocking thread, one call at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::THREAD_NETNS;
use super::host_plan::{self, Actual, HostSpec, TABLE};
use crate::lb::{LbError, conntrack, nfnl};
use crate::records::Protocol;

/// What one [`HostMesh::program`] call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostReport {
    pub changes: usize,
    pub conntrack_flushed: usize,
    /// The lease now in the kernel (0: none).
    pub lease_until: u64,
}

/// The host table's executor (see the module docs).
#[derive(Debug, Default)]
pub struct HostMesh {
    /// (generation, table) as last read or written.
    cache: Mutex<Option<(u32, Option<Actual>)>>,
    /// Ports whose conntrack sweep failed after their change was applied: retried.
    pending: Mutex<BTreeMap<(Protocol, u16), BTreeSet<Ipv4Addr>>>,
}

/// Seconds since the UNIX epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The lease to write: the one in the kernel while more than two thirds of `lease` remain
/// (so an unchanged table costs nothing), else a new one `lease` from `now`. `None` lease:
/// 0 (no lease).
pub fn lease_until(actual: Option<u64>, lease: Option<Duration>, now: u64) -> u64 {
    let Some(lease) = lease.map(|l| l.as_secs().max(3)) else {
        return 0;
    };
    match actual {
        Some(t) if t > now && t - now > lease * 2 / 3 && t <= now + lease => t,
        _ => now + lease,
    }
}

impl HostMesh {
    pub fn new() -> HostMesh {
        HostMesh::default()
    }

    /// Makes the host table match `spec` (its `lease_until` is set here from `lease`).
    pub fn program(
        &self,
        mut spec: HostSpec,
        lease: Option<Duration>,
    ) -> Result<HostReport, LbError> {
        if spec.is_empty() && crate::sys::tool("nft").is_err() {
            // Nothing published and no nft: nothing of ours can be in the kernel.
            return Ok(HostReport::default());
        }
        let ns = Path::new(THREAD_NETNS);
        let g0 = nfnl::generation(ns)?;
        let cached = lock(&self.cache).take().filter(|(g, _)| *g == g0);
        let (actual, mut known) = match cached {
            Some((_, t)) => (t, true),
            None => {
                let t = read()?;
                (t, nfnl::generation(ns)? == g0)
            }
        };
        let now = now_secs();
        spec.lease_until = lease_until(
            actual.as_ref().and_then(host_plan::actual_lease),
            lease,
            now,
        );
        let plan = host_plan::plan(&spec, actual.as_ref());
        let mut report = HostReport {
            changes: plan.changes,
            lease_until: spec.lease_until,
            ..HostReport::default()
        };
        let mut table = actual;
        let mut generation = g0;
        if !plan.script.is_empty() {
            if let Err(first) = crate::sys::nft_apply(None, &plan.script) {
                let full = host_plan::rebuild(&spec, table.is_some());
                if full.script == plan.script || full.script.is_empty() {
                    return Err(first.into());
                }
                tracing::warn!(error = %first, "mesh: incremental update refused; rebuilding the table");
                report.changes = full.changes;
                crate::sys::nft_apply(None, &full.script)?;
            }
            let g2 = nfnl::generation(ns)?;
            known = known && g2 == g0.wrapping_add(1);
            generation = g2;
            table = (!spec.is_empty()).then(|| Actual {
                skeleton: Some(host_plan::skeleton_of(&spec)),
                state: host_plan::desired(&spec),
            });
        }
        if known {
            *lock(&self.cache) = Some((generation, table));
        }
        let mut sweep = plan.sweep;
        for (k, v) in std::mem::take(&mut *lock(&self.pending)) {
            sweep.entry(k).or_insert(v);
        }
        if !sweep.is_empty() {
            let keep: BTreeMap<(u8, u16), BTreeSet<Ipv4Addr>> = sweep
                .iter()
                .map(|((p, port), kept)| ((proto_number(*p), *port), kept.clone()))
                .collect();
            match conntrack::flush_mesh(ns, super::HOST_CT_MARK, &keep) {
                Ok(n) => report.conntrack_flushed = n,
                Err(e) => {
                    lock(&self.pending).extend(sweep);
                    return Err(e);
                }
            }
        }
        Ok(report)
    }
}

/// IP protocol number.
pub fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The host table as the kernel has it; `None` when there is none.
pub fn read() -> Result<Option<Actual>, LbError> {
    let out = crate::sys::nft(None, &["-j", "list", "table", "ip", TABLE], None)?;
    if out.table_absent() {
        return Ok(None);
    }
    let what = || format!("nft list table ip {TABLE}");
    if !out.ok {
        return Err(LbError::Kernel {
            what: what(),
            detail: out.stderr,
        });
    }
    super::host_state::parse(&out.stdout)
        .map(Some)
        .map_err(|detail| LbError::Kernel {
            what: what(),
            detail,
        })
}

/// Sets `net.ipv4.conf.<iface>.forwarding=1` on each of `ifaces` (the calling thread's
/// namespace), or, when `ifaces` is empty, on every interface but `lo`. Returns the
/// interfaces changed. Forwarding is never turned off again (another user may rely on it).
pub fn enable_forwarding(ifaces: &BTreeSet<String>) -> Result<Vec<String>, LbError> {
    let names: Vec<String> = if ifaces.is_empty() {
        std::fs::read_dir("/proc/sys/net/ipv4/conf")
            .map_err(|e| kernel("list /proc/sys/net/ipv4/conf", e))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !matches!(n.as_str(), "all" | "default" | "lo"))
            .collect()
    } else {
        ifaces.iter().cloned().collect()
    };
    let mut changed = Vec::new();
    for n in names {
        let key = format!("net/ipv4/conf/{n}/forwarding");
        let path = Path::new("/proc/sys").join(&key);
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim() == "1" => {}
            Ok(_) => {
                std::fs::write(&path, "1").map_err(|e| kernel(format!("sysctl {key}"), e))?;
                changed.push(n);
            }
            // An interface that went away meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(kernel(format!("sysctl {key}"), e)),
        }
    }
    Ok(changed)
}

fn kernel(what: impl Into<String>, detail: impl ToString) -> LbError {
    LbError::Kernel {
        what: what.into(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_kept_while_two_thirds_remain_and_renewed_after() {
        let lease = Some(Duration::from_secs(30));
        assert_eq!(lease_until(None, lease, 1000), 1030);
        assert_eq!(lease_until(Some(1030), lease, 1005), 1030);
        assert_eq!(lease_until(Some(1030), lease, 1011), 1041);
        assert_eq!(lease_until(Some(999), lease, 1000), 1030, "expired");
        assert_eq!(
            lease_until(Some(5000), lease, 1000),
            1030,
            "a lease beyond ours (clock stepped back) is replaced"
        );
        assert_eq!(lease_until(Some(1030), None, 1000), 0);
    }
}

/// Timings of [`bench_program`].
#[derive(Clone, Debug)]
pub struct BenchTimes {
    /// First program of `ports` published ports into an empty namespace.
    pub first: Duration,
    pub first_changes: usize,
    /// One more published port (the executor's cached table: no listing).
    pub one_more: Duration,
    pub one_more_changes: usize,
    /// One more published port by a fresh executor (lists and parses the table first).
    pub one_more_fresh: Duration,
    /// One port removed (cached).
    pub one_removed: Duration,
    /// The same spec again (a generation check).
    pub no_op: Duration,
    /// The same spec again by a fresh executor.
    pub no_op_fresh: Duration,
    /// `nft list tables` in the namespace before anything was programmed (the fastest of
    /// 5): the floor of one `nft` process.
    pub nft_floor: Duration,
}

/// Micro-benchmark in the calling thread's namespace (an otherwise empty one; the table is
/// removed at the end): `ports` published TCP ports (10000 + i) with `backends` backends each
/// (10.200.0.0/16), then one more, one fewer, no change.
pub fn bench_program(ports: usize, backends: usize) -> Result<BenchTimes, LbError> {
    use super::PortSpec;
    use std::time::Instant;
    let port = |i: usize| -> ((Protocol, u16), PortSpec) {
        let p = 10_000 + i as u16;
        let bs: Vec<Ipv4Addr> = (0..backends)
            .map(|b| Ipv4Addr::from(0x0ac8_0001 + (i * backends + b) as u32))
            .collect();
        (
            (Protocol::Tcp, p),
            PortSpec {
                protocol: Protocol::Tcp,
                port: p,
                target: 80,
                backends: bs,
            },
        )
    };
    let spec_of = |n: usize| -> HostSpec {
        let mut s = HostSpec {
            ingress: BTreeSet::from(["swnbench0".to_string()]),
            idle_timeout: 432_000,
            ..HostSpec::default()
        };
        for i in 0..n {
            let (k, p) = port(i);
            for b in &p.backends {
                s.members.insert((k.0, k.1, *b));
            }
            s.ports.insert(k, p);
        }
        s
    };
    let lease = Some(Duration::from_secs(600));
    let timed = |m: &HostMesh, s: HostSpec| -> Result<(Duration, usize), LbError> {
        let t = Instant::now();
        let r = m.program(s, lease)?;
        Ok((t.elapsed(), r.changes))
    };
    let mut nft_floor = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        crate::sys::nft(None, &["list", "tables"], None)?;
        nft_floor = nft_floor.min(t.elapsed());
    }
    let m = HostMesh::new();
    let (first, first_changes) = timed(&m, spec_of(ports))?;
    let (one_more, one_more_changes) = timed(&m, spec_of(ports + 1))?;
    let (one_removed, _) = timed(&m, spec_of(ports))?;
    let (no_op, _) = timed(&m, spec_of(ports))?;
    let (no_op_fresh, _) = timed(&HostMesh::new(), spec_of(ports))?;
    let (one_more_fresh, _) = timed(&HostMesh::new(), spec_of(ports + 1))?;
    m.program(HostSpec::default(), lease)?;
    Ok(BenchTimes {
        first,
        first_changes,
        one_more,
        one_more_changes,
        one_more_fresh,
        one_removed,
        no_op,
        no_op_fresh,
        nft_floor,
    })
}
