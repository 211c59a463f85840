//! Local state: what this node owns, kept in the state dir so that a restarted agent (after
//! SIGTERM, `kill -9` or a reboot of the agent alone) knows its endpoints, the networks it
//! has sandboxes for and its address block claims, re-announces them, and adopts its kernel
//! objects instead of disturbing running containers.
//!
//! Files (JSON, readable by people):
//! * `node-id`: the node's id (16 hex digits), generated once;
//! * `state.json`: [`LocalState`];
//! * `definitions.json`: the durable tables (networks, services) as networkdb saves them
//!   (every definition this node has seen, deletes included; see [`DEFINITIONS_FILE`]).
//!
//! Every write is crash-safe: a temporary file is written and fsynced, renamed over the old
//! one, and the directory is fsynced. A reader sees the old or the new file, never a mix.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use networkdb::NodeId;
use serde::{Deserialize, Serialize};

use crate::records::{NetworkDef, ServiceDef};

/// The file networkdb keeps the durable tables in, inside the state dir.
pub const DEFINITIONS_FILE: &str = "definitions.json";

/// One endpoint this node created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalEndpoint {
    pub id: String,
    pub name: String,
    /// Network id.
    pub network: String,
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    pub ifname: String,
    pub netns: PathBuf,
    pub mtu: u32,
    /// Id of the service this endpoint backs.
    #[serde(default)]
    pub service: Option<String>,
    /// Draining (see [`crate::records::EndpointRecord::disabled`]).
    #[serde(default)]
    pub disabled: bool,
    /// resolv.conf written for the container (removed on detach).
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
    /// The caller's identity of the attachment (a CNI container id and interface, a Docker
    /// endpoint id): attach and detach are idempotent by it.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Identity (device, inode) of the namespace `netns` named at attach: an endpoint with a
    /// client id whose namespace is gone or replaced is detached by the agent.
    #[serde(default)]
    pub netns_id: Option<(u64, u64)>,
    /// The container end was created in the agent's namespace and handed to a runtime that
    /// moved it (Docker): the agent checks only the bridge end, and does not enter the
    /// container's namespace (no embedded resolver or balancer there).
    #[serde(default)]
    pub handoff: bool,
    /// The hand-off happened: the pair was created and its container end given to the
    /// runtime (the overlay then keeps only the bridge end, and never re-creates it).
    #[serde(default)]
    pub handed_off: bool,
}

impl LocalEndpoint {
    /// Whether the agent works inside this endpoint's container namespace (resolver,
    /// balancer): not for endpoints handed to a runtime.
    pub fn in_container(&self) -> bool {
        !self.handoff
    }

    /// The overlay's view of the hand-off.
    pub fn overlay_handoff(&self) -> overlay::Handoff {
        match (self.handoff, self.handed_off) {
            (false, _) => overlay::Handoff::No,
            (true, false) => overlay::Handoff::Pending,
            (true, true) => overlay::Handoff::Done,
        }
    }
}

/// This node's ingress endpoint on one network: its door into the overlay for published
/// ports (see [`crate::mesh`]). Its network is in [`LocalState::networks`] while it exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressEndpoint {
    /// Endpoint id in the network's `peers` table (`ingress-<node id>`).
    pub id: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Interface name in the host namespace.
    pub ifname: String,
}

/// Everything this node owns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// Endpoints by id.
    pub endpoints: BTreeMap<String, LocalEndpoint>,
    /// Networks this node has (or is creating) a sandbox for: a copy of the definition as it
    /// was when the first endpoint attached (kept so the sandbox survives the definition's
    /// deletion racing with endpoints, and so a restart needs no gossip to rebuild it).
    pub networks: BTreeMap<String, NetworkDef>,
    /// This node's block claims: network id -> block (CIDR text) -> claim time (ms).
    pub claims: BTreeMap<String, BTreeMap<String, u64>>,
    /// Services this node created whose VIPs are addresses of this node's blocks (until they
    /// are deleted): it keeps holding those blocks (see `vip_networks`). The definitions
    /// themselves live in the durable `services` table, which every node saves and restores.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceDef>,
    /// Networks this node holds VIPs on (keeps their gossip and block claims even without
    /// local endpoints): a copy of the definition as it was when the first VIP was taken.
    #[serde(default)]
    pub vip_networks: BTreeMap<String, NetworkDef>,
    /// Ingress endpoints by network id (published ports need them; see [`IngressEndpoint`]).
    #[serde(default)]
    pub ingress: BTreeMap<String, IngressEndpoint>,
    /// Networks held for a runtime's own network object without local endpoints (a Docker
    /// network on this node): joined and with block claims, so that addresses can be
    /// reserved on them before any endpoint exists. A copy of the definition as pinned.
    #[serde(default)]
    pub pinned_networks: BTreeMap<String, NetworkDef>,
    /// Addresses reserved ahead of an attach (Docker's IPAM hands out addresses before the
    /// endpoint exists): network id -> address -> holder (the client id the attach will
    /// carry, or a placeholder until it is known). An attach with that client id and address
    /// takes the reservation over.
    #[serde(default)]
    pub reservations: BTreeMap<String, BTreeMap<Ipv4Addr, String>>,
}

impl LocalState {
    /// Definition of a network this node holds addresses on (endpoints or VIPs).
    pub fn held_network(&self, id: &str) -> Option<&NetworkDef> {
        self.networks
            .get(id)
            .or_else(|| self.vip_networks.get(id))
            .or_else(|| self.pinned_networks.get(id))
    }

    /// Ids of the networks this node holds addresses on.
    pub fn held_networks(&self) -> std::collections::BTreeSet<String> {
        self.networks
            .keys()
            .chain(self.vip_networks.keys())
            .chain(self.pinned_networks.keys())
            .cloned()
            .collect()
    }

    /// Whether anything still holds `net` on this node: its sandbox (local endpoints, the
    /// ingress endpoint), VIPs of this node's services, a runtime's pin.
    pub fn holds(&self, net: &str) -> bool {
        self.networks.contains_key(net)
            || self.vip_networks.contains_key(net)
            || self.pinned_networks.contains_key(net)
    }

    /// The local endpoint attached with `client_id`.
    pub fn endpoint_of_client(&self, client_id: &str) -> Option<&LocalEndpoint> {
        self.endpoints
            .values()
            .find(|e| e.client_id.as_deref() == Some(client_id))
    }

    /// Local endpoints with this id or name, on `network` (an id or name; "" = any).
    pub fn endpoints_named<'a>(
        &'a self,
        name_or_id: &'a str,
        network: &'a str,
    ) -> impl Iterator<Item = &'a LocalEndpoint> + 'a {
        self.endpoints
            .values()
            .filter(move |e| e.id == name_or_id || e.name == name_or_id)
            .filter(move |e| {
                network.is_empty()
                    || e.network == network
                    || self
                        .networks
                        .get(&e.network)
                        .is_some_and(|d| d.name == network)
            })
    }

    /// VIPs this node holds on `net`.
    pub fn vips_on<'a>(&'a self, net: &'a str) -> impl Iterator<Item = Ipv4Addr> + 'a {
        self.services
            .values()
            .filter_map(move |s| s.vips.get(net).copied())
    }

    /// Addresses reserved on `net`.
    pub fn reserved_on<'a>(&'a self, net: &str) -> impl Iterator<Item = Ipv4Addr> + 'a {
        self.reservations
            .get(net)
            .into_iter()
            .flat_map(|r| r.keys().copied())
    }

    /// Local endpoint count per network id.
    pub fn endpoint_counts(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for e in self.endpoints.values() {
            *out.entry(e.network.clone()).or_insert(0) += 1;
        }
        out
    }
}

/// Errors of the state dir.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason} (move it away to start afresh)")]
    Corrupt { path: PathBuf, reason: String },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Create the directory (mode 0700) if needed.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io("chmod", dir))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The node id, generated (random, non-zero) and stored on first use.
    pub fn node_id(&self) -> Result<NodeId, StateError> {
        let path = self.dir.join("node-id");
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<NodeId>()
                .ok()
                .filter(|id| id.0 != 0)
                .ok_or_else(|| StateError::Corrupt {
                    path: path.clone(),
                    reason: format!("{:?} is not 16 hex digits", text.trim()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut id = 0;
                while id == 0 {
                    id = rand::random::<u64>();
                }
                let id = NodeId(id);
                write_atomic(&path, format!("{id}\n").as_bytes())?;
                Ok(id)
            }
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// The local state (empty when there is none yet).
    pub fn load(&self) -> Result<LocalState, StateError> {
        let path = self.dir.join("state.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LocalState::default()),
            Err(e) => Err(io("read", &path)(e)),
        }
    }

    /// Replace the local state, crash-safely.
    pub fn save(&self, state: &LocalState) -> Result<(), StateError> {
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        write_atomic(&self.dir.join("state.json"), &bytes)
    }
}

/// Write `bytes` to `path` so that a crash leaves either the old or the new content:
/// temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_is_generated_once_and_kept() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        let a = s.node_id().unwrap();
        assert_ne!(a.0, 0);
        let again = StateDir::open(t.path()).unwrap().node_id().unwrap();
        assert_eq!(a, again);
    }

    #[test]
    fn state_survives_a_save_and_load_and_no_temp_file_is_left() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::open(t.path()).unwrap();
        assert_eq!(s.load().unwrap(), LocalState::default());
        let mut st = LocalState::default();
        st.endpoints.insert(
            "e1".into(),
            LocalEndpoint {
                id: "e1".into(),
                name: "web".into(),
                network: "n1".into(),
                aliases: vec!["www".into()],
                ip: "10.0.0.2".parse().unwrap(),
                prefix: 24,
                mac: [2, 0x42, 10, 0, 0, 2],
                ifname: "eth0".into(),
                netns: "/var/run/netns/c1".into(),
                mtu: 1450,
                service: None,
                disabled: false,
                resolv_conf: None,
                client_id: Some("cni:c1:eth0".into()),
                netns_id: Some((4, 4026532000)),
                handoff: false,
                handed_off: false,
            },
        );
        st.claims
            .entry("n1".into())
            .or_default()
            .insert("10.0.0.0/28".into(), 5);
        s.save(&st).unwrap();
        assert_eq!(s.load().unwrap(), st);
        assert_eq!(st.endpoint_counts()["n1"], 1);
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_corrupt_node_id_is_reported_with_its_path() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("node-id"), "not hex").unwrap();
        let e = StateDir::open(t.path()).unwrap().node_id().unwrap_err();
        assert!(e.to_string().contains("node-id"), "{e}");
    }
}
