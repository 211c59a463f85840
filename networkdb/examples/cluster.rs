//! Three networkdb nodes on 127.0.0.1 gossiping one table.
//!
//! Run with `cargo run -p networkdb --example cluster` (`RUST_LOG=info` shows the nodes' logs).
//! The nodes bind ephemeral ports, join the cluster through the first one, join the network
//! "blue" and each write one entry; a watcher on the third node prints what it sees; then
//! every node prints its copy of the table and they all shut down.

use std::time::Duration;

use networkdb::runtime::{self, Handle, NodeConfig, WatchEvent};
use networkdb::{EventKind, NodeId};

const NET: &str = "blue";
const TABLE: &str = "endpoints";
/// The gossip key every node shares (16 bytes: AES-128-GCM). Real deployments get theirs
/// from the orchestrator.
const KEY: &[u8; 16] = b"example-key-0001";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    // Start three nodes; port 0 lets each pick a free port for both UDP and TCP.
    let mut nodes: Vec<Handle> = Vec::new();
    for id in 1..=3 {
        let mut cfg = NodeConfig::new(NodeId(id), "127.0.0.1:0".parse()?);
        cfg.keys = vec![KEY.to_vec()];
        let node = runtime::spawn(cfg).await?;
        println!("node {id} listening on {}", node.addr());
        nodes.push(node);
    }

    // Nodes 2 and 3 join through node 1; everyone joins the network.
    let seed = nodes[0].addr();
    for node in &nodes[1..] {
        node.join(vec![seed]).await?;
    }
    for node in &nodes {
        node.join_network(NET).await?;
    }

    // Wait (at most 10 s) until every node sees the two others on the network, so that the
    // writes below are pushed at once rather than found by the next anti-entropy round.
    for node in &nodes {
        for _ in 0..200 {
            if node.network_members(NET).await?.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Node 3 watches the table: first what is there already, then every change.
    let mut watch = nodes[2]
        .watch(Some(NET.to_owned()), Some(TABLE.to_owned()))
        .await?;

    for (i, node) in nodes.iter().enumerate() {
        let value = format!("10.0.0.{}", i + 2);
        node.put(NET, TABLE, &format!("ep-{}", i + 1), value.into_bytes())
            .await?;
    }

    // Print events until the watcher has seen all three entries (or 10 s went by).
    let mut seen = 0;
    while seen < 3 {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(WatchEvent::Entry(e))) => {
                let value = e.new.as_deref().map(String::from_utf8_lossy);
                println!(
                    "node 3 watch: {:?} {}/{} = {:?} (owner {})",
                    e.kind, e.table, e.key, value, e.owner
                );
                if e.kind == EventKind::Create {
                    seen += 1;
                }
            }
            Ok(Some(other)) => println!("node 3 watch: {other:?}"),
            Ok(None) => break,
            Err(_) => {
                println!("node 3 watch: no more events within 10 s");
                break;
            }
        }
    }

    // Every node's copy of the table, once it holds all three entries (at most 10 s: a
    // write reaches the others a moment after its writer and watchers see it).
    for (i, node) in nodes.iter().enumerate() {
        let mut entries = node.snapshot(Some(NET), Some(TABLE)).await?;
        for _ in 0..200 {
            if entries.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            entries = node.snapshot(Some(NET), Some(TABLE)).await?;
        }
        let rows: Vec<String> = entries
            .iter()
            .map(|e| {
                let v = e.new.as_deref().map(String::from_utf8_lossy);
                format!("{}={}", e.key, v.unwrap_or_default())
            })
            .collect();
        println!("node {} table {NET}/{TABLE}: {}", i + 1, rows.join(" "));
    }

    drop(watch);
    for node in &nodes {
        node.shutdown().await?;
    }
    println!("all nodes shut down");
    Ok(())
}
