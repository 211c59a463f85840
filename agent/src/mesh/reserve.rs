//! Published ports held by bound sockets in the host namespace.
//!
//! A socket bound to `0.0.0.0:<port>` without `SO_REUSEADDR` (TCP: bound, never listening;
//! UDP: bound, never read) fails with `EADDRINUSE` when anything else holds the port (a
//! listener on any address, a bound UDP socket, docker-proxy) and, once held, makes a later
//! bind by any process fail the same way. So binding is both the conflict check and the
//! reservation. Packets never reach these sockets: the host table DNATs the port before
//! routing (and the TCP socket does not listen, so a stray SYN gets a reset).
//!
//! A port bound by a process is never taken over: it is reported and left out of the host
//! table on this node. (A DNAT already in another table, e.g. Docker with
//! `userland-proxy=false`, has no socket and is not seen here.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};

use crate::records::Protocol;

/// The sockets this agent holds, by (protocol, port).
#[derive(Debug, Default)]
pub struct Reservations {
    held: Mutex<BTreeMap<(Protocol, u16), OwnedFd>>,
}

/// Binds `0.0.0.0:port` for `protocol` in the calling thread's namespace, without
/// `SO_REUSEADDR`. The error says what holds the port.
pub fn bind_port(protocol: Protocol, port: u16) -> Result<OwnedFd, String> {
    let ty = match protocol {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| format!("socket: {e}"))?;
    let addr = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    match bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
        Ok(()) => Ok(fd),
        Err(Errno::EADDRINUSE) => Err(format!(
            "{}/{port} is already bound on this host (a process listens on it or holds it; \
             `ss -lnp 'sport = :{port}'` shows which)",
            protocol.as_str()
        )),
        Err(e) => Err(format!(
            "{}/{port} cannot be bound on this host: {e}",
            protocol.as_str()
        )),
    }
}

impl Reservations {
    pub fn new() -> Reservations {
        Reservations::default()
    }

    /// Holds exactly the `wanted` ports (binding new ones, closing the others). Ports newly
    /// bound are then given to `also` (one call; e.g. a look for other tables' DNATs of them):
    /// those it names are released again. Returns the wanted ports that could not be held and
    /// why; they must not be published here. A port that failed is tried again next time.
    pub fn sync(
        &self,
        wanted: &BTreeSet<(Protocol, u16)>,
        also: impl FnOnce(&BTreeSet<(Protocol, u16)>) -> BTreeMap<(Protocol, u16), String>,
    ) -> BTreeMap<(Protocol, u16), String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|k, _| wanted.contains(k));
        let mut failed = BTreeMap::new();
        let mut fresh = BTreeSet::new();
        for key in wanted {
            if held.contains_key(key) {
                continue;
            }
            match bind_port(key.0, key.1) {
                Ok(fd) => {
                    held.insert(*key, fd);
                    fresh.insert(*key);
                }
                Err(why) => {
                    failed.insert(*key, why);
                }
            }
        }
        if !fresh.is_empty() {
            for (key, why) in also(&fresh) {
                held.remove(&key);
                failed.insert(key, why);
            }
        }
        failed
    }

    /// Whether this agent holds the port.
    pub fn holds(&self, protocol: Protocol, port: u16) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(protocol, port))
    }

    /// Whether a new service may publish the port on this host: it is free (tried with a
    /// bind that is closed again) or held by this agent for no live service (`live` are the
    /// ports published now; a held port of a deleted service is released first).
    pub fn check_free(
        &self,
        protocol: Protocol,
        port: u16,
        live: &BTreeSet<(Protocol, u16)>,
    ) -> Result<(), String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains_key(&(protocol, port)) {
            if live.contains(&(protocol, port)) {
                return Err(format!(
                    "{}/{port} is published by another service",
                    protocol.as_str()
                ));
            }
            held.remove(&(protocol, port));
        }
        bind_port(protocol, port).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_cannot_be_bound_again_and_is_released_when_no_longer_wanted() {
        // Port 0 asks the kernel for a free one: find one, release it, then hold it.
        let probe = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let r = Reservations::new();
        let want = BTreeSet::from([(Protocol::Tcp, port)]);
        assert!(r.sync(&want, |_| BTreeMap::new()).is_empty());
        assert!(r.holds(Protocol::Tcp, port));
        let err = std::net::TcpListener::bind(("0.0.0.0", port));
        assert!(err.is_err(), "a held port must not be bindable");
        let why = bind_port(Protocol::Tcp, port).unwrap_err();
        assert!(why.contains("already bound"), "{why}");
        assert!(r.check_free(Protocol::Tcp, port, &want).is_err());
        assert!(r.sync(&BTreeSet::new(), |_| BTreeMap::new()).is_empty());
        assert!(!r.holds(Protocol::Tcp, port));
        assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
    }

    #[test]
    fn a_port_the_extra_check_names_is_released_and_reported() {
        let probe = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let r = Reservations::new();
        let key = (Protocol::Tcp, port);
        let failed = r.sync(&BTreeSet::from([key]), |fresh| {
            assert!(fresh.contains(&key));
            BTreeMap::from([(key, "DNATed elsewhere".to_string())])
        });
        assert_eq!(failed[&key], "DNATed elsewhere");
        assert!(!r.holds(Protocol::Tcp, port));
    }

    #[test]
    fn a_port_a_process_listens_on_is_refused_with_the_reason() {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let r = Reservations::new();
        let failed = r.sync(&BTreeSet::from([(Protocol::Tcp, port)]), |_| {
            BTreeMap::new()
        });
        assert!(failed[&(Protocol::Tcp, port)].contains("already bound on this host"));
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let uport = u.local_addr().unwrap().port();
        assert!(
            r.check_free(Protocol::Udp, uport, &BTreeSet::new())
                .is_err(),
            "a UDP socket on one address blocks the wildcard bind"
        );
    }
}
