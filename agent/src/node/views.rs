//! What the agent's operations return: its own types, with everything a caller shows (names
//! resolved, counts taken). The API turns them into messages (`crate::api::convert`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use networkdb::NodeId;
use serde::Serialize;

use crate::records::{NetworkDef, ServiceDef};

/// A network definition with where it is used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub def: NetworkDef,
    /// Endpoints on it, cluster-wide, as far as this node knows.
    pub endpoints: u32,
    /// Names of the nodes with endpoints on it, sorted.
    pub nodes: Vec<String>,
}

/// The parts of an endpoint only its own node knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LocalPart {
    pub ifname: String,
    pub netns: PathBuf,
    pub mtu: u32,
}

/// An endpoint, local or another node's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointInfo {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub network_name: String,
    pub node: NodeId,
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    pub disabled: bool,
    /// `Some` for an endpoint of this node.
    pub local: Option<LocalPart>,
    /// Id of the service it backs, and its name when known.
    pub service: Option<(String, String)>,
    /// The resolver its container should use (only for this node's endpoints, when this
    /// agent serves DNS).
    pub dns_server: Option<Ipv4Addr>,
    /// The client id it was attached with (only for this node's endpoints).
    pub client_id: Option<String>,
    /// The network's gateway.
    pub gateway: Ipv4Addr,
}

/// A service's VIP on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VipInfo {
    pub network_id: String,
    pub network_name: String,
    pub vip: Ipv4Addr,
}

/// One backend of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendInfo {
    pub endpoint_id: String,
    pub endpoint_name: String,
    pub network_id: String,
    pub network_name: String,
    pub node: NodeId,
    pub node_name: String,
    pub ip: Ipv4Addr,
    pub disabled: bool,
}

/// A service with its VIPs and (for Inspect) its backends and published-port status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    pub def: ServiceDef,
    pub vips: Vec<VipInfo>,
    pub backends: Vec<BackendInfo>,
    /// Per node and published port (Inspect only).
    pub published_status: Vec<PublishedStatusInfo>,
}

/// One node's view of one published port (from its `mesh` record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PublishedStatusInfo {
    pub node: NodeId,
    pub node_name: String,
    pub protocol: crate::records::Protocol,
    pub port: u16,
    pub ready: bool,
    pub reason: String,
}

/// A node of the cluster as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node: NodeId,
    /// From its record; empty until that arrived.
    pub name: String,
    pub gossip_addr: SocketAddr,
    pub data_path: Option<Ipv4Addr>,
    pub up: bool,
    pub is_self: bool,
    pub generation: u64,
    pub esp: bool,
}

/// A key ring as shown: tags, primary, and what the last change did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RingInfo {
    pub tags: Vec<u64>,
    /// 0 when the ring is empty.
    pub primary: u64,
    pub added: u32,
    pub pruned: u32,
    pub primary_changed: bool,
}

/// Both rings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeysInfo {
    pub gossip: RingInfo,
    pub dataplane: RingInfo,
}

/// This node's identity and counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusInfo {
    pub node: NodeId,
    pub node_name: String,
    pub advertise_addr: SocketAddr,
    pub data_path_addr: Ipv4Addr,
    pub members_up: u32,
    pub networks: u32,
    pub local_endpoints: u32,
    pub dataplane: &'static str,
    pub version: &'static str,
    pub uptime_secs: u64,
    pub reconcile_runs: u64,
    pub reconcile_errors: u64,
    pub join_state: String,
    pub load_balancer: Option<&'static str>,
    pub load_balancer_note: String,
    /// `Err(why)` when encrypted networks cannot attach here.
    pub esp: Result<(), String>,
    pub keys: KeysInfo,
    pub encrypted_networks: u32,
    pub esp_sas: u32,
}
