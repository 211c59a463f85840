//! The [`Runtime`] the core task hands to the core: it only collects effects, which the core
//! task carries out right after the core call returns.

use std::net::SocketAddr;
use std::time::Duration;

use crate::effects::{Notification, Runtime, Timer, Transport};

/// Effects of one core call, in the order the core emitted them.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub sends: Vec<(SocketAddr, Transport, Vec<u8>)>,
    pub timers: Vec<(Duration, Timer)>,
    pub notes: Vec<Notification>,
}

impl Runtime for Outbox {
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
