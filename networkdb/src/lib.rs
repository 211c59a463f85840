//! networkdb: swarmnet's replicated, eventually consistent table store.
//!
//! Entries `(network, table, key) -> value` are owned by the node that wrote them, versioned
//! with Lamport times (last writer wins; ties broken by owner, then content), deleted with
//! tombstones, and spread by eager push plus bounded gossip rounds. Anti-entropy with a random
//! peer per network, digest first, repairs whatever gossip lost. Membership and failure
//! detection come from foca; entries of a node that is down are suspended (hidden, kept) and
//! restored when it returns. Entries of *durable* tables ([`Config::durable_tables`]) describe
//! the cluster rather than their writer: they are never suspended or reaped with it, any node
//! may update or delete them, and every node saves and restores them
//! ([`Core::restore`], [`runtime::NodeConfig::durable_path`]).
//!
//! The [`Core`] is sans-IO: time, randomness and packets are inputs, effects go through the
//! [`Runtime`] trait. [`runtime`] drives it with tokio, UDP and TCP, sealing every frame with
//! the [`Keyring`].

pub mod config;
pub mod core;
pub mod effects;
pub mod error;
pub mod keyring;
mod queue;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
pub mod stats;
mod store;
pub mod types;
pub mod wire;

pub use crate::config::Config;
pub use crate::core::{ATTACH_TABLE, Core, MemberInfo};
pub use crate::effects::{
    Effects, Event, EventKind, MemberEvent, Notification, Runtime, Timer, Transport,
};
pub use crate::error::{Error, WireError};
pub use crate::keyring::Keyring;
pub use crate::stats::Stats;
pub use crate::types::{CLUSTER, EntryRecord, NetworkId, NodeId, Peer};
