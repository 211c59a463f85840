//! Forwarding a query to the upstream servers, from the agent's own network namespace (the
//! tokio runtime's threads never enter a container namespace).
//!
//! Contract of [`forward`]: the upstreams are tried in order, each over the client's
//! transport (UDP, or TCP), and each gets an equal share of what is left of `timeout`, so
//! the whole call ends within `timeout` (plus scheduling). A UDP answer with TC set is
//! retried over TCP to the same upstream, within its share. NOERROR and NXDOMAIN are
//! accepted; SERVFAIL, REFUSED, other codes, malformed or mismatched replies, timeouts and
//! socket errors move on to the next upstream (each counted in the metrics). The query goes
//! out with a fresh random id; a reply is accepted only with that id and the same question.
//!
//! UDP queries share a small [`UpstreamPool`] of connected sockets per upstream (a socket
//! per query costs a port allocation, an epoll registration and four more system calls,
//! which halved forwarding throughput); each socket has a random source port and is
//! replaced after [`ROTATE_AFTER`] queries, so the (port, id) pair an off-path attacker
//! must guess keeps changing. An ICMP error on a socket (the upstream's port is closed)
//! fails every query waiting on it at once rather than at the timeout.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::metrics::DnsMetrics;
use super::query::Transport;

/// Why one upstream attempt failed (the metrics label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamFailure {
    Timeout,
    Io,
    Malformed,
    ServFail,
    Refused,
    OtherRcode,
}

impl UpstreamFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Io => "io",
            UpstreamFailure::Malformed => "malformed",
            UpstreamFailure::ServFail => "servfail",
            UpstreamFailure::Refused => "refused",
            UpstreamFailure::OtherRcode => "rcode",
        }
    }
}

/// Largest UDP datagram read from an upstream.
const UDP_RECV: usize = 65535;
/// Sockets per upstream in the pool.
const SOCKETS_PER_UPSTREAM: usize = 4;
/// Queries after which a pooled socket is replaced by one with a new random port.
pub const ROTATE_AFTER: u64 = 2000;

/// Waiting queries of one socket: id -> (registration token, question, where the reply goes).
type Pending = Arc<Mutex<HashMap<u16, (u64, Vec<Query>, oneshot::Sender<Message>)>>>;

/// Registration tokens: a finished exchange removes its own entry only, never a newer one
/// that reuses its id.
static TOKENS: AtomicU64 = AtomicU64::new(0);

/// One connected socket and the task that hands its replies to the waiting queries.
#[derive(Debug)]
struct Channel {
    sock: Arc<UdpSocket>,
    pending: Pending,
    uses: AtomicU64,
    reader: JoinHandle<()>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Channel {
    async fn open(up: SocketAddr) -> Result<Arc<Channel>, UpstreamFailure> {
        let sock = UdpSocket::bind(unspecified_for(up))
            .await
            .map_err(|_| UpstreamFailure::Io)?;
        sock.connect(up).await.map_err(|_| UpstreamFailure::Io)?;
        let sock = Arc::new(sock);
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_replies(sock.clone(), pending.clone()));
        Ok(Arc::new(Channel {
            sock,
            pending,
            uses: AtomicU64::new(0),
            reader,
        }))
    }
}

/// Reads replies and completes the matching waiting query; an error (ICMP port
/// unreachable) fails every waiting query of the socket.
async fn read_replies(sock: Arc<UdpSocket>, pending: Pending) {
    let mut buf = vec![0u8; UDP_RECV];
    loop {
        match sock.recv(&mut buf).await {
            Ok(n) => {
                let Ok(m) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if m.message_type != MessageType::Response {
                    continue;
                }
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                if p.get(&m.id)
                    .is_some_and(|(_, q, _)| same_questions(q, &m.queries))
                    && let Some((_, _, tx)) = p.remove(&m.id)
                {
                    let _ = tx.send(m);
                }
            }
            Err(_) => {
                pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

/// Removes a waiting query's entry when its exchange ends (answer, timeout, cancel).
struct Registered<'a> {
    pending: &'a Pending,
    id: u16,
    token: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.get(&self.id).is_some_and(|(t, _, _)| *t == self.token) {
            p.remove(&self.id);
        }
    }
}

/// Pooled UDP sockets to the upstreams (see the module docs). One per resolver.
#[derive(Debug, Default)]
pub struct UpstreamPool {
    channels: Mutex<HashMap<SocketAddr, Vec<Arc<Channel>>>>,
    next: AtomicUsize,
}

impl UpstreamPool {
    /// A channel to `up`: a pooled one, or a new one when its slot is empty or worn out.
    async fn channel(&self, up: SocketAddr) -> Result<Arc<Channel>, UpstreamFailure> {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % SOCKETS_PER_UPSTREAM;
        let existing = {
            let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&up).and_then(|v| v.get(slot)).cloned()
        };
        if let Some(c) = existing
            && c.uses.fetch_add(1, Ordering::Relaxed) < ROTATE_AFTER
            && !c.reader.is_finished()
        {
            return Ok(c);
        }
        let fresh = Channel::open(up).await?;
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let v = map.entry(up).or_default();
        if v.len() <= slot {
            v.push(fresh.clone());
        } else {
            // The replaced channel lives on while queries still wait on it.
            v[slot] = fresh.clone();
        }
        Ok(fresh)
    }

    /// Drops every pooled socket of upstreams not in `keep`.
    pub fn retain(&self, keep: &[SocketAddr]) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| keep.contains(k));
    }

    /// One UDP exchange of `sent` (already encoded as `bytes`) with `up`.
    async fn exchange(&self, up: SocketAddr, sent: &Message) -> Result<Message, UpstreamFailure> {
        let ch = self.channel(up).await?;
        let (tx, rx) = oneshot::channel();
        let mut out = sent.clone();
        let id = {
            let mut p = ch.pending.lock().unwrap_or_else(|e| e.into_inner());
            let mut id: u16 = rand::random();
            let mut tries = 0;
            while p.contains_key(&id) {
                id = rand::random();
                tries += 1;
                if tries > 64 {
                    return Err(UpstreamFailure::Io);
                }
            }
            let token = TOKENS.fetch_add(1, Ordering::Relaxed);
            p.insert(id, (token, sent.queries.clone(), tx));
            (id, token)
        };
        let (id, token) = id;
        let _registered = Registered {
            pending: &ch.pending,
            id,
            token,
        };
        out.metadata.id = id;
        let bytes = out.to_vec().map_err(|_| UpstreamFailure::Malformed)?;
        ch.sock
            .send(&bytes)
            .await
            .map_err(|_| UpstreamFailure::Io)?;
        rx.await.map_err(|_| UpstreamFailure::Io)
    }
}

/// Forwards `query` (see the module contract). `None` when no upstream gave an acceptable
/// answer in time (the caller answers SERVFAIL).
pub async fn forward(
    query: &Message,
    transport: Transport,
    upstreams: &[SocketAddr],
    pool: &UpstreamPool,
    timeout: Duration,
    metrics: &DnsMetrics,
) -> Option<Message> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut out = query.clone();
    out.metadata.id = rand::random();
    let bytes = out.to_vec().ok()?;
    for (i, up) in upstreams.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let share = (deadline - now) / (upstreams.len() - i) as u32;
        let attempt = async {
            match transport {
                Transport::Udp => {
                    let m = pool.exchange(*up, &out).await?;
                    if m.truncation {
                        tcp_exchange(*up, &bytes, &out).await
                    } else {
                        Ok(m)
                    }
                }
                Transport::Tcp => tcp_exchange(*up, &bytes, &out).await,
            }
        };
        let result = match tokio::time::timeout(share, attempt).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamFailure::Timeout),
        };
        let result = result.and_then(|m| match m.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok(m),
            ResponseCode::ServFail => Err(UpstreamFailure::ServFail),
            ResponseCode::Refused => Err(UpstreamFailure::Refused),
            _ => Err(UpstreamFailure::OtherRcode),
        });
        match result {
            Ok(m) => {
                metrics.observe_forward(start.elapsed());
                return Some(m);
            }
            Err(f) => {
                tracing::debug!(upstream = %up, failure = f.as_str(), "upstream attempt failed");
                metrics.upstream_failure(*up, f);
            }
        }
    }
    metrics.observe_forward(start.elapsed());
    None
}

fn unspecified_for(up: SocketAddr) -> SocketAddr {
    match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// Whether `reply` answers `sent` (same id and question, a response).
fn matches(reply: &Message, sent: &Message) -> bool {
    reply.id == sent.id
        && reply.message_type == MessageType::Response
        && same_questions(&reply.queries, &sent.queries)
}

/// Same questions: names compared case-insensitively and whether or not they are marked
/// fully qualified (a name read from the wire always is), same types and classes.
fn same_questions(a: &[Query], b: &[Query]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.query_type() == y.query_type()
                && x.query_class() == y.query_class()
                && x.name().eq_ignore_root(y.name())
        })
}

async fn tcp_exchange(
    up: SocketAddr,
    bytes: &[u8],
    sent: &Message,
) -> Result<Message, UpstreamFailure> {
    let mut s = TcpStream::connect(up)
        .await
        .map_err(|_| UpstreamFailure::Io)?;
    let _ = s.set_nodelay(true);
    let len = u16::try_from(bytes.len()).map_err(|_| UpstreamFailure::Malformed)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    s.write_all(&framed)
        .await
        .map_err(|_| UpstreamFailure::Io)?;
    let n = s.read_u16().await.map_err(|_| UpstreamFailure::Io)? as usize;
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)
        .await
        .map_err(|_| UpstreamFailure::Io)?;
    match Message::from_vec(&buf) {
        Ok(m) if matches(&m, sent) => Ok(m),
        _ => Err(UpstreamFailure::Malformed),
    }
}
