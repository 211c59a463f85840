//! Thin helpers over `rtnetlink`: dumps parsed into plain structs, and the few requests the
//! executor needs that rtnetlink has no builder for.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::Handle;

use crate::actual::Nud;

/// `ENOENT`: no such neighbour/fdb entry or address.
pub(crate) const ENOENT: i32 = 2;
/// `ENODEV`: no such device.
pub(crate) const ENODEV: i32 = 19;
/// `EADDRNOTAVAIL`: no such address.
pub(crate) const EADDRNOTAVAIL: i32 = 99;

/// The parts of an `RTM_NEWLINK` the executor looks at.
#[derive(Debug, Default, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<InfoKind>,
    pub mtu: u32,
    pub up: bool,
    /// `IFLA_MASTER`
    pub master: Option<u32>,
    /// `IFLA_LINK`
    pub link: Option<u32>,
    pub alias: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub vxlan: Vec<InfoVxlan>,
}

impl Link {
    fn from_message(m: LinkMessage) -> Link {
        let mut l = Link {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            ..Link::default()
        };
        for a in m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n,
                LinkAttribute::Mtu(v) => l.mtu = v,
                LinkAttribute::Controller(v) => l.master = Some(v),
                LinkAttribute::Link(v) => l.link = Some(v),
                LinkAttribute::IfAlias(v) => l.alias = Some(v),
                LinkAttribute::Address(v) => l.mac = <[u8; 6]>::try_from(v.as_slice()).ok(),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => l.kind = Some(k),
                            LinkInfo::Data(InfoData::Vxlan(v)) => l.vxlan = v,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }
}

/// All links of the handle's namespace.
pub(crate) async fn links(h: &Handle) -> Result<Vec<Link>, rtnetlink::Error> {
    let msgs: Vec<LinkMessage> = h.link().get().execute().try_collect().await?;
    Ok(msgs.into_iter().map(Link::from_message).collect())
}

/// The link called `name`, or `None`.
pub(crate) async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>, rtnetlink::Error> {
    match h.link().get().match_name(name).execute().try_next().await {
        Ok(m) => Ok(m.map(Link::from_message)),
        Err(e) if is_errno(&e, ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// IPv4 addresses: `(ifindex, address/prefix, raw message for deletion)`.
pub(crate) async fn addresses_v4(
    h: &Handle,
) -> Result<Vec<(u32, Ipv4Network, AddressMessage)>, rtnetlink::Error> {
    let msgs: Vec<AddressMessage> = h.address().get().execute().try_collect().await?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.family != AddressFamily::Inet {
            continue;
        }
        let mut local = None;
        let mut address = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(IpAddr::V4(v)) => local = Some(*v),
                AddressAttribute::Address(IpAddr::V4(v)) => address = Some(*v),
                _ => {}
            }
        }
        if let Some(ip) = local.or(address)
            && let Ok(net) = Ipv4Network::new(ip, m.header.prefix_len)
        {
            out.push((m.header.index, net, m));
        }
    }
    Ok(out)
}

/// One entry of a neighbour (`AF_INET`) or FDB (`AF_BRIDGE`) dump.
#[derive(Debug, Clone)]
pub(crate) struct Neighbour {
    pub ifindex: u32,
    pub state: Nud,
    pub flags: NeighbourFlags,
    pub dst: Option<Ipv4Addr>,
    pub lladdr: Option<[u8; 6]>,
    pub port: Option<u16>,
    pub vni: Option<u32>,
}

/// All entries of `family` (`Inet` for ARP, `Bridge` for FDB) in the handle's namespace.
pub(crate) async fn neighbours(
    h: &Handle,
    family: AddressFamily,
) -> Result<Vec<Neighbour>, rtnetlink::Error> {
    let msgs: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(family)
        .execute()
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.family != family {
            continue;
        }
        let mut n = Neighbour {
            ifindex: m.header.ifindex,
            state: nud(m.header.state),
            flags: m.header.flags,
            dst: None,
            lladdr: None,
            port: None,
            vni: None,
        };
        for a in m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => n.dst = Some(v),
                // AF_BRIDGE dumps carry the VTEP as raw bytes (4 for IPv4).
                NeighbourAttribute::Destination(NeighbourAddress::Other(v)) => {
                    n.dst = <[u8; 4]>::try_from(v.as_slice()).ok().map(Ipv4Addr::from)
                }
                NeighbourAttribute::LinkLayerAddress(v) => {
                    n.lladdr = <[u8; 6]>::try_from(v.as_slice()).ok()
                }
                NeighbourAttribute::Port(v) => n.port = Some(v),
                NeighbourAttribute::Vni(v) => n.vni = Some(v),
                _ => {}
            }
        }
        out.push(n);
    }
    Ok(out)
}

fn nud(s: NeighbourState) -> Nud {
    match s {
        NeighbourState::Incomplete => Nud::Incomplete,
        NeighbourState::Reachable => Nud::Reachable,
        NeighbourState::Stale => Nud::Stale,
        NeighbourState::Delay => Nud::Delay,
        NeighbourState::Probe => Nud::Probe,
        NeighbourState::Failed => Nud::Failed,
        NeighbourState::Noarp => Nud::Noarp,
        NeighbourState::Permanent => Nud::Permanent,
        NeighbourState::None => Nud::None,
        other => Nud::Other(u16::from(other)),
    }
}

/// `ip neigh del <ip> dev <ifindex>`.
pub(crate) async fn del_neighbour(
    h: &Handle,
    ifindex: u32,
    ip: Ipv4Addr,
) -> Result<(), rtnetlink::Error> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    h.neighbours().del(m).execute().await
}

/// `bridge fdb del <mac> dev <ifindex> self` (`own = true`) or `master`.
pub(crate) async fn del_fdb(
    h: &Handle,
    ifindex: u32,
    mac: [u8; 6],
    own: bool,
) -> Result<(), rtnetlink::Error> {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = ifindex;
    m.header.flags = if own {
        NeighbourFlags::Own
    } else {
        NeighbourFlags::Controller
    };
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    h.neighbours().del(m).execute().await
}

/// Whether `e` is a netlink error with errno `code`.
pub(crate) fn is_errno(e: &rtnetlink::Error, code: i32) -> bool {
    crate::error::netlink_errno(e) == Some(code)
}
