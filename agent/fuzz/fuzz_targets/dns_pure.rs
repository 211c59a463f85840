//! The pure DNS files of the agent, compiled directly (paths relative to this directory).

#[path = "../../src/dns/query.rs"]
pub mod query;
#[path = "../../src/dns/zone.rs"]
pub mod zone;
