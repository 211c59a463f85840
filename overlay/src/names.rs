//! Deterministic names for everything the executor creates, so that a restarted agent
//! recognises (adopts or removes) its own objects and several agents on one machine never
//! collide.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Where named network namespaces live (`ip netns` semantics: a bind mount of an nsfs file).
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Name of the bridge inside every network sandbox.
pub const BRIDGE_NAME: &str = "br0";

/// Name of the VXLAN device inside every network sandbox.
pub const VXLAN_NAME: &str = "vxlan0";

/// Longest accepted prefix: `<prefix>` + 8 hex digits must fit `IFNAMSIZ - 1` (15).
pub const MAX_PREFIX_LEN: usize = 7;

/// The naming scheme of one agent.
///
/// Contract: two agents sharing a machine (and so the mount namespace holding
/// [`NETNS_RUN_DIR`]) must use different prefixes, and no prefix may be a different agent's
/// prefix followed by `-<digits>` (guaranteed by the character set: `-` is not allowed).
/// Everything named with this prefix is owned by the agent: a reconcile deletes such
/// objects when they are not desired.
///
/// | object | name |
/// | --- | --- |
/// | network sandbox (named netns) | `<prefix>-<vni>` under [`NETNS_RUN_DIR`] |
/// | bridge / vxlan in the sandbox | [`BRIDGE_NAME`] / [`VXLAN_NAME`] |
/// | sandbox end of an endpoint's veth | `<prefix>` + 8 lowercase hex digits of FNV-1a-32(endpoint id) |
/// | container end of the veth | the endpoint's `ifname` (chosen by the caller) |
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Names {
    /// 1 to [`MAX_PREFIX_LEN`] characters of `[a-z0-9]`, starting with a letter.
    pub prefix: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            prefix: "swn".into(),
        }
    }
}

impl Names {
    /// Checks the prefix (see the type's contract).
    pub fn new(prefix: impl Into<String>) -> Result<Self, Error> {
        let names = Names {
            prefix: prefix.into(),
        };
        names.validate()?;
        Ok(names)
    }

    /// `Ok` when the prefix obeys the character set and length rules.
    pub fn validate(&self) -> Result<(), Error> {
        let p = &self.prefix;
        let reason = if p.is_empty() || p.len() > MAX_PREFIX_LEN {
            Some(format!("must be 1 to {MAX_PREFIX_LEN} characters"))
        } else if !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            Some("only a-z and 0-9 are allowed".to_string())
        } else if !p.as_bytes()[0].is_ascii_lowercase() {
            Some("must start with a letter".to_string())
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::Invalid {
                object: format!("name prefix {p:?}"),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Name of the sandbox namespace of `vni`: `<prefix>-<vni>`.
    pub fn sandbox(&self, vni: u32) -> String {
        format!("{}-{vni}", self.prefix)
    }

    /// Path of the sandbox namespace of `vni` under [`NETNS_RUN_DIR`].
    pub fn sandbox_path(&self, vni: u32) -> PathBuf {
        PathBuf::from(NETNS_RUN_DIR).join(self.sandbox(vni))
    }

    /// The VNI of a namespace name this prefix owns (exactly `<prefix>-<vni>`, with `<vni>` in
    /// canonical decimal form), or `None` for any other name.
    pub fn parse_sandbox(&self, name: &str) -> Option<u32> {
        let digits = name.strip_prefix(self.prefix.as_str())?.strip_prefix('-')?;
        let vni: u32 = digits.parse().ok()?;
        (vni.to_string() == digits).then_some(vni)
    }

    /// Sandbox-side name of the veth of `endpoint_id`.
    pub fn veth(&self, endpoint_id: &str) -> String {
        format!("{}{:08x}", self.prefix, fnv1a32(endpoint_id.as_bytes()))
    }

    /// Whether `ifname` has the shape of a veth name of this prefix.
    pub fn is_veth(&self, ifname: &str) -> bool {
        ifname
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| {
                rest.len() == 8
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
    }
}

/// 32-bit FNV-1a. Part of the naming contract: changing it renames every veth.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefix_is_swn() {
        assert_eq!(Names::default().sandbox(256), "swn-256");
        assert_eq!(
            Names::default().sandbox_path(256),
            PathBuf::from("/var/run/netns/swn-256")
        );
    }

    #[test]
    fn fnv1a32_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn veth_names_are_deterministic_and_fit_ifnamsiz() {
        let n = Names::new("swn1234").unwrap();
        let v = n.veth("a very long endpoint identifier that goes on and on");
        assert_eq!(
            v,
            n.veth("a very long endpoint identifier that goes on and on")
        );
        assert_eq!(v.len(), 15);
        assert!(n.is_veth(&v));
        assert_ne!(n.veth("ep1"), n.veth("ep2"));
    }

    #[test]
    fn a_prefix_recognises_only_its_own_sandboxes() {
        let swn = Names::new("swn").unwrap();
        let swn1 = Names::new("swn1").unwrap();
        assert_eq!(swn.parse_sandbox("swn-256"), Some(256));
        assert_eq!(swn.parse_sandbox("swn1-256"), None);
        assert_eq!(swn1.parse_sandbox("swn-256"), None);
        assert_eq!(swn1.parse_sandbox("swn1-256"), Some(256));
        assert_eq!(swn.parse_sandbox("swn-0256"), None);
        assert_eq!(swn.parse_sandbox("swn-"), None);
        assert_eq!(swn.parse_sandbox("swn-25x"), None);
    }

    #[test]
    fn a_prefix_recognises_only_its_own_veths() {
        let swn = Names::new("swn").unwrap();
        assert!(swn.is_veth("swn0123abcd"));
        assert!(!swn.is_veth("swn0123abcde"));
        assert!(!swn.is_veth("swn0123ABCD"));
        assert!(!swn.is_veth("eth0"));
        assert!(!swn.is_veth("vxlan0"));
    }

    #[test]
    fn invalid_prefixes_are_rejected() {
        for p in ["", "swn-1", "Swn", "1swn", "swnswnsw", "sw n"] {
            assert!(Names::new(p).is_err(), "{p:?}");
        }
        assert!(Names::new("a").is_ok());
        assert!(Names::new("swn1234").is_ok());
    }
}
