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
//! going to a backend that is gone (moby/moby#36878). Draining backends are kept: their
//! established flows must continue.
//!
//! Shared by both balancer implementations: [`flush_stale`] takes the VIP -> kept-backends
//! map the planner produced.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkPayload};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
use netlink_sys::Socket;

use super::LbError;
use super::nfnl::{in_netns, kernel, message, recv_messages};
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
    /// The port the client connected to (0 for ICMP).
    pub orig_dport: u16,
    /// The connection mark.
    pub mark: u32,
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

/// Entries marked `mark` whose (protocol, original destination port) is a key of `keep`
/// and whose reply source is not in that key's set: mesh flows of published ports whose
/// backend left (the original destination is any of the host's addresses). Pure.
pub fn stale_mesh<'a>(
    entries: &'a [CtEntry],
    mark: u32,
    keep: &BTreeMap<(u8, u16), BTreeSet<Ipv4Addr>>,
) -> Vec<&'a CtEntry> {
    entries
        .iter()
        .filter(|e| {
            e.mark == mark
                && keep
                    .get(&(e.proto, e.orig_dport))
                    .is_some_and(|backends| !backends.contains(&e.reply_src))
        })
        .collect()
}

/// Deletes, in the namespace at `netns`, the entries [`stale_mesh`] selects. Returns how
/// many were deleted.
pub fn flush_mesh(
    netns: &Path,
    mark: u32,
    keep: &BTreeMap<(u8, u16), BTreeSet<Ipv4Addr>>,
) -> Result<usize, LbError> {
    if keep.is_empty() {
        return Ok(0);
    }
    in_netns(netns, |sock| {
        let entries = dump_on(sock)?;
        let doomed = stale_mesh(&entries, mark, keep);
        delete_on(sock, &doomed)
    })
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
    let mut mark = 0;
    for a in attrs {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => orig = Some(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = Some(t),
            ConntrackAttribute::CtaMark(m) => mark = m,
            _ => {}
        }
    }
    let orig = orig?;
    let (orig_src, orig_dst, proto, orig_sport, orig_dport) = tuple_fields(&orig)?;
    let (reply_src, _, _, _, _) = tuple_fields(&reply?)?;
    Some(CtEntry {
        proto,
        orig_src,
        orig_dst,
        orig_sport,
        orig_dport,
        mark,
        reply_src,
        orig,
    })
}

/// (src, dst, protocol, source port, destination port) of an IPv4 tuple.
fn tuple_fields(t: &[Tuple]) -> Option<(Ipv4Addr, Ipv4Addr, u8, u16, u16)> {
    let (mut src, mut dst, mut proto, mut sport, mut dport) = (None, None, None, 0, 0);
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
                        ProtoTuple::DestinationPort(p) => dport = *p,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some((src?, dst?, proto?, sport, dport))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dst: &str, reply: &str) -> CtEntry {
        CtEntry {
            proto: 6,
            orig_src: "10.0.0.2".parse().unwrap(),
            orig_dst: dst.parse().unwrap(),
            orig_sport: 40000,
            orig_dport: 80,
            mark: 0,
            reply_src: reply.parse().unwrap(),
            orig: Vec::new(),
        }
    }

    #[test]
    fn stale_entries_are_those_to_a_swept_vip_answered_by_a_backend_not_kept() {
        let entries = [
            entry("10.0.0.100", "10.0.0.3"),   // kept backend
            entry("10.0.0.100", "10.0.0.4"),   // removed backend
            entry("10.0.0.100", "10.0.0.100"), // never translated (refused)
            entry("10.0.0.101", "10.0.0.4"),   // another VIP, not swept
            entry("10.0.0.4", "10.0.0.4"),     // direct traffic to the backend
        ];
        let keep = BTreeMap::from([(
            "10.0.0.100".parse().unwrap(),
            BTreeSet::from(["10.0.0.3".parse().unwrap()]),
        )]);
        let got: Vec<_> = stale(&entries, &keep).into_iter().cloned().collect();
        assert_eq!(got, vec![entries[1].clone(), entries[2].clone()]);
    }

    #[test]
    fn stale_mesh_entries_are_marked_flows_of_a_swept_port_answered_by_a_backend_not_kept() {
        let mk = |port: u16, mark: u32, reply: &str| CtEntry {
            orig_dport: port,
            mark,
            ..entry("192.168.1.1", reply)
        };
        let entries = [
            mk(8080, 7, "10.0.0.3"), // kept
            mk(8080, 7, "10.0.0.4"), // left
            mk(8080, 0, "10.0.0.4"), // not a mesh flow
            mk(9090, 7, "10.0.0.4"), // another port, not swept
        ];
        let keep = BTreeMap::from([((6, 8080), BTreeSet::from(["10.0.0.3".parse().unwrap()]))]);
        let got: Vec<_> = stale_mesh(&entries, 7, &keep)
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(got, vec![entries[1].clone()]);
    }

    #[test]
    fn a_vip_swept_with_nothing_kept_loses_every_entry_and_no_sweep_touches_nothing() {
        let entries = [
            entry("10.0.0.100", "10.0.0.3"),
            entry("10.0.0.101", "10.0.0.3"),
        ];
        let keep = BTreeMap::from([("10.0.0.100".parse().unwrap(), BTreeSet::new())]);
        assert_eq!(stale(&entries, &keep).len(), 1);
        assert!(stale(&entries, &BTreeMap::new()).is_empty());
    }
}
