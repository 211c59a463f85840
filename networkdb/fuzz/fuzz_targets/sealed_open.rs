//! Feeds arbitrary bytes to `Keyring::open`, as an unauthenticated peer payload would arrive,
//! with a keyed ring (an AES-128 primary and an AES-256 secondary) and with an empty ring
//! (clear mode). Opening must never panic; whatever opens goes on to `wire::decode`, the rest
//! of the receive path.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use networkdb::Keyring;
use networkdb::wire;

const LIMIT: usize = 1 << 20;

fn keyed() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| Keyring::new(&[vec![0x42; 16], (0u8..32).collect()]).expect("valid keys"))
}

fuzz_target!(|data: &[u8]| {
    let keyed = keyed();
    if let Ok(frame) = keyed.open(data) {
        // Only reachable with a forged tag: worth a crash report on its own.
        panic!(
            "random payload of {} bytes authenticated: {frame:?}",
            data.len()
        );
    }
    match Keyring::default().open(data) {
        Ok(frame) => {
            assert_eq!(
                data.first(),
                Some(&0),
                "only clear payloads open without keys"
            );
            assert_eq!(&frame[..], &data[1..]);
            let _ = wire::decode(&frame, LIMIT);
        }
        Err(_) => assert_ne!(data.first(), Some(&0)),
    }
});
