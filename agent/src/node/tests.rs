//! Tests of the agent's own concurrency rules, with a networkdb node on loopback and a fake
//! dataplane (no kernel): single-flight reconcile passes, serialised local state updates,
//! one join loop at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use networkdb::NodeId;
use networkdb::runtime::{self, NodeConfig};
use overlay::{Actual, Desired, Report};

use super::Agent;
use crate::config::{AgentArgs, AgentConfig, DataplaneKind, FileConfig};
use crate::dataplane::{BoxFut, Dataplane};
use crate::state::{LocalEndpoint, StateDir};

/// Records the endpoint count of every desired state it applies, in the order the applies
/// finish. Applying a state with fewer endpoints takes longer, so that without single-flight
/// passes an older pass would finish after a newer one.
#[derive(Debug, Default)]
struct Recorder {
    applied: Mutex<Vec<usize>>,
}

impl Dataplane for Recorder {
    fn kind(&self) -> DataplaneKind {
        DataplaneKind::None
    }

    fn can_attach(&self) -> Result<(), String> {
        Ok(())
    }

    fn reconcile<'a>(&'a self, desired: &'a Desired) -> BoxFut<'a, Result<Report, overlay::Error>> {
        Box::pin(async move {
            let n = desired.endpoints.len();
            tokio::time::sleep(Duration::from_millis(10 * 16u64.saturating_sub(n as u64))).await;
            self.applied.lock().unwrap().push(n);
            Ok(Report::default())
        })
    }

    fn read_actual<'a>(
        &'a self,
        _desired: &'a Desired,
    ) -> BoxFut<'a, Result<Option<Actual>, overlay::Error>> {
        Box::pin(async { Ok(None) })
    }

    fn esp(&self) -> Result<(), String> {
        Err("a recorder".into())
    }

    fn reconcile_esp<'a>(
        &'a self,
        _desired: &'a overlay::esp::EspDesired,
    ) -> BoxFut<'a, Result<overlay::esp::EspReport, overlay::Error>> {
        Box::pin(async { Ok(Default::default()) })
    }
}

async fn agent(dataplane: Arc<dyn Dataplane>) -> (Arc<Agent>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AgentConfig::merge(
        &AgentArgs {
            listen_addr: Some("127.0.0.1".parse().unwrap()),
            state_dir: Some(dir.path().to_path_buf()),
            dataplane: Some(DataplaneKind::None),
            settle_ms: Some(50),
            ..AgentArgs::default()
        },
        FileConfig::default(),
    )
    .unwrap();
    let db = runtime::spawn(NodeConfig::new(NodeId(1), "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let a = Agent::new(
        cfg,
        NodeId(1),
        db,
        dataplane,
        state,
        Default::default(),
        1500,
        None,
        Default::default(),
    );
    (a, dir)
}

fn endpoint(i: usize) -> LocalEndpoint {
    LocalEndpoint {
        id: format!("e{i}"),
        name: format!("c{i}"),
        network: "n1".into(),
        aliases: vec![],
        ip: std::net::Ipv4Addr::new(10, 0, 0, i as u8 + 2),
        prefix: 24,
        mac: [2, 0x42, 10, 0, 0, i as u8 + 2],
        ifname: "eth0".into(),
        netns: "/var/run/netns/none".into(),
        mtu: 1450,
        service: None,
        disabled: false,
        resolv_conf: None,
        client_id: None,
        netns_id: None,
        handoff: false,
        handed_off: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reconcile_passes_never_apply_an_older_desired_state_after_a_newer_one() {
    let rec = Arc::new(Recorder::default());
    let (a, _dir) = agent(rec.clone()).await;
    let mut passes = Vec::new();
    for i in 0..15 {
        a.update_local(|s| {
            s.endpoints.insert(format!("e{i}"), endpoint(i));
        })
        .await
        .unwrap();
        // Each change triggers a pass (as an attach does) while earlier ones still run, and
        // a periodic pass runs alongside.
        let (x, y) = (a.clone(), a.clone());
        passes.push(tokio::spawn(async move {
            x.reconciler.pass(&x).await.map(|_| ())
        }));
        passes.push(tokio::spawn(async move {
            y.reconciler.pass(&y).await.map(|_| ())
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    for p in passes {
        p.await.unwrap().unwrap();
    }
    let applied = rec.applied.lock().unwrap().clone();
    assert_eq!(applied.len(), 30);
    assert!(
        applied.windows(2).all(|w| w[0] <= w[1]),
        "an older desired state was applied after a newer one: {applied:?}"
    );
    assert_eq!(applied.last(), Some(&15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_local_state_updates_all_reach_the_disk_in_order() {
    let (a, dir) = agent(Arc::new(Recorder::default())).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            a.update_local(|s| {
                s.endpoints.insert(format!("e{i}"), endpoint(i));
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let on_disk = StateDir::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(on_disk.endpoints.len(), 40);
    assert_eq!(on_disk, a.local(), "memory and disk agree");
}

#[tokio::test]
async fn a_new_join_replaces_the_running_join_loop() {
    let (a, _dir) = agent(Arc::new(Recorder::default())).await;
    // Nobody answers there: each loop would retry forever.
    for _ in 0..3 {
        super::start_join(&a, vec!["127.0.0.1:9".into()])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut running = a.join_loops_running();
    for _ in 0..40 {
        if running == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        running = a.join_loops_running();
    }
    assert_eq!(running, 1, "join loops running after three Join calls");
}

fn net_request(id: Option<&str>, name: &str, subnet: Option<&str>) -> crate::spec::NetworkRequest {
    crate::spec::NetworkRequest {
        id: id.map(String::from),
        name: name.into(),
        subnet: subnet.map(|s| s.parse().unwrap()),
        gateway: None,
        vni: None,
        mtu: None,
        encrypted: false,
    }
}

fn attach_spec(client_id: &str, netns: &std::path::Path, name: &str) -> crate::spec::AttachSpec {
    crate::spec::AttachSpec {
        network: "app".into(),
        netns: netns.to_path_buf(),
        name: name.into(),
        aliases: vec!["web".into()],
        ip: None,
        mac: None,
        ifname: "eth0".into(),
        service: None,
        resolv_conf: None,
        dns_search: vec![],
        dns_options: vec![],
        client_id: Some(client_id.into()),
        handoff: false,
    }
}

#[tokio::test]
async fn a_create_with_a_client_id_is_idempotent_and_names_a_differing_field() {
    let (a, _dir) = agent(Arc::new(Recorder::default())).await;
    let first = a
        .create_network(net_request(Some("app-1"), "app", Some("10.9.0.0/24")))
        .await
        .unwrap();
    assert_eq!(first.id, "app-1");
    let again = a
        .create_network(net_request(Some("app-1"), "app", None))
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "a retry (fields left empty match) returns the network"
    );
    let e = a
        .create_network(net_request(Some("app-1"), "app", Some("10.8.0.0/24")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, crate::error::AgentError::AlreadyExists(_)),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "subnet: network app (id app-1) has 10.9.0.0/24, not 10.8.0.0/24"
    );
    let e = a
        .create_network(net_request(Some("app-2"), "app", None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already exists (id app-1)"), "{e}");
    assert!(a.delete_network("app-1").await.unwrap());
    assert!(
        !a.delete_network("app-1").await.unwrap(),
        "already gone: not an error"
    );
}

#[tokio::test]
async fn a_retried_attach_returns_the_same_endpoint_and_a_different_one_names_the_field() {
    let (a, dir) = agent(Arc::new(Recorder::default())).await;
    a.create_network(net_request(None, "app", Some("10.9.0.0/24")))
        .await
        .unwrap();
    let ns = dir.path().join("c1.netns");
    std::fs::write(&ns, b"").unwrap();
    let first = a
        .attach(attach_spec("cni:c1:eth0", &ns, "c1"))
        .await
        .unwrap();
    assert_eq!(first.client_id.as_deref(), Some("cni:c1:eth0"));
    let again = a
        .attach(attach_spec("cni:c1:eth0", &ns, "c1"))
        .await
        .unwrap();
    assert_eq!(again, first);
    let mut other = attach_spec("cni:c1:eth0", &ns, "c1");
    other.aliases = vec!["api".into()];
    let e = a.attach(other).await.unwrap_err();
    assert!(
        matches!(e, crate::error::AgentError::AlreadyExists(_)),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "aliases: endpoint c1 (client id cni:c1:eth0) has [\"web\"], not [\"api\"]"
    );
    let mut other = attach_spec("cni:c1:eth0", &ns, "c1");
    other.ip = Some(std::net::Ipv4Addr::new(10, 9, 0, 200));
    let e = a.attach(other).await.unwrap_err();
    assert!(e.to_string().starts_with("ip: endpoint c1"), "{e}");
    assert_eq!(a.local().endpoints.len(), 1);

    // Survives a restart of the agent's state: it is on disk with its client id.
    let on_disk = StateDir::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(
        on_disk.endpoints[&first.id].client_id.as_deref(),
        Some("cni:c1:eth0")
    );

    let found = a.inspect_endpoint("", "", "cni:c1:eth0").await.unwrap();
    assert_eq!(found, first);
    assert!(a.detach_client("cni:c1:eth0").await.unwrap());
    assert!(
        !a.detach_client("cni:c1:eth0").await.unwrap(),
        "twice: fine"
    );
    assert!(
        !a.detach("c1", None).await.unwrap(),
        "by name: already gone"
    );
    assert!(a.inspect_endpoint("", "", "cni:c1:eth0").await.is_err());
}

#[tokio::test]
async fn client_endpoints_whose_namespace_is_gone_are_replaced_and_collected() {
    let (a, dir) = agent(Arc::new(Recorder::default())).await;
    a.create_network(net_request(None, "app", Some("10.9.0.0/24")))
        .await
        .unwrap();
    let ns1 = dir.path().join("c1.netns");
    std::fs::write(&ns1, b"").unwrap();
    let first = a
        .attach(attach_spec("cni:c1:eth0", &ns1, "c1"))
        .await
        .unwrap();
    // The container died without DEL; the runtime starts it again in a new namespace.
    std::fs::remove_file(&ns1).unwrap();
    let ns2 = dir.path().join("c1-again.netns");
    std::fs::write(&ns2, b"").unwrap();
    let second = a
        .attach(attach_spec("cni:c1:eth0", &ns2, "c1"))
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(a.local().endpoints.len(), 1);
    // A namespace path that names another namespace now counts as gone too.
    let other = dir.path().join("other.netns");
    std::fs::write(&other, b"another inode").unwrap();
    std::fs::rename(&other, &ns2).unwrap();
    let ns3 = dir.path().join("c2.netns");
    std::fs::write(&ns3, b"").unwrap();
    a.attach(attach_spec("cni:c2:eth0", &ns3, "c2"))
        .await
        .unwrap();
    assert_eq!(a.collect_dead_endpoints().await.unwrap(), 1);
    let left: Vec<String> = a
        .local()
        .endpoints
        .values()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(left, ["c2"]);
}
