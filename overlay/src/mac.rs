//! Ethernet addresses: formatting, validity and the serde form used in debug dumps
//! (`"02:42:0a:00:00:02"`, the notation of `ip` and `bridge`).

use std::fmt::Write as _;

/// Formats `mac` as six lowercase hex octets separated by colons.
pub fn format(mac: &[u8; 6]) -> String {
    let mut s = String::with_capacity(17);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses six hex octets separated by `:` (or `-`). Returns `None` for anything else.
pub fn parse(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *slot = u8::from_str_radix(part, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

/// A MAC that may be programmed as a unicast FDB/neighbour target: not all zeros and not
/// multicast/broadcast (bit 0 of the first octet clear).
pub fn is_unicast(mac: &[u8; 6]) -> bool {
    mac != &[0; 6] && mac[0] & 1 == 0
}

/// `#[serde(with = "crate::mac::serde_str")]` for `[u8; 6]` fields.
pub mod serde_str {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serializes as `"aa:bb:cc:dd:ee:ff"`.
    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(mac))
    }

    /// Accepts `"aa:bb:cc:dd:ee:ff"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 6], D::Error> {
        let s = String::deserialize(d)?;
        super::parse(&s).ok_or_else(|| D::Error::custom(format!("invalid MAC address {s:?}")))
    }
}

/// `#[serde(with = "crate::mac::serde_opt_str")]` for `Option<[u8; 6]>` fields.
pub mod serde_opt_str {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    /// Serializes as `"aa:bb:cc:dd:ee:ff"` or `null`.
    pub fn serialize<S: Serializer>(mac: &Option<[u8; 6]>, s: S) -> Result<S::Ok, S::Error> {
        match mac {
            Some(m) => s.serialize_some(&super::format(m)),
            None => s.serialize_none(),
        }
    }

    /// Accepts `"aa:bb:cc:dd:ee:ff"` or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 6]>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            super::parse(&s).ok_or_else(|| D::Error::custom(format!("invalid MAC address {s:?}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_survives_format_then_parse() {
        let m = [0x02, 0x42, 0x0a, 0x00, 0x00, 0xff];
        assert_eq!(format(&m), "02:42:0a:00:00:ff");
        assert_eq!(parse(&format(&m)), Some(m));
    }

    #[test]
    fn malformed_macs_do_not_parse() {
        for s in [
            "",
            "02:42",
            "02:42:0a:00:00:ff:01",
            "zz:42:0a:00:00:ff",
            "002:42:0a:00:00:f",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    #[test]
    fn multicast_and_zero_macs_are_not_unicast() {
        assert!(is_unicast(&[0x02, 0, 0, 0, 0, 1]));
        assert!(!is_unicast(&[0; 6]));
        assert!(!is_unicast(&[0x01, 0, 0x5e, 0, 0, 1]));
        assert!(!is_unicast(&[0xff; 6]));
    }
}
