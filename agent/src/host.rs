//! Read-only facts about the host namespace, over rtnetlink: its IPv4 routes (new subnets
//! must not overlap them) and the MTU of the interface holding the data-path address (the
//! underlay MTU).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnetwork::Ipv4Network;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::RouteMessageBuilder;

/// Kernel routing table `local` (addresses of this host, broadcast): not a reachability fact.
const RT_TABLE_LOCAL: u8 = 255;

fn handle() -> std::io::Result<rtnetlink::Handle> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The destinations of every IPv4 route of the current namespace (all tables but `local`).
pub async fn ipv4_routes() -> Result<Vec<Ipv4Network>, String> {
    let h = handle().map_err(|e| format!("netlink socket: {e}"))?;
    let msgs: Vec<_> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(|e| format!("dump routes: {e}"))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.table == RT_TABLE_LOCAL {
            continue;
        }
        let prefix = m.header.destination_prefix_length;
        let dst = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        if let Ok(n) = Ipv4Network::new(dst, prefix) {
            out.push(n);
        }
    }
    Ok(out)
}

/// MTU of the interface that holds `addr`, if any does.
pub async fn mtu_of_address(addr: Ipv4Addr) -> Result<Option<u32>, String> {
    let h = handle().map_err(|e| format!("netlink socket: {e}"))?;
    let addrs: Vec<_> = h
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| format!("dump addresses: {e}"))?;
    let index = addrs.iter().find_map(|m| {
        m.attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == addr))
            .then_some(m.header.index)
    });
    let Some(index) = index else {
        return Ok(None);
    };
    let link = h
        .link()
        .get()
        .match_index(index)
        .execute()
        .try_next()
        .await
        .map_err(|e| format!("get link {index}: {e}"))?;
    Ok(link.and_then(|l| {
        l.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(m),
            _ => None,
        })
    }))
}
