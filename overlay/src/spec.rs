//! Desired state: what the agent wants this node's dataplane to look like.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::{Error, Names, mac};

/// An overlay network that needs a sandbox on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Cluster-wide network id (the `network` of endpoints and peers refers to it).
    pub id: String,
    /// VXLAN network identifier, 1..=0xFFFFFF; also names the sandbox (`<prefix>-<vni>`).
    pub vni: u32,
    /// The IPv4 subnet; every endpoint address lies in it.
    pub subnet: Ipv4Network,
    /// Address of `br0` in the sandbox (the same on every node, as libnetwork does). It is
    /// not a route to anywhere: containers get no default route from the overlay.
    pub gateway: Ipv4Addr,
    /// MTU of `br0`, `vxlan0` and (normally) every endpoint: underlay MTU - 50 for VXLAN over
    /// IPv4, less ESP overhead when encrypted.
    pub mtu: u32,
    /// UDP destination port of the VXLAN device (4789 is the IANA port).
    pub vxlan_port: u16,
}

/// A container attachment on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    /// Cluster-wide endpoint id; the sandbox-side veth name is derived from it.
    pub id: String,
    /// Id of the [`NetworkSpec`] (must be in [`Desired::networks`]).
    pub network: String,
    /// The container's network namespace, e.g. `/var/run/netns/c1` or `/proc/PID/ns/net`.
    pub netns: PathBuf,
    /// Interface name inside the container, e.g. `eth0`. Must not exist there before attach.
    pub ifname: String,
    /// Address inside the network's subnet.
    pub ip: Ipv4Addr,
    /// Prefix length of `ip`; equal to the subnet's.
    pub prefix_len: u8,
    /// Container-side MAC (unicast).
    #[serde(with = "crate::mac::serde_str")]
    pub mac: [u8; 6],
    /// MTU of both veth ends.
    pub mtu: u32,
    /// Whether the container end is handed to a runtime that moves it (see [`Handoff`]).
    #[serde(default)]
    pub handoff: Handoff,
}

/// Endpoints whose container end a runtime takes over (Docker's remote network drivers:
/// the driver creates the pair with the container end in the host namespace and names it,
/// the runtime moves it into the container, renames it and sets its address).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handoff {
    /// An ordinary endpoint: both ends are checked and repaired.
    #[default]
    No,
    /// Not handed over yet: created (container end in `netns` as `ifname`) and checked like
    /// an ordinary endpoint.
    Pending,
    /// Handed over: only the sandbox end is checked, and it is never re-created (when it is
    /// gone, the runtime's container went with it); the container end is not read.
    Done,
}

/// An endpoint on another node, as published in the `peers` table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RemotePeer {
    /// Network id.
    pub network: String,
    /// Endpoint id (used only to break ties deterministically).
    pub endpoint: String,
    /// The endpoint's overlay address.
    pub ip: Ipv4Addr,
    /// The endpoint's MAC.
    #[serde(with = "crate::mac::serde_str")]
    pub mac: [u8; 6],
    /// Data-path (underlay) address of the node that hosts the endpoint.
    pub vtep: Ipv4Addr,
}

/// Everything this node's dataplane should contain. Objects of the executor's prefix that are
/// not described here are removed by a reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Networks that need a sandbox on this node (because they have local endpoints or were
    /// pre-created). A sandbox exists exactly for these.
    pub networks: Vec<NetworkSpec>,
    /// Local attachments; each one's network must be listed in `networks`.
    pub endpoints: Vec<LocalEndpoint>,
    /// Remote endpoints. Peer records are gossip input and are never rejected: the planner
    /// ignores peers of networks not in `networks`, peers whose `vtep` is the local VTEP,
    /// peers with a non-unicast MAC or a VTEP that is not a unicast address, and peers that
    /// clash with a local endpoint's IP or MAC on the same network. When two peers claim the
    /// same IP (or MAC), the one with the smallest endpoint id wins.
    pub peers: Vec<RemotePeer>,
}

impl Desired {
    /// Checks the parts of the desired state that come from this node (networks, local
    /// endpoints). Peers are not checked (see [`Desired::peers`]). [`crate::Executor::reconcile`]
    /// calls this first and applies nothing when it fails.
    pub fn validate(&self, names: &Names) -> Result<(), Error> {
        names.validate()?;
        let mut by_id: BTreeMap<&str, &NetworkSpec> = BTreeMap::new();
        let mut vnis = BTreeSet::new();
        for n in &self.networks {
            let invalid = |reason: String| Error::Invalid {
                object: format!("network {:?}", n.id),
                reason,
            };
            if n.id.is_empty() {
                return Err(invalid("empty id".into()));
            }
            if by_id.insert(&n.id, n).is_some() {
                return Err(invalid("listed twice".into()));
            }
            if n.vni == 0 || n.vni > 0x00ff_ffff {
                return Err(invalid(format!("vni {} is outside 1..=16777215", n.vni)));
            }
            if !vnis.insert(n.vni) {
                return Err(invalid(format!("vni {} is used by another network", n.vni)));
            }
            if !n.subnet.contains(n.gateway) {
                return Err(invalid(format!(
                    "gateway {} is outside subnet {}",
                    n.gateway, n.subnet
                )));
            }
            if !(68..=65535).contains(&n.mtu) {
                return Err(invalid(format!("mtu {} is outside 68..=65535", n.mtu)));
            }
            if n.vxlan_port == 0 {
                return Err(invalid("vxlan_port 0".into()));
            }
        }
        let mut ids = BTreeSet::new();
        let mut veths: BTreeMap<String, &str> = BTreeMap::new();
        let mut ifaces = BTreeSet::new();
        for e in &self.endpoints {
            let invalid = |reason: String| Error::Invalid {
                object: format!("endpoint {:?}", e.id),
                reason,
            };
            if e.id.is_empty() {
                return Err(invalid("empty id".into()));
            }
            if !ids.insert(&e.id) {
                return Err(invalid("listed twice".into()));
            }
            let Some(n) = by_id.get(e.network.as_str()) else {
                return Err(invalid(format!(
                    "network {:?} is not in the desired networks",
                    e.network
                )));
            };
            if !n.subnet.contains(e.ip) {
                return Err(invalid(format!(
                    "ip {} is outside subnet {} of network {:?}",
                    e.ip, n.subnet, n.id
                )));
            }
            if e.prefix_len != n.subnet.prefix() {
                return Err(invalid(format!(
                    "prefix_len {} differs from the prefix of subnet {}",
                    e.prefix_len, n.subnet
                )));
            }
            if e.ip == n.gateway {
                return Err(invalid(format!("ip {} is the gateway", e.ip)));
            }
            if !mac::is_unicast(&e.mac) {
                return Err(invalid(format!(
                    "mac {} is not a unicast address",
                    mac::format(&e.mac)
                )));
            }
            if !(68..=65535).contains(&e.mtu) {
                return Err(invalid(format!("mtu {} is outside 68..=65535", e.mtu)));
            }
            if !e.netns.is_absolute() {
                return Err(invalid(format!(
                    "netns {} is not an absolute path",
                    e.netns.display()
                )));
            }
            if !valid_ifname(&e.ifname) {
                return Err(invalid(format!(
                    "ifname {:?} is not a valid interface name",
                    e.ifname
                )));
            }
            if !ifaces.insert((&e.netns, &e.ifname)) {
                return Err(invalid(format!(
                    "ifname {:?} in {} is used by another endpoint",
                    e.ifname,
                    e.netns.display()
                )));
            }
            if let Some(other) = veths.insert(names.veth(&e.id), &e.id) {
                return Err(invalid(format!(
                    "its veth name {} collides with endpoint {other:?}; rename one of them",
                    names.veth(&e.id)
                )));
            }
        }
        Ok(())
    }
}

/// Linux interface name rules: 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}
