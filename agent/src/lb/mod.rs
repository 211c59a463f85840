//! Service load balancing in each client container's own network namespace.
//!
//! The agent computes, for every local container namespace, the [`LbSpec`]: every VIP
//! service on the networks that container is on, with all known backends (enabled or
//! draining). A [`LoadBalancer`] makes the namespace match it. Contract for implementations:
//! * `program` is idempotent and reads the kernel's actual state itself (so restarts, lost
//!   events and hand edits are repaired); it changes only what differs, atomically per call;
//! * a backend with `enabled == false` (draining) receives no new connections, while
//!   established ones continue;
//! * conntrack entries of connections through a VIP to a backend that is no longer in the
//!   spec at all (removed, its node failed) are deleted;
//! * an empty spec removes everything the balancer created in that namespace.
//!
//! | file | concept |
//! | --- | --- |
//! | [`nft_plan`] | pure planner of the nftables balancer (layout, names, diff -> script) |
//! | [`nft_state`] | pure reader of `nft -j list table ip swarmnet_lb` |
//! | [`nft`] | [`nft::NftLoadBalancer`]: reads, plans, applies in one `nft -f`, sweeps conntrack |
//! | [`conntrack`] | ctnetlink dump/delete inside a namespace (the nftables balancer's sweep) |
//! | [`nfnl`] | a netfilter netlink socket inside a namespace; the nf_tables generation |
//! | [`ipvs_backend`] | the IPVS balancer: fwmark services over the `ipvs` crate (tested in the kernel-VM suite) |
//! | `choose` | `--lb` auto, nftables or ipvs -> the balancer in use, and why |

pub mod ipvs_backend;

use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::path::Path;

mod choose;

pub use choose::choose;

use crate::records::ServicePort;

pub mod conntrack;
pub mod nfnl;
pub mod nft;
pub mod nft_plan;
pub mod nft_state;

pub use nft::NftLoadBalancer;

/// Desired balancing state of one container namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbSpec {
    /// Sorted by `vip`; VIPs are unique.
    pub services: Vec<VipService>,
}

/// One VIP as one container sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VipService {
    /// Service id (stable; usable in kernel object names after shortening).
    pub id: String,
    pub vip: Ipv4Addr,
    /// Empty: every TCP/UDP port and ICMP echo go to a backend unchanged.
    pub ports: Vec<ServicePort>,
    /// Sorted by address, unique.
    pub backends: Vec<Backend>,
}

/// A backend of a VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: Ipv4Addr,
    /// False while draining.
    pub enabled: bool,
}

/// Which implementation balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbKind {
    Nftables,
    Ipvs,
}

impl LbKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LbKind::Nftables => "nftables",
            LbKind::Ipvs => "ipvs",
        }
    }
}

/// What one `program` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbReport {
    /// Kernel changes applied (0 when the namespace already matched).
    pub changes: usize,
    /// Conntrack entries deleted for removed backends.
    pub conntrack_flushed: usize,
}

/// Errors of a balancer.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("{what}: {detail}")]
    Kernel { what: String, detail: String },
    #[error("namespace {path}: {source}")]
    Netns {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tool(#[from] crate::sys::SysError),
}

/// A load-balancer backend. Blocking: the agent calls it from a blocking thread.
pub trait LoadBalancer: Send + Sync + Debug {
    fn kind(&self) -> LbKind;
    /// Make the namespace at `netns` (a path such as `/var/run/netns/c1`) match `spec`.
    fn program(&self, netns: &Path, spec: &LbSpec) -> Result<LbReport, LbError>;
    /// Drop whatever is remembered about `netns` (it went away).
    fn forget(&self, _netns: &Path) {}
}
