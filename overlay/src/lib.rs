//! The VXLAN dataplane of swarmnet: a pure planner (desired networks, endpoints and peers
//! versus what the kernel has, giving a list of operations) and a netlink executor that
//! applies them with replace semantics inside each network sandbox namespace.
//!
//! # Model
//!
//! Per overlay network a node has a *network sandbox*: a named network namespace
//! `<prefix>-<vni>` (see [`Names`]) holding
//! * `br0`, a bridge with the network's gateway address and MTU;
//! * `vxlan0` (VNI, UDP port, `local` = this node's data-path address, learning **off**,
//!   ARP `proxy` **on**), created from the host namespace so its UDP socket uses the
//!   underlay, then enslaved to `br0`;
//! * one veth per local endpoint, enslaved to `br0`; the other end is the endpoint's
//!   interface (`eth0`) in the container namespace, with its IP, MAC and MTU. Only the
//!   subnet route is installed: **gateway and egress are the orchestrator's business** (it
//!   may attach the container to a bridge network for that).
//!
//! Per remote endpoint (from the `peers` table) the sandbox holds a permanent FDB entry on
//! `vxlan0` (MAC -> remote VTEP) and a permanent neighbour entry on `vxlan0` (IP -> MAC; the
//! VXLAN ARP proxy answers containers' ARP from it). Nothing is flooded and nothing learned.
//!
//! # Use
//!
//! ```no_run
//! # async fn f(desired: overlay::Desired) -> Result<(), overlay::Error> {
//! use overlay::{Executor, Names};
//! let exec = Executor::new(Names::new("swn")?, "192.168.77.1".parse().unwrap())?;
//! let report = exec.reconcile(&desired).await?; // on every change and periodically
//! for f in &report.failed {
//!     eprintln!("{}: {}", f.op, f.error);
//! }
//! # Ok(()) }
//! ```
//!
//! The planner can be used on its own ([`plan`]); [`Actual`] and [`Op`] serialize for debug
//! dumps.
//!
//! Encrypted networks (IPsec ESP between node pairs, with a fail-closed nftables guard) are
//! in [`esp`], built the same way: a pure planner and an executor on its own thread.

mod actual;
mod error;
pub mod esp;
mod executor;
pub mod mac;
mod names;
mod netlink;
mod netns;
mod op;
mod plan;
mod report;
mod spec;

pub use actual::{
    Actual, Bridge, ContainerIface, FdbEntry, NeighbourEntry, Nud, Sandbox, Veth, Vxlan,
};
pub use error::Error;
pub use executor::Executor;
pub use names::{BRIDGE_NAME, MAX_PREFIX_LEN, NETNS_RUN_DIR, Names, VXLAN_NAME, fnv1a32};
pub use op::Op;
pub use plan::plan;
pub use report::{OpFailure, Report};
pub use spec::{Desired, Handoff, LocalEndpoint, NetworkSpec, RemotePeer, valid_ifname};
