//! Multi-process cluster tests and reference measurements for swarmnet.
//!
//! [`serf`] runs HashiCorp serf agents on loopback so benchmarks can compare
//! swarmnet's gossip store against a well-known SWIM/gossip implementation in
//! the same run. [`vm`] boots qemu guests with Debian's stock kernel for the tests that
//! need kernel features the CI kernel lacks (IPVS, ESP); [`vm_agents`] runs a real agent in
//! each of several guests.

pub mod capture;
pub mod harness;
pub mod ndb;
pub mod report;
pub mod serf;
pub mod vm;
pub mod vm_agents;
pub mod xfrm_text;
