//! Reading networkdb: the agent's tables decoded into typed views (see [`crate::records`] for
//! the tables and their values), and the [`Snapshot`] one reconcile pass is computed from.
//! Writes are the [`crate::node::Agent`]'s business; this module only reads.
//!
//! Undecodable values (a newer agent's format, corruption) are skipped and logged by
//! [`records::decode`].

use std::collections::{BTreeMap, BTreeSet};

use networkdb::runtime::Handle;
use networkdb::{CLUSTER, NodeId};

use crate::conflict::{self, Verdict};
use crate::error::Result;
use crate::records::{
    self, ENDPOINTS, EndpointRecord, MESH, MeshRecord, NETWORKS, NODES, NetworkDef, NodeRecord,
    PEERS, PeerRecord, SERVICES, ServiceDef,
};

/// Every network definition in the table, with its verdict.
#[derive(Debug, Default)]
pub struct NetworkView {
    pub defs: Vec<NetworkDef>,
    pub verdicts: BTreeMap<String, Verdict>,
}

impl NetworkView {
    /// Accepted definitions, by name.
    pub fn accepted(&self) -> impl Iterator<Item = &NetworkDef> {
        self.defs
            .iter()
            .filter(|d| self.verdicts.get(&d.id).is_some_and(Verdict::is_accepted))
    }

    /// An accepted definition by id or name; a losing one only by id.
    pub fn find(&self, name_or_id: &str) -> Option<&NetworkDef> {
        self.defs
            .iter()
            .find(|d| d.id == name_or_id)
            .or_else(|| self.accepted().find(|d| d.name == name_or_id))
    }
}

/// The `networks` table, decoded and resolved.
pub async fn network_view(db: &Handle) -> Result<NetworkView> {
    let mut defs = Vec::new();
    for e in db.snapshot(Some(CLUSTER), Some(NETWORKS)).await? {
        if let Some(d) = e
            .new
            .as_deref()
            .and_then(|v| records::decode::<NetworkDef>(NETWORKS, &e.key, v))
            && d.id == e.key
        {
            defs.push(d);
        }
    }
    let verdicts = conflict::resolve(&defs);
    Ok(NetworkView { defs, verdicts })
}

/// The `endpoints` table of `net`: (endpoint id, record).
pub async fn endpoint_records(db: &Handle, net: &str) -> Result<Vec<(String, EndpointRecord)>> {
    Ok(db
        .snapshot(Some(net), Some(ENDPOINTS))
        .await?
        .into_iter()
        .filter_map(|e| {
            let r = records::decode::<EndpointRecord>(ENDPOINTS, &e.key, e.new.as_deref()?)?;
            Some((e.key, r))
        })
        .collect())
}

/// One entry of a network's `peers` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// Endpoint id.
    pub endpoint: String,
    /// The node that wrote it (the endpoint's node).
    pub owner: NodeId,
    pub record: PeerRecord,
}

/// The `peers` table of `net`.
pub async fn peer_records(db: &Handle, net: &str) -> Result<Vec<PeerEntry>> {
    Ok(db
        .snapshot(Some(net), Some(PEERS))
        .await?
        .into_iter()
        .filter_map(|e| {
            let record = records::decode::<PeerRecord>(PEERS, &e.key, e.new.as_deref()?)?;
            Some(PeerEntry {
                endpoint: e.key,
                owner: e.owner,
                record,
            })
        })
        .collect())
}

/// The `mesh` table of `net`: (writer node, record).
pub async fn mesh_records(db: &Handle, net: &str) -> Result<Vec<(NodeId, MeshRecord)>> {
    Ok(db
        .snapshot(Some(net), Some(MESH))
        .await?
        .into_iter()
        .filter_map(|e| {
            let r = records::decode::<MeshRecord>(MESH, &e.key, e.new.as_deref()?)?;
            Some((e.owner, r))
        })
        .collect())
}

/// Services by name conflict: (accepted, losers). Of several services with one name (created
/// through different agents at the same moment), the one with the lowest (created, creator,
/// id) is accepted everywhere alike.
pub fn split_by_name(mut all: Vec<ServiceDef>) -> (Vec<ServiceDef>, Vec<ServiceDef>) {
    all.sort_by(|a, b| {
        (&a.name, a.created, a.creator, &a.id).cmp(&(&b.name, b.created, b.creator, &b.id))
    });
    let (mut accepted, mut losers) = (Vec::new(), Vec::new());
    for s in all {
        if accepted
            .last()
            .is_some_and(|w: &ServiceDef| w.name == s.name)
        {
            losers.push(s);
        } else {
            accepted.push(s);
        }
    }
    (accepted, losers)
}

/// Endpoint records that back a service, by service id.
pub fn by_service(
    records: impl IntoIterator<Item = (String, EndpointRecord)>,
) -> BTreeMap<String, Vec<(String, EndpointRecord)>> {
    let mut out: BTreeMap<String, Vec<(String, EndpointRecord)>> = BTreeMap::new();
    for (id, r) in records {
        if let Some(s) = r.service.clone() {
            out.entry(s).or_default().push((id, r));
        }
    }
    out
}

/// Every decodable entry of the `services` table, including the losers of name conflicts,
/// by (name, id).
pub async fn all_services(db: &Handle) -> Result<Vec<ServiceDef>> {
    let mut out = Vec::new();
    for e in db.snapshot(Some(CLUSTER), Some(SERVICES)).await? {
        if let Some(d) = e
            .new
            .as_deref()
            .and_then(|v| records::decode::<ServiceDef>(SERVICES, &e.key, v))
            && d.id == e.key
        {
            out.push(d);
        }
    }
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(out)
}

/// The services in force: of two created with the same name on different agents at once,
/// only the older (see [`split_by_name`]).
pub async fn services(db: &Handle) -> Result<Vec<ServiceDef>> {
    Ok(split_by_name(all_services(db).await?).0)
}

/// Node records of the nodes that are up (this node's own included), by id.
pub async fn node_records(db: &Handle) -> Result<BTreeMap<NodeId, NodeRecord>> {
    let mut out = BTreeMap::new();
    for e in db.snapshot(Some(CLUSTER), Some(NODES)).await? {
        let (Ok(id), Some(v)) = (e.key.parse::<NodeId>(), e.new.as_deref()) else {
            continue;
        };
        if let Some(rec) = records::decode::<NodeRecord>(NODES, &e.key, v) {
            out.insert(id, rec);
        }
    }
    Ok(out)
}

/// Node records by id including those of nodes that are down (their entries are suspended,
/// not gone): for naming nodes, never for what is live.
pub async fn known_node_records(db: &Handle) -> Result<BTreeMap<NodeId, NodeRecord>> {
    let mut out = BTreeMap::new();
    for r in db.records(CLUSTER, NODES).await? {
        let (Ok(id), Some(v)) = (r.key.parse::<NodeId>(), r.value.as_deref()) else {
            continue;
        };
        if let Some(rec) = records::decode::<NodeRecord>(NODES, &r.key, v) {
            out.insert(id, rec);
        }
    }
    Ok(out)
}

/// Everything one reconcile pass reads from the tables, taken once at its start, so that
/// the overlay, the balancer, the resolver and IPsec all work from the same state.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub networks: NetworkView,
    /// The services in force ([`services`]).
    pub services: Vec<ServiceDef>,
    /// `endpoints` of every network this node holds, by network id.
    pub endpoints: BTreeMap<String, Vec<(String, EndpointRecord)>>,
    /// `peers` of every network this node holds, by network id.
    pub peers: BTreeMap<String, Vec<PeerEntry>>,
    /// Records of the nodes that are up.
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// `mesh` of every network this node holds, by network id.
    pub mesh: BTreeMap<String, Vec<(NodeId, MeshRecord)>>,
}

impl Snapshot {
    /// Read the tables for a pass over the networks in `held`.
    pub async fn take(db: &Handle, held: &BTreeSet<String>) -> Result<Snapshot> {
        let mut s = Snapshot {
            networks: network_view(db).await?,
            services: services(db).await?,
            nodes: node_records(db).await?,
            ..Snapshot::default()
        };
        for net in held {
            s.endpoints
                .insert(net.clone(), endpoint_records(db, net).await?);
            s.peers.insert(net.clone(), peer_records(db, net).await?);
            s.mesh.insert(net.clone(), mesh_records(db, net).await?);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use networkdb::NodeId;

    use super::*;
    use crate::records::ServiceMode;

    fn svc(id: &str, name: &str, created: u64, creator: u64) -> ServiceDef {
        ServiceDef {
            id: id.into(),
            name: name.into(),
            aliases: vec![],
            mode: ServiceMode::Vip,
            ports: vec![],
            networks: vec![],
            vips: BTreeMap::new(),
            creator: NodeId(creator),
            created,
            published: Vec::new(),
        }
    }

    #[test]
    fn of_two_services_with_one_name_the_older_wins_everywhere_alike() {
        let a = svc("a", "web", 10, 2);
        let b = svc("b", "web", 9, 3);
        let c = svc("c", "db", 50, 1);
        let d = svc("d", "web", 9, 1);
        let (acc, lost) = split_by_name(vec![a.clone(), b.clone(), c.clone(), d.clone()]);
        assert_eq!(acc, vec![c.clone(), d.clone()]);
        assert_eq!(lost, vec![b.clone(), a.clone()]);
        let (acc2, _) = split_by_name(vec![d, c, b, a]);
        assert_eq!(acc2, acc, "the order of arrival does not matter");
    }
}
