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
//! | [`MESH`] | network | node id (hex) | [`MeshRecord`] |
//!
//! [`NETWORKS`] and [`SERVICES`] are durable ([`DURABLE_TABLES`]): any node may update or
//! delete them, and they never go with the node that wrote them. The other tables hold facts
//! of their writer node and are suspended, restored and reaped with it.
//!
//! Decoding never panics: a value that does not decode (a newer agent's format, corruption)
//! is skipped by every reader and logged.
//!
//! Layout evolution: a field is only ever added at the END of a record, and its default must
//! be postcard's all-zero encoding (an empty `Vec`, `None`, `false`, `0`). A record written
//! by an older agent, which lacks those trailing bytes, then decodes with the defaults
//! ([`decode`] retries with zero padding); an older agent reading a newer record ignores
//! the trailing bytes.

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
/// Per network: what each node's part of the routing mesh of published ports is (see
/// [`MeshRecord`]).
pub const MESH: &str = "mesh";

/// Tables whose entries are durable in networkdb: definitions an operator made, which outlive
/// the node that served the call and go only with an explicit delete.
pub const DURABLE_TABLES: [&str; 2] = [NETWORKS, SERVICES];

/// Encode a record for networkdb.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("records always encode")
}

/// Zero bytes appended when a record ends early: enough for the trailing fields added since
/// the oldest layout in use (one byte per empty `Vec`, `None`, `false` or small integer).
const ZERO_PAD: usize = 8;

/// Decode a record; `None` (and a debug log) when it does not decode. A record that ends
/// before its last fields (written by an older agent: see the module docs) decodes with
/// those fields at their zero default.
pub fn decode<T: DeserializeOwned>(table: &str, key: &str, bytes: &[u8]) -> Option<T> {
    match postcard::from_bytes(bytes) {
        Ok(v) => Some(v),
        Err(postcard::Error::DeserializeUnexpectedEnd) if !bytes.is_empty() => {
            let mut padded = bytes.to_vec();
            padded.extend_from_slice(&[0; ZERO_PAD]);
            match postcard::from_bytes(&padded) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::debug!(table, key, error = %e, "skipping an undecodable record");
                    None
                }
            }
        }
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

/// How a published port is answered (see [`PublishedPort`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PublishMode {
    /// Every node answers, balancing over every enabled backend of the cluster.
    Mesh,
    /// A node answers only with its own backends (and refuses without one).
    Local,
}

impl PublishMode {
    /// `mesh` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Mesh => "mesh",
            PublishMode::Local => "local",
        }
    }
}

/// A port published on the nodes' own addresses: clients connect to `published` on a node,
/// the backends receive `target` (on the service's first network, where the nodes' ingress
/// endpoints are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    pub protocol: Protocol,
    pub published: u16,
    pub target: u16,
    pub mode: PublishMode,
}

/// A service, in the cluster-scope `services` table under its id.
///
/// Backends are the endpoints whose [`EndpointRecord::service`] is this id, on any of
/// `networks`. With no `ports`, a VIP service balances every TCP and UDP port (and ICMP echo)
/// unchanged, as Docker's fwmark services do. `published` ports are answered on the nodes'
/// own addresses (any mode, dnsrr included) through the routing mesh of the first network.
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
    /// Ports published on the nodes' addresses (see [`PublishedPort`]); unique by
    /// (protocol, published) across every service.
    pub published: Vec<PublishedPort>,
}

impl ServiceDef {
    /// The network the published ports are reached through: the first one.
    pub fn publish_network(&self) -> Option<&str> {
        self.networks
            .first()
            .map(String::as_str)
            .filter(|_| !self.published.is_empty())
    }
}

/// One node's part of the routing mesh on one network, in that network's [`MESH`] table under
/// the node id: written by every node that has backends of published services there (its
/// readiness for other nodes' ingress endpoints) or answers published ports of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshRecord {
    /// MACs of the ingress endpoints every backend container of this node on the network is
    /// programmed to answer through (replies to a connection go back through the ingress
    /// endpoint it came in by). Another node sends new connections to this node's backends
    /// only once its own ingress MAC is listed, so a reply never lacks its way back.
    pub ingress: Vec<[u8; 6]>,
    /// Backend endpoints (ids) of this node whose container could not be programmed: no
    /// node sends them published-port traffic.
    pub failed: Vec<String>,
    /// False when this node's kernel cannot steer replies by the ingress endpoint (no
    /// netdev egress hook): other nodes then reach its backends with the client address
    /// replaced by their ingress address (SNAT), which needs nothing in the backend.
    pub keep_source: bool,
    /// Published ports this node answers now (no backend counts: a record changes only when
    /// a port's readiness does, not with every drain).
    pub ready: Vec<(Protocol, u16)>,
    /// Published ports this node does not answer, and why.
    pub problems: Vec<(Protocol, u16, String)>,
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
    fn a_service_written_before_published_ports_decodes_with_none() {
        #[derive(Serialize)]
        struct OldServiceDef {
            id: String,
            name: String,
            aliases: Vec<String>,
            mode: ServiceMode,
            ports: Vec<ServicePort>,
            networks: Vec<String>,
            vips: BTreeMap<String, Ipv4Addr>,
            creator: NodeId,
            created: u64,
        }
        let old = OldServiceDef {
            id: "s1".into(),
            name: "web".into(),
            aliases: vec!["www".into()],
            mode: ServiceMode::Vip,
            ports: vec![ServicePort {
                protocol: Protocol::Tcp,
                port: 80,
                target: 8080,
            }],
            networks: vec!["n1".into()],
            vips: BTreeMap::from([("n1".to_string(), Ipv4Addr::new(10, 0, 0, 9))]),
            creator: NodeId(3),
            created: 77,
        };
        let back: ServiceDef = decode(SERVICES, "s1", &encode(&old)).unwrap();
        assert_eq!(back.name, "web");
        assert_eq!(back.created, 77);
        assert!(back.published.is_empty());
        assert_eq!(back.publish_network(), None);
        let mut new = back.clone();
        new.published.push(PublishedPort {
            protocol: Protocol::Udp,
            published: 5353,
            target: 53,
            mode: PublishMode::Local,
        });
        let again: ServiceDef = decode(SERVICES, "s1", &encode(&new)).unwrap();
        assert_eq!(again, new);
        assert_eq!(again.publish_network(), Some("n1"));
    }

    #[test]
    fn garbage_does_not_decode_and_does_not_panic() {
        assert!(decode::<NetworkDef>(NETWORKS, "x", &[0xff, 0xff, 0xff]).is_none());
        assert!(decode::<PeerRecord>(PEERS, "x", &[]).is_none());
    }
}
