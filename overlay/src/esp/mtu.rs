//! The MTU of an encrypted overlay network.
//!
//! ESP in transport mode with `rfc4106(gcm(aes))` and a 16-byte ICV wraps the protected
//! bytes (UDP header + VXLAN header + inner Ethernet frame) as
//! `ESP header (SPI, sequence: 8) ‖ IV (8) ‖ protected ‖ padding (0..=3) ‖ pad length,
//! next header (2) ‖ ICV (16)`, with the padding aligning protected + 2 to 4 bytes.
//! The outer IP header is the one VXLAN already counts.

/// Bytes ESP adds besides the padding: 8 header + 8 IV + 2 trailer + 16 ICV.
pub const ESP_FIXED_OVERHEAD: u32 = 34;

/// Most bytes ESP adds (with 3 bytes of padding).
pub const ESP_MAX_OVERHEAD: u32 = ESP_FIXED_OVERHEAD + 3;

/// The largest inner MTU of an encrypted network whose unencrypted MTU would be
/// `vxlan_mtu` (underlay route MTU - 50 for VXLAN over IPv4, - 70 over IPv6): the largest
/// `m` with `m + 34 + padding(m) <= vxlan_mtu`, which is `(vxlan_mtu - 34)` rounded down to
/// a multiple of 4 (protected bytes are `m + 30`, so `m % 4 == 0` needs no padding).
///
/// Examples: 1450 -> 1416, 1430 (IPv6 underlay of 1500) -> 1396, 8950 -> 8916. Returns 0
/// when `vxlan_mtu` is too small for any payload.
pub fn encrypted_mtu(vxlan_mtu: u32) -> u32 {
    vxlan_mtu.saturating_sub(ESP_FIXED_OVERHEAD) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outer packet length for an inner MTU `m` over an underlay with a 20-byte IP header.
    fn outer_len(m: u32) -> u32 {
        let protected = 8 + 8 + 14 + m; // UDP + VXLAN + Ethernet + inner packet
        let pad = (4 - (protected + 2) % 4) % 4;
        20 + 8 + 8 + protected + pad + 2 + 16
    }

    #[test]
    fn the_encrypted_mtu_is_the_largest_that_fits_the_underlay() {
        for underlay in 200..=9100u32 {
            let vxlan = underlay - 50;
            let m = encrypted_mtu(vxlan);
            assert!(
                outer_len(m) <= underlay,
                "underlay {underlay}: {m} does not fit"
            );
            assert!(
                outer_len(m + 1) > underlay
                    && outer_len(m + 2) > underlay
                    && outer_len(m + 3) > underlay,
                "underlay {underlay}: {m} is not the largest"
            );
        }
    }

    #[test]
    fn common_underlays_give_the_documented_mtus() {
        assert_eq!(encrypted_mtu(1450), 1416);
        assert_eq!(encrypted_mtu(1430), 1396);
        assert_eq!(encrypted_mtu(8950), 8916);
        assert_eq!(encrypted_mtu(20), 0);
    }
}
