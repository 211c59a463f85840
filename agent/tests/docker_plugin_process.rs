//! The Docker plugin protocol of a real agent process (`--dataplane none`, so no root and no
//! dockerd): activation and capabilities, IPAM pools (by hint, by subnet, and a placeholder
//! bound by CreateNetwork), addresses that never repeat, the refusals with Docker's
//! `{"Err": ...}`, and the Docker id mapping surviving a restart of the agent.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;

use common::AgentProc;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use proto::pb;
use proto::pb::networks_client::NetworksClient;
use serde_json::{Value, json};

/// One plugin call: (HTTP status, JSON answer).
async fn call(sock: &Path, method: &str, body: Value) -> (u16, Value) {
    let stream = tokio::net::UnixStream::connect(sock).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("/{method}"))
        .header("Host", "plugin")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    assert_eq!(
        ctype.as_deref(),
        Some("application/vnd.docker.plugins.v1+json")
    );
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn ok(sock: &Path, method: &str, body: Value) -> Value {
    let (status, v) = call(sock, method, body.clone()).await;
    assert_eq!(status, 200, "{method} {body}: {v}");
    assert!(v.get("Err").is_none(), "{method} {body}: {v}");
    v
}

async fn refused(sock: &Path, method: &str, body: Value) -> String {
    let (_, v) = call(sock, method, body.clone()).await;
    v["Err"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {body} was not refused: {v}"))
        .to_string()
}

async fn start(dir: tempfile::TempDir) -> AgentProc {
    let sock = dir.path().join("plugin.sock");
    let api = format!("unix://{}", dir.path().join("no-dockerd.sock").display());
    AgentProc::start_in(
        dir,
        Ipv4Addr::new(127, 0, 0, 1),
        None,
        &[
            "--docker-plugin".into(),
            sock.display().to_string(),
            "--docker-api".into(),
            api,
        ],
    )
    .await
}

#[tokio::test]
async fn docker_pools_and_addresses_map_onto_swarmnet_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("plugin.sock");
    let mut a = start(dir).await;
    let mut nets = NetworksClient::new(a.channel().await.unwrap());
    nets.create(pb::CreateNetworkRequest {
        name: "app".into(),
        subnet: "10.70.0.0/24".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let v = ok(&sock, "Plugin.Activate", Value::Null).await;
    assert_eq!(v["Implements"], json!(["NetworkDriver", "IpamDriver"]));
    let v = ok(&sock, "NetworkDriver.GetCapabilities", Value::Null).await;
    assert_eq!(v, json!({"Scope": "local", "ConnectivityScope": "global"}));

    // No hint (the command): a placeholder pool, bound by CreateNetwork.
    let pool = ok(
        &sock,
        "IpamDriver.RequestPool",
        json!({"AddressSpace": "swarmnet", "Pool": "", "SubPool": "", "Options": {}, "V6": false}),
    )
    .await;
    let pool_id = pool["PoolID"].as_str().unwrap().to_string();
    assert!(pool_id.starts_with("pending/"), "{pool}");
    assert!(
        pool["Pool"].as_str().unwrap().starts_with("198.1"),
        "{pool}"
    );
    let gw = ok(
        &sock,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
    )
    .await;
    assert!(gw["Address"].as_str().unwrap().ends_with(".1/24"), "{gw}");
    let e = refused(
        &sock,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": "d0", "Options": {"com.docker.network.generic": {}}, "IPv4Data": [{"Pool": pool["Pool"]}]}),
    )
    .await;
    assert!(e.contains("-o swarmnet.network="), "{e}");
    ok(
        &sock,
        "NetworkDriver.CreateNetwork",
        json!({"NetworkID": "dnet1", "Options": {"com.docker.network.generic": {"swarmnet.network": "app"}},
               "IPv4Data": [{"AddressSpace": "swarmnet", "Pool": pool["Pool"], "Gateway": gw["Address"]}]}),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let v = ok(
            &sock,
            "IpamDriver.RequestAddress",
            json!({"PoolID": pool_id, "Address": "", "Options": null}),
        )
        .await;
        let addr = v["Address"].as_str().unwrap().to_string();
        assert!(addr.starts_with("10.70.0.") && addr.ends_with("/24"), "{v}");
        assert!(!seen.contains(&addr), "{addr} handed out twice");
        seen.push(addr);
    }
    let ep = ok(
        &sock,
        "NetworkDriver.CreateEndpoint",
        json!({"NetworkID": "dnet1", "EndpointID": "e0123456789abcdef",
               "Interface": {"Address": seen[0], "AddressIPv6": "", "MacAddress": ""}, "Options": {}}),
    )
    .await;
    assert!(
        ep["Interface"]["MacAddress"]
            .as_str()
            .unwrap()
            .starts_with("02:42:0a:46:00:"),
        "{ep}"
    );

    // With a hint, the swarmnet subnet itself.
    let hinted = ok(
        &sock,
        "IpamDriver.RequestPool",
        json!({"Pool": "", "Options": {"swarmnet.network": "app"}, "V6": false}),
    )
    .await;
    assert_eq!(hinted["Pool"], "10.70.0.0/24");
    assert!(
        hinted["PoolID"].as_str().unwrap().starts_with("swarmnet/"),
        "{hinted}"
    );
    let by_subnet = ok(
        &sock,
        "IpamDriver.RequestPool",
        json!({"Pool": "10.70.0.0/24", "Options": {}}),
    )
    .await;
    assert_eq!(by_subnet["PoolID"], hinted["PoolID"]);
    let e = refused(
        &sock,
        "IpamDriver.RequestPool",
        json!({"Options": {"swarmnet.network": "nope"}}),
    )
    .await;
    assert!(e.contains("swarmnet network nope does not exist"), "{e}");
    let e = refused(&sock, "IpamDriver.RequestPool", json!({"V6": true})).await;
    assert!(e.contains("IPv4 only"), "{e}");
    let (status, v) = call(&sock, "NetworkDriver.Frobnicate", json!({})).await;
    assert_eq!(status, 404, "{v}");

    // The mapping survives the agent: the pool and the network are still known.
    a.terminate();
    let dir = std::mem::replace(&mut a.dir, tempfile::tempdir().unwrap());
    let b = start(dir).await;
    let v = ok(
        &sock,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": "", "Options": null}),
    )
    .await;
    let again = v["Address"].as_str().unwrap().to_string();
    assert!(
        again.starts_with("10.70.0.") && !seen.contains(&again),
        "{again} after the restart (earlier: {seen:?})"
    );
    // Released addresses come back; the pool goes away with its last user.
    for addr in &seen {
        ok(
            &sock,
            "IpamDriver.ReleaseAddress",
            json!({"PoolID": pool_id, "Address": addr.split('/').next().unwrap()}),
        )
        .await;
    }
    ok(
        &sock,
        "NetworkDriver.DeleteEndpoint",
        json!({"NetworkID": "dnet1", "EndpointID": "e0123456789abcdef"}),
    )
    .await;
    ok(
        &sock,
        "NetworkDriver.DeleteNetwork",
        json!({"NetworkID": "dnet1"}),
    )
    .await;
    ok(&sock, "IpamDriver.ReleasePool", json!({"PoolID": pool_id})).await;
    let e = refused(
        &sock,
        "IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": ""}),
    )
    .await;
    assert!(e.contains("unknown pool"), "{e}");
    drop(b);
}
