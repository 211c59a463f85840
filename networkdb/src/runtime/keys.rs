//! The node's keys: the [`Keyring`] that seals and opens, plus keys removed moments ago that
//! still open (never seal) for [`REMOVED_KEY_GRACE`].
//!
//! The grace makes a rotation (add the new key everywhere, make it primary everywhere, remove
//! the old one everywhere) lose nothing even when its steps follow each other at once: a
//! payload sealed with the old key just before its sender switched may still wait in a
//! receiver's socket, or in a task reading a stream, when that receiver removes the old key.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use crate::error::Error;
use crate::keyring::Keyring;

/// How long a removed key still opens payloads.
pub const REMOVED_KEY_GRACE: Duration = Duration::from_secs(2);

/// How a payload was opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// With a key of the ring.
    Ring(Vec<u8>),
    /// With a key removed less than [`REMOVED_KEY_GRACE`] ago.
    Removed(Vec<u8>),
}

#[derive(Debug, Default)]
pub(crate) struct Keys {
    ring: Keyring,
    /// Removed keys, each in a ring of its own, with the end of its grace.
    removed: Vec<(Keyring, Instant)>,
}

impl Keys {
    pub fn new(ring: Keyring) -> Keys {
        Keys {
            ring,
            removed: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn seal(&self, frame: &[u8], rng: &mut impl RngExt) -> Vec<u8> {
        self.ring.seal(frame, rng)
    }

    pub fn open(&self, payload: &[u8], now: Instant) -> Result<Opened, Error> {
        match self.ring.open(payload) {
            Ok(frame) => Ok(Opened::Ring(frame)),
            Err(e) => self
                .removed
                .iter()
                .filter(|(_, until)| now < *until)
                .find_map(|(ring, _)| ring.open(payload).ok())
                .map(Opened::Removed)
                .ok_or(e),
        }
    }

    pub fn add(&mut self, key: &[u8]) -> Result<(), Error> {
        self.ring.add(key)
    }

    pub fn set_primary(&mut self, key: &[u8]) -> Result<(), Error> {
        self.ring.set_primary(key)
    }

    /// Remove a key from the ring; it keeps opening payloads until the grace ends. Removing
    /// the last key makes payloads travel in clear, so no grace applies then: a clear ring
    /// refuses sealed payloads anyway.
    pub fn remove(&mut self, key: &[u8], now: Instant) -> Result<(), Error> {
        self.ring.remove(key)?;
        self.removed.retain(|(_, until)| now < *until);
        if !self.ring.is_empty() {
            self.removed
                .push((Keyring::new(&[key.to_vec()])?, now + REMOVED_KEY_GRACE));
        }
        Ok(())
    }
}

pub(crate) fn read(keys: &RwLock<Keys>) -> RwLockReadGuard<'_, Keys> {
    // Every update is a single call that leaves the keys consistent even if it panicked
    // half-way (it would have returned an error first), so a poisoned lock is still usable.
    keys.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write(keys: &RwLock<Keys>) -> RwLockWriteGuard<'_, Keys> {
    keys.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_key_opens_for_its_grace_only_and_never_seals() {
        let (old, new) = (vec![1u8; 16], vec![2u8; 16]);
        let sender = Keyring::new(std::slice::from_ref(&old)).unwrap();
        let sealed = sender.seal(b"hello", &mut rand::rng());
        let mut keys = Keys::new(Keyring::new(&[old.clone(), new.clone()]).unwrap());
        keys.set_primary(&new).unwrap();
        let t0 = Instant::now();
        keys.remove(&old, t0).unwrap();
        assert_eq!(
            keys.open(&sealed, t0).unwrap(),
            Opened::Removed(b"hello".to_vec())
        );
        assert!(keys.open(&sealed, t0 + REMOVED_KEY_GRACE).is_err());
        // What this node seals opens only with the new key.
        let ours = keys.seal(b"x", &mut rand::rng());
        assert!(sender.open(&ours).is_err());
        assert_eq!(keys.len(), 1);
    }
}
