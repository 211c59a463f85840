//! Operations: the planner's output and the executor's input. Each is self-contained (it
//! carries every value the executor needs) and idempotent in effect where the kernel allows
//! (`Replace*` use `NLM_F_REPLACE`; deletes of something already gone succeed).

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{LocalEndpoint, mac};

/// One change to the kernel. Sandboxes are addressed by VNI (their namespace is
/// `<prefix>-<vni>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Delete every interface in the sandbox except `lo` (veth pairs take their container
    /// end with them; the VXLAN device frees its VNI in the host namespace), then unmount and
    /// remove the namespace file.
    DeleteSandbox {
        /// Sandbox.
        vni: u32,
    },
    /// Delete the sandbox end of a veth pair (the container end goes with it).
    DetachEndpoint {
        /// Sandbox.
        vni: u32,
        /// Sandbox-side name.
        veth: String,
    },
    /// Delete the neighbour entry for `ip` on `vxlan0`.
    DeleteNeighbour {
        /// Sandbox.
        vni: u32,
        /// Entry.
        ip: Ipv4Addr,
    },
    /// Delete `vxlan0`'s forwarding entry for `mac` (all its remotes), and the bridge's
    /// learned entry for it on the `vxlan0` port if there is one.
    DeleteFdb {
        /// Sandbox.
        vni: u32,
        /// Entry.
        #[serde(with = "crate::mac::serde_str")]
        mac: [u8; 6],
    },
    /// Delete `vxlan0` (it is recreated by a later [`Op::CreateVxlan`]).
    DeleteVxlan {
        /// Sandbox.
        vni: u32,
    },
    /// Create the named namespace `<prefix>-<vni>` (like `ip netns add`), bring `lo` up and
    /// disable IPv6 in it.
    CreateSandbox {
        /// Sandbox.
        vni: u32,
    },
    /// Create `br0` with the gateway address and MTU, up.
    CreateBridge {
        /// Sandbox.
        vni: u32,
        /// Address of `br0`.
        gateway: Ipv4Addr,
        /// Prefix length of the subnet.
        prefix_len: u8,
        /// MTU.
        mtu: u32,
    },
    /// Make an existing `br0` match: set MTU, remove other IPv4 addresses, add the gateway
    /// address, set up.
    ConfigureBridge {
        /// Sandbox.
        vni: u32,
        /// Address of `br0`.
        gateway: Ipv4Addr,
        /// Prefix length of the subnet.
        prefix_len: u8,
        /// MTU.
        mtu: u32,
    },
    /// Create `vxlan0` from the host namespace directly into the sandbox (so its UDP socket
    /// lives in the host namespace): `id vni dstport port local local nolearning proxy`,
    /// then enslave it to `br0` and set it up.
    CreateVxlan {
        /// Sandbox and VXLAN network identifier.
        vni: u32,
        /// UDP destination port.
        port: u16,
        /// Source address (`0.0.0.0`: none, the host's routing picks it).
        local: Ipv4Addr,
        /// MTU.
        mtu: u32,
    },
    /// Create a veth pair: `veth` in the sandbox (enslaved to `br0`, alias = endpoint id,
    /// up) and `endpoint.ifname` in the container namespace with the endpoint's MAC, MTU and
    /// address (which gives the subnet route; no default route), up.
    AttachEndpoint {
        /// Sandbox.
        vni: u32,
        /// Sandbox-side name.
        veth: String,
        /// The endpoint.
        endpoint: LocalEndpoint,
    },
    /// `bridge fdb replace <mac> dev vxlan0 dst <vtep> self permanent`.
    ReplaceFdb {
        /// Sandbox.
        vni: u32,
        /// Remote endpoint MAC.
        #[serde(with = "crate::mac::serde_str")]
        mac: [u8; 6],
        /// Remote VTEP.
        vtep: Ipv4Addr,
    },
    /// `ip neigh replace <ip> lladdr <mac> dev vxlan0 nud permanent`.
    ReplaceNeighbour {
        /// Sandbox.
        vni: u32,
        /// Remote endpoint address.
        ip: Ipv4Addr,
        /// Remote endpoint MAC.
        #[serde(with = "crate::mac::serde_str")]
        mac: [u8; 6],
    },
}

impl Op {
    /// The sandbox the operation acts on.
    pub fn vni(&self) -> u32 {
        match self {
            Op::DeleteSandbox { vni }
            | Op::DetachEndpoint { vni, .. }
            | Op::DeleteNeighbour { vni, .. }
            | Op::DeleteFdb { vni, .. }
            | Op::DeleteVxlan { vni }
            | Op::CreateSandbox { vni }
            | Op::CreateBridge { vni, .. }
            | Op::ConfigureBridge { vni, .. }
            | Op::CreateVxlan { vni, .. }
            | Op::AttachEndpoint { vni, .. }
            | Op::ReplaceFdb { vni, .. }
            | Op::ReplaceNeighbour { vni, .. } => *vni,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::DeleteSandbox { vni } => write!(f, "[{vni}] delete sandbox"),
            Op::DetachEndpoint { vni, veth } => write!(f, "[{vni}] detach {veth}"),
            Op::DeleteNeighbour { vni, ip } => write!(f, "[{vni}] delete neighbour {ip}"),
            Op::DeleteFdb { vni, mac: m } => write!(f, "[{vni}] delete fdb {}", mac::format(m)),
            Op::DeleteVxlan { vni } => write!(f, "[{vni}] delete vxlan0"),
            Op::CreateSandbox { vni } => write!(f, "[{vni}] create sandbox"),
            Op::CreateBridge {
                vni,
                gateway,
                prefix_len,
                mtu,
            } => {
                write!(f, "[{vni}] create br0 {gateway}/{prefix_len} mtu {mtu}")
            }
            Op::ConfigureBridge {
                vni,
                gateway,
                prefix_len,
                mtu,
            } => {
                write!(f, "[{vni}] configure br0 {gateway}/{prefix_len} mtu {mtu}")
            }
            Op::CreateVxlan {
                vni,
                port,
                local,
                mtu,
            } => {
                write!(
                    f,
                    "[{vni}] create vxlan0 dstport {port} local {local} mtu {mtu}"
                )
            }
            Op::AttachEndpoint {
                vni,
                veth,
                endpoint: e,
            } => write!(
                f,
                "[{vni}] attach {} as {} {}/{} in {} via {veth}",
                e.id,
                e.ifname,
                e.ip,
                e.prefix_len,
                e.netns.display()
            ),
            Op::ReplaceFdb { vni, mac: m, vtep } => {
                write!(f, "[{vni}] fdb {} -> {vtep}", mac::format(m))
            }
            Op::ReplaceNeighbour { vni, ip, mac: m } => {
                write!(f, "[{vni}] neighbour {ip} -> {}", mac::format(m))
            }
        }
    }
}
