//! Actual state: what the executor read back from the kernel, limited to the objects its
//! [`Names`] prefix owns. Serializable for debug dumps.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::Names;

/// The dataplane state of one agent (one prefix) on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actual {
    /// The naming scheme the state was read with; the planner derives names from it.
    pub names: Names,
    /// Sandboxes found under the netns directory with this prefix, by VNI.
    pub sandboxes: BTreeMap<u32, Sandbox>,
}

impl Actual {
    /// No sandboxes (a node where nothing was created yet).
    pub fn empty(names: Names) -> Self {
        Actual {
            names,
            sandboxes: BTreeMap::new(),
        }
    }
}

/// One network sandbox namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// VNI parsed from the namespace name.
    pub vni: u32,
    /// Namespace name (`<prefix>-<vni>`).
    pub netns: String,
    /// `false` for a leftover file that is not a namespace mount (e.g. after a crash between
    /// creating the file and mounting it); the planner deletes it.
    pub mounted: bool,
    /// `br0`, if present.
    pub bridge: Option<Bridge>,
    /// `vxlan0`, if present.
    pub vxlan: Option<Vxlan>,
    /// Sandbox-side veths whose names have this prefix's veth shape, by name.
    pub veths: BTreeMap<String, Veth>,
    /// Any other interface except `lo` (not created by us; left alone, reported for debugging).
    pub other_links: Vec<String>,
    /// `vxlan0`'s own forwarding entries (`bridge fdb show dev vxlan0 self`).
    pub fdb: Vec<FdbEntry>,
    /// IPv4 neighbour entries on `vxlan0` (`ip neigh show dev vxlan0`).
    pub neighbours: Vec<NeighbourEntry>,
}

/// The sandbox bridge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridge {
    /// Interface index in the sandbox.
    pub ifindex: u32,
    /// `false` if an interface called `br0` exists but is not a bridge.
    pub is_bridge: bool,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// IPv4 addresses.
    pub addresses: Vec<Ipv4Network>,
}

/// The sandbox VXLAN device, as reported by `IFLA_INFO_DATA`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vxlan {
    /// Interface index in the sandbox.
    pub ifindex: u32,
    /// `false` if an interface called `vxlan0` exists but is not a VXLAN device.
    pub is_vxlan: bool,
    /// `IFLA_VXLAN_ID`.
    pub vni: Option<u32>,
    /// `IFLA_VXLAN_PORT` (host byte order).
    pub port: Option<u16>,
    /// `IFLA_VXLAN_LOCAL` (absent when no local address was configured).
    pub local: Option<Ipv4Addr>,
    /// `IFLA_VXLAN_LEARNING`.
    pub learning: bool,
    /// `IFLA_VXLAN_PROXY` (ARP suppression from the neighbour table).
    pub proxy: bool,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Enslaved to `br0`.
    pub on_bridge: bool,
}

/// The sandbox end of an endpoint's veth pair, with the container end when it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Veth {
    /// Interface name in the sandbox.
    pub name: String,
    /// Interface index in the sandbox.
    pub ifindex: u32,
    /// `IFLA_IFALIAS`: the executor stores the endpoint id here.
    pub alias: Option<String>,
    /// `false` if the interface is not a veth.
    pub is_veth: bool,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Enslaved to `br0`.
    pub on_bridge: bool,
    /// `IFLA_LINK`: the peer's index (in the peer's namespace).
    pub peer_ifindex: Option<u32>,
    /// The container end, read only for veths of desired endpoints, from that endpoint's
    /// namespace and interface name; `None` when it was not read or not found.
    pub container: Option<ContainerIface>,
}

impl Veth {
    /// Whether `container` is this veth's peer (each end's `IFLA_LINK` names the other).
    pub fn is_paired(&self) -> bool {
        self.container.as_ref().is_some_and(|c| {
            c.peer_ifindex == Some(self.ifindex) && self.peer_ifindex == Some(c.ifindex)
        })
    }
}

/// An endpoint's interface inside its container namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerIface {
    /// The namespace it was read from.
    pub netns: PathBuf,
    /// Interface name.
    pub ifname: String,
    /// Interface index in the container.
    pub ifindex: u32,
    /// `IFLA_LINK`: the peer's index.
    pub peer_ifindex: Option<u32>,
    /// MAC address.
    #[serde(with = "crate::mac::serde_opt_str")]
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// IPv4 addresses.
    pub addresses: Vec<Ipv4Network>,
}

/// Neighbour/FDB entry state (`NUD_*`, kernel names in lowercase).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nud {
    /// `NUD_INCOMPLETE`
    Incomplete,
    /// `NUD_REACHABLE` (what VXLAN learning creates)
    Reachable,
    /// `NUD_STALE`
    Stale,
    /// `NUD_DELAY`
    Delay,
    /// `NUD_PROBE`
    Probe,
    /// `NUD_FAILED`
    Failed,
    /// `NUD_NOARP` (`bridge fdb ... static`)
    Noarp,
    /// `NUD_PERMANENT`: what the executor programs.
    Permanent,
    /// `NUD_NONE`
    #[default]
    None,
    /// Any other value.
    Other(u16),
}

/// One remote of one `vxlan0` forwarding entry (`NTF_SELF`). An entry with several remotes
/// (`bridge fdb append`) appears once per remote.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FdbEntry {
    /// Destination MAC.
    #[serde(with = "crate::mac::serde_str")]
    pub mac: [u8; 6],
    /// `NDA_DST`: the remote VTEP.
    pub dst: Option<Ipv4Addr>,
    /// State; anything but [`Nud::Permanent`] is learned or hand-made.
    pub state: Nud,
    /// `NDA_PORT`, reported only when it differs from the device's port.
    pub port: Option<u16>,
    /// `NDA_VNI`, reported only when it differs from the device's VNI.
    pub vni: Option<u32>,
}

/// An IPv4 neighbour entry on `vxlan0` (the table the ARP proxy answers from).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NeighbourEntry {
    /// `NDA_DST`.
    pub ip: Ipv4Addr,
    /// `NDA_LLADDR`.
    #[serde(with = "crate::mac::serde_opt_str")]
    pub mac: Option<[u8; 6]>,
    /// State.
    pub state: Nud,
}
