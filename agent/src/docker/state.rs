//! What the plugin must remember across restarts of the agent and of dockerd (which never
//! re-sends RequestPool or CreateNetwork for networks it already has): Docker's pools,
//! networks and endpoints and the swarmnet objects they map to. Saved in the state dir
//! (`docker.json`, crash-safely). The endpoints themselves are agent endpoints with client
//! id `docker/<endpoint id>`: this file is an index, not a second source of truth.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};

use crate::state::{StateError, write_atomic};

/// The file in the state dir.
pub const FILE: &str = "docker.json";

/// A pool handed to Docker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The CIDR Docker got: the swarmnet network's subnet, or a placeholder until the pool
    /// is bound (RequestPool without a hint comes before CreateNetwork names the network).
    pub cidr: Ipv4Network,
    /// The swarmnet network id, once known.
    pub network: Option<String>,
    /// Docker networks using it (RequestPool minus ReleasePool).
    pub users: u32,
}

/// A Docker network on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The swarmnet network id.
    pub network: String,
    /// Its Docker pool id.
    pub pool: Option<String>,
    /// `-o swarmnet.default-route=true`: Join gives Docker the gateway (the container's
    /// default route goes into the overlay).
    pub default_route: bool,
}

/// A Docker endpoint on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Docker network id.
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
}

/// Everything the plugin keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerState {
    pub pools: BTreeMap<String, Pool>,
    pub networks: BTreeMap<String, Network>,
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl DockerState {
    /// Whether any pool or Docker network maps to swarmnet network `net`.
    pub fn uses(&self, net: &str) -> bool {
        self.pools
            .values()
            .any(|p| p.network.as_deref() == Some(net))
            || self.networks.values().any(|n| n.network == net)
    }
}

/// The file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn in_dir(dir: &Path) -> StateFile {
        StateFile {
            path: dir.join(FILE),
        }
    }

    /// The saved state (empty when there is none).
    pub fn load(&self) -> Result<DockerState, StateError> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerState::default()),
            Err(e) => Err(StateError::Io {
                op: "read",
                path: self.path.clone(),
                source: e,
            }),
        }
    }

    pub fn save(&self, s: &DockerState) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(s).expect("docker state serializes");
        write_atomic(&self.path, &bytes)
    }
}
