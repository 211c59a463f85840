//! The orchestrator-facing API of a real agent process (`--dataplane none`): the Watch
//! stream (snapshot, changes, resume after a disconnect without loss), idempotent creates
//! with client ids over the wire, the standard health service and server reflection.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::AgentProc;
use proto::pb;
use proto::pb::networks_client::NetworksClient;
use proto::pb::services_client::ServicesClient;
use proto::pb::watch_client::WatchClient;
use proto::pb::watch_event::Type;
use tonic::Code;
use tonic::codec::Streaming;

/// Next event of a stream, within 10 s.
async fn next(s: &mut Streaming<pb::WatchEvent>) -> pb::WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("an event within 10 s")
        .expect("a healthy stream")
        .expect("the stream goes on")
}

/// Events up to and including the first of type `until`.
async fn until(s: &mut Streaming<pb::WatchEvent>, until: Type) -> Vec<pb::WatchEvent> {
    let mut out = Vec::new();
    loop {
        let e = next(s).await;
        let done = e.r#type == until as i32;
        out.push(e);
        if done {
            return out;
        }
    }
}

/// Network events of `evs` as (type, network name).
fn network_events(evs: &[pb::WatchEvent]) -> Vec<(Type, String)> {
    evs.iter()
        .filter_map(|e| match &e.object {
            Some(pb::watch_event::Object::Network(n)) => {
                Some((Type::try_from(e.r#type).unwrap(), n.name.clone()))
            }
            _ => None,
        })
        .collect()
}

fn net(id: &str, name: &str) -> pb::CreateNetworkRequest {
    pb::CreateNetworkRequest {
        id: id.into(),
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_watch_stream_resumes_after_a_disconnect_without_losing_a_change() {
    let a = AgentProc::start(Ipv4Addr::new(127, 0, 0, 1), &[]).await;
    let ch = a.channel().await.unwrap();
    let mut nets = NetworksClient::new(ch.clone());
    nets.create(net("blue-1", "blue")).await.unwrap();

    let mut s = WatchClient::new(ch.clone())
        .events(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let snap = until(&mut s, Type::SnapshotEnd).await;
    assert_eq!(snap[0].r#type, Type::SnapshotBegin as i32);
    let epoch = snap[0].epoch.clone();
    assert!(!epoch.is_empty());
    assert_eq!(network_events(&snap), [(Type::Put, "blue".to_string())]);
    assert!(
        snap.iter()
            .any(|e| matches!(&e.object, Some(pb::watch_event::Object::Member(m)) if m.self_)),
        "the snapshot lists this node as a member: {snap:?}"
    );
    nets.create(net("red-1", "red")).await.unwrap();
    let red = loop {
        let e = next(&mut s).await;
        if matches!(&e.object, Some(pb::watch_event::Object::Network(n)) if n.name == "red") {
            break e;
        }
    };
    assert_eq!(red.r#type, Type::Put as i32);
    assert_eq!(red.id, "red-1");
    let last = red.revision;
    drop(s);

    // While the client is away: one network more, one less.
    nets.create(net("green-1", "green")).await.unwrap();
    nets.delete(pb::DeleteNetworkRequest {
        network: "blue".into(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut s = WatchClient::new(ch.clone())
        .events(pb::WatchRequest {
            kinds: vec![pb::WatchKind::Network as i32],
            epoch: epoch.clone(),
            after_revision: last,
        })
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut s).await;
    assert_eq!(first.r#type, Type::Resumed as i32, "{first:?}");
    assert_eq!(first.revision, last);
    let mut missed = Vec::new();
    while missed.len() < 2 {
        missed.push(next(&mut s).await);
    }
    let mut got = network_events(&missed);
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        [
            (Type::Delete, "blue".to_string()),
            (Type::Put, "green".to_string())
        ]
    );
    assert!(missed.windows(2).all(|w| w[0].revision < w[1].revision));
    assert!(missed.iter().all(|e| e.revision > last));

    // An unknown epoch (another life of the agent) gets a fresh snapshot instead.
    let mut s = WatchClient::new(ch)
        .events(pb::WatchRequest {
            kinds: vec![pb::WatchKind::Network as i32],
            epoch: "an-old-epoch".into(),
            after_revision: last,
        })
        .await
        .unwrap()
        .into_inner();
    let snap = until(&mut s, Type::SnapshotEnd).await;
    assert_eq!(snap[0].r#type, Type::SnapshotBegin as i32);
    let mut names = network_events(&snap);
    names.sort();
    assert_eq!(
        names,
        [
            (Type::Put, "green".to_string()),
            (Type::Put, "red".to_string())
        ]
    );
}

#[tokio::test]
async fn creates_with_client_ids_are_idempotent_over_the_api() {
    let a = AgentProc::start(Ipv4Addr::new(127, 0, 0, 1), &[]).await;
    let ch = a.channel().await.unwrap();
    let mut nets = NetworksClient::new(ch.clone());
    let one = nets.create(net("app-1", "app")).await.unwrap().into_inner();
    let two = nets.create(net("app-1", "app")).await.unwrap().into_inner();
    assert_eq!(one.id, "app-1");
    assert_eq!((one.subnet, one.vni), (two.subnet, two.vni));
    let e = nets
        .create(pb::CreateNetworkRequest {
            id: "app-1".into(),
            name: "app".into(),
            mtu: 1400,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(e.message(), "mtu: network app (id app-1) has 0, not 1400");
    let e = nets.create(net("bad id", "x")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("id: "), "{e:?}");

    let mut svcs = ServicesClient::new(ch);
    let req = pb::CreateServiceRequest {
        id: "web-1".into(),
        name: "web".into(),
        networks: vec!["app".into()],
        mode: "dnsrr".into(),
        ..Default::default()
    };
    let s1 = svcs.create(req.clone()).await.unwrap().into_inner();
    let s2 = svcs.create(req.clone()).await.unwrap().into_inner();
    assert_eq!(s1, s2);
    let e = svcs
        .create(pb::CreateServiceRequest {
            mode: "vip".into(),
            ..req
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(
        e.message(),
        "mode: service web (id web-1) has dnsrr, not vip"
    );
    let del = |s: &str| pb::DeleteServiceRequest { service: s.into() };
    assert!(
        svcs.delete(del("web-1"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert!(
        !svcs
            .delete(del("web-1"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
}

#[tokio::test]
async fn the_agent_reports_health_and_describes_itself_by_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let a = AgentProc::start(Ipv4Addr::new(127, 0, 0, 1), &[]).await;
    let ch = a.channel().await.unwrap();
    let mut health = HealthClient::new(ch.clone());
    for service in ["", "swarmnet.v1.Networks", "swarmnet.v1.Watch"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("not a service list: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in proto::SERVICE_NAMES
        .iter()
        .copied()
        .chain(["grpc.health.v1.Health"])
    {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}
