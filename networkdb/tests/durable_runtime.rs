//! The durable tables file of the tokio runtime ([`NodeConfig::durable_path`]): a durable
//! write is on disk when it returns, what a node received is saved too, and a restarted node
//! restores it before it talks to anyone. Real sockets on 127.0.0.1; every wait is bounded.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use networkdb::runtime::{self, Handle, NodeConfig};
use networkdb::{CLUSTER, Config, NodeId};

const DEFS: &str = "networks";
const WAIT: Duration = Duration::from_secs(20);

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ndb-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(id: u64, path: &Path) -> NodeConfig {
    let mut cfg = NodeConfig::new(NodeId(id), "127.0.0.1:0".parse().unwrap());
    cfg.seed = Some(id);
    cfg.core = Config {
        sync_interval: Duration::from_secs(1),
        durable_tables: [DEFS.to_string()].into(),
        ..Config::default()
    };
    cfg.durable_path = Some(path.to_path_buf());
    cfg
}

async fn value(h: &Handle, key: &str) -> Option<Vec<u8>> {
    h.get(CLUSTER, DEFS, key).await.expect("get")
}

async fn wait_value(h: &Handle, key: &str, want: Option<&[u8]>) {
    let deadline = Instant::now() + WAIT;
    while value(h, key).await.as_deref() != want {
        assert!(Instant::now() < deadline, "{key} never became {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_durable_write_is_on_disk_when_it_returns_and_comes_back_after_a_restart() {
    let d = dir("own");
    let path = d.join("durable.json");
    let a = runtime::spawn(config(1, &path)).await.expect("spawn");
    a.put(CLUSTER, DEFS, "blue", b"def of blue".to_vec())
        .await
        .expect("put");
    let text = std::fs::read_to_string(&path).expect("written before put returned");
    assert!(text.contains("\"blue\""), "{text}");
    a.put(CLUSTER, DEFS, "red", b"def of red".to_vec())
        .await
        .expect("put");
    assert!(a.delete(CLUSTER, DEFS, "red").await.expect("delete"));
    a.put(CLUSTER, "plain", "x", b"not durable".to_vec())
        .await
        .expect("put");
    a.shutdown().await.expect("shutdown");

    let again = runtime::spawn(config(1, &path)).await.expect("restart");
    assert_eq!(
        value(&again, "blue").await.as_deref(),
        Some(b"def of blue".as_slice())
    );
    assert_eq!(value(&again, "red").await, None, "the delete was saved too");
    let records = again.records(CLUSTER, DEFS).await.expect("records");
    assert!(
        records.iter().any(|r| r.key == "red" && r.value.is_none()),
        "tombstone kept"
    );
    assert_eq!(again.get(CLUSTER, "plain", "x").await.unwrap(), None);
    again.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_node_saves_what_it_received_and_restores_it_alone() {
    let d = dir("recv");
    let a = runtime::spawn(config(1, &d.join("a.json")))
        .await
        .expect("spawn");
    let b = runtime::spawn(config(2, &d.join("b.json")))
        .await
        .expect("spawn");
    b.join(vec![a.addr()]).await.expect("join");
    a.put(CLUSTER, DEFS, "blue", b"v1".to_vec())
        .await
        .expect("put");
    wait_value(&b, "blue", Some(b"v1")).await;
    // Written by the writer thread shortly after it arrived.
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(d.join("b.json")).is_ok_and(|t| t.contains("\"blue\"")) {
        assert!(Instant::now() < deadline, "b never saved what it received");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
    // b alone, its writer gone for good: it still knows the definition.
    let b2 = runtime::spawn(config(2, &d.join("b.json")))
        .await
        .expect("restart");
    assert_eq!(value(&b2, "blue").await.as_deref(), Some(b"v1".as_slice()));
    b2.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn an_unreadable_durable_file_stops_the_start_with_its_path() {
    let d = dir("bad");
    let path = d.join("durable.json");
    std::fs::write(&path, b"{ not json").unwrap();
    let err = runtime::spawn(config(1, &path)).await.expect_err("refused");
    assert!(err.to_string().contains("durable.json"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}
