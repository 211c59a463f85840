//! Identities, keys and the entry record that travels on the wire.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A node's stable identity, kept in the agent's state dir across restarts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct NodeId(pub u64);

impl NodeId {
    /// Placeholder id used when announcing to a seed whose id is not known yet.
    pub const UNKNOWN: NodeId = NodeId(0);
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(NodeId)
    }
}

/// The membership identity foca gossips: who (`id`), where (`addr`, also foca's conflict
/// address) and which life (`generation`, strictly increasing across restarts of one node;
/// the agent uses its start time in milliseconds).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub generation: u64,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.id, self.addr, self.generation)
    }
}

impl foca::Identity for Peer {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Peer {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self.id) > (adversary.generation, adversary.id)
    }
}

/// Network scope. The empty string is the cluster scope: every node is a member of it.
pub type NetworkId = String;

/// The network id of cluster-scope tables.
pub const CLUSTER: &str = "";

/// One entry as it travels: on gossip, in anti-entropy and in snapshots.
///
/// `value == None` is a tombstone; `ttl_ms` is then the time it has left before it is reaped
/// (a residual, so that nodes do not need synchronised clocks).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct EntryRecord {
    pub network: NetworkId,
    pub table: String,
    pub key: String,
    pub owner: NodeId,
    pub version: u64,
    pub value: Option<Vec<u8>>,
    pub ttl_ms: u64,
}

impl EntryRecord {
    /// Last-writer-wins order: higher Lamport version wins, ties broken by owner id.
    pub fn order(&self) -> (u64, NodeId) {
        (self.version, self.owner)
    }
}
