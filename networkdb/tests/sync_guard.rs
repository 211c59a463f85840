//! What anti-entropy answers, and to whom: only networks the asking node is attached to (the
//! cluster scope for anyone), and only to the IP the request came from. A request carries the
//! asker's attachments, so a node that just joined a network is answered at once.

use std::net::SocketAddr;
use std::time::Duration;

use networkdb::sim::addr_of;
use networkdb::wire::{self, Frame, Message, NetworkDigest, Sync};
use networkdb::{ATTACH_TABLE, CLUSTER, Config, Core, Effects, EntryRecord, NodeId, Peer};

const ASKER: NodeId = NodeId(9);

fn core() -> Core {
    let peer = Peer {
        id: NodeId(1),
        addr: addr_of(0),
        generation: 1,
    };
    let mut c = Core::new(Config::default(), peer, 1).expect("core");
    let mut fx = Effects::default();
    c.start(Duration::ZERO, &mut fx);
    c.join_network(Duration::ZERO, "red", &mut fx);
    c.put(
        Duration::ZERO,
        "red",
        "ep",
        "secret",
        b"10.1.0.2".to_vec(),
        &mut fx,
    )
    .expect("put");
    c.put(
        Duration::ZERO,
        CLUSTER,
        "nodes",
        "n1",
        b"me".to_vec(),
        &mut fx,
    )
    .expect("put");
    c
}

fn attachment(network: &str) -> EntryRecord {
    EntryRecord {
        network: CLUSTER.into(),
        table: ATTACH_TABLE.into(),
        key: format!("{network}/{ASKER}"),
        owner: ASKER,
        version: 5,
        value: Some(Vec::new()),
        ttl_ms: 0,
    }
}

fn request(network: &str, named: SocketAddr, entries: Vec<EntryRecord>) -> Vec<u8> {
    wire::encode(&Message::Sync(Sync {
        from: ASKER,
        addr: Some(named),
        clock: 1,
        digests: vec![NetworkDigest {
            network: network.into(),
            owners: Vec::new(),
        }],
        entries,
        ..Sync::default()
    }))
}

/// (destination, entries of the replies) the core sent for one request.
fn answer(c: &mut Core, from: SocketAddr, frame: &[u8]) -> Vec<(SocketAddr, Vec<EntryRecord>)> {
    let mut fx = Effects::default();
    c.handle_frame(Duration::from_secs(1), from, frame, &mut fx);
    fx.sends
        .into_iter()
        .filter_map(|(to, _, bytes)| match wire::decode(&bytes, usize::MAX) {
            Ok(Frame::Table(Message::Sync(s))) => Some((to, s.entries)),
            _ => None,
        })
        .collect()
}

fn keys(replies: &[(SocketAddr, Vec<EntryRecord>)]) -> Vec<String> {
    replies
        .iter()
        .flat_map(|(_, e)| e.iter().map(|r| r.key.clone()))
        .collect()
}

#[test]
fn a_node_not_attached_to_a_network_gets_none_of_its_entries() {
    let mut c = core();
    let from: SocketAddr = "10.0.0.9:40000".parse().unwrap();
    let replies = answer(
        &mut c,
        from,
        &request("red", "10.0.0.9:7946".parse().unwrap(), vec![]),
    );
    assert!(
        !keys(&replies).contains(&"secret".to_string()),
        "{replies:?}"
    );
    assert!(c.stats().sync_refused > 0);
}

#[test]
fn a_request_carrying_the_askers_attachment_is_answered_at_once() {
    let mut c = core();
    let from: SocketAddr = "10.0.0.9:40000".parse().unwrap();
    let frame = request(
        "red",
        "10.0.0.9:7946".parse().unwrap(),
        vec![attachment("red")],
    );
    let replies = answer(&mut c, from, &frame);
    assert!(
        keys(&replies).contains(&"secret".to_string()),
        "{replies:?}"
    );
    assert_eq!(c.stats().sync_refused, 0);
}

#[test]
fn the_cluster_scope_is_answered_for_any_member() {
    let mut c = core();
    let from: SocketAddr = "10.0.0.9:40000".parse().unwrap();
    let replies = answer(
        &mut c,
        from,
        &request(CLUSTER, "10.0.0.9:7946".parse().unwrap(), vec![]),
    );
    assert!(keys(&replies).contains(&"n1".to_string()), "{replies:?}");
}

#[test]
fn replies_go_to_the_ip_the_request_came_from_not_to_an_address_the_frame_names() {
    let mut c = core();
    let from: SocketAddr = "10.0.0.9:40000".parse().unwrap();
    let named: SocketAddr = "192.0.2.77:7946".parse().unwrap();
    let replies = answer(&mut c, from, &request(CLUSTER, named, vec![]));
    assert!(!replies.is_empty());
    for (to, _) in &replies {
        assert_eq!(*to, "10.0.0.9:7946".parse::<SocketAddr>().unwrap());
    }
}
