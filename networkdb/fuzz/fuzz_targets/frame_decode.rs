//! Feeds arbitrary bytes to `wire::decode`, as a peer's datagram or stream frame would arrive
//! (after opening). Decoding must never panic; an accepted table frame must survive a round
//! trip: re-encoding the decoded message and decoding again yields the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use networkdb::wire::{self, Frame};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    match wire::decode(data, LIMIT) {
        Ok(Frame::Table(msg)) => {
            // Postcard accepts some non-canonical input (e.g. overlong varints), so compare
            // values, not bytes.
            let again = wire::encode(&msg);
            // The canonical encoding is never longer than an accepted one.
            assert!(again.len() <= data.len(), "re-encoding grew the frame");
            match wire::decode(&again, LIMIT) {
                Ok(Frame::Table(back)) => {
                    assert_eq!(back, msg, "table frame round trip");
                    // The canonical encoding is a fixed point.
                    assert_eq!(wire::encode(&back), again);
                }
                other => panic!("re-encoded table frame decodes to {other:?}"),
            }
        }
        Ok(Frame::Foca(packet)) => assert_eq!(wire::encode_foca(packet), data),
        Err(_) => {}
    }
});
