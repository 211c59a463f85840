//! Forwarding a query to the upstream servers, from the agent's own network namespace (the
//! tokio runtime's threads never enter a container namespace).
//!
//! Contract of [`forward`]: the upstreams are tried in order, each over the client's
//! transport (UDP, or TCP), and each gets an equal share of what is left of `timeout`, so
//! the whole call ends within `timeout` (plus scheduling). A UDP answer with TC set is
//! retried over TCP to the same upstream, within its share. NOERROR and NXDOMAIN are
//! accepted; SERVFAIL, REFUSED, other codes, malformed or mismatched replies, timeouts and
//! socket errors move on to the next upstream (each counted in the metrics). The query goes
//! out with a fresh random id from a fresh socket (random source port); a reply is accepted
//! only with that id and the same question.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

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

/// Forwards `query` (see the module contract). `None` when no upstream gave an acceptable
/// answer in time (the caller answers SERVFAIL).
pub async fn forward(
    query: &Message,
    transport: Transport,
    upstreams: &[SocketAddr],
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
                    let m = udp_exchange(*up, &bytes, &out).await?;
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
        && reply.queries == sent.queries
}

async fn udp_exchange(
    up: SocketAddr,
    bytes: &[u8],
    sent: &Message,
) -> Result<Message, UpstreamFailure> {
    let sock = UdpSocket::bind(unspecified_for(up))
        .await
        .map_err(|_| UpstreamFailure::Io)?;
    sock.connect(up).await.map_err(|_| UpstreamFailure::Io)?;
    sock.send(bytes).await.map_err(|_| UpstreamFailure::Io)?;
    let mut buf = vec![0u8; UDP_RECV];
    // Bounded by the caller's timeout; stray datagrams (wrong id) are skipped.
    loop {
        let n = sock.recv(&mut buf).await.map_err(|_| UpstreamFailure::Io)?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if matches(&m, sent) => return Ok(m),
            _ => continue,
        }
    }
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
