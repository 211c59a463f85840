//! Conntrack cleanup for removed backends, over ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`) with `netlink-packet-netfilter`, whose conntrack messages cover
//! dump (`IPCTNL_MSG_CT_GET` + `NLM_F_DUMP`) and delete (`IPCTNL_MSG_CT_DELETE` by original
//! tuple). No `conntrack` CLI is needed.
//!
//! The socket is opened on a dedicated short-lived thread that first enters the container's
//! network namespace (`setns` is per thread; the socket keeps that namespace for its life),
//! so no runtime thread ever changes namespace.
//!
//! Why: a UDP "flow" (or a TCP flow whose backend vanished without a reset) keeps its DNAT
//! binding for as long as conntrack remembers it, so without this its packets would keep
//! going to a backend that is gone (user-lessons 4). Draining backends are kept: their
//! established flows must continue.
//!
//! Shared by both balancer implementations: [`flush_stale`] takes the VIP -> kept-backends
//! map the planner produced.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple,
};
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
/// Delete requests sent per `send` (their acks are read before the next batch).
const DELETE_BATCH: usize = 128;

/// One IPv4 conntrack entry, as much as the balancer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtEntry {
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP).
    pub proto: u8,
    pub orig_src: Ipv4Addr,
    /// The address the client used: a VIP for balanced flows.
    pub orig_dst: Ipv4Addr,
    /// The client's source port (0 for ICMP).
    pub orig_sport: u16,
    /// Who answers: the backend for a DNATed flow.
    pub reply_src: Ipv4Addr,
    /// The original tuple as the kernel sent it, echoed back to delete the entry.
    orig: Vec<Tuple>,
}

/// Entries whose original destination is a key of `keep` and whose reply source is not in
/// that key's set. Pure.
pub fn stale<'a>(
    entries: &'a [CtEntry],
    keep: &BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
) -> Vec<&'a CtEntry> {
    entries
        .iter()
        .filter(|e| {
            keep.get(&e.orig_dst)
                .is_some_and(|backends| !backends.contains(&e.reply_src))
        })
        .collect()
}

/// Deletes, in the namespace at `netns`, every conntrack entry to a VIP of `keep` whose
/// reply source is not one of the backends kept for it. Returns how many were deleted
/// (entries that vanished meanwhile are not counted). One dump of the IPv4 table.
pub fn flush_stale(
    netns: &Path,
    keep: &BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
) -> Result<usize, LbError> {
    if keep.is_empty() {
        return Ok(0);
    }
    in_netns(netns, |sock| {
        let entries = dump_on(sock)?;
        let doomed = stale(&entries, keep);
        delete_on(sock, &doomed)
    })
}

/// Every IPv4 conntrack entry in the namespace at `netns` (for tests and diagnostics).
pub fn dump(netns: &Path) -> Result<Vec<CtEntry>, LbError> {
    in_netns(netns, dump_on)
}

fn kernel(what: &str, detail: impl ToString) -> LbError {
    LbError::Kernel {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

/// Runs `f` with a ctnetlink socket opened inside `netns`, on a thread of its own.
fn in_netns<T: Send>(
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

fn message(flags: u16, seq: u32, ct: ConntrackMessage) -> Vec<u8> {
    let mut hdr = NetlinkHeader::default();
    hdr.flags = flags;
    hdr.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
            ct,
        )),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Receives one datagram and decodes the netlink messages in it.
fn recv_messages(sock: &Socket) -> Result<Vec<NetlinkMessage<NetfilterMessage>>, LbError> {
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

fn dump_on(sock: &Socket) -> Result<Vec<CtEntry>, LbError> {
    let req = message(NLM_F_REQUEST | NLM_F_DUMP, 1, ConntrackMessage::Get(vec![]));
    sock.send(&req, 0)
        .map_err(|e| kernel("send a conntrack dump request", e))?;
    let mut entries = Vec::new();
    loop {
        for msg in recv_messages(sock)? {
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(entries),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(kernel("conntrack dump", e.to_io()));
                }
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
                    ..
                }) => entries.extend(entry_of(attrs)),
                _ => {}
            }
        }
    }
}

fn entry_of(attrs: Vec<ConntrackAttribute>) -> Option<CtEntry> {
    let mut orig = None;
    let mut reply = None;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = Some(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = Some(t),
            _ => {}
        }
    }
    let orig = orig?;
    let (orig_src, orig_dst, proto, orig_sport) = tuple_fields(&orig)?;
    let (reply_src, _, _, _) = tuple_fields(&reply?)?;
    Some(CtEntry {
        proto,
        orig_src,
        orig_dst,
        orig_sport,
        reply_src,
        orig,
    })
}

/// (src, dst, protocol, source port) of an IPv4 tuple.
fn tuple_fields(t: &[Tuple]) -> Option<(Ipv4Addr, Ipv4Addr, u8, u16)> {
    let (mut src, mut dst, mut proto, mut sport) = (None, None, None, 0);
    for part in t {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(IpAddr::V4(a)) => src = Some(*a),
                        IPTuple::DestinationAddress(IpAddr::V4(a)) => dst = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(ps) => {
                for p in ps {
                    match p {
                        ProtoTuple::Protocol(p) => proto = Some(u8::from(*p)),
                        ProtoTuple::SourcePort(p) => sport = *p,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((src?, dst?, proto?, sport))
}

fn delete_on(sock: &Socket, doomed: &[&CtEntry]) -> Result<usize, LbError> {
    let mut deleted = 0;
    let mut seq: u32 = 1;
    for batch in doomed.chunks(DELETE_BATCH) {
        let mut buf = Vec::new();
        let first = seq + 1;
        for e in batch {
            seq += 1;
            buf.extend(message(
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(e.orig.clone())]),
            ));
        }
        sock.send(&buf, 0)
            .map_err(|e| kernel("send conntrack delete requests", e))?;
        let mut acked = 0;
        while acked < batch.len() {
            for msg in recv_messages(sock)? {
                let s = msg.header.sequence_number;
                if !(first..=seq).contains(&s) {
                    continue;
                }
                if let NetlinkPayload::Error(e) = msg.payload {
                    acked += 1;
                    match e.code {
                        None => deleted += 1,
                        Some(c) if c.get() == -libc_enoent() => {} // already gone
                        Some(_) => return Err(kernel("delete a conntrack entry", e.to_io())),
                    }
                }
            }
        }
    }
    Ok(deleted)
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}
