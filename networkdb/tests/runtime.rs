//! The tokio runtime on real sockets (127.0.0.1, ephemeral ports), several nodes in one tokio
//! runtime. Every wait is bounded by [`WAIT`]; no test asserts how long anything took.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use networkdb::runtime::{self, Handle, NodeConfig, Watch, WatchEvent, WatchOptions};
use networkdb::{Config, Error, EventKind, NodeId};

/// Upper bound of every wait.
const WAIT: Duration = Duration::from_secs(20);
const NET: &str = "blue";
const TABLE: &str = "endpoints";

fn key(n: u8) -> Vec<u8> {
    vec![n; 16]
}

fn log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

fn config(id: u64, keys: Vec<Vec<u8>>) -> NodeConfig {
    let mut cfg = NodeConfig::new(NodeId(id), "127.0.0.1:0".parse().unwrap());
    cfg.keys = keys;
    cfg.seed = Some(id);
    cfg.core = Config {
        sync_interval: Duration::from_secs(1),
        ..Config::default()
    };
    cfg
}

async fn node(id: u64, keys: Vec<Vec<u8>>) -> Handle {
    runtime::spawn(config(id, keys)).await.expect("spawn")
}

/// Bound of a whole test: a hang fails the test instead of stalling the suite.
const TEST_BOUND: Duration = Duration::from_secs(120);

async fn bounded<T>(test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BOUND, test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {TEST_BOUND:?}"))
}

/// Poll `check` until it holds, at most [`WAIT`]. Panics with `what` otherwise.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {WAIT:?} waiting for {what}");
}

/// `n` nodes; all but the first join through the first, all join [`NET`]; returns once every
/// node sees every other one up and attached to [`NET`].
async fn cluster(n: u64, keys: Vec<Vec<u8>>) -> Vec<Handle> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(node(id, keys.clone()).await);
    }
    let seed = nodes[0].addr();
    for node in &nodes[1..] {
        node.join(vec![seed]).await.unwrap();
    }
    for node in &nodes {
        node.join_network(NET).await.unwrap();
    }
    for node in &nodes {
        eventually("every node up and attached", || async {
            node.network_members(NET).await.unwrap().len() == n as usize - 1
        })
        .await;
    }
    nodes
}

#[test]
fn handles_and_watches_can_be_shared_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send + 'static>() {}
    shareable::<Handle>();
    sendable::<Watch>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_that_cannot_work_is_refused_at_spawn() {
    let mut cfg = config(1, vec![]);
    cfg.core.max_packet = 65500;
    assert!(matches!(
        runtime::spawn(cfg).await,
        Err(Error::Invalid {
            field: "max_packet",
            ..
        })
    ));
    let mut cfg = config(1, vec![vec![0; 7]]);
    cfg.seed = None;
    assert!(matches!(
        runtime::spawn(cfg).await,
        Err(Error::Invalid { field: "key", .. })
    ));
    let cfg = NodeConfig::new(NodeId(1), "0.0.0.0:0".parse().unwrap());
    assert!(matches!(
        runtime::spawn(cfg).await,
        Err(Error::Invalid {
            field: "advertise",
            ..
        })
    ));
}

/// What a consumer of a watch rebuilds from it: (network, table, key) -> value.
#[derive(Default, Debug)]
struct Mirror {
    entries: BTreeMap<(String, String, String), Vec<u8>>,
    resets: usize,
    events: usize,
}

impl Mirror {
    fn apply(&mut self, ev: WatchEvent) {
        self.events += 1;
        match ev {
            WatchEvent::Entry(e) => {
                let k = (e.network, e.table, e.key);
                match (e.kind, e.new) {
                    (EventKind::Delete, _) | (_, None) => {
                        self.entries.remove(&k);
                    }
                    (_, Some(v)) => {
                        self.entries.insert(k, v);
                    }
                }
            }
            WatchEvent::Reset => {
                self.resets += 1;
                self.entries.clear();
            }
            WatchEvent::Member(_) => {}
        }
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .get(&(NET.to_owned(), TABLE.to_owned(), key.to_owned()))
            .map(Vec::as_slice)
    }

    /// Consume events until `done` holds, at most [`WAIT`].
    async fn follow(&mut self, watch: &mut Watch, what: &str, done: impl Fn(&Mirror) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(self) {
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(ev)) => self.apply(ev),
                Ok(None) => panic!("watch ended while waiting for {what}"),
                Err(_) => panic!("timed out after {WAIT:?} waiting for {what}: {self:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_joined_through_one_seed_see_every_write_in_every_watcher() {
    bounded(async move {
        log();
        let nodes = cluster(3, vec![key(1)]).await;
        let mut watches = Vec::new();
        for n in &nodes {
            watches.push(n.watch(Some(NET.into()), None).await.unwrap());
        }
        for (i, n) in nodes.iter().enumerate() {
            n.put(
                NET,
                TABLE,
                &format!("ep{i}"),
                format!("10.0.0.{i}").into_bytes(),
            )
            .await
            .unwrap();
        }
        for (i, w) in watches.iter_mut().enumerate() {
            let mut m = Mirror::default();
            m.follow(w, &format!("all writes on node {i}"), |m| {
                (0..3).all(|j| m.get(&format!("ep{j}")) == Some(format!("10.0.0.{j}").as_bytes()))
            })
            .await;
            assert_eq!(m.resets, 0);
        }
        for n in &nodes {
            let s = n.stats().await.unwrap();
            assert_eq!(s.members_up, 2, "{:?}", n.members().await.unwrap());
            assert_eq!(s.open_failures, 0);
            assert!(s.datagrams_in > 0 && s.datagrams_out > 0);
        }
        for n in &nodes {
            n.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_watcher_receives_the_current_entries_first_then_each_change_in_order() {
    bounded(async move {
        log();
        let n = node(1, vec![]).await;
        n.join_network(NET).await.unwrap();
        n.put(NET, TABLE, "a", b"1".to_vec()).await.unwrap();
        n.put(NET, TABLE, "b", b"2".to_vec()).await.unwrap();
        n.put(NET, "other", "x", b"x".to_vec()).await.unwrap();
        let mut w = n.watch(Some(NET.into()), Some(TABLE.into())).await.unwrap();
        let mut next = async || match tokio::time::timeout(WAIT, w.next()).await {
            Ok(Some(WatchEvent::Entry(e))) => e,
            other => panic!("expected an entry event, got {other:?}"),
        };
        let (a, b) = (next().await, next().await);
        assert_eq!(
            (a.kind, a.key.as_str(), a.new.as_deref()),
            (EventKind::Create, "a", Some(&b"1"[..]))
        );
        assert_eq!(
            (b.kind, b.key.as_str(), b.new.as_deref()),
            (EventKind::Create, "b", Some(&b"2"[..]))
        );

        n.put(NET, TABLE, "c", b"3".to_vec()).await.unwrap();
        n.put(NET, "other", "y", b"y".to_vec()).await.unwrap();
        n.put(NET, TABLE, "a", b"1bis".to_vec()).await.unwrap();
        assert!(n.delete(NET, TABLE, "b").await.unwrap());
        assert!(!n.delete(NET, TABLE, "b").await.unwrap());

        let c = next().await;
        assert_eq!(
            (c.kind, c.key.as_str(), c.new.as_deref()),
            (EventKind::Create, "c", Some(&b"3"[..]))
        );
        let a = next().await;
        assert_eq!(
            (a.kind, a.key.as_str(), a.old.as_deref(), a.new.as_deref()),
            (EventKind::Update, "a", Some(&b"1"[..]), Some(&b"1bis"[..]))
        );
        let b = next().await;
        assert_eq!(
            (b.kind, b.key.as_str(), b.old.as_deref(), b.new.as_deref()),
            (EventKind::Delete, "b", Some(&b"2"[..]), None)
        );
        assert!(
            w.try_next().is_none(),
            "no event of another table or network"
        );
        n.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_behind_gets_reset_then_a_fresh_snapshot_and_rebuilds_the_state() {
    bounded(async move {
        log();
        let n = node(1, vec![]).await;
        n.join_network(NET).await.unwrap();
        n.put(NET, TABLE, "before", b"0".to_vec()).await.unwrap();
        let mut w = n
            .watch_with(WatchOptions {
                network: Some(NET.into()),
                capacity: Some(4),
                ..WatchOptions::default()
            })
            .await
            .unwrap();
        // Never read while writing: the queue overflows, the node does not wait for us.
        for i in 0..50 {
            n.put(NET, TABLE, &format!("k{i}"), format!("v{i}").into_bytes())
                .await
                .unwrap();
        }
        assert!(n.delete(NET, TABLE, "before").await.unwrap());
        let stats = n.stats().await.unwrap();
        assert!(stats.watch_overflows >= 1, "{stats:?}");

        // The initial snapshot went with the overflow: the first event is a Reset.
        assert_eq!(w.try_next(), Some(WatchEvent::Reset));
        let mut m = Mirror::default();
        while let Some(ev) = w.try_next() {
            m.apply(ev);
        }
        let truth = n.snapshot(Some(NET), None).await.unwrap();
        let expected: BTreeMap<_, _> = truth
            .into_iter()
            .map(|e| ((e.network, e.table, e.key), e.new.unwrap()))
            .collect();
        assert_eq!(m.entries, expected);
        assert_eq!(m.get("before"), None);
        assert_eq!(m.get("k49"), Some(&b"v49"[..]));
        n.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_key_cannot_join_and_its_packets_count_as_open_failures() {
    bounded(async move {
        log();
        let nodes = cluster(2, vec![key(1)]).await;
        let stranger = node(9, vec![key(2)]).await;
        stranger.join(vec![nodes[0].addr()]).await.unwrap();
        let seed = nodes[0].clone();
        eventually(
            "the seed to refuse the stranger's announcements",
            || async { seed.stats().await.unwrap().open_failures >= 2 },
        )
        .await;
        assert!(stranger.members().await.unwrap().is_empty());
        for n in &nodes {
            let members = n.members().await.unwrap();
            assert!(
                members.iter().all(|m| m.peer.id != NodeId(9)),
                "{members:?}"
            );
        }
        // A node without any key is refused as well (clear payloads are not accepted).
        let clear = node(10, vec![]).await;
        clear.join(vec![nodes[0].addr()]).await.unwrap();
        let before = seed.stats().await.unwrap().open_failures;
        eventually("the seed to refuse a clear announcement", || async {
            seed.stats().await.unwrap().open_failures > before
        })
        .await;
        assert!(clear.members().await.unwrap().is_empty());
        for n in nodes.iter().chain([&stranger, &clear]) {
            n.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotated_everywhere_while_writing_lose_no_write() {
    bounded(async move {
        log();
        let nodes = cluster(3, vec![key(1)]).await;
        let mut watches = Vec::new();
        for n in &nodes {
            watches.push(n.watch(Some(NET.into()), None).await.unwrap());
        }
        const WRITES: usize = 120;
        let writers = nodes.clone();
        let writer = tokio::spawn(async move {
            for i in 0..WRITES {
                writers[i % writers.len()]
                    .put(NET, TABLE, &format!("w{i}"), format!("{i}").into_bytes())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        for n in &nodes {
            n.add_key(key(2)).await.unwrap();
        }
        for n in &nodes {
            n.set_primary_key(key(2)).await.unwrap();
        }
        for n in &nodes {
            n.remove_key(key(1)).await.unwrap();
        }
        tokio::time::timeout(WAIT, writer).await.unwrap().unwrap();
        for (i, w) in watches.iter_mut().enumerate() {
            let mut m = Mirror::default();
            m.follow(w, &format!("every write on node {i}"), |m| {
                (0..WRITES).all(|j| m.get(&format!("w{j}")) == Some(format!("{j}").as_bytes()))
            })
            .await;
        }
        for n in &nodes {
            let s = n.stats().await.unwrap();
            assert_eq!(s.keys, 1);
            assert_eq!(s.open_failures, 0, "rotation dropped packets: {s:?}");
            if s.removed_key_opens > 0 {
                println!(
                    "opened by the removed key in its grace: {}",
                    s.removed_key_opens
                );
            }
        }
        for n in &nodes {
            n.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_gracefully_ends_watches_and_closes_the_sockets() {
    bounded(async move {
        log();
        let nodes = cluster(2, vec![key(1)]).await;
        let (a, b) = (nodes[0].clone(), nodes[1].clone());
        let mut members = b.watch_members().await.unwrap();
        let mut a_watch = a.watch(None, None).await.unwrap();
        let addr: SocketAddr = a.addr();
        assert_ne!(addr.port(), 0);
        // UDP and TCP listen on the advertised port.
        tokio::net::TcpStream::connect(addr).await.unwrap();

        a.shutdown().await.unwrap();
        assert!(matches!(a.stats().await, Err(Error::Stopped)));
        assert!(matches!(a.shutdown().await, Err(Error::Stopped)));
        // The watch ends after what was queued.
        let ended =
            tokio::time::timeout(WAIT, async { while a_watch.next().await.is_some() {} }).await;
        assert!(ended.is_ok(), "the watch of a stopped node must end");
        // Both sockets are closed: the port can be bound again at once.
        std::net::UdpSocket::bind(addr).expect("udp port released");
        std::net::TcpListener::bind(addr).expect("tcp port released");
        // The peer learns of the leave from the leave itself, not from failure detection.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, members.next()).await {
                Ok(Some(WatchEvent::Member(m))) if m.peer.id == NodeId(1) && !m.up => break,
                Ok(Some(_)) => {}
                other => panic!("no down event for the node that left: {other:?}"),
            }
        }
        assert_eq!(b.stats().await.unwrap().members_up, 0);
        b.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_is_unregistered_and_a_dropped_handle_stops_the_node() {
    bounded(async move {
        log();
        let n = node(1, vec![]).await;
        let w = n.watch(None, None).await.unwrap();
        assert_eq!(n.stats().await.unwrap().watchers, 1);
        drop(w);
        let h = n.clone();
        eventually("the watch to be unregistered", || async {
            h.stats().await.unwrap().watchers == 0
        })
        .await;
        drop(h);
        let addr = n.addr();
        drop(n);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpListener::bind(addr).is_err() {
            assert!(Instant::now() < deadline, "the node kept its sockets");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
