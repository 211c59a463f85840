//! Whole netlink messages: the IPVS generic-netlink payload ([`IpvsMessage`]), the
//! controller's family lookup, and splitting a received datagram into frames.
//!
//! Pure: no socket here. [`crate::Request`] builds the bytes to send; [`parse_frames`]
//! reads what the kernel answers.

use netlink_packet_core::{
    DecodeError, Emitable, NLA_TYPE_MASK, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NlasIterator, ParseableParametrized, parse_u16,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use crate::Error;
use crate::attr::IpvsAttr;
use crate::constants::*;

/// `CTRL_ATTR_FAMILY_ID` (`include/uapi/linux/genetlink.h`).
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// The generic-netlink controller's fixed family id (`GENL_ID_CTRL`).
pub const GENL_ID_CTRL: u16 = 0x10;

/// The payload of an IPVS generic-netlink message (after `genlmsghdr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    /// `IPVS_CMD_*`.
    pub cmd: u8,
    pub attrs: Vec<IpvsAttr>,
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let mut attrs = Vec::new();
        for nla in NlasIterator::new(buf) {
            attrs.push(IpvsAttr::parse(&nla?, header.cmd)?);
        }
        Ok(IpvsMessage {
            cmd: header.cmd,
            attrs,
        })
    }
}

/// What the controller's CTRL_CMD_NEWFAMILY reply says that we use: the family id. Every
/// other attribute (name, version, ops, multicast groups, policies) is skipped unparsed, so
/// a kernel that adds attributes cannot break the lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyReply {
    /// `CTRL_ATTR_FAMILY_ID`, if present.
    pub family_id: Option<u16>,
}

impl ParseableParametrized<[u8], GenlHeader> for FamilyReply {
    fn parse_with_param(buf: &[u8], _header: GenlHeader) -> Result<Self, DecodeError> {
        let mut family_id = None;
        for nla in NlasIterator::new(buf) {
            let nla = nla?;
            if nla.kind() & NLA_TYPE_MASK == CTRL_ATTR_FAMILY_ID {
                family_id = Some(parse_u16(nla.value())?);
            }
        }
        Ok(FamilyReply { family_id })
    }
}

/// The CTRL_CMD_GETFAMILY request for family `name` ("IPVS"), `NLM_F_REQUEST | NLM_F_ACK`.
pub fn family_request(name: &str, seq: u32) -> Vec<u8> {
    let ctrl = GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())],
    };
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | netlink_packet_core::NLM_F_ACK;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(GenlMessage::from_payload(ctrl)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Encodes one IPVS request: `nlmsghdr{type = family_id, flags, seq, pid 0}`,
/// `genlmsghdr{cmd, version 1}`, attributes.
pub fn encode(message: &IpvsMessage, family_id: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut genl = GenlMessage::from_payload(message.clone());
    genl.set_resolved_family_id(family_id);
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(genl));
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// One netlink message of a received datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<T> {
    /// A family message (a reply or one element of a dump).
    Message(T),
    /// `NLMSG_ERROR` with code 0: the request succeeded.
    Ack,
    /// `NLMSG_ERROR` with a negative code: the positive errno.
    Error(i32),
    /// `NLMSG_DONE`: the end of a dump.
    Done,
    /// `NLMSG_NOOP`, `NLMSG_OVERRUN` or anything else the caller can ignore.
    Ignored,
    /// A message with a valid netlink header whose content did not parse (the reason).
    /// Parsing goes on with the next message, so a caller can still find its terminator.
    Malformed(String),
}

/// A received frame with its `nlmsg_seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<T> {
    pub seq: u32,
    pub frame: Frame<T>,
}

/// Splits a datagram into its netlink messages and parses each, family payloads as `T`.
/// Never panics. A message that does not parse becomes [`Frame::Malformed`]; only a broken
/// netlink header (which makes the rest unreadable) is an error.
pub fn parse_frames<T>(datagram: &[u8]) -> Result<Vec<Received<T>>, Error>
where
    T: ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let buf = NetlinkBuffer::new_checked(rest)
            .map_err(|e| Error::Decode(format!("netlink header at byte {offset}: {e}")))?;
        let len = buf.length() as usize;
        let seq = buf.sequence_number();
        let msg = match NetlinkMessage::<GenlMessage<T>>::deserialize(&rest[..len]) {
            Ok(m) => m,
            Err(e) => {
                out.push(Received {
                    seq,
                    frame: Frame::Malformed(format!("netlink message at byte {offset}: {e}")),
                });
                offset = offset.saturating_add((len + 3) & !3);
                continue;
            }
        };
        let frame = match msg.payload {
            NetlinkPayload::InnerMessage(m) => Frame::Message(m.payload),
            NetlinkPayload::Error(e) => match e.code {
                None => Frame::Ack,
                Some(code) => Frame::Error(code.get().checked_neg().unwrap_or(i32::MAX)),
            },
            NetlinkPayload::Done(_) => Frame::Done,
            _ => Frame::Ignored,
        };
        out.push(Received { seq, frame });
        // `new_checked` guarantees len >= 16, so this always advances.
        offset = offset.saturating_add((len + 3) & !3);
    }
    Ok(out)
}

/// General IPVS facts from GET_INFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Info {
    /// `IPVS_INFO_ATTR_VERSION`: `0x010201` is 1.2.1.
    pub version: u32,
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE`: connection hash table buckets.
    pub conn_tab_size: u32,
}

impl Info {
    /// Reads the GET_INFO reply (`IPVS_CMD_SET_INFO`).
    pub fn from_message(msg: &IpvsMessage) -> Result<Info, Error> {
        let (mut version, mut size) = (None, None);
        for a in &msg.attrs {
            match a {
                IpvsAttr::InfoVersion(v) => version = Some(*v),
                IpvsAttr::InfoConnTabSize(v) => size = Some(*v),
                _ => {}
            }
        }
        match (version, size) {
            (Some(version), Some(conn_tab_size)) => Ok(Info {
                version,
                conn_tab_size,
            }),
            _ => Err(Error::Decode(
                "GET_INFO reply without IPVS_INFO_ATTR_VERSION / CONN_TAB_SIZE".into(),
            )),
        }
    }

    /// `(major, minor, patch)` of `version`.
    pub fn version_triple(&self) -> (u8, u8, u8) {
        let [_, a, b, c] = self.version.to_be_bytes();
        (a, b, c)
    }

    /// The reply's message (for building test replies).
    pub fn to_message(&self) -> IpvsMessage {
        IpvsMessage {
            cmd: IPVS_CMD_SET_INFO,
            attrs: vec![
                IpvsAttr::InfoVersion(self.version),
                IpvsAttr::InfoConnTabSize(self.conn_tab_size),
            ],
        }
    }
}
