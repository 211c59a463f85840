//! Real servers of a service ([`Destination`]) and their conversion to and from
//! [`DestAttr`] sets.

use std::net::IpAddr;

use crate::Error;
use crate::attr::DestAttr;
use crate::constants::*;
use crate::service::{Family, Stats, addr_bytes, decode, parse_addr};

/// How IPVS forwards to a destination (`IP_VS_CONN_F_*`, the low 3 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForwardMethod {
    /// `IP_VS_CONN_F_MASQ` (0): NAT; the destination port replaces the packet's unless 0.
    Masquerade,
    /// `IP_VS_CONN_F_LOCALNODE` (1).
    Local,
    /// `IP_VS_CONN_F_TUNNEL` (2).
    Tunnel,
    /// `IP_VS_CONN_F_DROUTE` (3): direct routing.
    DirectRoute,
    /// `IP_VS_CONN_F_BYPASS` (4).
    Bypass,
}

impl ForwardMethod {
    pub fn to_raw(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => IP_VS_CONN_F_MASQ,
            ForwardMethod::Local => IP_VS_CONN_F_LOCALNODE,
            ForwardMethod::Tunnel => IP_VS_CONN_F_TUNNEL,
            ForwardMethod::DirectRoute => IP_VS_CONN_F_DROUTE,
            ForwardMethod::Bypass => IP_VS_CONN_F_BYPASS,
        }
    }

    /// Reads the low 3 bits (`IP_VS_CONN_F_FWD_MASK`); `None` for 5..=7.
    pub fn from_raw(v: u32) -> Option<ForwardMethod> {
        match v & IP_VS_CONN_F_FWD_MASK {
            IP_VS_CONN_F_MASQ => Some(ForwardMethod::Masquerade),
            IP_VS_CONN_F_LOCALNODE => Some(ForwardMethod::Local),
            IP_VS_CONN_F_TUNNEL => Some(ForwardMethod::Tunnel),
            IP_VS_CONN_F_DROUTE => Some(ForwardMethod::DirectRoute),
            IP_VS_CONN_F_BYPASS => Some(ForwardMethod::Bypass),
            _ => None,
        }
    }
}

/// Connection counts of a destination (kernel replies only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DestConns {
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
}

/// A real server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub addr: IpAddr,
    /// 0 keeps the packet's destination port (fwmark services).
    pub port: u16,
    pub fwd_method: ForwardMethod,
    /// 0: no new connections (draining); established ones continue.
    pub weight: u32,
    /// Upper connection threshold (0: none).
    pub upper_threshold: u32,
    /// Lower connection threshold (0: none).
    pub lower_threshold: u32,
    /// Only in kernel replies (ignored when sending).
    pub conns: Option<DestConns>,
    /// Only in kernel replies (ignored when sending).
    pub stats: Option<Stats>,
}

impl Destination {
    /// A masquerading destination of weight 1 with no thresholds.
    pub fn masquerade(addr: IpAddr, port: u16) -> Destination {
        Destination {
            addr,
            port,
            fwd_method: ForwardMethod::Masquerade,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            conns: None,
            stats: None,
        }
    }

    /// The identifying attributes (DEL_DEST): `ADDR, PORT`.
    pub fn key_attrs(addr: &IpAddr, port: u16) -> Vec<DestAttr> {
        vec![DestAttr::Addr(addr_bytes(addr)), DestAttr::Port(port)]
    }

    /// The full attribute set of NEW_DEST / SET_DEST (`ADDR, PORT, FWD_METHOD, WEIGHT,
    /// U_THRESH, L_THRESH`, all required by the kernel), plus the reply-only counters when
    /// `conns` / `stats` are set. `ADDR_FAMILY` is never sent: the kernel then takes the
    /// service's family, which works on every kernel.
    pub fn to_attrs(&self) -> Vec<DestAttr> {
        let mut attrs = Self::key_attrs(&self.addr, self.port);
        attrs.extend([
            DestAttr::FwdMethod(self.fwd_method.to_raw()),
            DestAttr::Weight(self.weight),
            DestAttr::UThresh(self.upper_threshold),
            DestAttr::LThresh(self.lower_threshold),
        ]);
        if let Some(c) = self.conns {
            attrs.extend([
                DestAttr::ActiveConns(c.active),
                DestAttr::InactConns(c.inactive),
                DestAttr::PersistConns(c.persistent),
            ]);
        }
        if let Some(s) = self.stats {
            attrs.push(DestAttr::Stats64(s.to_attrs64()));
        }
        attrs
    }

    /// Reads a destination from a kernel reply. Its family is `IPVS_DEST_ATTR_ADDR_FAMILY`
    /// when present, else `service_family`. Missing address, port, method or weight are
    /// errors; missing thresholds read as 0; `conns` is set when any count is present.
    pub fn from_attrs(attrs: &[DestAttr], service_family: Family) -> Result<Destination, Error> {
        let (mut addr, mut port, mut fwd, mut weight) = (None, None, None, None);
        let (mut upper, mut lower, mut af) = (0, 0, None);
        let mut conns: Option<DestConns> = None;
        let (mut stats32, mut stats64) = (None, None);
        for a in attrs {
            match a {
                DestAttr::Addr(v) => addr = Some(v.as_slice()),
                DestAttr::Port(v) => port = Some(*v),
                DestAttr::FwdMethod(v) => fwd = Some(*v),
                DestAttr::Weight(v) => weight = Some(*v),
                DestAttr::UThresh(v) => upper = *v,
                DestAttr::LThresh(v) => lower = *v,
                DestAttr::ActiveConns(v) => conns.get_or_insert_default().active = *v,
                DestAttr::InactConns(v) => conns.get_or_insert_default().inactive = *v,
                DestAttr::PersistConns(v) => conns.get_or_insert_default().persistent = *v,
                DestAttr::Stats(v) => stats32 = Some(Stats::from_attrs(v)),
                DestAttr::Stats64(v) => stats64 = Some(Stats::from_attrs(v)),
                DestAttr::AddrFamily(v) => af = Some(*v),
                DestAttr::TunType(_)
                | DestAttr::TunPort(_)
                | DestAttr::TunFlags(_)
                | DestAttr::Other(_) => {}
            }
        }
        let family = match af {
            None => service_family,
            Some(raw) => Family::from_raw(raw)
                .ok_or_else(|| decode(&format!("destination of unknown family {raw}")))?,
        };
        let addr = addr.ok_or_else(|| decode("destination without IPVS_DEST_ATTR_ADDR"))?;
        let raw_fwd = fwd.ok_or_else(|| decode("destination without IPVS_DEST_ATTR_FWD_METHOD"))?;
        Ok(Destination {
            addr: parse_addr(family, addr)?,
            port: port.ok_or_else(|| decode("destination without IPVS_DEST_ATTR_PORT"))?,
            fwd_method: ForwardMethod::from_raw(raw_fwd)
                .ok_or_else(|| decode(&format!("unknown forwarding method {raw_fwd}")))?,
            weight: weight.ok_or_else(|| decode("destination without IPVS_DEST_ATTR_WEIGHT"))?,
            upper_threshold: upper,
            lower_threshold: lower,
            conns,
            stats: stats64.or(stats32),
        })
    }
}
