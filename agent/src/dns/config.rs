//! Resolver configuration and its defaults.

use std::net::SocketAddr;
use std::time::Duration;

/// How the embedded resolver behaves. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// TTL of internal answers (default 5 s: clients must not cache stale backends for long;
    /// Docker's hard-coded 600 s is user lesson 3).
    pub ttl: Duration,
    /// Upstream servers for names that are not internal. Empty (the default): the
    /// `nameserver` lines of the agent's `/etc/resolv.conf`, re-read on every
    /// [`Resolver::sync`](super::Resolver::sync) (see [`super::host_upstreams`]).
    pub upstreams: Vec<SocketAddr>,
    /// Where the host's nameservers are read from when `upstreams` is empty.
    pub host_resolv_conf: std::path::PathBuf,
    /// Total time one forwarded query may take across every upstream tried (default 2 s;
    /// Docker's 4 s per server is user lesson 25). On expiry the client gets SERVFAIL.
    pub forward_timeout: Duration,
    /// Forwarded queries in flight at once, over every container (default 1024). A query
    /// over the bound is answered SERVFAIL at once and counted.
    pub max_concurrent_forwards: usize,
    /// Largest UDP reply sent (default 4096; also the size advertised in our OPT record). A
    /// client's EDNS size is honoured up to this; without EDNS the limit is 512.
    pub max_udp_payload: u16,
    /// A TCP connection with no complete query for this long is closed (default 10 s).
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections per container namespace (default 64); more are closed at once.
    pub max_tcp_connections: usize,
    /// Tasks reading each namespace's UDP socket (default 2: on a busy container, queries
    /// are answered on two runtime threads at once; idle tasks cost nothing).
    pub udp_workers: usize,
    /// `options ndots:<n>` in the resolv.conf files written (default 0: every name is first
    /// tried as is, so single-label service names never go through search domains first).
    pub ndots: u8,
    /// Extra `search` domains for the resolv.conf files written (after the host's).
    pub search: Vec<String>,
    /// The `nft` binary (a bare name is searched in `$PATH`, then `/usr/sbin`, `/sbin`).
    pub nft: std::path::PathBuf,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            ttl: Duration::from_secs(5),
            upstreams: Vec::new(),
            host_resolv_conf: "/etc/resolv.conf".into(),
            forward_timeout: Duration::from_secs(2),
            max_concurrent_forwards: 1024,
            max_udp_payload: 4096,
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 64,
            udp_workers: 2,
            ndots: 0,
            search: Vec::new(),
            nft: "nft".into(),
        }
    }
}

impl DnsConfig {
    /// TTL in whole seconds, as it goes on the wire.
    pub fn ttl_secs(&self) -> u32 {
        u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX)
    }
}
