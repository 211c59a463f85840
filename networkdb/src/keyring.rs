//! Sealing of every gossip payload (UDP and TCP) with AES-GCM under a keyring.
//!
//! Layout of a sealed payload: `[1][nonce: 12][ciphertext + tag: 16]`; with no key configured
//! payloads travel as `[0][frame]` and a node with keys refuses them. Sending uses the primary
//! key; opening tries the primary, then every other key, so a rotation (add the new key
//! everywhere, switch the primary, remove the old key) never drops a packet.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use rand::RngExt;

use crate::error::Error;

const CLEAR: u8 = 0;
const SEALED: u8 = 1;
const NONCE: usize = 12;
/// Bytes a sealed payload adds to the frame.
pub const OVERHEAD: usize = 1 + NONCE + 16;

#[derive(Clone)]
enum Cipher {
    A128(Box<Aes128Gcm>),
    A256(Box<Aes256Gcm>),
}

#[derive(Clone)]
struct Key {
    bytes: Vec<u8>,
    cipher: Cipher,
}

/// A set of AES-GCM keys (16 or 32 bytes) with one primary.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<Key>,
    primary: usize,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .field("primary", &self.primary)
            .finish()
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: "key",
        reason: reason.into(),
    }
}

impl Keyring {
    /// A keyring whose first key is the primary.
    pub fn new(keys: &[Vec<u8>]) -> Result<Keyring, Error> {
        let mut ring = Keyring::default();
        for k in keys {
            ring.add(k)?;
        }
        Ok(ring)
    }

    /// True when no key is configured: payloads travel in clear.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Add a key (ignored if present). The first key added becomes the primary.
    pub fn add(&mut self, key: &[u8]) -> Result<(), Error> {
        if self.position(key).is_some() {
            return Ok(());
        }
        let cipher = match key.len() {
            16 => Cipher::A128(Box::new(
                Aes128Gcm::new_from_slice(key).map_err(|e| bad(e.to_string()))?,
            )),
            32 => Cipher::A256(Box::new(
                Aes256Gcm::new_from_slice(key).map_err(|e| bad(e.to_string()))?,
            )),
            n => return Err(bad(format!("must be 16 or 32 bytes, got {n}"))),
        };
        self.keys.push(Key {
            bytes: key.to_vec(),
            cipher,
        });
        Ok(())
    }

    /// Make a key already in the ring the primary.
    pub fn set_primary(&mut self, key: &[u8]) -> Result<(), Error> {
        self.primary = self
            .position(key)
            .ok_or_else(|| bad("not in the keyring"))?;
        Ok(())
    }

    /// Remove a key. The primary cannot be removed while other keys remain (switch first).
    pub fn remove(&mut self, key: &[u8]) -> Result<(), Error> {
        let i = self
            .position(key)
            .ok_or_else(|| bad("not in the keyring"))?;
        if i == self.primary && self.keys.len() > 1 {
            return Err(bad("is the primary: make another key primary first"));
        }
        self.keys.remove(i);
        if self.primary > i {
            self.primary -= 1;
        }
        if self.primary >= self.keys.len() {
            self.primary = 0;
        }
        Ok(())
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.bytes == key)
    }

    /// Seal a frame with the primary key (or mark it clear when the ring is empty).
    pub fn seal(&self, frame: &[u8], rng: &mut impl RngExt) -> Vec<u8> {
        let Some(key) = self.keys.get(self.primary) else {
            let mut out = Vec::with_capacity(frame.len() + 1);
            out.push(CLEAR);
            out.extend_from_slice(frame);
            return out;
        };
        let nonce: [u8; NONCE] = rng.random();
        let n = Nonce::from_slice(&nonce);
        let ct = match &key.cipher {
            Cipher::A128(c) => c.encrypt(n, frame),
            Cipher::A256(c) => c.encrypt(n, frame),
        }
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(OVERHEAD + frame.len());
        out.push(SEALED);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Open a sealed payload with any key of the ring. Clear payloads open only when the ring
    /// is empty.
    pub fn open(&self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        match payload.split_first() {
            Some((&CLEAR, frame)) if self.keys.is_empty() => Ok(frame.to_vec()),
            Some((&CLEAR, _)) => Err(Error::Seal(
                "clear payload refused: keys are configured".into(),
            )),
            Some((&SEALED, _)) if self.keys.is_empty() => Err(Error::Seal(
                "sealed payload but no key is configured".into(),
            )),
            Some((&SEALED, rest)) if rest.len() >= NONCE + 16 => {
                let (nonce, ct) = rest.split_at(NONCE);
                let n = Nonce::from_slice(nonce);
                let order = std::iter::once(self.primary)
                    .chain((0..self.keys.len()).filter(|i| *i != self.primary));
                for i in order {
                    let pt = match &self.keys[i].cipher {
                        Cipher::A128(c) => c.decrypt(n, ct),
                        Cipher::A256(c) => c.decrypt(n, ct),
                    };
                    if let Ok(pt) = pt {
                        return Ok(pt);
                    }
                }
                Err(Error::Seal("no key in the ring opens the payload".into()))
            }
            _ => Err(Error::Seal("malformed payload".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn a_payload_sealed_with_the_primary_opens_with_any_ring_holding_that_key() {
        let a = Keyring::new(&[vec![1; 16]]).unwrap();
        let b = Keyring::new(&[vec![2; 32], vec![1; 16]]).unwrap();
        let sealed = a.seal(b"hello", &mut rng());
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(b.open(&sealed).unwrap(), b"hello");
    }

    #[test]
    fn a_payload_does_not_open_without_its_key_or_when_tampered() {
        let a = Keyring::new(&[vec![1; 16]]).unwrap();
        let c = Keyring::new(&[vec![3; 16]]).unwrap();
        let mut sealed = a.seal(b"hello", &mut rng());
        assert!(c.open(&sealed).is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(a.open(&sealed).is_err());
    }

    #[test]
    fn clear_payloads_are_refused_once_keys_are_configured() {
        let clear = Keyring::default();
        let keyed = Keyring::new(&[vec![1; 16]]).unwrap();
        let p = clear.seal(b"x", &mut rng());
        assert_eq!(clear.open(&p).unwrap(), b"x");
        assert!(keyed.open(&p).is_err());
        assert!(clear.open(&keyed.seal(b"x", &mut rng())).is_err());
    }

    #[test]
    fn the_primary_cannot_be_removed_until_another_key_is_primary() {
        let mut r = Keyring::new(&[vec![1; 16], vec![2; 16]]).unwrap();
        assert!(r.remove(&[1; 16]).is_err());
        r.set_primary(&[2; 16]).unwrap();
        r.remove(&[1; 16]).unwrap();
        assert_eq!(r.len(), 1);
        assert!(Keyring::new(&[vec![1; 7]]).is_err());
    }
}
