//! A real `swarmnet agent` process on loopback, without kernel work (`--dataplane none`),
//! driven over its unix socket, over TCP with mutual TLS, and from the CLI; two agents
//! sharing networks through gossip.

mod common;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use agent::client::{ClientTls, connect};
use common::{AgentProc, eventually, free_port, write};
use proto::pb;
use proto::pb::cluster_client::ClusterClient;
use proto::pb::endpoints_client::EndpointsClient;
use proto::pb::networks_client::NetworksClient;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::Code;

fn create(name: &str) -> pb::CreateNetworkRequest {
    pb::CreateNetworkRequest {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_agent_without_dataplane_serves_networks_over_a_root_only_unix_socket() {
    let mut a = AgentProc::start(Ipv4Addr::new(127, 0, 0, 1), &[]).await;
    let mode = std::fs::metadata(&a.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let ch = a.channel().await.unwrap();
    let mut nets = NetworksClient::new(ch.clone());
    let blue = nets.create(create("blue")).await.unwrap().into_inner();
    assert_eq!(blue.subnet, "10.128.0.0/24");
    assert_eq!(blue.gateway, "10.128.0.1");
    assert_eq!(blue.vni, 4096);
    let red = nets
        .create(pb::CreateNetworkRequest {
            name: "red".into(),
            subnet: "10.77.0.0/24".into(),
            vni: 77,
            mtu: 1400,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (red.vni, red.mtu, red.gateway.as_str()),
        (77, 1400, "10.77.0.1")
    );

    // Invalid arguments name the field.
    let e = nets
        .create(pb::CreateNetworkRequest {
            name: "bad".into(),
            subnet: "10.0.0.0/33".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "subnet: 10.0.0.0/33 is not a valid IPv4 CIDR");
    // Conflicts are refused.
    let e = nets.create(create("blue")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let e = nets
        .create(pb::CreateNetworkRequest {
            name: "green".into(),
            vni: 77,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        e.message().starts_with("vni: 77 is used by network red"),
        "{e:?}"
    );
    let e = nets
        .create(pb::CreateNetworkRequest {
            name: "green".into(),
            subnet: "10.77.0.128/25".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().starts_with("subnet: "), "{e:?}");

    let list = nets
        .list(pb::ListNetworksRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = list.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["blue", "red"]);
    let by_name = nets
        .inspect(pb::InspectNetworkRequest {
            network: "red".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let by_id = nets
        .inspect(pb::InspectNetworkRequest {
            network: red.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name, by_id);
    let e = nets
        .inspect(pb::InspectNetworkRequest {
            network: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Attach fails clearly without a dataplane.
    let e = EndpointsClient::new(ch.clone())
        .attach(pb::AttachRequest {
            network: "blue".into(),
            netns: "/proc/self/ns/net".into(),
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("--dataplane none"), "{e:?}");
    // ... but its arguments are still checked first.
    let e = EndpointsClient::new(ch.clone())
        .attach(pb::AttachRequest {
            network: "blue".into(),
            netns: "relative".into(),
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("netns: "), "{e:?}");

    let gone = nets
        .delete(pb::DeleteNetworkRequest {
            network: "red".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(gone.deleted);
    // Deleting what is gone succeeds (retries of orchestrators), and says so.
    let again = nets
        .delete(pb::DeleteNetworkRequest {
            network: "red".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.deleted);

    let members = ClusterClient::new(ch.clone())
        .members(pb::MembersRequest {})
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 1);
    assert!(members[0].self_ && members[0].up);
    let status = ClusterClient::new(ch)
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.dataplane, "none");
    assert_eq!(status.networks, 1);

    // The CLI: tables by default, JSON on request, errors on stderr with a non-zero exit.
    let out = a.cli(&["network", "ls"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("blue") && !text.contains("red"), "{text}");
    let out = a.cli(&["--json", "network", "inspect", "blue"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["subnet"], "10.128.0.0/24");
    let out = a.cli(&["network", "create", "x", "--subnet", "10.0.0.0/33"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("invalid argument: subnet: 10.0.0.0/33 is not a valid IPv4 CIDR"),
        "{err}"
    );

    // The debug dump is JSON with the tables this node holds.
    let out = a.cli(&["debug", "dump"]);
    assert!(out.status.success());
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(dump["tables"]["/networks"].is_object(), "{dump}");
    assert!(dump["tables"]["/nodes"].is_object(), "{dump}");
    assert_eq!(dump["actual"], serde_json::Value::Null);

    // SIGTERM: a clean stop that removes the socket.
    let st = a.terminate();
    assert!(st.success(), "exit {st:?}; log:\n{}", a.log_text());
    assert!(!a.socket.exists());
    assert!(a.log_text().contains("stopped"), "{}", a.log_text());
}

#[tokio::test]
async fn the_cli_explains_an_unreachable_agent() {
    let out = std::process::Command::new(common::BIN)
        .args(["--api", "unix:///nonexistent/api.sock", "network", "ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("cannot reach the agent at unix:///nonexistent/api.sock"),
        "{err}"
    );
}

#[tokio::test]
async fn an_invalid_configuration_names_the_field_and_exits_2() {
    let out = std::process::Command::new(common::BIN)
        .args([
            "agent",
            "--prefix",
            "Bad-Prefix",
            "--listen-addr",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("prefix: "), "{err}");
}

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(p, key))
}

fn leaf(names: &[&str], issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca_pem, issuer) = ca("swarmnet test ca");
    let (_, other) = ca("some other ca");
    Pki {
        ca_pem,
        server: leaf(&["localhost", "127.0.0.1"], &issuer),
        client: leaf(&["operator"], &issuer),
        stranger: leaf(&["stranger"], &other),
    }
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = write(d, "ca.pem", &pki.ca_pem);
    let scert = write(d, "server.pem", &pki.server.0);
    let skey = write(d, "server.key", &pki.server.1);
    let ccert = write(d, "client.pem", &pki.client.0);
    let ckey = write(d, "client.key", &pki.client.1);
    let xcert = write(d, "stranger.pem", &pki.stranger.0);
    let xkey = write(d, "stranger.key", &pki.stranger.1);
    let ip = Ipv4Addr::LOCALHOST;
    let port = free_port(ip);
    let a = AgentProc::start(
        ip,
        &[
            "--api-listen".into(),
            format!("tcp://127.0.0.1:{port}"),
            "--api-tls-cert".into(),
            scert.display().to_string(),
            "--api-tls-key".into(),
            skey.display().to_string(),
            "--api-tls-ca".into(),
            ca.display().to_string(),
        ],
    )
    .await;
    // The unix socket (first --api-listen of the helper) still serves.
    NetworksClient::new(a.channel().await.unwrap())
        .create(create("tls-net"))
        .await
        .unwrap();

    let url = format!("https://127.0.0.1:{port}");
    let good = ClientTls {
        cert: Some(ccert.clone()),
        key: Some(ckey.clone()),
        ca: Some(ca.clone()),
    };
    let ch = connect(&url, &good)
        .await
        .expect("a client with a CA cert connects");
    let list = NetworksClient::new(ch)
        .list(pb::ListNetworksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.networks[0].name, "tls-net");
    // By name too (the certificate names localhost).
    let ch = connect(&format!("https://localhost:{port}"), &good)
        .await
        .unwrap();
    ClusterClient::new(ch)
        .status(pb::StatusRequest {})
        .await
        .unwrap();

    // No client certificate: refused.
    let anonymous = ClientTls {
        cert: None,
        key: None,
        ca: Some(ca.clone()),
    };
    let refused = match connect(&url, &anonymous).await {
        Err(_) => true,
        Ok(ch) => NetworksClient::new(ch)
            .list(pb::ListNetworksRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate was served");

    // A certificate from another CA: refused.
    let stranger = ClientTls {
        cert: Some(xcert),
        key: Some(xkey),
        ca: Some(ca.clone()),
    };
    let refused = match connect(&url, &stranger).await {
        Err(_) => true,
        Ok(ch) => NetworksClient::new(ch)
            .list(pb::ListNetworksRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a client with another CA's certificate was served");

    // The CLI over mTLS.
    let out = std::process::Command::new(common::BIN)
        .args([
            "--api",
            &url,
            "--tls-cert",
            &ccert.display().to_string(),
            "--tls-key",
            &ckey.display().to_string(),
            "--tls-ca",
            &ca.display().to_string(),
            "network",
            "ls",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("tls-net"));
}

#[tokio::test]
async fn a_tcp_api_without_tls_is_refused_at_startup() {
    let out = std::process::Command::new(common::BIN)
        .args([
            "agent",
            "--listen-addr",
            "127.0.0.1",
            "--api-listen",
            "tcp://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("api_listen: tcp://127.0.0.1:1 needs mutual TLS"),
        "{err}"
    );
}

#[tokio::test]
async fn two_agents_on_loopback_share_networks_through_gossip() {
    let a = AgentProc::start(
        Ipv4Addr::new(127, 0, 0, 2),
        &["--node-name".into(), "alpha".into()],
    )
    .await;
    let b = AgentProc::start(
        Ipv4Addr::new(127, 0, 0, 3),
        &[
            "--node-name".into(),
            "beta".into(),
            "--join".into(),
            a.gossip.to_string(),
        ],
    )
    .await;
    let ca = a.channel().await.unwrap();
    let cb = b.channel().await.unwrap();

    // Membership, with names from the nodes table.
    let members = eventually(Duration::from_secs(15), || {
        let cb = cb.clone();
        async move {
            let m = ClusterClient::new(cb)
                .members(pb::MembersRequest {})
                .await
                .ok()?
                .into_inner()
                .members;
            (m.len() == 2 && m.iter().all(|m| m.up && !m.name.is_empty())).then_some(m)
        }
    })
    .await
    .unwrap_or_else(|| panic!("b never saw a; b's log:\n{}", b.log_text()));
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["beta", "alpha"]);

    // A network created on a is listed by b.
    let blue = NetworksClient::new(ca.clone())
        .create(create("blue"))
        .await
        .unwrap()
        .into_inner();
    let seen = eventually(Duration::from_secs(10), || {
        let cb = cb.clone();
        async move {
            let l = NetworksClient::new(cb)
                .list(pb::ListNetworksRequest {})
                .await
                .ok()?
                .into_inner();
            l.networks.into_iter().find(|n| n.name == "blue")
        }
    })
    .await
    .expect("b lists the network created on a");
    assert_eq!(seen.id, blue.id);
    assert_eq!(seen.subnet, blue.subnet);

    // b allocates around it, and a refuses b's name afterwards.
    let green = NetworksClient::new(cb.clone())
        .create(create("green"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(green.subnet, blue.subnet);
    assert_ne!(green.vni, blue.vni);
    let green_on_a = eventually(Duration::from_secs(10), || {
        let ca = ca.clone();
        async move {
            NetworksClient::new(ca)
                .inspect(pb::InspectNetworkRequest {
                    network: "green".into(),
                })
                .await
                .ok()
        }
    })
    .await
    .expect("a learns green");
    assert_eq!(green_on_a.get_ref().id, green.id);

    // Deleting on b removes it on a.
    NetworksClient::new(cb.clone())
        .delete(pb::DeleteNetworkRequest {
            network: "blue".into(),
        })
        .await
        .unwrap();
    eventually(Duration::from_secs(10), || {
        let ca = ca.clone();
        async move {
            let l = NetworksClient::new(ca)
                .list(pb::ListNetworksRequest {})
                .await
                .ok()?
                .into_inner();
            (!l.networks.iter().any(|n| n.name == "blue")).then_some(())
        }
    })
    .await
    .expect("a forgets blue");
}

#[tokio::test]
async fn a_restarted_agent_keeps_its_node_id() {
    let ip = Ipv4Addr::new(127, 0, 0, 4);
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().to_path_buf();
    let mut a = AgentProc::start_in(dir, ip, None, &[]).await;
    let id1 = ClusterClient::new(a.channel().await.unwrap())
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_id;
    a.kill9();
    let dir = std::mem::replace(&mut a.dir, tempfile::tempdir().unwrap());
    assert_eq!(dir.path(), keep);
    let b = AgentProc::start_in(dir, ip, None, &[]).await;
    let id2 = ClusterClient::new(b.channel().await.unwrap())
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .node_id;
    assert_eq!(id1, id2);
}

#[tokio::test]
async fn metrics_and_health_are_served_on_loopback_when_enabled() {
    let port = free_port(Ipv4Addr::LOCALHOST);
    let a = AgentProc::start(
        Ipv4Addr::new(127, 0, 0, 5),
        &["--metrics-addr".into(), port.to_string()],
    )
    .await;
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let health = get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let m = get("/metrics");
    assert!(m.contains("swarmnet_reconcile_runs_total"), "{m}");
    assert!(m.contains("swarmnet_members 0"), "{m}");
    assert!(
        m.contains("swarmnet_load_balancer{kind=\"none\"} 1"),
        "the balancer in use is a metric: {m}"
    );
    assert!(
        m.contains("swarmnet_dns_"),
        "DNS metrics are registered: {m}"
    );
    assert!(get("/nope").starts_with("HTTP/1.1 404"));
    drop(a);
}

#[tokio::test]
async fn networks_created_apart_with_the_same_name_are_resolved_when_the_agents_meet() {
    let a = AgentProc::start(Ipv4Addr::new(127, 0, 0, 6), &[]).await;
    let b = AgentProc::start(Ipv4Addr::new(127, 0, 0, 7), &[]).await;
    let ca = a.channel().await.unwrap();
    let cb = b.channel().await.unwrap();
    // Apart, both pick the same name, VNI and subnet.
    let older = NetworksClient::new(ca.clone())
        .create(create("blue"))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let younger = NetworksClient::new(cb.clone())
        .create(create("blue"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((older.vni, &older.subnet), (younger.vni, &younger.subnet));
    assert!(older.created < younger.created);

    // They meet (Join over the API, as `swarmnet cluster join` does).
    let out = b.cli(&["cluster", "join", &a.gossip.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both converge on: the older keeps everything; the younger is renamed and re-allocated.
    let (older_id, younger_id) = (older.id.clone(), younger.id.clone());
    let settled = |c: tonic::transport::Channel| {
        let (older_id, younger_id) = (older_id.clone(), younger_id.clone());
        async move {
            let l = NetworksClient::new(c)
                .list(pb::ListNetworksRequest {})
                .await
                .ok()?
                .into_inner()
                .networks;
            let renamed = l.iter().find(|n| n.id == younger_id)?;
            let kept = l.iter().find(|n| n.id == older_id)?;
            (l.len() == 2
                && renamed.name != "blue"
                && renamed.vni != kept.vni
                && renamed.subnet != kept.subnet)
                .then(|| (kept.clone(), renamed.clone()))
        }
    };
    let on_a = eventually(Duration::from_secs(20), || settled(ca.clone()))
        .await
        .unwrap_or_else(|| panic!("a did not converge; b's log:\n{}", b.log_text()));
    let on_b = eventually(Duration::from_secs(20), || settled(cb.clone()))
        .await
        .expect("b converges");
    assert_eq!(on_a, on_b);
    let (kept, renamed) = on_a;
    assert_eq!(kept.name, "blue");
    assert_eq!(
        (kept.vni, kept.subnet.as_str()),
        (older.vni, older.subnet.as_str())
    );
    assert_eq!(renamed.name, format!("blue-{}", &younger.id[..8]));
    assert!(
        renamed.revision >= 2,
        "renamed, then re-allocated: {renamed:?}"
    );
    assert!(!renamed.note.is_empty());
    // The name resolves to the older one everywhere.
    let by_name = NetworksClient::new(cb)
        .inspect(pb::InspectNetworkRequest {
            network: "blue".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_name.id, older.id);
}

#[tokio::test]
async fn an_agent_keeps_trying_to_join_until_its_seed_comes_up() {
    let seed_ip = Ipv4Addr::new(127, 0, 0, 8);
    let seed_port = free_port(seed_ip);
    let b = AgentProc::start(
        Ipv4Addr::new(127, 0, 0, 9),
        &["--join".into(), format!("{seed_ip}:{seed_port}")],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = ClusterClient::new(b.channel().await.unwrap())
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.join_state.contains("failed"), "{status:?}");
    assert!(
        b.log_text().contains("join failed; retrying"),
        "{}",
        b.log_text()
    );

    let a = AgentProc::start_in(tempfile::tempdir().unwrap(), seed_ip, Some(seed_port), &[]).await;
    let cb = b.channel().await.unwrap();
    eventually(Duration::from_secs(40), || {
        let cb = cb.clone();
        async move {
            let s = ClusterClient::new(cb)
                .status(pb::StatusRequest {})
                .await
                .ok()?
                .into_inner();
            (s.members_up == 1 && s.join_state.is_empty()).then_some(())
        }
    })
    .await
    .unwrap_or_else(|| panic!("b never joined; log:\n{}", b.log_text()));
    drop(a);
}

#[tokio::test]
async fn services_created_apart_with_the_same_name_leave_only_the_older_when_the_agents_meet() {
    use proto::pb::services_client::ServicesClient;
    let a = AgentProc::start(Ipv4Addr::new(127, 0, 0, 8), &[]).await;
    let b = AgentProc::start(Ipv4Addr::new(127, 0, 0, 9), &[]).await;
    let ca = a.channel().await.unwrap();
    let cb = b.channel().await.unwrap();
    let mut ids = Vec::new();
    for (c, net) in [(&ca, "red"), (&cb, "green")] {
        NetworksClient::new(c.clone())
            .create(create(net))
            .await
            .unwrap();
        let s = ServicesClient::new(c.clone())
            .create(pb::CreateServiceRequest {
                name: "web".into(),
                networks: vec![net.into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.vips.len(), 1, "a VIP on {net}: {s:?}");
        ids.push(s.id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = b.cli(&["cluster", "join", &a.gossip.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let only_older = |c: tonic::transport::Channel| {
        let older = ids[0].clone();
        async move {
            let l = ServicesClient::new(c)
                .list(pb::ListServicesRequest {})
                .await
                .ok()?
                .into_inner()
                .services;
            (l.len() == 1 && l[0].id == older).then_some(())
        }
    };
    eventually(Duration::from_secs(20), || only_older(ca.clone()))
        .await
        .unwrap_or_else(|| {
            panic!(
                "a: two services named web remain; b's log:\n{}",
                b.log_text()
            )
        });
    eventually(Duration::from_secs(20), || only_older(cb.clone()))
        .await
        .expect("b converges on the older service");
    // The younger's creator withdraws it (table and local state), not just hides it.
    let gone = || {
        let dump = b.cli(&["debug", "dump"]);
        let gone = !String::from_utf8_lossy(&dump.stdout).contains(&ids[1]);
        async move { gone.then_some(()) }
    };
    eventually(Duration::from_secs(20), gone)
        .await
        .unwrap_or_else(|| panic!("b still holds the younger service; log:\n{}", b.log_text()));
}
