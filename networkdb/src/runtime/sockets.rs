//! Binding the UDP socket and the TCP listener of a node on one address and port.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, UdpSocket};

use crate::error::Error;

/// Attempts at finding a port free for both UDP and TCP when port 0 is asked for.
const PORT_ATTEMPTS: usize = 32;

/// Bind UDP and TCP on `addr`; with port 0, on one free port for both.
pub(crate) async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    if addr.port() != 0 {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = listen(addr)?;
        return Ok((udp, tcp));
    }
    let mut last = None;
    for _ in 0..PORT_ATTEMPTS {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match listen(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            // The TCP port is taken: drop this UDP socket and try another port.
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::other("no port free for both UDP and TCP"))
        .into())
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted node binds again at once, whatever connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The address peers reach a node at: `advertise`, with an unspecified IP replaced by the
/// bound IP and port 0 by the bound port.
pub(crate) fn advertised(advertise: SocketAddr, bound: SocketAddr) -> Result<SocketAddr, Error> {
    let ip = if advertise.ip().is_unspecified() {
        bound.ip()
    } else {
        advertise.ip()
    };
    let port = if advertise.port() == 0 {
        bound.port()
    } else {
        advertise.port()
    };
    if ip.is_unspecified() {
        return Err(Error::Invalid {
            field: "advertise",
            reason: format!("bound to {bound}: set an address peers can reach this node at"),
        });
    }
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_fills_unspecified_parts_from_the_bound_one() {
        let bound: SocketAddr = "127.0.0.3:4000".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert_eq!(advertised(any, bound).unwrap(), bound);
        let ip: SocketAddr = "10.1.2.3:0".parse().unwrap();
        assert_eq!(
            advertised(ip, bound).unwrap(),
            "10.1.2.3:4000".parse().unwrap()
        );
        assert!(advertised(any, "0.0.0.0:4000".parse().unwrap()).is_err());
    }
}
