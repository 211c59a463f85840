//! What the sans-IO core asks of the world: the [`Runtime`] trait, timers, notifications.

use std::net::SocketAddr;
use std::time::Duration;

use crate::types::{NetworkId, NodeId, Peer};

/// The core's gateway to the world, in foca's style. The tokio runtime and the deterministic
/// simulator implement it. Calls happen synchronously inside core methods; implementations
/// queue or act, they never call back into the core.
pub trait Runtime {
    /// Deliver an (unsealed) frame to `to`. [`Transport::Datagram`] frames are at most
    /// `Config::max_packet` bytes; [`Transport::Stream`] frames at most `Config::max_stream`.
    fn send(&mut self, to: SocketAddr, transport: Transport, frame: Vec<u8>);
    /// Call `Core::handle_timer(timer)` once `after` has passed. Every timer must be delivered.
    fn schedule(&mut self, after: Duration, timer: Timer);
    /// A change watchers may care about.
    fn notify(&mut self, notification: Notification);
}

impl<R: Runtime + ?Sized> Runtime for &mut R {
    fn send(&mut self, to: SocketAddr, transport: Transport, frame: Vec<u8>) {
        (**self).send(to, transport, frame)
    }
    fn schedule(&mut self, after: Duration, timer: Timer) {
        (**self).schedule(after, timer)
    }
    fn notify(&mut self, notification: Notification) {
        (**self).notify(notification)
    }
}

/// A [`Runtime`] that only collects effects, in the order the core emitted them; its owner
/// carries them out once the core call returns (the tokio runtime and the simulator both do).
#[derive(Debug, Default)]
pub struct Effects {
    pub sends: Vec<(SocketAddr, Transport, Vec<u8>)>,
    pub timers: Vec<(Duration, Timer)>,
    pub notes: Vec<Notification>,
}

impl Runtime for Effects {
    fn send(&mut self, to: SocketAddr, transport: Transport, frame: Vec<u8>) {
        self.sends.push((to, transport, frame));
    }
    fn schedule(&mut self, after: Duration, timer: Timer) {
        self.timers.push((after, timer));
    }
    fn notify(&mut self, notification: Notification) {
        self.notes.push(notification);
    }
}

/// How a frame travels: datagrams are best effort (UDP); streams are reliable (TCP) and used
/// for messages larger than a datagram, such as a catch-up sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Datagram,
    Stream,
}

/// Timers the core schedules through [`Runtime::schedule`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timer {
    /// A foca timer, handed back to foca.
    Foca(foca::Timer<Peer>),
    /// Send what was queued for eager push (scheduled with zero delay so that writes made in
    /// one burst share packets).
    Flush,
    /// A gossip round over the retransmit queues.
    Gossip,
    /// Anti-entropy with a random peer per network.
    Sync,
    /// Expire tombstones and reap nodes that stayed down.
    Reap,
    /// Re-announce to seeds while none of them is a live member.
    Rejoin,
}

/// Kind of an entry change as watchers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    Create,
    Update,
    Delete,
}

/// A visible change of one entry. `old` is the value watchers saw before (None for Create),
/// `new` the value they see now (None for Delete).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub network: NetworkId,
    pub table: String,
    pub key: String,
    pub owner: NodeId,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
}

/// A membership change of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberEvent {
    pub peer: Peer,
    pub up: bool,
}

/// Notifications emitted through [`Runtime::notify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notification {
    Entry(Event),
    Member(MemberEvent),
}
