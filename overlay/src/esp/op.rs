//! Operations of the ESP dataplane: the planner's output and the executor's input.

use std::fmt;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::{GuardRule, PolicySpec, SaDir, SaSpec, Selector4};

/// One change to the kernel's xfrm state or to the guard table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EspOp {
    /// Replace the guard table with exactly these rules (one `nft -f` transaction, so there
    /// is never a moment without them).
    SetGuard {
        /// Rules, sorted.
        rules: Vec<GuardRule>,
    },
    /// `XFRM_MSG_NEWSA`. If an SA with the same destination and SPI appeared meanwhile, the
    /// executor deletes it and adds this one.
    AddSa(SaSpec),
    /// The SA at (dst, spi) differs from the spec: delete it, then add the spec (the SA is
    /// briefly absent; only happens when a key changed under a tag or the SA was altered).
    ReplaceSa(SaSpec),
    /// `XFRM_MSG_NEWAE` with a zero `XFRMA_REPLAY_ESN_VAL`: the inbound SA (dst, spi) keeps
    /// its key and counters but forgets which sequence numbers it has seen, so a sender that
    /// started its sequence numbers again is accepted at once (no moment without the SA,
    /// unlike a replace).
    ResetReplay {
        /// Outer source (the peer).
        src: Ipv4Addr,
        /// Outer destination (this node).
        dst: Ipv4Addr,
        /// SPI.
        spi: u32,
    },
    /// `XFRM_MSG_UPDPOLICY` (add or replace in place: the switch to a new primary SPI is
    /// atomic).
    SetPolicy(PolicySpec),
    /// `XFRM_MSG_DELPOLICY` of the policy with this direction, selector and mark.
    DeletePolicy {
        /// `XFRM_POLICY_*` direction.
        dir: u8,
        /// Selector.
        selector: Selector4,
        /// Mark and mask.
        mark: (u32, u32),
    },
    /// `XFRM_MSG_DELSA` of the ESP SA (dst, spi). Gone already counts as done.
    DeleteSa {
        /// Outer source.
        src: Ipv4Addr,
        /// Outer destination.
        dst: Ipv4Addr,
        /// SPI.
        spi: u32,
    },
    /// Delete the guard table (no encrypted network left on this node).
    DeleteGuard,
}

impl fmt::Display for EspOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = |d: SaDir| match d {
            SaDir::In => "in",
            SaDir::Out => "out",
        };
        match self {
            EspOp::SetGuard { rules } => {
                write!(f, "set guard:")?;
                for r in rules {
                    write!(f, " {}/{}", r.port, r.vni)?;
                }
                Ok(())
            }
            EspOp::AddSa(s) => write!(
                f,
                "add {} sa {} -> {} spi {:#010x} tag {}",
                dir(s.dir),
                s.src,
                s.dst,
                s.spi,
                s.tag
            ),
            EspOp::ReplaceSa(s) => write!(
                f,
                "replace {} sa {} -> {} spi {:#010x} tag {}",
                dir(s.dir),
                s.src,
                s.dst,
                s.spi,
                s.tag
            ),
            EspOp::ResetReplay { src, dst, spi } => {
                write!(f, "reset replay state of sa {src} -> {dst} spi {spi:#010x}")
            }
            EspOp::SetPolicy(p) => write!(
                f,
                "set policy out {} -> {} udp dport {} via spi {:#010x}",
                p.src, p.dst, p.port, p.spi
            ),
            EspOp::DeletePolicy { dir, selector, .. } => write!(
                f,
                "delete policy dir {dir} {} -> {} proto {} dport {}",
                selector.src, selector.dst, selector.proto, selector.dport.0
            ),
            EspOp::DeleteSa { src, dst, spi } => {
                write!(f, "delete sa {src} -> {dst} spi {spi:#010x}")
            }
            EspOp::DeleteGuard => write!(f, "delete guard"),
        }
    }
}
