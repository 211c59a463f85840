//! Netlink attributes of the IPVS family, one enum per nesting level, each variant named
//! after its kernel constant (`IPVS_SVC_ATTR_FWMARK` -> [`SvcAttr::Fwmark`]).
//!
//! Wire rules (from `ip_vs.h` and `ip_vs_ctl.c`): integers are host order (`nla_put_u16/u32`)
//! except ports, which are `__be16` stored as they are; addresses are raw bytes (4 or 16 sent,
//! the kernel always answers with the 16-byte `union nf_inet_addr`); names are NUL-terminated;
//! nests are sent without `NLA_F_NESTED`, as the kernel itself answers (it accepts both).
//! Parsing never panics: a wrong length is a [`DecodeError`], an unknown attribute is kept as
//! `Other`.

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NLA_TYPE_MASK, Nla, NlaBuffer, NlasIterator, Parseable,
    emit_u16, emit_u16_be, emit_u32, emit_u64, parse_string, parse_u8, parse_u16, parse_u16_be,
    parse_u32, parse_u64,
};

use crate::constants::*;

/// `struct ip_vs_flags`: which service flags to set (`flags`) among those named in `mask`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceFlags {
    pub flags: u32,
    pub mask: u32,
}

impl ServiceFlags {
    /// No flag set, all flags governed (what libnetwork sends: `{0, 0xFFFFFFFF}`).
    pub const NONE: ServiceFlags = ServiceFlags {
        flags: 0,
        mask: u32::MAX,
    };
}

/// A counter nested in `IPVS_*_ATTR_STATS` (mostly `u32`, bytes `u64`) or
/// `IPVS_*_ATTR_STATS64` (all `u64`). The width is kept so that re-emission is exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatsAttr {
    U32(u16, u32),
    U64(u16, u64),
    /// `IPVS_STATS_ATTR_PAD` or any value that is neither 4 nor 8 bytes long.
    Other(DefaultNla),
}

/// Attributes nested in `IPVS_CMD_ATTR_SERVICE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SvcAttr {
    /// `IPVS_SVC_ATTR_AF`: `AF_INET` or `AF_INET6`.
    Af(u16),
    /// `IPVS_SVC_ATTR_PROTOCOL`: IP protocol number.
    Protocol(u16),
    /// `IPVS_SVC_ATTR_ADDR`: 4 or 16 raw bytes (16 in kernel replies, whatever the family).
    Addr(Vec<u8>),
    /// `IPVS_SVC_ATTR_PORT`: the port (big-endian on the wire).
    Port(u16),
    /// `IPVS_SVC_ATTR_FWMARK`.
    Fwmark(u32),
    /// `IPVS_SVC_ATTR_SCHED_NAME`: NUL-terminated.
    SchedName(String),
    /// `IPVS_SVC_ATTR_FLAGS`: `struct ip_vs_flags`.
    Flags(ServiceFlags),
    /// `IPVS_SVC_ATTR_TIMEOUT`: persistence timeout in seconds.
    Timeout(u32),
    /// `IPVS_SVC_ATTR_NETMASK`: 4 raw bytes read as a host-order `u32` (see
    /// [`crate::Service::netmask`]).
    Netmask(u32),
    /// `IPVS_SVC_ATTR_STATS`.
    Stats(Vec<StatsAttr>),
    /// `IPVS_SVC_ATTR_PE_NAME`: persistence engine, NUL-terminated.
    PeName(String),
    /// `IPVS_SVC_ATTR_STATS64`.
    Stats64(Vec<StatsAttr>),
    Other(DefaultNla),
}

/// Attributes nested in `IPVS_CMD_ATTR_DEST`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestAttr {
    /// `IPVS_DEST_ATTR_ADDR`: 4 or 16 raw bytes.
    Addr(Vec<u8>),
    /// `IPVS_DEST_ATTR_PORT`: big-endian on the wire.
    Port(u16),
    /// `IPVS_DEST_ATTR_FWD_METHOD`: `IP_VS_CONN_F_MASQ` ...
    FwdMethod(u32),
    /// `IPVS_DEST_ATTR_WEIGHT`.
    Weight(u32),
    /// `IPVS_DEST_ATTR_U_THRESH`.
    UThresh(u32),
    /// `IPVS_DEST_ATTR_L_THRESH`.
    LThresh(u32),
    /// `IPVS_DEST_ATTR_ACTIVE_CONNS` (replies only).
    ActiveConns(u32),
    /// `IPVS_DEST_ATTR_INACT_CONNS` (replies only).
    InactConns(u32),
    /// `IPVS_DEST_ATTR_PERSIST_CONNS` (replies only).
    PersistConns(u32),
    /// `IPVS_DEST_ATTR_STATS`.
    Stats(Vec<StatsAttr>),
    /// `IPVS_DEST_ATTR_ADDR_FAMILY`.
    AddrFamily(u16),
    /// `IPVS_DEST_ATTR_STATS64`.
    Stats64(Vec<StatsAttr>),
    /// `IPVS_DEST_ATTR_TUN_TYPE`.
    TunType(u8),
    /// `IPVS_DEST_ATTR_TUN_PORT`: big-endian on the wire.
    TunPort(u16),
    /// `IPVS_DEST_ATTR_TUN_FLAGS`.
    TunFlags(u16),
    Other(DefaultNla),
}

/// First-level attributes. Their numbering depends on the command: the GET_INFO reply
/// (`IPVS_CMD_SET_INFO`) uses `IPVS_INFO_ATTR_*`, every other command `IPVS_CMD_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpvsAttr {
    /// `IPVS_CMD_ATTR_SERVICE`.
    Service(Vec<SvcAttr>),
    /// `IPVS_CMD_ATTR_DEST`.
    Dest(Vec<DestAttr>),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP`.
    TimeoutTcp(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN`.
    TimeoutTcpFin(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_UDP`.
    TimeoutUdp(u32),
    /// `IPVS_INFO_ATTR_VERSION` (GET_INFO reply).
    InfoVersion(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (GET_INFO reply).
    InfoConnTabSize(u32),
    Other(DefaultNla),
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn emit_nested<T: Nla>(attrs: &[T], buffer: &mut [u8]) {
    attrs.emit(buffer)
}

fn nested_len<T: Nla>(attrs: &[T]) -> usize {
    attrs.buffer_len()
}

fn string_len(s: &str) -> usize {
    s.len() + 1
}

fn emit_string(s: &str, buffer: &mut [u8]) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

fn parse_nested<T, F>(payload: &[u8], what: &str, parse: F) -> Result<Vec<T>, DecodeError>
where
    F: Fn(&NlaBuffer<&[u8]>) -> Result<T, DecodeError>,
{
    let mut out = Vec::new();
    for nla in NlasIterator::new(payload) {
        let nla = nla.map_err(|e| DecodeError::from(format!("{what}: {e}")))?;
        out.push(parse(&nla).map_err(|e| DecodeError::from(format!("{what}: {e}")))?);
    }
    Ok(out)
}

fn other(nla: &NlaBuffer<&[u8]>) -> Result<DefaultNla, DecodeError> {
    DefaultNla::parse(nla)
}

fn kind(nla: &NlaBuffer<&[u8]>) -> u16 {
    nla.kind() & NLA_TYPE_MASK
}

fn emit_flags(f: &ServiceFlags, buffer: &mut [u8]) {
    emit_u32(&mut buffer[0..4], f.flags).ok();
    emit_u32(&mut buffer[4..8], f.mask).ok();
}

// ---------------------------------------------------------------------------------------------
// StatsAttr
// ---------------------------------------------------------------------------------------------

impl Nla for StatsAttr {
    fn value_len(&self) -> usize {
        match self {
            StatsAttr::U32(..) => 4,
            StatsAttr::U64(..) => 8,
            StatsAttr::Other(n) => n.value_len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            StatsAttr::U32(k, _) | StatsAttr::U64(k, _) => *k,
            StatsAttr::Other(n) => n.kind(),
        }
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            StatsAttr::U32(_, v) => {
                emit_u32(buffer, *v).ok();
            }
            StatsAttr::U64(_, v) => {
                emit_u64(buffer, *v).ok();
            }
            StatsAttr::Other(n) => n.emit_value(buffer),
        }
    }
}

impl StatsAttr {
    pub(crate) fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let v = nla.value();
        Ok(match (kind(nla), v.len()) {
            (IPVS_STATS_ATTR_PAD, _) => StatsAttr::Other(other(nla)?),
            (k, 4) => StatsAttr::U32(k, parse_u32(v)?),
            (k, 8) => StatsAttr::U64(k, parse_u64(v)?),
            _ => StatsAttr::Other(other(nla)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// SvcAttr
// ---------------------------------------------------------------------------------------------

impl Nla for SvcAttr {
    fn value_len(&self) -> usize {
        use SvcAttr::*;
        match self {
            Af(_) | Protocol(_) | Port(_) => 2,
            Fwmark(_) | Timeout(_) | Netmask(_) => 4,
            Addr(a) => a.len(),
            SchedName(s) | PeName(s) => string_len(s),
            Flags(_) => 8,
            Stats(s) | Stats64(s) => nested_len(s),
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use SvcAttr::*;
        match self {
            Af(_) => IPVS_SVC_ATTR_AF,
            Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            Addr(_) => IPVS_SVC_ATTR_ADDR,
            Port(_) => IPVS_SVC_ATTR_PORT,
            Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            SchedName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            Flags(_) => IPVS_SVC_ATTR_FLAGS,
            Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            Stats(_) => IPVS_SVC_ATTR_STATS,
            PeName(_) => IPVS_SVC_ATTR_PE_NAME,
            Stats64(_) => IPVS_SVC_ATTR_STATS64,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use SvcAttr::*;
        match self {
            Af(v) | Protocol(v) => {
                emit_u16(buffer, *v).ok();
            }
            Port(v) => {
                emit_u16_be(buffer, *v).ok();
            }
            Fwmark(v) | Timeout(v) | Netmask(v) => {
                emit_u32(buffer, *v).ok();
            }
            Addr(a) => buffer.copy_from_slice(a),
            SchedName(s) | PeName(s) => emit_string(s, buffer),
            Flags(f) => emit_flags(f, buffer),
            Stats(s) | Stats64(s) => emit_nested(s, buffer),
            Other(n) => n.emit_value(buffer),
        }
    }
}

impl SvcAttr {
    pub(crate) fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        use SvcAttr::*;
        let v = nla.value();
        Ok(match kind(nla) {
            IPVS_SVC_ATTR_AF => Af(parse_u16(v)?),
            IPVS_SVC_ATTR_PROTOCOL => Protocol(parse_u16(v)?),
            IPVS_SVC_ATTR_ADDR => Addr(v.to_vec()),
            IPVS_SVC_ATTR_PORT => Port(parse_u16_be(v)?),
            IPVS_SVC_ATTR_FWMARK => Fwmark(parse_u32(v)?),
            IPVS_SVC_ATTR_SCHED_NAME => SchedName(parse_string(v)?),
            IPVS_SVC_ATTR_FLAGS => {
                if v.len() != 8 {
                    return Err(DecodeError::from(format!(
                        "IPVS_SVC_ATTR_FLAGS: {} bytes, want 8",
                        v.len()
                    )));
                }
                Flags(ServiceFlags {
                    flags: parse_u32(&v[0..4])?,
                    mask: parse_u32(&v[4..8])?,
                })
            }
            IPVS_SVC_ATTR_TIMEOUT => Timeout(parse_u32(v)?),
            IPVS_SVC_ATTR_NETMASK => Netmask(parse_u32(v)?),
            IPVS_SVC_ATTR_STATS => Stats(parse_nested(v, "IPVS_SVC_ATTR_STATS", StatsAttr::parse)?),
            IPVS_SVC_ATTR_PE_NAME => PeName(parse_string(v)?),
            IPVS_SVC_ATTR_STATS64 => {
                Stats64(parse_nested(v, "IPVS_SVC_ATTR_STATS64", StatsAttr::parse)?)
            }
            _ => Other(other(nla)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// DestAttr
// ---------------------------------------------------------------------------------------------

impl Nla for DestAttr {
    fn value_len(&self) -> usize {
        use DestAttr::*;
        match self {
            Addr(a) => a.len(),
            Port(_) | AddrFamily(_) | TunPort(_) | TunFlags(_) => 2,
            TunType(_) => 1,
            FwdMethod(_) | Weight(_) | UThresh(_) | LThresh(_) | ActiveConns(_) | InactConns(_)
            | PersistConns(_) => 4,
            Stats(s) | Stats64(s) => nested_len(s),
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use DestAttr::*;
        match self {
            Addr(_) => IPVS_DEST_ATTR_ADDR,
            Port(_) => IPVS_DEST_ATTR_PORT,
            FwdMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            UThresh(_) => IPVS_DEST_ATTR_U_THRESH,
            LThresh(_) => IPVS_DEST_ATTR_L_THRESH,
            ActiveConns(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            InactConns(_) => IPVS_DEST_ATTR_INACT_CONNS,
            PersistConns(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            Stats(_) => IPVS_DEST_ATTR_STATS,
            AddrFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            Stats64(_) => IPVS_DEST_ATTR_STATS64,
            TunType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            TunPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            TunFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use DestAttr::*;
        match self {
            Addr(a) => buffer.copy_from_slice(a),
            Port(v) | TunPort(v) => {
                emit_u16_be(buffer, *v).ok();
            }
            AddrFamily(v) | TunFlags(v) => {
                emit_u16(buffer, *v).ok();
            }
            TunType(v) => buffer[0] = *v,
            FwdMethod(v) | Weight(v) | UThresh(v) | LThresh(v) | ActiveConns(v) | InactConns(v)
            | PersistConns(v) => {
                emit_u32(buffer, *v).ok();
            }
            Stats(s) | Stats64(s) => emit_nested(s, buffer),
            Other(n) => n.emit_value(buffer),
        }
    }
}

impl DestAttr {
    pub(crate) fn parse(nla: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        use DestAttr::*;
        let v = nla.value();
        Ok(match kind(nla) {
            IPVS_DEST_ATTR_ADDR => Addr(v.to_vec()),
            IPVS_DEST_ATTR_PORT => Port(parse_u16_be(v)?),
            IPVS_DEST_ATTR_FWD_METHOD => FwdMethod(parse_u32(v)?),
            IPVS_DEST_ATTR_WEIGHT => Weight(parse_u32(v)?),
            IPVS_DEST_ATTR_U_THRESH => UThresh(parse_u32(v)?),
            IPVS_DEST_ATTR_L_THRESH => LThresh(parse_u32(v)?),
            IPVS_DEST_ATTR_ACTIVE_CONNS => ActiveConns(parse_u32(v)?),
            IPVS_DEST_ATTR_INACT_CONNS => InactConns(parse_u32(v)?),
            IPVS_DEST_ATTR_PERSIST_CONNS => PersistConns(parse_u32(v)?),
            IPVS_DEST_ATTR_STATS => {
                Stats(parse_nested(v, "IPVS_DEST_ATTR_STATS", StatsAttr::parse)?)
            }
            IPVS_DEST_ATTR_ADDR_FAMILY => AddrFamily(parse_u16(v)?),
            IPVS_DEST_ATTR_STATS64 => {
                Stats64(parse_nested(v, "IPVS_DEST_ATTR_STATS64", StatsAttr::parse)?)
            }
            IPVS_DEST_ATTR_TUN_TYPE => TunType(parse_u8(v)?),
            IPVS_DEST_ATTR_TUN_PORT => TunPort(parse_u16_be(v)?),
            IPVS_DEST_ATTR_TUN_FLAGS => TunFlags(parse_u16(v)?),
            _ => Other(other(nla)?),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// IpvsAttr
// ---------------------------------------------------------------------------------------------

impl Nla for IpvsAttr {
    fn value_len(&self) -> usize {
        use IpvsAttr::*;
        match self {
            Service(a) => nested_len(a),
            Dest(a) => nested_len(a),
            TimeoutTcp(_) | TimeoutTcpFin(_) | TimeoutUdp(_) | InfoVersion(_)
            | InfoConnTabSize(_) => 4,
            Other(n) => n.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        use IpvsAttr::*;
        match self {
            Service(_) => IPVS_CMD_ATTR_SERVICE,
            Dest(_) => IPVS_CMD_ATTR_DEST,
            TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            InfoVersion(_) => IPVS_INFO_ATTR_VERSION,
            InfoConnTabSize(_) => IPVS_INFO_ATTR_CONN_TAB_SIZE,
            Other(n) => n.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        use IpvsAttr::*;
        match self {
            Service(a) => emit_nested(a, buffer),
            Dest(a) => emit_nested(a, buffer),
            TimeoutTcp(v) | TimeoutTcpFin(v) | TimeoutUdp(v) | InfoVersion(v)
            | InfoConnTabSize(v) => {
                emit_u32(buffer, *v).ok();
            }
            Other(n) => n.emit_value(buffer),
        }
    }
}

impl IpvsAttr {
    /// Parses a first-level attribute of a message whose command is `cmd`.
    pub(crate) fn parse(nla: &NlaBuffer<&[u8]>, cmd: u8) -> Result<Self, DecodeError> {
        use IpvsAttr::*;
        let v = nla.value();
        if cmd == IPVS_CMD_SET_INFO || cmd == IPVS_CMD_GET_INFO {
            return Ok(match kind(nla) {
                IPVS_INFO_ATTR_VERSION => InfoVersion(parse_u32(v)?),
                IPVS_INFO_ATTR_CONN_TAB_SIZE => InfoConnTabSize(parse_u32(v)?),
                _ => Other(other(nla)?),
            });
        }
        Ok(match kind(nla) {
            IPVS_CMD_ATTR_SERVICE => {
                Service(parse_nested(v, "IPVS_CMD_ATTR_SERVICE", SvcAttr::parse)?)
            }
            IPVS_CMD_ATTR_DEST => Dest(parse_nested(v, "IPVS_CMD_ATTR_DEST", DestAttr::parse)?),
            IPVS_CMD_ATTR_TIMEOUT_TCP => TimeoutTcp(parse_u32(v)?),
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN => TimeoutTcpFin(parse_u32(v)?),
            IPVS_CMD_ATTR_TIMEOUT_UDP => TimeoutUdp(parse_u32(v)?),
            _ => Other(other(nla)?),
        })
    }
}
