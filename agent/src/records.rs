//! Values the agent stores in networkdb tables (postcard-encoded) and the table names.
//!
//! | table | scope | key | value |
//! | --- | --- | --- | --- |
//! | [`NODES`] | cluster | node id (hex) | [`NodeRecord`] |
//! | [`NETWORKS`] | cluster | network id | [`NetworkDef`] |
//! | [`IPAM`] | network | `<block>@<node id>` | [`BlockClaim`] |
//! | [`PEERS`] | network | endpoint id | [`PeerRecord`] |
//! | [`ENDPOINTS`] | network | endpoint id | [`EndpointRecord`] |
//! | [`SERVICES`] | cluster | service id | [`ServiceDef`] |
//!
//! [`NETWORKS`] and [`SERVICES`] are durable ([`DURABLE_TABLES`]): any node may update or
//! delete them, and they never go with the node that wrote them. The other tables hold facts
//! of their writer node and are suspended, restored and reaped with it.
//!
//! Decoding never panics: a value that does not decode (a newer agent's format, corruption)
//! is skipped by every reader and logged.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use networkdb::NodeId;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub const NODES: &str = "nodes";
pub const NETWORKS: &str = "networks";
pub const IPAM: &str = "ipam";
pub const PEERS: &str = "peers";
pub const ENDPOINTS: &str = "endpoints";
pub const SERVICES: &str = "services";

/// Tables whose entries are durable in networkdb: definitions an operator made, which outlive
/// the node that served the call and go only with an explicit delete.
pub const DURABLE_TABLES: [&str; 2] = [NETWORKS, SERVICES];

/// Encode a record for networkdb.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("records always encode")
}

/// Decode a record; `None` (and a debug log) when it does not decode.
pub fn decode<T: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Option<T> {
    match postcard::from_bytes(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!(table, key, error = %e, "skipping an undecodable record");
            None
        }
    }
}

/// An overlay network definition, in the cluster-scope `networks` table under its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    pub id: String,
    pub name: String,
    pub vni: u32,
    /// Subnet network address and prefix (see [`NetworkDef::subnet`]).
    pub subnet_addr: Ipv4Addr,
    pub subnet_prefix: u8,
    pub gateway: Ipv4Addr,
    /// 0: automatic (underlay MTU - 50 on each node).
    pub mtu: u32,
    pub encrypted: bool,
    /// The node that served the Create call (and repairs the definition if it loses a
    /// conflict).
    pub creator: NodeId,
    /// Creation stamp from the creator's hybrid logical clock (milliseconds). With
    /// `creator` and `id` it orders definitions: the lower one is older and wins conflicts.
    pub created: u64,
    /// Times the definition was repaired after losing a conflict.
    pub revision: u32,
    /// Why it was last repaired (empty if never).
    pub note: String,
}

impl NetworkDef {
    pub fn subnet(&self) -> Ipv4Network {
        Ipv4Network::new(self.subnet_addr, self.subnet_prefix)
            .unwrap_or_else(|_| Ipv4Network::new(self.subnet_addr, 32).expect("/32 is valid"))
    }

    pub fn set_subnet(&mut self, subnet: Ipv4Network) {
        self.subnet_addr = subnet.network();
        self.subnet_prefix = subnet.prefix();
    }

    /// Conflict order: older (lower) first.
    pub fn age(&self) -> (u64, NodeId, &str) {
        (self.created, self.creator, &self.id)
    }
}

/// A node's description of itself, in the cluster-scope `nodes` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub gossip_addr: String,
    pub data_path: Ipv4Addr,
    pub version: String,
    /// "kernel" or "none".
    pub dataplane: String,
    /// Local endpoint count per network id (networks with none are absent).
    pub endpoints: BTreeMap<String, u32>,
    /// It can attach to encrypted networks (IPsec ESP works in its kernel); peers accept ESP
    /// from it (inbound SAs) even before they share an encrypted network with it.
    pub esp: bool,
    /// Version of the SPI and key derivation it uses ([`overlay::esp::LAYOUT_VERSION`]).
    pub esp_layout: u32,
}

/// An endpoint's dataplane facts, in its network's `peers` table under the endpoint id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub vtep: Ipv4Addr,
}

/// An endpoint's identity, in its network's `endpoints` table under the endpoint id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub name: String,
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    pub network: String,
    pub node: NodeId,
    /// Draining: still attached, but no new connections or DNS answers go to it.
    pub disabled: bool,
    /// Id of the service this endpoint backs (see [`ServiceDef`]).
    pub service: Option<String>,
}

/// How a service is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceMode {
    /// One virtual IP per network, balanced in each client's namespace.
    Vip,
    /// No VIP: DNS answers with the backends' addresses.
    Dnsrr,
}

impl ServiceMode {
    /// `vip` or `dnsrr`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Vip => "vip",
            ServiceMode::Dnsrr => "dnsrr",
        }
    }
}

/// Transport protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port a VIP service balances: clients connect to `port`, backends receive `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    pub protocol: Protocol,
    pub port: u16,
    pub target: u16,
}

/// A service, in the cluster-scope `services` table under its id.
///
/// Backends are the endpoints whose [`EndpointRecord::service`] is this id, on any of
/// `networks`. With no `ports`, a VIP service balances every TCP and UDP port (and ICMP echo)
/// unchanged, as Docker's fwmark services do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDef {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
    pub mode: ServiceMode,
    pub ports: Vec<ServicePort>,
    /// Network ids the service is on.
    pub networks: Vec<String>,
    /// VIP per network id (empty for [`ServiceMode::Dnsrr`]); allocated from the creator's
    /// address blocks.
    pub vips: BTreeMap<String, Ipv4Addr>,
    /// The node that served the Create call and holds the VIPs.
    pub creator: NodeId,
    /// Creation time on the creator (ms since the epoch).
    pub created: u64,
}

/// A claim on an address block, in the network's `ipam` table under `<block>@<node>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockClaim {
    pub node: NodeId,
    /// Wall-clock milliseconds of the claiming node when it claimed.
    pub claimed_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_definition_survives_encoding() {
        let d = NetworkDef {
            id: "abc".into(),
            name: "blue".into(),
            vni: 4096,
            subnet_addr: "10.128.0.0".parse().unwrap(),
            subnet_prefix: 24,
            gateway: "10.128.0.1".parse().unwrap(),
            mtu: 0,
            encrypted: false,
            creator: NodeId(7),
            created: 12,
            revision: 0,
            note: String::new(),
        };
        let back: NetworkDef = decode(NETWORKS, "abc", &encode(&d)).unwrap();
        assert_eq!(back, d);
        assert_eq!(back.subnet().to_string(), "10.128.0.0/24");
    }

    #[test]
    fn garbage_does_not_decode_and_does_not_panic() {
        assert!(decode::<NetworkDef>(NETWORKS, "x", &[0xff, 0xff, 0xff]).is_none());
        assert!(decode::<PeerRecord>(PEERS, "x", &[]).is_none());
    }
}
