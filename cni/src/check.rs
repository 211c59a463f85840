//! CHECK inside the container: the interface the agent holds for the attachment is there,
//! up, with its MAC and address. Runs on the calling thread after entering the namespace
//! (the plugin is a short-lived process; the agent socket is a path, which the network
//! namespace does not change).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;
use nix::sched::{CloneFlags, setns};

use crate::error::*;

/// What the container shows for one interface.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub up: bool,
    pub mac: Option<String>,
    pub addresses: BTreeSet<Ipv4Addr>,
}

/// Enter the namespace at `netns` (this thread stays there).
pub fn enter(netns: &Path) -> Result<(), CniError> {
    let f = std::fs::File::open(netns).map_err(|e| {
        CniError::new(
            UNKNOWN_CONTAINER,
            format!("CNI_NETNS {}: {e}", netns.display()),
        )
    })?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| {
        CniError::new(
            IO_FAILURE,
            format!("entering CNI_NETNS {}: {e}", netns.display()),
        )
    })
}

/// `ifname` in the current namespace, `None` when it does not exist.
pub fn seen(ifname: &str) -> Result<Option<Seen>, CniError> {
    let addrs =
        getifaddrs().map_err(|e| CniError::new(IO_FAILURE, format!("listing interfaces: {e}")))?;
    let mut out: Option<Seen> = None;
    for a in addrs.filter(|a| a.interface_name == ifname) {
        let s = out.get_or_insert_with(Seen::default);
        s.up |= a.flags.contains(InterfaceFlags::IFF_UP);
        if let Some(addr) = a.address {
            if let Some(l) = addr.as_link_addr()
                && let Some(m) = l.addr()
            {
                s.mac = Some(
                    m.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                );
            }
            if let Some(v4) = addr.as_sockaddr_in() {
                s.addresses.insert(v4.ip());
            }
        }
    }
    Ok(out)
}

/// Compare what the container shows with the agent's endpoint.
pub fn verify(ifname: &str, mac: &str, ip: Ipv4Addr, seen: Option<Seen>) -> Result<(), CniError> {
    let fail = |what: String| CniError::new(CHECK_FAILED, format!("{ifname}: {what}"));
    let Some(s) = seen else {
        return Err(fail("no such interface in the container".into()));
    };
    if !s.up {
        return Err(fail("is down".into()));
    }
    if s.mac.as_deref() != Some(&mac.to_ascii_lowercase()) {
        return Err(fail(format!(
            "has MAC {}, the agent holds {mac}",
            s.mac.as_deref().unwrap_or("none")
        )));
    }
    if !s.addresses.contains(&ip) {
        return Err(fail(format!(
            "lacks {ip} (has {:?})",
            s.addresses.iter().collect::<Vec<_>>()
        )));
    }
    Ok(())
}
