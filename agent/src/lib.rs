//! The `swarmnet` agent: daemon, CLI client, embedded DNS resolver, load balancer, IPAM and
//! API server.

pub mod lab;
