//! Serving one namespace's sockets on the tokio runtime: a UDP loop and a TCP accept loop.
//!
//! UDP: each datagram goes through the pure path; internal answers are sent inline,
//! forwards run as their own tasks (bounded by the shared semaphore: over the bound, SERVFAIL
//! at once). TCP (RFC 7766): length-prefixed messages, several queries per connection
//! answered in order, closed after `tcp_idle_timeout` without a complete query, at most
//! `max_tcp_connections` open per namespace (more are closed at once and counted).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use super::forward::forward;
use super::query::{
    ForwardRequest, Handled, Outcome, Transport, forwarded_reply, handle_query, servfail,
};
use super::resolver::Shared;

/// Largest query datagram read (queries are small; a longer one is cut and answered
/// FORMERR).
const UDP_QUERY_BUF: usize = 4096;

/// The per-namespace view the loops read on every query.
#[derive(Debug)]
pub(crate) struct NsView {
    /// Network ids of the container, in its order.
    pub(crate) networks: RwLock<Arc<Vec<String>>>,
}

impl NsView {
    fn networks(&self) -> Arc<Vec<String>> {
        self.networks.read().map(|g| g.clone()).unwrap_or_default()
    }
}

/// What to send for a forwarded query (an upstream answer, or SERVFAIL).
async fn forward_reply(
    shared: &Shared,
    req: &ForwardRequest,
    transport: Transport,
) -> (Option<Vec<u8>>, Outcome) {
    let limits = shared.limits();
    let upstreams = shared.upstreams();
    let qtype = req.query.queries.first().map(|q| q.query_type());
    let answer = if upstreams.is_empty() {
        None
    } else {
        forward(
            &req.query,
            transport,
            &upstreams,
            &shared.pool,
            shared.config.forward_timeout,
            &shared.metrics,
        )
        .await
    };
    let (bytes, outcome) = match answer.and_then(|m| forwarded_reply(req, m)) {
        Some(b) => (Some(b), Outcome::Forwarded),
        None => (servfail(req, limits), Outcome::ServFail),
    };
    shared.metrics.query(qtype, outcome, transport);
    (bytes, outcome)
}

/// Serves `sock` until the task is aborted. Several tasks may serve one socket (each
/// datagram is read by exactly one of them).
pub(crate) async fn serve_udp(sock: Arc<UdpSocket>, view: Arc<NsView>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UDP_QUERY_BUF];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let handled = {
            let zone = shared.zone();
            let networks = view.networks();
            handle_query(
                &buf[..n],
                &zone,
                &networks,
                Transport::Udp,
                shared.limits(),
                &mut rand::rng(),
            )
        };
        match handled {
            Handled::Reply {
                bytes,
                outcome,
                qtype,
            } => {
                shared.metrics.query(qtype, outcome, Transport::Udp);
                let _ = sock.send_to(&bytes, peer).await;
            }
            Handled::Drop => shared.metrics.query(None, Outcome::Dropped, Transport::Udp),
            Handled::Forward(req) => match shared.forward_permit() {
                Some(permit) => {
                    let (sock, shared) = (sock.clone(), shared.clone());
                    tokio::spawn(async move {
                        let (bytes, _) = forward_reply(&shared, &req, Transport::Udp).await;
                        drop(permit);
                        if let Some(b) = bytes {
                            let _ = sock.send_to(&b, peer).await;
                        }
                    });
                }
                None => {
                    let qtype = req.query.queries.first().map(|q| q.query_type());
                    shared
                        .metrics
                        .query(qtype, Outcome::ServFail, Transport::Udp);
                    if let Some(b) = servfail(&req, shared.limits()) {
                        let _ = sock.send_to(&b, peer).await;
                    }
                }
            },
        }
    }
}

/// Accepts on `listener` until the task is aborted; connections run as tasks owned by this
/// one, so aborting it closes them too.
pub(crate) async fn serve_tcp(listener: TcpListener, view: Arc<NsView>, shared: Arc<Shared>) {
    // Dropped with this task: aborts every connection of the namespace.
    let mut conns = tokio::task::JoinSet::new();
    let slots = Arc::new(Semaphore::new(shared.config.max_tcp_connections.max(1)));
    loop {
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "dns tcp accept");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.metrics.tcp_rejected.inc();
            drop(stream);
            continue;
        };
        let (view, shared) = (view.clone(), shared.clone());
        conns.spawn(async move {
            serve_conn(stream, peer, &view, &shared).await;
            drop(slot);
        });
    }
}

async fn serve_conn(mut stream: TcpStream, _peer: SocketAddr, view: &NsView, shared: &Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let idle = shared.config.tcp_idle_timeout;
    loop {
        let read = async {
            let n = stream.read_u16().await? as usize;
            let mut buf = vec![0u8; n];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = match tokio::time::timeout(idle, read).await {
            Ok(Ok(b)) => b,
            _ => return, // idle, closed, or broken
        };
        let handled = {
            let zone = shared.zone();
            let networks = view.networks();
            handle_query(
                &buf,
                &zone,
                &networks,
                Transport::Tcp,
                shared.limits(),
                &mut rand::rng(),
            )
        };
        let reply = match handled {
            Handled::Reply {
                bytes,
                outcome,
                qtype,
            } => {
                shared.metrics.query(qtype, outcome, Transport::Tcp);
                Some(bytes)
            }
            Handled::Drop => {
                shared.metrics.query(None, Outcome::Dropped, Transport::Tcp);
                None
            }
            Handled::Forward(req) => match shared.forward_permit() {
                Some(_permit) => forward_reply(shared, &req, Transport::Tcp).await.0,
                None => {
                    let qtype = req.query.queries.first().map(|q| q.query_type());
                    shared
                        .metrics
                        .query(qtype, Outcome::ServFail, Transport::Tcp);
                    servfail(&req, shared.limits())
                }
            },
        };
        let Some(reply) = reply else { continue };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
