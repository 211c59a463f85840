//! Multi-process cluster tests and reference measurements for swarmnet.
//!
//! [`serf`] runs HashiCorp serf agents on loopback so benchmarks can compare
//! swarmnet's gossip store against a well-known SWIM/gossip implementation in
//! the same run.

pub mod harness;
pub mod ndb;
pub mod report;
pub mod serf;
