//! Virtual services: how one is identified ([`ServiceKey`]) and described ([`Service`]),
//! and their conversion to and from [`SvcAttr`] sets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Error;
use crate::attr::{ServiceFlags, StatsAttr, SvcAttr};
use crate::constants::*;

/// Address family of a service or destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `AF_INET`.
    Inet,
    /// `AF_INET6`.
    Inet6,
}

impl Family {
    /// The kernel's number (`AF_INET` = 2, `AF_INET6` = 10).
    pub fn to_raw(self) -> u16 {
        match self {
            Family::Inet => AF_INET,
            Family::Inet6 => AF_INET6,
        }
    }

    /// `None` for any other family.
    pub fn from_raw(af: u16) -> Option<Family> {
        match af {
            AF_INET => Some(Family::Inet),
            AF_INET6 => Some(Family::Inet6),
            _ => None,
        }
    }

    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }
}

/// IP protocol of an address-keyed service. Known numbers always decode to the named
/// variant, so `Other(6)` is never produced by parsing (use [`Protocol::from_raw`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Other(u16),
}

impl Protocol {
    pub fn to_raw(self) -> u16 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Sctp => IPPROTO_SCTP,
            Protocol::Other(p) => p,
        }
    }

    pub fn from_raw(p: u16) -> Protocol {
        match p {
            IPPROTO_TCP => Protocol::Tcp,
            IPPROTO_UDP => Protocol::Udp,
            IPPROTO_SCTP => Protocol::Sctp,
            p => Protocol::Other(p),
        }
    }
}

/// What identifies a virtual service in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKey {
    /// Packets carrying firewall mark `mark` (non-zero) of family `af`. Any protocol and
    /// port; destinations with port 0 keep the packet's port.
    Fwmark { af: Family, mark: u32 },
    /// Packets to `addr:port` over `protocol`.
    Addr {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
}

impl ServiceKey {
    /// An IPv4 fwmark service key.
    pub fn fwmark(mark: u32) -> ServiceKey {
        ServiceKey::Fwmark {
            af: Family::Inet,
            mark,
        }
    }

    /// The service's address family.
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Fwmark { af, .. } => *af,
            ServiceKey::Addr { addr, .. } => Family::of(addr),
        }
    }

    /// The identifying attributes, as the kernel wants them in every request that names an
    /// existing service: `AF` then `FWMARK`, or `AF, PROTOCOL, ADDR, PORT`.
    pub fn to_attrs(&self) -> Vec<SvcAttr> {
        match self {
            ServiceKey::Fwmark { af, mark } => {
                vec![SvcAttr::Af(af.to_raw()), SvcAttr::Fwmark(*mark)]
            }
            ServiceKey::Addr {
                protocol,
                addr,
                port,
            } => vec![
                SvcAttr::Af(Family::of(addr).to_raw()),
                SvcAttr::Protocol(protocol.to_raw()),
                SvcAttr::Addr(addr_bytes(addr)),
                SvcAttr::Port(*port),
            ],
        }
    }
}

/// Traffic counters of a service or destination (`IPVS_*_ATTR_STATS64`, or the 32-bit
/// `IPVS_*_ATTR_STATS` when the kernel sent no 64-bit set). Rates are per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

impl Stats {
    pub(crate) fn from_attrs(attrs: &[StatsAttr]) -> Stats {
        let mut s = Stats::default();
        for a in attrs {
            let (k, v) = match a {
                StatsAttr::U32(k, v) => (*k, u64::from(*v)),
                StatsAttr::U64(k, v) => (*k, *v),
                StatsAttr::Other(_) => continue,
            };
            let slot = match k {
                IPVS_STATS_ATTR_CONNS => &mut s.conns,
                IPVS_STATS_ATTR_INPKTS => &mut s.in_pkts,
                IPVS_STATS_ATTR_OUTPKTS => &mut s.out_pkts,
                IPVS_STATS_ATTR_INBYTES => &mut s.in_bytes,
                IPVS_STATS_ATTR_OUTBYTES => &mut s.out_bytes,
                IPVS_STATS_ATTR_CPS => &mut s.cps,
                IPVS_STATS_ATTR_INPPS => &mut s.in_pps,
                IPVS_STATS_ATTR_OUTPPS => &mut s.out_pps,
                IPVS_STATS_ATTR_INBPS => &mut s.in_bps,
                IPVS_STATS_ATTR_OUTBPS => &mut s.out_bps,
                _ => continue,
            };
            *slot = v;
        }
        s
    }

    /// The `IPVS_*_ATTR_STATS64` nest (all `u64`), in kernel order.
    pub(crate) fn to_attrs64(self) -> Vec<StatsAttr> {
        [
            (IPVS_STATS_ATTR_CONNS, self.conns),
            (IPVS_STATS_ATTR_INPKTS, self.in_pkts),
            (IPVS_STATS_ATTR_OUTPKTS, self.out_pkts),
            (IPVS_STATS_ATTR_INBYTES, self.in_bytes),
            (IPVS_STATS_ATTR_OUTBYTES, self.out_bytes),
            (IPVS_STATS_ATTR_CPS, self.cps),
            (IPVS_STATS_ATTR_INPPS, self.in_pps),
            (IPVS_STATS_ATTR_OUTPPS, self.out_pps),
            (IPVS_STATS_ATTR_INBPS, self.in_bps),
            (IPVS_STATS_ATTR_OUTBPS, self.out_bps),
        ]
        .into_iter()
        .map(|(k, v)| StatsAttr::U64(k, v))
        .collect()
    }
}

/// A virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: ServiceKey,
    /// Scheduler (`rr`, `wrr`, `lc`, `sh`, ...): at most 15 bytes, no NUL.
    pub scheduler: String,
    /// Persistence engine (`sip`), if any: at most 15 bytes, no NUL.
    pub pe_name: Option<String>,
    /// `IP_VS_SVC_F_*` flags. Requests: the flags to set among `mask`; replies: the
    /// service's flags with mask `0xFFFFFFFF`.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (0 unless `IP_VS_SVC_F_PERSISTENT`).
    pub timeout: u32,
    /// Persistence netmask: the 4 attribute bytes read as a host-order `u32`. For IPv4 the
    /// bytes are the mask in network order (`u32::from_ne_bytes([255, 255, 255, 255])`), for
    /// IPv6 the value is a prefix length (1..=128).
    pub netmask: u32,
    /// Counters; only in kernel replies (`None` in requests, ignored when sending).
    pub stats: Option<Stats>,
}

impl Service {
    /// A service with scheduler `rr`, no flags (mask `0xFFFFFFFF`), no persistence,
    /// netmask `0xFFFFFFFF` (what libnetwork creates, except its netmask 0).
    pub fn new(key: ServiceKey) -> Service {
        Service {
            key,
            scheduler: "rr".into(),
            pe_name: None,
            flags: ServiceFlags::NONE,
            timeout: 0,
            netmask: u32::MAX,
            stats: None,
        }
    }

    /// Checks what the kernel would refuse with a less helpful `EINVAL`.
    pub fn validate(&self) -> Result<(), Error> {
        check_name("scheduler", &self.scheduler, IP_VS_SCHEDNAME_MAXLEN)?;
        if let Some(pe) = &self.pe_name {
            check_name("persistence engine", pe, IP_VS_PENAME_MAXLEN)?;
        }
        if let ServiceKey::Fwmark { mark: 0, .. } = self.key {
            return Err(Error::Invalid("fwmark 0 names no service".into()));
        }
        Ok(())
    }

    /// The full attribute set of NEW_SERVICE / SET_SERVICE, in the kernel's own order (key,
    /// SCHED_NAME, PE_NAME, FLAGS, TIMEOUT, NETMASK), plus STATS64 when `stats` is set.
    pub fn to_attrs(&self) -> Vec<SvcAttr> {
        let mut attrs = self.key.to_attrs();
        attrs.push(SvcAttr::SchedName(self.scheduler.clone()));
        if let Some(pe) = &self.pe_name {
            attrs.push(SvcAttr::PeName(pe.clone()));
        }
        attrs.push(SvcAttr::Flags(self.flags));
        attrs.push(SvcAttr::Timeout(self.timeout));
        attrs.push(SvcAttr::Netmask(self.netmask));
        if let Some(stats) = self.stats {
            attrs.push(SvcAttr::Stats64(stats.to_attrs64()));
        }
        attrs
    }

    /// Reads a service from the attributes of a kernel reply. Missing AF, key, scheduler or
    /// flags are errors; missing timeout/netmask read as 0; unknown attributes are ignored.
    pub fn from_attrs(attrs: &[SvcAttr]) -> Result<Service, Error> {
        let mut af = None;
        let (mut protocol, mut addr, mut port, mut fwmark) = (None, None, None, None);
        let (mut sched, mut pe, mut flags) = (None, None, None);
        let (mut timeout, mut netmask) = (0, 0);
        let (mut stats32, mut stats64) = (None, None);
        for a in attrs {
            match a {
                SvcAttr::Af(v) => af = Some(*v),
                SvcAttr::Protocol(v) => protocol = Some(*v),
                SvcAttr::Addr(v) => addr = Some(v.as_slice()),
                SvcAttr::Port(v) => port = Some(*v),
                SvcAttr::Fwmark(v) => fwmark = Some(*v),
                SvcAttr::SchedName(v) => sched = Some(v.clone()),
                SvcAttr::PeName(v) => pe = Some(v.clone()),
                SvcAttr::Flags(v) => flags = Some(*v),
                SvcAttr::Timeout(v) => timeout = *v,
                SvcAttr::Netmask(v) => netmask = *v,
                SvcAttr::Stats(v) => stats32 = Some(Stats::from_attrs(v)),
                SvcAttr::Stats64(v) => stats64 = Some(Stats::from_attrs(v)),
                SvcAttr::Other(_) => {}
            }
        }
        let raw_af = af.ok_or_else(|| decode("service without IPVS_SVC_ATTR_AF"))?;
        let family = Family::from_raw(raw_af)
            .ok_or_else(|| decode(&format!("service of unknown family {raw_af}")))?;
        let key = match fwmark {
            Some(mark) if mark != 0 => ServiceKey::Fwmark { af: family, mark },
            _ => {
                let (Some(p), Some(a), Some(port)) = (protocol, addr, port) else {
                    return Err(decode(
                        "service with neither IPVS_SVC_ATTR_FWMARK nor protocol/addr/port",
                    ));
                };
                ServiceKey::Addr {
                    protocol: Protocol::from_raw(p),
                    addr: parse_addr(family, a)?,
                    port,
                }
            }
        };
        Ok(Service {
            key,
            scheduler: sched.ok_or_else(|| decode("service without IPVS_SVC_ATTR_SCHED_NAME"))?,
            pe_name: pe,
            flags: flags.ok_or_else(|| decode("service without IPVS_SVC_ATTR_FLAGS"))?,
            timeout,
            netmask,
            stats: stats64.or(stats32),
        })
    }
}

fn check_name(what: &str, name: &str, maxlen: usize) -> Result<(), Error> {
    if name.len() >= maxlen || name.as_bytes().contains(&0) {
        return Err(Error::Invalid(format!(
            "{what} name {name:?}: at most {} bytes, no NUL",
            maxlen - 1
        )));
    }
    Ok(())
}

pub(crate) fn decode(msg: &str) -> Error {
    Error::Decode(msg.to_string())
}

/// 4 bytes for IPv4, 16 for IPv6 (what the kernel copies into `union nf_inet_addr`).
pub(crate) fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Reads an address of `family` from 4 or 16 bytes (IPv4: the first 4 of the union).
pub(crate) fn parse_addr(family: Family, bytes: &[u8]) -> Result<IpAddr, Error> {
    match family {
        Family::Inet => match bytes.get(..4) {
            Some(b) if bytes.len() == 4 || bytes.len() == 16 => {
                Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            _ => Err(decode(&format!("IPv4 address of {} bytes", bytes.len()))),
        },
        Family::Inet6 => {
            let b: [u8; 16] = bytes
                .try_into()
                .map_err(|_| decode(&format!("IPv6 address of {} bytes", bytes.len())))?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
    }
}
