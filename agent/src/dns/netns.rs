//! Work inside a container's network namespace, each job on a fresh dedicated thread (so a
//! tokio worker never changes namespace): create the listening sockets, install or remove
//! the DNAT rules.
//!
//! Why DNAT to a random port, not a bind of `127.0.0.11:53`: a socket bound to
//! `127.0.0.11:53` makes a later wildcard bind of `0.0.0.0:53` in the same namespace fail
//! with EADDRINUSE, for UDP and TCP (checked by `serial_a_direct_bind_of_127_0_0_11_53_blocks_a_wildcard_port_53_server`
//! in `agent/tests/dns_kernel.rs`), so a container could not run its own DNS server. Like
//! Docker, we bind `127.0.0.11:<random>` and DNAT `127.0.0.11:53` to it in the namespace's
//! `output` hook (nft table `ip swarmnet_dns`). No postrouting SNAT is needed: the reply's
//! source is rewritten back to `127.0.0.11:53` by conntrack's reverse NAT (the kernel test's
//! `dig` would reject a reply from another port), and the packets never leave `lo`, so
//! `route_localnet` is not needed either.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use super::DnsError;
use super::resolv_conf::RESOLVER_IP;

/// The nftables table (family `ip`) in each served namespace.
pub const NFT_TABLE: &str = "swarmnet_dns";

/// Identity of a namespace file: (device, inode) of the nsfs object it refers to.
pub type NsId = (u64, u64);

/// The identity of the namespace at `path`.
pub fn ns_id(path: &Path) -> Result<NsId, DnsError> {
    let m = std::fs::metadata(path).map_err(|e| DnsError::Io {
        what: "stat namespace",
        path: path.display().to_string(),
        source: e,
    })?;
    Ok((m.dev(), m.ino()))
}

/// Sockets of one namespace, created inside it.
#[derive(Debug)]
pub struct NsSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub id: NsId,
}

/// Runs `job` on a new thread that has entered the namespace at `path`; the thread ends
/// with the job, so nothing else ever runs in that namespace.
async fn in_netns<T: Send + 'static>(
    path: &Path,
    job: impl FnOnce() -> Result<T, DnsError> + Send + 'static,
) -> Result<T, DnsError> {
    let path = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let shown = path.display().to_string();
    std::thread::Builder::new()
        .name("dns-netns".into())
        .spawn(move || {
            let result = std::fs::File::open(&path)
                .map_err(|e| DnsError::Io {
                    what: "open namespace",
                    path: path.display().to_string(),
                    source: e,
                })
                .and_then(|f| {
                    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| DnsError::Netns {
                        path: path.display().to_string(),
                        detail: format!("setns: {e}"),
                    })
                })
                .and_then(|()| job());
            let _ = tx.send(result);
        })
        .map_err(|e| DnsError::Netns {
            path: shown.clone(),
            detail: format!("spawn thread: {e}"),
        })?;
    rx.await.map_err(|_| DnsError::Netns {
        path: shown,
        detail: "namespace thread ended without a result".into(),
    })?
}

/// In the namespace at `path`: binds UDP and TCP on `127.0.0.11:<random>` (the same port
/// for both when it is free) and installs the DNAT rules (replacing any earlier table).
pub async fn open(path: &Path, nft: PathBuf) -> Result<NsSockets, DnsError> {
    let id = ns_id(path)?;
    let shown = path.display().to_string();
    in_netns(path, move || {
        let io = |what: &'static str| DnsError::io(what, &shown);
        let udp = UdpSocket::bind((RESOLVER_IP, 0)).map_err(io("bind udp 127.0.0.11 in"))?;
        let port = udp.local_addr().map_err(io("udp local address in"))?.port();
        let tcp = match TcpListener::bind((RESOLVER_IP, port)) {
            Ok(t) => t,
            Err(_) => TcpListener::bind((RESOLVER_IP, 0)).map_err(io("bind tcp 127.0.0.11 in"))?,
        };
        let tport = tcp.local_addr().map_err(io("tcp local address in"))?.port();
        udp.set_nonblocking(true)
            .map_err(io("set nonblocking in"))?;
        tcp.set_nonblocking(true)
            .map_err(io("set nonblocking in"))?;
        nft_apply(&nft, &shown, &dnat_script(port, tport))?;
        Ok(NsSockets { udp, tcp, id })
    })
    .await
}

/// In the namespace at `path` (a network sandbox): binds UDP and TCP on `ip:53` directly (no
/// DNAT: queries arrive from other namespaces, over the bridge that holds `ip`).
pub async fn open_at(path: &Path, ip: std::net::Ipv4Addr) -> Result<NsSockets, DnsError> {
    let id = ns_id(path)?;
    let shown = path.display().to_string();
    in_netns(path, move || {
        let io = |what: &'static str| DnsError::io(what, &shown);
        let udp = UdpSocket::bind((ip, 53)).map_err(io("bind udp <gateway>:53 in"))?;
        let tcp = TcpListener::bind((ip, 53)).map_err(io("bind tcp <gateway>:53 in"))?;
        udp.set_nonblocking(true)
            .map_err(io("set nonblocking in"))?;
        tcp.set_nonblocking(true)
            .map_err(io("set nonblocking in"))?;
        Ok(NsSockets { udp, tcp, id })
    })
    .await
}

/// Re-installs the DNAT rules in the namespace at `path` unless they already send port 53 to
/// `udp_port` / `tcp_port` (someone deleted or edited the table). `Ok(true)` when repaired.
pub async fn ensure_rules(
    path: &Path,
    nft: PathBuf,
    udp_port: u16,
    tcp_port: u16,
) -> Result<bool, DnsError> {
    let shown = path.display().to_string();
    in_netns(path, move || {
        let listed = crate::sys::nft(None, &["list", "table", "ip", NFT_TABLE], None)
            .map(|o| o.stdout)
            .unwrap_or_default();
        let intact = listed.contains(&format!("udp dport 53 dnat to {RESOLVER_IP}:{udp_port}"))
            && listed.contains(&format!("tcp dport 53 dnat to {RESOLVER_IP}:{tcp_port}"));
        if intact {
            return Ok(false);
        }
        nft_apply(&nft, &shown, &dnat_script(udp_port, tcp_port))?;
        Ok(true)
    })
    .await
}

/// Removes the DNAT table from the namespace at `path` (fine when it or the table is gone).
pub async fn close(path: &Path, nft: PathBuf) -> Result<(), DnsError> {
    if !path.exists() {
        return Ok(());
    }
    let shown = path.display().to_string();
    in_netns(path, move || {
        nft_apply(
            &nft,
            &shown,
            &format!("table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n"),
        )
    })
    .await
}

/// The nft script installing the DNAT rules (idempotent: the table is declared, deleted and
/// re-created in one transaction).
pub fn dnat_script(udp_port: u16, tcp_port: u16) -> String {
    format!(
        "table ip {NFT_TABLE}\n\
         delete table ip {NFT_TABLE}\n\
         table ip {NFT_TABLE} {{\n\
         \tchain output {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tip daddr {RESOLVER_IP} udp dport 53 dnat to {RESOLVER_IP}:{udp_port}\n\
         \t\tip daddr {RESOLVER_IP} tcp dport 53 dnat to {RESOLVER_IP}:{tcp_port}\n\
         \t}}\n\
         }}\n"
    )
}

/// Runs `nft -f -` with `script` (the child inherits the calling thread's namespace).
fn nft_apply(_nft: &Path, ns: &str, script: &str) -> Result<(), DnsError> {
    crate::sys::nft_apply(None, script).map_err(|e| DnsError::Nft {
        netns: ns.to_string(),
        detail: e.to_string(),
    })
}

/// The (UDP, TCP) ports of a namespace's sockets.
pub fn ports(s: &NsSockets) -> (u16, u16) {
    let p = |a: std::io::Result<SocketAddr>| a.map(|a| a.port()).unwrap_or(0);
    (p(s.udp.local_addr()), p(s.tcp.local_addr()))
}
