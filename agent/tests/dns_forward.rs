//! Forwarding to upstreams over pooled UDP sockets and TCP, against the stub server on this
//! process's loopback (no namespaces, no root). Every loop is bounded in count and time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::dns::DnsMetrics;
use agent::dns::Transport;
use agent::dns::forward::{UpstreamPool, forward};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use lab::stub_dns::Stub;

async fn stub(names: usize) -> (SocketAddr, Arc<Stub>, Vec<tokio::task::JoinHandle<()>>) {
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let owned: Vec<(String, Vec<Ipv4Addr>)> = (0..names)
        .map(|i| {
            (
                format!("n{i}.test"),
                vec![Ipv4Addr::from(0x0a00_0000 + i as u32)],
            )
        })
        .collect();
    let s = Stub::new(owned.iter().map(|(n, ips)| (n.as_str(), ips.clone())));
    let tasks = vec![
        tokio::spawn(s.clone().serve_udp(udp)),
        tokio::spawn(s.clone().serve_tcp(tcp)),
    ];
    (addr, s, tasks)
}

fn query(name: &str) -> Message {
    let mut m = Message::new(42, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m
}

fn first_a(m: &Message) -> Option<Ipv4Addr> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwards_over_pooled_sockets_each_get_their_own_answer() {
    let (addr, stub, _tasks) = stub(500).await;
    let pool = Arc::new(UpstreamPool::default());
    let metrics = DnsMetrics::default();
    // 6,000 queries, 100 in flight at a time (more can overflow the stub's socket buffer:
    // UDP loss, not what this test is about): ids are reused on the pooled sockets and the
    // sockets rotate, and every answer must still be the one for its own question.
    for chunk in 0..60 {
        let mut set = tokio::task::JoinSet::new();
        for j in 0..100usize {
            let i = (chunk * 100 + j) % 500;
            let (pool, metrics) = (pool.clone(), metrics.clone());
            set.spawn(async move {
                let q = query(&format!("n{i}.test"));
                let m = forward(
                    &q,
                    Transport::Udp,
                    &[addr],
                    &pool,
                    Duration::from_secs(5),
                    &metrics,
                )
                .await
                .expect("answered");
                assert_eq!(m.response_code, ResponseCode::NoError);
                assert_eq!(first_a(&m), Some(Ipv4Addr::from(0x0a00_0000 + i as u32)));
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    }
    assert!(stub.udp_queries.load(std::sync::atomic::Ordering::Relaxed) >= 6000);
}

#[tokio::test]
async fn an_nxdomain_is_an_answer_and_tcp_forwarding_works() {
    let (addr, stub, _tasks) = stub(1).await;
    let pool = UpstreamPool::default();
    let metrics = DnsMetrics::default();
    let m = forward(
        &query("nope.test"),
        Transport::Udp,
        &[addr],
        &pool,
        Duration::from_secs(2),
        &metrics,
    )
    .await
    .unwrap();
    assert_eq!(m.response_code, ResponseCode::NXDomain);
    let m = forward(
        &query("n0.test"),
        Transport::Tcp,
        &[addr],
        &pool,
        Duration::from_secs(2),
        &metrics,
    )
    .await
    .unwrap();
    assert_eq!(first_a(&m), Some(Ipv4Addr::new(10, 0, 0, 0)));
    assert_eq!(
        stub.tcp_queries.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn a_dead_upstream_is_skipped_and_all_dead_gives_nothing_within_the_timeout() {
    let (live, _stub, _tasks) = stub(1).await;
    // A port with nothing behind it: bound and released.
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let pool = UpstreamPool::default();
    let metrics = DnsMetrics::default();
    let m = forward(
        &query("n0.test"),
        Transport::Udp,
        &[dead, live],
        &pool,
        Duration::from_secs(2),
        &metrics,
    )
    .await
    .unwrap();
    assert_eq!(first_a(&m), Some(Ipv4Addr::new(10, 0, 0, 0)));
    let t = Instant::now();
    let none = forward(
        &query("n0.test"),
        Transport::Udp,
        &[dead],
        &pool,
        Duration::from_secs(2),
        &metrics,
    )
    .await;
    assert!(none.is_none());
    println!("all upstreams dead: gave up after {:?}", t.elapsed());
}
