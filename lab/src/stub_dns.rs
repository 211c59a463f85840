//! A tiny authoritative DNS server for tests and benchmarks: the "upstream" the agent's
//! resolver forwards to.
//!
//! It answers A queries for the names it holds (NXDOMAIN for others, an empty NOERROR for
//! other types), over UDP (truncated to 512 bytes, or the query's EDNS size, with TC set)
//! and TCP, and counts what it served.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::Edns;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Largest DNS message over TCP.
const MAX_TCP_MESSAGE: usize = 65535;
/// Largest UDP reply without EDNS.
const MIN_UDP_PAYLOAD: u16 = 512;
/// Largest UDP reply with EDNS.
const MAX_UDP_PAYLOAD: u16 = 4096;

/// The transport a query came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Lookup key of a name: lower case, no trailing dot.
fn key_of(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// The names a stub serves and what it counted.
#[derive(Debug, Default)]
pub struct Stub {
    names: HashMap<String, Vec<Ipv4Addr>>,
    pub udp_queries: AtomicU64,
    pub tcp_queries: AtomicU64,
}

impl Stub {
    /// A stub serving `names` (name -> addresses; invalid names are skipped).
    pub fn new<'a>(names: impl IntoIterator<Item = (&'a str, Vec<Ipv4Addr>)>) -> Arc<Stub> {
        Arc::new(Stub {
            names: names
                .into_iter()
                .filter_map(|(n, ips)| {
                    Name::from_ascii(n.trim_end_matches('.'))
                        .ok()
                        .map(|name| (key_of(&name), ips))
                })
                .collect(),
            ..Stub::default()
        })
    }

    /// The reply to one query (`None`: not a query; dropped).
    pub fn answer(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let q = Message::from_vec(bytes).ok()?;
        if q.message_type != MessageType::Query || q.queries.len() != 1 {
            return None;
        }
        let mut m = Message::response(q.id, q.op_code);
        m.metadata.recursion_desired = q.recursion_desired;
        m.metadata.authoritative = true;
        m.queries = q.queries.clone();
        if q.edns.is_some() {
            let mut e = Edns::new();
            e.set_max_payload(MAX_UDP_PAYLOAD);
            m.edns = Some(e);
        }
        let question = &q.queries[0];
        match self.names.get(&key_of(question.name())) {
            None => m.metadata.response_code = ResponseCode::NXDomain,
            Some(ips) if question.query_type() == RecordType::A => {
                m.answers = ips
                    .iter()
                    .map(|ip| Record::from_rdata(question.name().clone(), 60, RData::A(A(*ip))))
                    .collect();
            }
            Some(_) => {}
        }
        let limit = match transport {
            Transport::Tcp => MAX_TCP_MESSAGE,
            Transport::Udp => q.edns.as_ref().map_or(MIN_UDP_PAYLOAD, |e| {
                e.max_payload().clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
            }) as usize,
        };
        let full = m.to_vec().ok()?;
        if full.len() <= limit {
            return Some(full);
        }
        // Too big for this transport: truncated, without answers (the client retries over
        // TCP).
        m.metadata.truncation = true;
        m.answers.clear();
        m.to_vec().ok()
    }

    /// Serves UDP on `sock` until the task is dropped.
    pub async fn serve_udp(self: Arc<Self>, sock: UdpSocket) {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            self.udp_queries.fetch_add(1, Ordering::Relaxed);
            if let Some(r) = self.answer(&buf[..n], Transport::Udp) {
                let _ = sock.send_to(&r, peer).await;
            }
        }
    }

    /// Serves TCP on `listener` until the task is dropped (each connection is its own task,
    /// ending when the client closes).
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let stub = self.clone();
            tokio::spawn(async move {
                while let Ok(n) = s.read_u16().await {
                    let mut buf = vec![0u8; n as usize];
                    if s.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    stub.tcp_queries.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = stub.answer(&buf, Transport::Tcp) else {
                        return;
                    };
                    if r.len() > MAX_TCP_MESSAGE {
                        return;
                    }
                    let mut framed = (r.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&r);
                    if s.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}
