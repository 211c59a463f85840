//! TCP transport of stream frames: each frame is `u32` big-endian length + sealed payload.
//!
//! Sending: one short-lived connection per frame (connect timeout [`CONNECT_TIMEOUT`], the
//! whole exchange bounded by [`IO_TIMEOUT`]). Receiving: an acceptor admits at most
//! [`MAX_INBOUND`] connections at once; each reads frames until EOF, every read bounded by
//! [`IO_TIMEOUT`] and every length by the node's limit, opens them and hands them to the core
//! task.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tracing::Instrument;

use super::keys::{self, Keys, Opened};
use super::stats::{IoCounters, bump};

/// Longest wait for an outgoing connection to be established.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for one frame to be read, or for one frame to be written.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most incoming connections served at once; more are closed at once and counted.
pub const MAX_INBOUND: usize = 64;
/// Most outgoing connections at once; more wait for a slot (within their time bound).
pub const MAX_OUTBOUND: usize = 64;
/// Most frames read from one incoming connection.
const MAX_FRAMES_PER_CONNECTION: usize = 1024;

/// An opened stream frame on its way to the core task.
pub(crate) type Inbound = (SocketAddr, Vec<u8>);

/// Accept connections until the task is aborted.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    limit: usize,
    ring: Arc<RwLock<Keys>>,
    counters: Arc<IoCounters>,
    to_core: mpsc::Sender<Inbound>,
) {
    let slots = Arc::new(Semaphore::new(MAX_INBOUND));
    loop {
        let (conn, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a gossip connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            bump(&counters.streams_rejected, 1);
            tracing::debug!(%from, "too many gossip connections: refused");
            continue;
        };
        let (ring, counters, to_core) = (ring.clone(), counters.clone(), to_core.clone());
        tokio::spawn(
            async move {
                serve(conn, from, limit, &ring, &counters, &to_core).await;
                drop(permit);
            }
            .in_current_span(),
        );
    }
}

async fn serve(
    mut conn: TcpStream,
    from: SocketAddr,
    limit: usize,
    ring: &RwLock<Keys>,
    counters: &IoCounters,
    to_core: &mpsc::Sender<Inbound>,
) {
    for _ in 0..MAX_FRAMES_PER_CONNECTION {
        let payload = match tokio::time::timeout(IO_TIMEOUT, read_frame(&mut conn, limit)).await {
            Ok(Ok(Some(p))) => p,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                bump(&counters.stream_errors, 1);
                tracing::debug!(%from, error = %e, "gossip stream dropped");
                return;
            }
            Err(_) => {
                bump(&counters.stream_errors, 1);
                tracing::debug!(%from, "gossip stream timed out");
                return;
            }
        };
        bump(&counters.streams_in, 1);
        bump(&counters.tcp_bytes_in, 4 + payload.len() as u64);
        let opened = keys::read(ring).open(&payload, tokio::time::Instant::now());
        match opened {
            Ok(opened) => {
                let frame = match opened {
                    Opened::Ring(f) => f,
                    Opened::Removed(f) => {
                        bump(&counters.removed_key_opens, 1);
                        f
                    }
                };
                if to_core.send((from, frame)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                bump(&counters.open_failures, 1);
                tracing::debug!(%from, error = %e, "gossip stream did not open: dropped");
            }
        }
    }
}

/// One frame, or None on a clean EOF before its length.
async fn read_frame(conn: &mut TcpStream, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match conn.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame length {len} outside 1..={limit}"),
        ));
    }
    // Grow as bytes arrive: a peer announcing a large length cannot make us allocate it.
    let mut payload = Vec::with_capacity(len.min(64 << 10));
    (&mut *conn)
        .take(len as u64)
        .read_to_end(&mut payload)
        .await?;
    if payload.len() != len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some(payload))
}

/// The sending side: sealing and delivery happen on a task of their own, so a slow or dead
/// peer never holds up the core task.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    ring: Arc<RwLock<Keys>>,
    counters: Arc<IoCounters>,
    slots: Arc<Semaphore>,
    /// Source address of outgoing connections: the node's bound IP when it is specific, so
    /// that peers see streams come from the address the node gossips from (they answer
    /// anti-entropy to the IP a request came from).
    source: Option<std::net::IpAddr>,
}

impl Sender {
    pub fn new(ring: Arc<RwLock<Keys>>, counters: Arc<IoCounters>, bound: SocketAddr) -> Sender {
        Sender {
            ring,
            counters,
            slots: Arc::new(Semaphore::new(MAX_OUTBOUND)),
            source: (!bound.ip().is_unspecified()).then_some(bound.ip()),
        }
    }

    async fn connect(&self, to: SocketAddr) -> std::io::Result<TcpStream> {
        let Some(ip) = self.source.filter(|ip| ip.is_ipv4() == to.is_ipv4()) else {
            return TcpStream::connect(to).await;
        };
        let socket = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(ip, 0))?;
        socket.connect(to).await
    }

    /// Deliver one (unsealed) frame to `to` in the background.
    pub fn send(&self, to: SocketAddr, frame: Vec<u8>) {
        let this = self.clone();
        tokio::spawn(
            async move {
                let deadline = CONNECT_TIMEOUT + IO_TIMEOUT;
                let result = tokio::time::timeout(deadline, this.deliver(to, &frame)).await;
                let err = match result {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_owned(),
                };
                bump(&this.counters.stream_errors, 1);
                tracing::debug!(%to, error = %err, "gossip stream not delivered");
            }
            .in_current_span(),
        );
    }

    async fn deliver(&self, to: SocketAddr, frame: &[u8]) -> std::io::Result<()> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| std::io::Error::other("sender closed"))?;
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(to))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
        // Sealed as late as possible, with the primary key in force now.
        let sealed = keys::read(&self.ring).seal(frame, &mut rand::rng());
        let len = u32::try_from(sealed.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large")
        })?;
        let mut msg = Vec::with_capacity(4 + sealed.len());
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(&sealed);
        conn.write_all(&msg).await?;
        conn.shutdown().await?;
        bump(&self.counters.streams_out, 1);
        bump(&self.counters.tcp_bytes_out, msg.len() as u64);
        Ok(())
    }
}
