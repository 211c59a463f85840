//! The `Watch` API: this agent's view of the cluster (networks, services, endpoints,
//! members) as a stream of revisioned changes, resumable after a disconnect.
//!
//! | file | concept |
//! | --- | --- |
//! | [`log`] | pure: the view by key, diffed into revisioned changes, the last ones kept |
//! | [`hub`] | [`Hub`]: recomputes the view on every table or membership change and serves streams |
//!
//! The view is level-based: the hub recomputes the whole view from the agent's read
//! operations (the same ones List and Members answer from) and records the difference, so a
//! change can never be missed, whatever path led to it.

pub mod hub;
pub mod log;

pub use hub::Hub;
pub use log::{Change, Key, Kind, Log, Object};
