//! A netfilter netlink (`NETLINK_NETFILTER`) socket inside a network namespace, with the
//! few request/response helpers the balancer needs (conntrack dump/delete, the nf_tables
//! ruleset generation).
//!
//! The socket is opened on a dedicated short-lived thread that first enters the namespace
//! (`setns` is per thread; a socket keeps the namespace it was created in), so no runtime
//! thread ever changes namespace. Every receive is bounded by a timeout.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nftables::{GenAttribute, GenMessage, NfTablesMessage};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use super::LbError;

/// Bound on every receive: the kernel answers at once; this only stops a stuck call.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn kernel(what: &str, detail: impl ToString) -> LbError {
    LbError::Kernel {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

/// Runs `f` with a ctnetlink socket opened inside `netns`, on a thread of its own.
pub(crate) fn in_netns<T: Send>(
    netns: &Path,
    f: impl FnOnce(&Socket) -> Result<T, LbError> + Send,
) -> Result<T, LbError> {
    let ns = File::open(netns).map_err(|source| LbError::Netns {
        path: netns.display().to_string(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| LbError::Netns {
                path: netns.display().to_string(),
                source: io::Error::from(e),
            })?;
            let mut sock =
                Socket::new(NETLINK_NETFILTER).map_err(|e| kernel("open a ctnetlink socket", e))?;
            sock.bind_auto()
                .map_err(|e| kernel("bind a ctnetlink socket", e))?;
            sock.connect(&SocketAddr::new(0, 0))
                .map_err(|e| kernel("connect a ctnetlink socket", e))?;
            let tv = TimeVal::new(RECV_TIMEOUT.as_secs() as i64, 0);
            setsockopt(&sock, sockopt::ReceiveTimeout, &tv)
                .map_err(|e| kernel("set a ctnetlink receive timeout", e))?;
            f(&sock)
        })
        .join()
        .unwrap_or_else(|_| Err(kernel("conntrack", "worker thread panicked")))
    })
}

pub(crate) fn message<T: Into<NetfilterMessageInner>>(flags: u16, seq: u32, inner: T) -> Vec<u8> {
    let mut hdr = NetlinkHeader::default();
    hdr.flags = flags;
    hdr.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            inner,
        )),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Receives one datagram and decodes the netlink messages in it.
pub(crate) fn recv_messages(
    sock: &Socket,
) -> Result<Vec<NetlinkMessage<NetfilterMessage>>, LbError> {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let (peek, _) = sock
        .recv_from(&mut buf, libc_peek_trunc())
        .map_err(|e| kernel("receive from ctnetlink", e))?;
    buf = Vec::with_capacity(peek.max(1));
    let n = sock
        .recv(&mut buf, 0)
        .map_err(|e| kernel("receive from ctnetlink", e))?;
    buf.truncate(n);
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[off..])
            .map_err(|e| kernel("decode a ctnetlink message", e))?;
        let len = msg.header.length as usize;
        out.push(msg);
        if len == 0 {
            break;
        }
        off += (len + 3) & !3;
    }
    Ok(out)
}

/// `MSG_PEEK | MSG_TRUNC`: the next datagram's full length without consuming it.
fn libc_peek_trunc() -> i32 {
    (nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_TRUNC).bits()
}

/// The nf_tables ruleset generation of the namespace at `netns`: it changes with every
/// committed nftables transaction there (one `nft -f` = one step), whoever made it.
pub fn generation(netns: &Path) -> Result<u32, LbError> {
    in_netns(netns, |sock| {
        let req = message(
            NLM_F_REQUEST,
            1,
            NfTablesMessage::GetGen(GenMessage { attributes: vec![] }),
        );
        sock.send(&req, 0)
            .map_err(|e| kernel("send an nf_tables generation request", e))?;
        for _ in 0..16 {
            for msg in recv_messages(sock)? {
                match msg.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(kernel("nf_tables generation", e.to_io()));
                    }
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewGen(g)),
                        ..
                    }) => {
                        if let Some(id) = g.attributes.iter().find_map(|a| match a {
                            GenAttribute::Id(id) => Some(*id),
                            _ => None,
                        }) {
                            return Ok(id);
                        }
                    }
                    _ => {}
                }
            }
        }
        Err(kernel("nf_tables generation", "no NFT_MSG_NEWGEN answer"))
    })
}
