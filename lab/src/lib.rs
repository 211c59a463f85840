//! Test and demo support for swarmnet (no production crate depends on it):
//!
//! | module | concept |
//! | --- | --- |
//! | [`netns`] (re-exported here) | the network-namespace lab: an underlay switch, hosts, containers, faults |
//! | [`testbed`] | real `swarmnet agent` processes in the lab's hosts, driven through the CLI |
//! | [`demo`] | `swarmnet demo` (the agent binary's `demo` feature) |
//! | [`whoami`] | a tiny server answering with its name and the caller's address |
//! | [`stub_dns`] | a tiny authoritative DNS server: the upstream of the resolver's tests |

pub mod demo;
pub mod netns;
pub mod stub_dns;
pub mod testbed;
pub mod whoami;

pub use netns::*;
