//! The `swarmnet` agent: daemon, CLI client, embedded DNS resolver, load balancer, IPAM and
//! API server.
//!
//! Not written yet: it arrives with issue "The agent and the overlay". Until then the
//! networkdb example (`cargo run -p networkdb --example cluster`) is the runnable demo.
