//! XFRM netlink: the messages the executor sends (built with `netlink-packet-xfrm`), the
//! parsing of dumps into [`SaState`] / [`PolicyState`], and a small blocking request loop
//! over a `NETLINK_XFRM` socket (`netlink-sys`).
//!
//! Why not `xfrmnetlink` (the rust-netlink request crate): it pins `netlink-proto` 0.13 and
//! `thiserror` 1, a second copy of the netlink stack next to the one `rtnetlink` 0.24 brings;
//! the executor needs five request kinds, each a request/ack or a dump, which a blocking
//! socket on the executor's own thread does in a few lines.

use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_xfrm::policy::{
    DelGetMessage as PolicyDelGetMessage, ModifyMessage as PolicyModifyMessage,
};
use netlink_packet_xfrm::state::{
    DelGetMessage as StateDelGetMessage, GetDumpMessage, ModifyMessage as StateModifyMessage,
};
use netlink_packet_xfrm::{
    AF_INET, Address, AlgAead, AsyncEventId, Id, NewAsyncEventMessage, ReplayEsn, Selector,
    UserPolicyId, UserPolicyInfo, UserSaId, UserSaInfo, UserTemplate, XFRM_ALG_AEAD_NAME_LEN,
    XFRM_STATE_ESN, XfrmAttrs, XfrmMessage,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_XFRM};

use super::{
    AEAD_NAME, ICV_BITS, PolicySpec, PolicyState, REPLAY_WINDOW, SaKey, SaSpec, SaState, Selector4,
    TemplateState,
};

/// `XFRM_MODE_TRANSPORT`
pub const XFRM_MODE_TRANSPORT: u8 = 0;
/// `XFRM_POLICY_IN`
pub const XFRM_POLICY_IN: u8 = 0;
/// `XFRM_POLICY_OUT`
pub const XFRM_POLICY_OUT: u8 = 1;
/// `XFRM_POLICY_ALLOW`
pub const XFRM_POLICY_ALLOW: u8 = 0;
/// `IPPROTO_ESP`
pub const IPPROTO_ESP: u8 = 50;
/// `IPPROTO_UDP`
pub const IPPROTO_UDP: u8 = 17;
/// Priority of swarmnet's policies (0: the most preferred, above broader host policies).
pub const POLICY_PRIORITY: u32 = 0;

/// `ESRCH`: no such SA or policy.
pub const ESRCH: i32 = 3;
/// `ENOENT`: no such policy (some kernels) or missing crypto.
pub const ENOENT: i32 = 2;
/// `EEXIST`: an SA with that destination and SPI exists.
pub const EEXIST: i32 = 17;

fn v4(a: Ipv4Addr) -> Address {
    Address::from_ipv4(&a)
}

/// `XFRM_MSG_NEWSA` for `sa`.
pub fn new_sa(sa: &SaSpec) -> XfrmMessage {
    new_sa_raw(sa.src, sa.dst, sa.spi, sa.reqid, &sa.key)
}

pub(crate) fn new_sa_raw(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    spi: u32,
    reqid: u32,
    key: &SaKey,
) -> XfrmMessage {
    let info = UserSaInfo {
        id: Id {
            daddr: v4(dst),
            spi,
            proto: IPPROTO_ESP,
        },
        saddr: v4(src),
        reqid,
        family: AF_INET,
        mode: XFRM_MODE_TRANSPORT,
        replay_window: 0,
        flags: XFRM_STATE_ESN,
        ..UserSaInfo::default()
    };
    let mut name = [0u8; XFRM_ALG_AEAD_NAME_LEN];
    name[..AEAD_NAME.len()].copy_from_slice(AEAD_NAME.as_bytes());
    let bytes = key.as_bytes();
    XfrmMessage::AddSa(StateModifyMessage {
        user_sa_info: info,
        nlas: vec![
            XfrmAttrs::EncryptionAlgAead(AlgAead {
                alg_name: name,
                alg_key_len: (bytes.len() * 8) as u32,
                alg_icv_len: ICV_BITS,
                alg_key: bytes.to_vec(),
            }),
            XfrmAttrs::ReplayStateEsn(fresh_replay_state()),
        ],
    })
}

/// The replay state of a new inbound SA (and the one [`reset_replay`] restores): nothing
/// seen yet, a [`REPLAY_WINDOW`]-packet window.
fn fresh_replay_state() -> ReplayEsn {
    let words = REPLAY_WINDOW.div_ceil(32);
    ReplayEsn {
        bmp_len: words,
        replay_window: REPLAY_WINDOW,
        bmp: vec![0; words as usize],
        ..ReplayEsn::default()
    }
}

/// `XFRM_MSG_NEWAE` (sent with `NLM_F_REPLACE`, which the kernel requires) setting the
/// anti-replay state of the ESP SA (dst, spi) back to that of a new SA: the SA stays, with its
/// key and counters, and accepts any sequence number it has not seen since.
pub fn reset_replay(src: Ipv4Addr, dst: Ipv4Addr, spi: u32, reqid: u32) -> XfrmMessage {
    XfrmMessage::NewAsyncEvent(NewAsyncEventMessage {
        id: AsyncEventId {
            sa_id: UserSaId {
                daddr: v4(dst),
                spi,
                family: AF_INET,
                proto: IPPROTO_ESP,
            },
            saddr: v4(src),
            flags: 0,
            reqid,
        },
        nlas: vec![XfrmAttrs::ReplayStateEsn(fresh_replay_state())],
    })
}

/// `XFRM_MSG_DELSA` of the ESP SA (dst, spi) with source `src`.
pub fn del_sa(src: Ipv4Addr, dst: Ipv4Addr, spi: u32) -> XfrmMessage {
    XfrmMessage::DeleteSa(StateDelGetMessage {
        user_sa_id: UserSaId {
            daddr: v4(dst),
            spi,
            family: AF_INET,
            proto: IPPROTO_ESP,
        },
        nlas: vec![XfrmAttrs::SrcAddr(v4(src))],
    })
}

fn selector(s: &Selector4) -> Selector {
    Selector {
        daddr: v4(s.dst.ip()),
        saddr: v4(s.src.ip()),
        dport: s.dport.0,
        dport_mask: s.dport.1,
        sport: s.sport.0,
        sport_mask: s.sport.1,
        family: AF_INET,
        prefixlen_d: s.dst.prefix(),
        prefixlen_s: s.src.prefix(),
        proto: s.proto,
        ifindex: 0,
        user: 0,
    }
}

/// `XFRM_MSG_UPDPOLICY` (add or replace) for `p`.
pub fn set_policy(p: &PolicySpec) -> XfrmMessage {
    let info = UserPolicyInfo {
        selector: selector(&Selector4::udp_to(p.src, p.dst, p.port)),
        priority: POLICY_PRIORITY,
        direction: XFRM_POLICY_OUT,
        action: XFRM_POLICY_ALLOW,
        ..UserPolicyInfo::default()
    };
    let tmpl = UserTemplate {
        id: Id {
            daddr: v4(p.dst),
            spi: p.spi,
            proto: IPPROTO_ESP,
        },
        family: AF_INET,
        saddr: v4(p.src),
        reqid: p.reqid,
        mode: XFRM_MODE_TRANSPORT,
        ..UserTemplate::default()
    };
    XfrmMessage::UpdatePolicy(PolicyModifyMessage {
        user_policy_info: info,
        nlas: vec![XfrmAttrs::Template(vec![tmpl])],
    })
}

/// `XFRM_MSG_DELPOLICY` of the policy (dir, selector, mark).
pub fn del_policy(dir: u8, sel: &Selector4, mark: (u32, u32)) -> XfrmMessage {
    let mut nlas = Vec::new();
    if mark != (0, 0) {
        nlas.push(XfrmAttrs::Mark(netlink_packet_xfrm::Mark {
            value: mark.0,
            mask: mark.1,
        }));
    }
    XfrmMessage::DeletePolicy(PolicyDelGetMessage {
        user_policy_id: UserPolicyId {
            selector: selector(sel),
            index: 0,
            direction: dir,
        },
        nlas,
    })
}

/// Request body of an SA dump.
pub fn dump_sas() -> XfrmMessage {
    XfrmMessage::GetDumpSa(GetDumpMessage { nlas: Vec::new() })
}

/// Request body of a policy dump.
pub fn dump_policies() -> XfrmMessage {
    XfrmMessage::GetPolicy(PolicyDelGetMessage::default())
}

/// The IPv4 SA in a dump message, if it carries `reqid`.
pub fn parse_sa(m: &StateModifyMessage, reqid: u32) -> Option<SaState> {
    let i = &m.user_sa_info;
    if i.family != AF_INET || i.reqid != reqid || i.id.proto != IPPROTO_ESP {
        return None;
    }
    let mut s = SaState {
        src: i.saddr.to_ipv4(),
        dst: i.id.daddr.to_ipv4(),
        spi: i.id.spi,
        reqid: i.reqid,
        mode: i.mode,
        aead: None,
        icv_bits: 0,
        key: SaKey::from_bytes(Vec::new()),
        esn: i.flags & XFRM_STATE_ESN != 0,
        replay_window: u32::from(i.replay_window),
        // The kernel fills in the selector's family (AF_INET) when it is left 0.
        selector_empty: Selector {
            family: 0,
            ..i.selector
        } == Selector::default(),
        packets: i.lifetime_cur.packets,
        bytes: i.lifetime_cur.bytes,
        replay_drops: i.stats.replay,
        integrity_failed: i.stats.integrity_failed,
    };
    for a in &m.nlas {
        match a {
            XfrmAttrs::EncryptionAlgAead(alg) => {
                let end = alg.alg_name.iter().position(|b| *b == 0).unwrap_or(64);
                s.aead = Some(String::from_utf8_lossy(&alg.alg_name[..end]).into_owned());
                s.icv_bits = alg.alg_icv_len;
                s.key = SaKey::from_bytes(alg.alg_key.clone());
            }
            XfrmAttrs::ReplayStateEsn(r) if s.esn => s.replay_window = r.replay_window,
            _ => {}
        }
    }
    Some(s)
}

/// The IPv4 policy in a dump message, if one of its templates carries `reqid`.
pub fn parse_policy(m: &PolicyModifyMessage, reqid: u32) -> Option<PolicyState> {
    let i = &m.user_policy_info;
    let sel = &i.selector;
    if sel.family != AF_INET {
        return None;
    }
    let mut p = PolicyState {
        dir: i.direction,
        selector: Selector4 {
            src: Ipv4Network::new(sel.saddr.to_ipv4(), sel.prefixlen_s.min(32)).ok()?,
            dst: Ipv4Network::new(sel.daddr.to_ipv4(), sel.prefixlen_d.min(32)).ok()?,
            proto: sel.proto,
            dport: (sel.dport, sel.dport_mask),
            sport: (sel.sport, sel.sport_mask),
        },
        mark: (0, 0),
        if_id: 0,
        action: i.action,
        priority: i.priority,
        templates: Vec::new(),
    };
    for a in &m.nlas {
        match a {
            XfrmAttrs::Template(ts) => {
                for t in ts {
                    p.templates.push(TemplateState {
                        src: t.saddr.to_ipv4(),
                        dst: t.id.daddr.to_ipv4(),
                        proto: t.id.proto,
                        spi: t.id.spi,
                        reqid: t.reqid,
                        mode: t.mode,
                    });
                }
            }
            XfrmAttrs::Mark(mk) => p.mark = (mk.value, mk.mask),
            XfrmAttrs::IfId(id) => p.if_id = *id,
            _ => {}
        }
    }
    p.templates.iter().any(|t| t.reqid == reqid).then_some(p)
}

/// A `NETLINK_XFRM` socket in the calling thread's network namespace (at open time).
#[derive(Debug)]
pub struct XfrmSocket {
    socket: Socket,
    seq: u32,
}

/// Why a request failed: an errno from the kernel (or the socket), or a reply that did not
/// parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Positive errno.
    Errno(i32),
    /// A reply that could not be decoded.
    Decode(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Errno(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
            RequestError::Decode(d) => write!(f, "undecodable reply: {d}"),
        }
    }
}

fn io_errno(e: std::io::Error) -> RequestError {
    RequestError::Errno(e.raw_os_error().unwrap_or(5))
}

impl XfrmSocket {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn open() -> Result<XfrmSocket, RequestError> {
        let mut socket = Socket::new(NETLINK_XFRM).map_err(io_errno)?;
        socket.bind_auto().map_err(io_errno)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(io_errno)?;
        Ok(XfrmSocket { socket, seq: 0 })
    }

    fn send(&mut self, msg: XfrmMessage, flags: u16) -> Result<u32, RequestError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(io_errno)?;
        Ok(self.seq)
    }

    /// Sends `msg` and waits for the kernel's ack.
    pub fn request(&mut self, msg: XfrmMessage) -> Result<(), RequestError> {
        self.request_flags(msg, 0)
    }

    /// [`XfrmSocket::request`] of a message that replaces state in place (`NLM_F_REPLACE`,
    /// e.g. [`reset_replay`]).
    pub fn request_replace(&mut self, msg: XfrmMessage) -> Result<(), RequestError> {
        self.request_flags(msg, NLM_F_REPLACE)
    }

    fn request_flags(&mut self, msg: XfrmMessage, flags: u16) -> Result<(), RequestError> {
        let seq = self.send(msg, NLM_F_ACK | flags)?;
        loop {
            for m in self.receive()? {
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(c) => Err(RequestError::Errno(c.get().abs())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    /// Sends a dump request and collects every message of the reply.
    pub fn dump(&mut self, msg: XfrmMessage) -> Result<Vec<XfrmMessage>, RequestError> {
        let seq = self.send(msg, NLM_F_DUMP)?;
        let mut out = Vec::new();
        loop {
            for m in self.receive()? {
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::InnerMessage(x) => out.push(x),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(c) => Err(RequestError::Errno(c.get().abs())),
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// One datagram, split into its messages.
    fn receive(&mut self) -> Result<Vec<NetlinkMessage<XfrmMessage>>, RequestError> {
        let (buf, _) = self.socket.recv_from_full().map_err(io_errno)?;
        split(&buf)
    }
}

/// Splits a datagram into netlink messages.
pub fn split(buf: &[u8]) -> Result<Vec<NetlinkMessage<XfrmMessage>>, RequestError> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        if len < 16 || off + len > buf.len() {
            return Err(RequestError::Decode(format!(
                "message length {len} at offset {off} of a {}-byte datagram",
                buf.len()
            )));
        }
        let m = NetlinkMessage::<XfrmMessage>::deserialize(&buf[off..off + len])
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        out.push(m);
        off += len.div_ceil(4) * 4;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::esp::SaDir;
    use netlink_packet_core::Emitable;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn spec() -> SaSpec {
        SaSpec {
            dir: SaDir::Out,
            peer: 2,
            tag: 7,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            spi: 0x1234_5678,
            reqid: 0x5357_4e31,
            key: SaKey::from_bytes((1..=20).collect()),
        }
    }

    fn body(m: &XfrmMessage) -> Vec<u8> {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    #[test]
    fn a_new_sa_message_has_the_kernel_layout_and_parses_back_as_ours() {
        let m = new_sa(&spec());
        let b = body(&m);
        // struct xfrm_usersa_info is 224 bytes: selector (56), id (24), saddr (16), ...
        assert_eq!(&b[56..60], &[10, 0, 0, 2], "id.daddr");
        assert_eq!(&b[72..76], &[0x12, 0x34, 0x56, 0x78], "id.spi, big-endian");
        assert_eq!(b[76], IPPROTO_ESP, "id.proto");
        assert_eq!(&b[80..84], &[10, 0, 0, 1], "saddr");
        assert_eq!(&b[208..212], &0x5357_4e31u32.to_ne_bytes(), "reqid");
        assert_eq!(&b[212..214], &2u16.to_ne_bytes(), "family AF_INET");
        assert_eq!(b[214], XFRM_MODE_TRANSPORT, "mode");
        assert_eq!(b[215], 0, "legacy replay window (ESN used instead)");
        assert_eq!(b[216], XFRM_STATE_ESN, "flags");
        // XFRMA_ALG_AEAD (18): name, key length 160 bits, ICV 128 bits, key.
        let aead = &b[224..];
        assert_eq!(&aead[2..4], &18u16.to_ne_bytes());
        assert_eq!(&aead[4..21], b"rfc4106(gcm(aes))");
        assert_eq!(&aead[68..72], &160u32.to_ne_bytes());
        assert_eq!(&aead[72..76], &128u32.to_ne_bytes());
        assert_eq!(hex(&aead[76..96]), hex(&(1..=20).collect::<Vec<u8>>()));

        let XfrmMessage::AddSa(parsed) =
            XfrmMessage::parse_with_param_for_test(&b, 16 /* XFRM_MSG_NEWSA */)
        else {
            panic!("not a NEWSA");
        };
        let s = parse_sa(&parsed, 0x5357_4e31).expect("ours");
        assert!(s.matches(&spec()), "{s:?}");
        assert!(parse_sa(&parsed, 1).is_none(), "another reqid is not ours");

        // The kernel reports the empty selector with the SA's family filled in: still ours
        // and unchanged (otherwise every reconcile would replace every SA).
        let mut from_kernel = parsed.clone();
        from_kernel.user_sa_info.selector.family = AF_INET;
        assert!(
            parse_sa(&from_kernel, 0x5357_4e31)
                .unwrap()
                .matches(&spec())
        );
        from_kernel.user_sa_info.selector.proto = IPPROTO_UDP;
        assert!(
            !parse_sa(&from_kernel, 0x5357_4e31)
                .unwrap()
                .matches(&spec())
        );
    }

    #[test]
    fn a_policy_message_selects_udp_to_the_vxlan_port_and_names_the_spi() {
        let p = PolicySpec {
            peer: 2,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            port: 4790,
            spi: 0x0abc_def1,
            reqid: 9,
        };
        let b = body(&set_policy(&p));
        // selector: daddr(16) saddr(16) dport(2, BE) dport_mask sport sport_mask family
        // prefixlen_d prefixlen_s proto
        assert_eq!(&b[32..34], &4790u16.to_be_bytes());
        assert_eq!(&b[34..36], &[0xff, 0xff]);
        assert_eq!(b[42], 32);
        assert_eq!(b[43], 32);
        assert_eq!(b[44], IPPROTO_UDP);
        let XfrmMessage::UpdatePolicy(parsed) =
            XfrmMessage::parse_with_param_for_test(&b, 25 /* XFRM_MSG_UPDPOLICY */)
        else {
            panic!("not an UPDPOLICY");
        };
        let s = parse_policy(&parsed, 9).expect("ours");
        assert!(s.matches(&p), "{s:?}");
        assert!(parse_policy(&parsed, 10).is_none());
    }

    #[test]
    fn a_replay_reset_names_the_sa_and_carries_an_empty_window_of_the_sas_size() {
        let m = reset_replay(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            0x0102_0304,
            0x5357_4e31,
        );
        let b = body(&m);
        // struct xfrm_aevent_id: sa_id {daddr (16), spi (4, BE), family (2), proto (1),
        // pad}, saddr (16), flags (4), reqid (4): 48 bytes.
        assert_eq!(&b[0..4], &[10, 0, 0, 1], "sa_id.daddr");
        assert_eq!(&b[16..20], &[1, 2, 3, 4], "sa_id.spi, big-endian");
        assert_eq!(&b[20..22], &2u16.to_ne_bytes(), "sa_id.family AF_INET");
        assert_eq!(b[22], IPPROTO_ESP, "sa_id.proto");
        assert_eq!(&b[24..28], &[10, 0, 0, 2], "saddr");
        assert_eq!(&b[44..48], &0x5357_4e31u32.to_ne_bytes(), "reqid");
        // XFRMA_REPLAY_ESN_VAL (23): bmp_len, oseq, seq, oseq_hi, seq_hi, window, bitmap.
        let esn = &b[48..];
        assert_eq!(&esn[2..4], &23u16.to_ne_bytes());
        let words = REPLAY_WINDOW.div_ceil(32);
        assert_eq!(
            &esn[4..8],
            &words.to_ne_bytes(),
            "bmp_len: the kernel wants the SA's"
        );
        assert!(esn[8..24].iter().all(|x| *x == 0), "sequence numbers zero");
        assert_eq!(&esn[24..28], &REPLAY_WINDOW.to_ne_bytes());
        assert_eq!(
            esn.len(),
            28 + 4 * words as usize,
            "bitmap of bmp_len words, zero"
        );
        assert!(esn[28..].iter().all(|x| *x == 0));
    }

    trait ParseForTest {
        fn parse_with_param_for_test(b: &[u8], t: u16) -> XfrmMessage;
    }
    impl ParseForTest for XfrmMessage {
        fn parse_with_param_for_test(b: &[u8], t: u16) -> XfrmMessage {
            use netlink_packet_core::ParseableParametrized;
            <XfrmMessage as ParseableParametrized<[u8], u16>>::parse_with_param(b, t).unwrap()
        }
    }
}
