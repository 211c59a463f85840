//! Capability probes: can this host run encrypted networks?
//!
//! The agent runs [`probe`] once at start, publishes the result in the `nodes` table (the
//! `esp` capability and [`LAYOUT_VERSION`](super::LAYOUT_VERSION)), and refuses to attach
//! an endpoint to an encrypted network when it failed, with the probe's reason in the error.
//! Each probe works in a throwaway network namespace owned by a short-lived thread: nothing
//! is left behind, whatever happens (the namespace dies with the thread).

use std::net::Ipv4Addr;

use netlink_packet_xfrm::{Alg, XFRM_ALG_NAME_LEN, XfrmAttrs, XfrmMessage};
use nix::sched::{CloneFlags, unshare};

use super::xfrm::{self, RequestError, XfrmSocket};
use super::{GuardRule, SaKey, guard};
use crate::Error;

/// What [`probe`] found.
#[derive(Debug)]
pub struct EspSupport {
    /// [`probe_esp`]'s result.
    pub esp: Result<(), Error>,
    /// [`probe_guard`]'s result.
    pub guard: Result<(), Error>,
}

impl EspSupport {
    /// Both probes passed: this node may attach to encrypted networks.
    pub fn is_supported(&self) -> bool {
        self.esp.is_ok() && self.guard.is_ok()
    }

    /// The first reason encrypted networks cannot be used here, if any.
    pub fn reason(&self) -> Option<String> {
        match (&self.esp, &self.guard) {
            (Err(e), _) | (Ok(()), Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }
}

/// Runs [`probe_esp`] and [`probe_guard`].
pub fn probe() -> EspSupport {
    EspSupport {
        esp: probe_esp(),
        guard: probe_guard(),
    }
}

const ESP: &str = "IPsec ESP";
const GUARD: &str = "the nftables guard of encrypted networks";

fn unsupported(feature: &'static str, reason: impl Into<String>, errno: Option<i32>) -> Error {
    Error::Unsupported {
        feature,
        reason: reason.into(),
        errno,
    }
}

/// Runs `f` on a new thread inside a new, empty network namespace.
fn in_throwaway_netns<T: Send + 'static>(
    feature: &'static str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let t = std::thread::Builder::new()
        .name("esp-probe".into())
        .spawn(move || {
            unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
                unsupported(
                    feature,
                    format!(
                        "cannot create a throwaway network namespace to probe in ({e}; needs \
                         CAP_SYS_ADMIN)"
                    ),
                    Some(e as i32),
                )
            })?;
            f()
        })
        .map_err(|e| unsupported(feature, format!("cannot start the probe thread: {e}"), None))?;
    t.join()
        .unwrap_or_else(|_| Err(unsupported(feature, "the probe thread panicked", None)))
}

/// Why the kernel refused the probe SA, in words, with what to install or enable.
fn esp_reason(op: &str, e: &RequestError) -> (String, Option<i32>) {
    match e {
        RequestError::Decode(d) => (format!("{op}: {d}"), None),
        RequestError::Errno(n) => {
            let why = match *n {
                93 => "the kernel has no ESP (CONFIG_INET_ESP: module esp4)",
                38 => {
                    "the kernel lacks the AEAD rfc4106(gcm(aes)) (CONFIG_CRYPTO_GCM: modules \
                     gcm, ghash-generic, aes)"
                }
                2 => {
                    "the kernel could not set up rfc4106(gcm(aes)): an IV generator or random \
                     number source is missing (modules seqiv, drbg, jitterentropy_rng, \
                     sha512_generic)"
                }
                1 | 13 => "not permitted (needs CAP_NET_ADMIN)",
                22 => {
                    "the kernel rejected the SA as invalid (extended sequence numbers with an \
                     AEAD need Linux 3.x or later)"
                }
                _ => "the kernel refused it",
            };
            (format!("{op}: {why} ({e})"), Some(*n))
        }
    }
}

/// Tries to create and delete a throwaway ESP SA exactly like the executor's
/// (`rfc4106(gcm(aes))`, 128-bit ICV, transport mode, ESN) in a throwaway namespace.
/// `Err(`[`Error::Unsupported`]`)` says why it failed.
pub fn probe_esp() -> Result<(), Error> {
    in_throwaway_netns(ESP, || {
        let mut sock = XfrmSocket::open().map_err(|e| {
            let (reason, errno) = match e {
                RequestError::Errno(93) => (
                    "no xfrm netlink interface (CONFIG_XFRM_USER: module xfrm_user)".to_string(),
                    Some(93),
                ),
                other => (format!("cannot open an xfrm netlink socket: {other}"), None),
            };
            unsupported(ESP, reason, errno)
        })?;
        let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let spi = 0x0000_0100;
        let key = SaKey::from_bytes((1..=20).collect());
        if let Err(e) = sock.request(xfrm::new_sa_raw(src, dst, spi, 1, &key)) {
            let (mut reason, errno) = esp_reason("create a test SA", &e);
            if e == RequestError::Errno(38) {
                // The AEAD lookup comes first: say whether ESP itself is there too.
                match sock.request(null_cipher_sa(src, dst, spi)) {
                    Ok(()) => {
                        let _ = sock.request(xfrm::del_sa(src, dst, spi));
                        reason.push_str("; ESP itself works (with a null cipher)");
                    }
                    Err(e2) => {
                        let (r2, _) = esp_reason("an ESP SA with a null cipher", &e2);
                        reason.push_str("; ");
                        reason.push_str(&r2);
                    }
                }
            }
            return Err(unsupported(ESP, reason, errno));
        }
        sock.request(xfrm::del_sa(src, dst, spi)).map_err(|e| {
            let (reason, errno) = esp_reason("delete the test SA", &e);
            unsupported(ESP, reason, errno)
        })
    })
}

/// An ESP SA with `ecb(cipher_null)`: needs no crypto beyond the ESP type itself.
fn null_cipher_sa(src: Ipv4Addr, dst: Ipv4Addr, spi: u32) -> XfrmMessage {
    let mut m = xfrm::new_sa_raw(src, dst, spi, 1, &SaKey::from_bytes(Vec::new()));
    if let XfrmMessage::AddSa(sa) = &mut m {
        let mut name = [0u8; XFRM_ALG_NAME_LEN];
        name[..16].copy_from_slice(b"ecb(cipher_null)");
        sa.user_sa_info.flags = 0;
        sa.nlas = vec![XfrmAttrs::EncryptionAlg(Alg {
            alg_name: name,
            alg_key_len: 0,
            alg_key: Vec::new(),
        })];
    }
    m
}

/// Loads a guard table with one rule into a throwaway namespace with `nft`, reads it back
/// and checks it parses as written. Fails when `nft` is missing or the kernel rejects an
/// expression (nf_tables, `rt ipsec`, `meta secpath`, raw transport payload).
pub fn probe_guard() -> Result<(), Error> {
    in_throwaway_netns(GUARD, || {
        let rule = GuardRule { port: 4789, vni: 1 };
        let fail = |e: Error| unsupported(GUARD, e.to_string(), None);
        guard::apply_guard_script(&guard::render_guard(&[rule])).map_err(fail)?;
        let g = guard::read_guard().map_err(fail)?;
        let ok = g.is_some_and(|g| g.well_formed && g.rules.len() == 2);
        if ok {
            Ok(())
        } else {
            Err(unsupported(
                GUARD,
                "nft accepted the guard table but lists it differently than written",
                None,
            ))
        }
    })
}
