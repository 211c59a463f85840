//! Published ports: the routing mesh that answers a service's published port on every
//! node's own addresses and keeps the client's address.
//!
//! # Design
//!
//! A service publishes `PORT:TARGET/PROTO` in mode `mesh` (every node answers, balancing over
//! every enabled backend of the cluster) or `local` (a node answers only with its own
//! backends). The published ports travel in the service definition (the durable `services`
//! table), so they outlive the agent that created them.
//!
//! * **Ingress endpoint.** A node that answers published ports of a network has an ingress
//!   endpoint on it: a veth from the host namespace into the network sandbox's `br0`, with
//!   an address of the node's own address blocks. It is an ordinary overlay endpoint (the
//!   overlay planner attaches it, its `peers` entry `ingress-<node id>` makes every other
//!   node program its neighbour and FDB entries), so no address is coordinated and nothing
//!   but the overlay carries mesh traffic. It goes when no published port needs it.
//! * **Host table** `ip swarmnet_mesh` ([`host_plan`]): in the host namespace, a nat
//!   prerouting chain (priority -110, before iptables' nat) sends `fib daddr type local`
//!   packets of a published (protocol, port) to that port's chain, which marks the
//!   connection, pins its conntrack idle timeout and DNATs to a backend's overlay address
//!   (`jhash` of the client address and port over the usable backends). The DNATed packet is
//!   routed out of the ingress endpoint into the overlay. The host's own connections to its
//!   published ports take the same way (nat output). Forward and input guards make sure the
//!   ingress endpoint carries only those flows: nothing else is routed into or out of the
//!   overlay, and containers cannot reach host services through it.
//! * **Backend containers** ([`backend`]): a reply must leave through the ingress endpoint
//!   the connection came in by, where conntrack un-DNATs it; the backend sees the client's
//!   own address, so its own routing would send the reply elsewhere (or nowhere). Each
//!   backend container marks packets by the source MAC of the ingress endpoint they came
//!   from (`ip swarmnet_mesh`, a map of the network's ingress MACs), `tcp_fwmark_accept`
//!   makes accepted sockets carry that mark, a policy rule routes marked packets to a fixed
//!   link-local next hop, and a netdev egress chain rewrites the frame's destination MAC to
//!   the ingress endpoint the mark names. UDP replies take the mark from conntrack (route
//!   chain) after a staging rule gives them a route. The container's own routes are never
//!   touched: unmarked traffic keeps the orchestrator's routing.
//! * **Order.** A node sends new connections to another node's backends only after that
//!   node has listed the sender's ingress MAC in its `mesh` record (its containers are
//!   programmed for it), so no reply lacks its way back. A node whose kernel has no netdev
//!   egress hook says so (`keep_source: false`) and is reached with SNAT to the sender's
//!   ingress address: the client address is then lost for its backends only.
//! * **Liveness.** The host table's entry rules carry a lease (`meta time < T`) the agent
//!   renews: a node whose agent died stops answering new connections within the lease
//!   (`--publish-lease-secs`; 0 keeps the rules for ever) instead of half-answering with
//!   state nobody updates while the other nodes drop its ingress endpoint. Established
//!   connections keep their conntrack binding.
//! * **Idle connections** are not cut: the port chain sets an `nft ct timeout` object whose
//!   established timeout the agent owns (`--publish-idle-timeout-secs`, default the kernel's
//!   5 days), whatever the host's `nf_conntrack_tcp_timeout_established` says. TCP needs no
//!   conntrack state in the backend (the socket carries the mark).
//! * **Conflicts**: a published (protocol, port) belongs to one service cluster-wide
//!   (create refuses a second); a port bound by a process on a node is refused at create on
//!   the creating node and not taken over on any other node (reported per node); each node
//!   holds a bound, unlistened socket on every port it publishes ([`reserve`]), so a later
//!   process cannot bind it either.
//!
//! # Compared with Docker's ingress and kube-proxy
//!
//! * Docker's routing mesh DNATs to an `ingress-sbox` namespace that runs IPVS in NAT mode and
//!   **masquerades** every connection (the backend sees the ingress network address; moby
//!   #25526, open since 2016), needs a dedicated `ingress` network with one address per node,
//!   and inherits IPVS's 900 s idle timeout (moby #31208). Here the backend sees the client,
//!   the ingress endpoint lives on the service's own network with an address of the node's
//!   own blocks, there is no IPVS in the path and the idle timeout is the agent's.
//! * kube-proxy (`externalTrafficPolicy: Cluster`) SNATs to the node whenever the backend is
//!   remote, so it keeps the client address only with `Local` (no hop at all). Our `local`
//!   mode is that policy, with a per-port health endpoint for the external balancer
//!   (`/published/<proto>/<port>` on the metrics listener; kube-proxy's `healthCheckNodePort`).
//!   Our `mesh` mode keeps the client address across nodes too, by policy routing in the
//!   backend, which kube-proxy leaves to DSR-capable CNIs.
//! * Caveat of keeping the source (measured): one client address reaching the same backend
//!   through two nodes within a TIME_WAIT period can collide with the backend's TIME_WAIT
//!   (PAWS rejects, a 1 s SYN retransmit). `local` mode has no such collision: put an
//!   external balancer in front of `local` ports.
//!
//! | file | concept |
//! | --- | --- |
//! | [`host_plan`] | pure planner of the host table (layout, names, diff -> script) |
//! | [`host_state`] | pure reader of `nft -j list table ip swarmnet_mesh` |
//! | [`host`] | the host table's executor (cached by nf_tables generation), forwarding sysctls |
//! | [`backend`] | backend containers: marks, policy routing, egress rewrite, sysctls |
//! | [`reserve`] | bound sockets holding published ports; conflict detection |
//! | [`firewall`] | other tables' forward drops that would block the mesh |

pub mod backend;
pub mod firewall;
pub mod host;
pub mod host_plan;
pub mod host_state;
pub mod reserve;

use std::net::Ipv4Addr;

use crate::records::Protocol;

/// Connection mark of mesh flows in the host namespace (set by the port chains; the forward
/// guard accepts exactly these).
pub const HOST_CT_MARK: u32 = 0x5353_0001;

/// Prefix of the ingress endpoints' ids in the `peers` table: `ingress-<node id>`.
pub const INGRESS_PREFIX: &str = "ingress-";

/// The `peers` key of `node`'s ingress endpoint.
pub fn ingress_id(node: networkdb::NodeId) -> String {
    format!("{INGRESS_PREFIX}{node}")
}

/// Name of the ingress endpoint's interface in the host namespace: `<prefix>i<vni, 6 hex>`
/// (at most 7 + 1 + 6 characters).
pub fn ingress_ifname(prefix: &str, vni: u32) -> String {
    format!("{prefix}i{:06x}", vni & 0x00ff_ffff)
}

/// The host namespace as the overlay executor opens it: the agent process's own.
pub const HOST_NETNS: &str = "/proc/self/ns/net";

/// The calling thread's namespace: the host table's executor works in the namespace of the
/// thread that calls it (the agent's, or a test's host namespace).
pub const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// One published port as a node programs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub port: u16,
    pub target: u16,
    /// Backends new connections go to, sorted and unique. Empty: the port refuses (TCP
    /// reset, ICMP port unreachable).
    pub backends: Vec<Ipv4Addr>,
}

/// Health of one published port on this node, as `/published/<proto>/<port>` and Inspect
/// show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PortStatus {
    pub service: String,
    #[serde(serialize_with = "protocol_text")]
    pub protocol: Protocol,
    pub port: u16,
    #[serde(serialize_with = "mode_text")]
    pub mode: crate::records::PublishMode,
    /// New connections are answered by a backend.
    pub ready: bool,
    /// Backends new connections go to.
    pub backends: u32,
    /// Of those, the ones on this node.
    pub local_backends: u32,
    /// Why it is not ready (empty when ready).
    pub reason: String,
}

fn protocol_text<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

fn mode_text<S: serde::Serializer>(
    m: &crate::records::PublishMode,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}
