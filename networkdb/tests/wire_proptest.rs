//! Property tests of the wire codec, the keyring and the digest hashes.
//!
//! Peer input reaches `wire::decode` and `Keyring::open` unauthenticated (and, with no keys,
//! unencrypted), so both must return an error rather than panic on any bytes.

use networkdb::keyring::{Keyring, OVERHEAD};
use networkdb::types::{EntryRecord, NodeId};
use networkdb::wire::{
    self, BUCKETS, BucketDigest, BucketRef, Frame, Gossip, Message, NetworkDigest, OwnerBuckets,
    OwnerDigest, OwnerRef, Sync, TAG_FOCA, TAG_TABLE, WIRE_VERSION,
};
use proptest::collection::vec;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn node_id() -> impl Strategy<Value = NodeId> {
    // Bias towards the varint length boundaries as well as arbitrary values.
    prop_oneof![
        any::<u64>(),
        Just(0u64),
        Just(127u64),
        Just(128u64),
        Just(u64::MAX),
    ]
    .prop_map(NodeId)
}

fn u64_edge() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), 0u64..300, Just(u64::MAX)]
}

fn name() -> impl Strategy<Value = String> {
    // Mostly short ASCII names, sometimes arbitrary (multi-byte) unicode.
    prop_oneof![
        3 => "[a-z0-9/._-]{0,12}",
        1 => any::<String>(),
    ]
}

fn entry() -> impl Strategy<Value = EntryRecord> {
    (
        name(),
        name(),
        name(),
        node_id(),
        u64_edge(),
        proptest::option::of(vec(any::<u8>(), 0..64)),
        u64_edge(),
    )
        .prop_map(
            |(network, table, key, owner, version, value, ttl_ms)| EntryRecord {
                network,
                table,
                key,
                owner,
                version,
                value,
                ttl_ms,
            },
        )
}

fn owner_digest() -> impl Strategy<Value = OwnerDigest> {
    (node_id(), any::<u32>(), any::<u64>()).prop_map(|(owner, count, hash)| OwnerDigest {
        owner,
        count,
        hash,
    })
}

fn bucket_digest() -> impl Strategy<Value = BucketDigest> {
    (any::<u16>(), any::<u32>(), any::<u64>()).prop_map(|(bucket, count, hash)| BucketDigest {
        bucket,
        count,
        hash,
    })
}

fn sync_msg() -> impl Strategy<Value = Sync> {
    (
        node_id(),
        u64_edge(),
        vec(
            (name(), vec(owner_digest(), 0..4))
                .prop_map(|(network, owners)| NetworkDigest { network, owners }),
            0..4,
        ),
        vec(entry(), 0..4),
        vec(
            (name(), node_id()).prop_map(|(network, owner)| OwnerRef { network, owner }),
            0..4,
        ),
        vec(
            (name(), node_id(), vec(bucket_digest(), 0..4)).prop_map(
                |(network, owner, buckets)| OwnerBuckets {
                    network,
                    owner,
                    buckets,
                },
            ),
            0..3,
        ),
        vec(
            (name(), node_id(), vec(any::<u16>(), 0..8)).prop_map(|(network, owner, buckets)| {
                BucketRef {
                    network,
                    owner,
                    buckets,
                }
            }),
            0..3,
        ),
    )
        .prop_map(
            |(from, clock, digests, entries, want_all, buckets, want_buckets)| Sync {
                from,
                addr: (clock % 2 == 0).then(|| std::net::SocketAddr::from(([127, 0, 0, 9], 7946))),
                members_hash: (clock % 3 == 0).then_some(clock.rotate_left(7)),
                members: if clock % 5 == 0 {
                    vec![foca::Member::alive(networkdb::Peer {
                        id: from,
                        addr: std::net::SocketAddr::from(([127, 0, 0, 3], 7946)),
                        generation: clock,
                    })]
                } else {
                    Vec::new()
                },
                want_members: clock % 7 == 0,
                clock,
                digests,
                entries,
                want_all,
                buckets,
                want_buckets,
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (node_id(), u64_edge(), vec(entry(), 0..6)).prop_map(|(from, clock, entries)| {
            Message::Gossip(Gossip {
                from,
                clock,
                entries,
            })
        }),
        sync_msg().prop_map(Message::Sync),
    ]
}

/// Bytes that reach deep into the decoder: fully random, or a table-frame header followed by
/// random bytes, or a valid frame with a few bytes overwritten and possibly cut or extended.
fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        1 => vec(any::<u8>(), 0..256).prop_map(|body| {
            let mut f = vec![TAG_TABLE, WIRE_VERSION];
            f.extend(body);
            f
        }),
        3 => (
            message(),
            vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            proptest::option::weighted(0.25, any::<prop::sample::Index>()),
            prop_oneof![3 => Just(vec![]), 1 => vec(any::<u8>(), 1..4)],
        )
            .prop_map(|(msg, edits, cut, extra)| {
                let mut f = wire::encode(&msg);
                for (at, byte) in edits {
                    let i = at.index(f.len());
                    f[i] = byte;
                }
                if let Some(cut) = cut {
                    f.truncate(cut.index(f.len()).max(1));
                }
                f.extend(extra);
                f
            }),
    ]
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 16), vec(any::<u8>(), 32)]
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn messages_round_trip(msg in message()) {
        let frame = wire::encode(&msg);
        prop_assert_eq!(&frame[..2], &[TAG_TABLE, WIRE_VERSION]);
        let decoded = wire::decode(&frame, frame.len());
        prop_assert_eq!(&decoded, &Ok(Frame::Table(msg.clone())));
        // Re-encoding the decoded value is byte-identical.
        let Ok(Frame::Table(back)) = decoded else { unreachable!() };
        prop_assert_eq!(wire::encode(&back), frame);
    }

    #[test]
    fn foca_packets_round_trip(packet in vec(any::<u8>(), 0..512)) {
        let frame = wire::encode_foca(&packet);
        prop_assert_eq!(frame[0], TAG_FOCA);
        prop_assert_eq!(wire::decode(&frame, frame.len()), Ok(Frame::Foca(&packet[..])));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in frame_bytes(),
        limit in prop_oneof![3 => Just(usize::MAX), 1 => 0usize..512],
    ) {
        match wire::decode(&bytes, limit) {
            Ok(Frame::Table(msg)) => {
                prop_assert!(bytes.len() <= limit);
                // Accepted input need not be canonical, but what it decodes to must survive a
                // round trip unchanged.
                let again = wire::encode(&msg);
                prop_assert_eq!(wire::decode(&again, again.len()), Ok(Frame::Table(msg)));
            }
            Ok(Frame::Foca(packet)) => {
                prop_assert!(bytes.len() <= limit);
                prop_assert_eq!(wire::encode_foca(packet), bytes.clone());
            }
            Err(_) => {}
        }
    }

    #[test]
    fn sealed_payloads_open_to_the_frame(
        payload in vec(any::<u8>(), 0..2048),
        primary in key(),
        other in key(),
        seed in any::<u64>(),
    ) {
        let ring = Keyring::new(std::slice::from_ref(&primary)).unwrap();
        let sealed = ring.seal(&payload, &mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(sealed.len(), payload.len() + OVERHEAD);
        prop_assert_eq!(sealed[0], 1);
        prop_assert_eq!(ring.open(&sealed).unwrap(), payload.clone());
        // A ring holding the key as a secondary opens it too (rotation).
        let rotated = Keyring::new(&[other.clone(), primary.clone()]).unwrap();
        prop_assert_eq!(rotated.open(&sealed).unwrap(), payload.clone());
        // A ring without the key, or without any key, does not.
        if other != primary {
            prop_assert!(Keyring::new(&[other]).unwrap().open(&sealed).is_err());
        }
        prop_assert!(Keyring::default().open(&sealed).is_err());
        // Clear payloads round-trip only when no key is configured.
        let clear = Keyring::default().seal(&payload, &mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(clear.len(), payload.len() + 1);
        prop_assert_eq!(Keyring::default().open(&clear).unwrap(), payload);
        prop_assert!(ring.open(&clear).is_err());
    }

    #[test]
    fn any_single_byte_change_breaks_a_sealed_payload(
        payload in vec(any::<u8>(), 0..256),
        k in key(),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let ring = Keyring::new(&[k]).unwrap();
        let mut sealed = ring.seal(&payload, &mut StdRng::seed_from_u64(seed));
        let i = at.index(sealed.len());
        sealed[i] ^= flip;
        prop_assert!(ring.open(&sealed).is_err(), "byte {} ^ {:#x} still opens", i, flip);
    }

    #[test]
    fn opening_arbitrary_bytes_never_panics(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..128),
            // Sealed marker with a body around the nonce + tag minimum.
            vec(any::<u8>(), 0..64).prop_map(|b| { let mut p = vec![1u8]; p.extend(b); p }),
        ],
        k in key(),
    ) {
        let keyed = Keyring::new(&[k]).unwrap();
        // Random bytes essentially never authenticate; what matters is an error, not a panic.
        let _ = keyed.open(&bytes);
        match Keyring::default().open(&bytes) {
            Ok(frame) => {
                prop_assert_eq!(bytes[0], 0);
                prop_assert_eq!(&frame[..], &bytes[1..]);
            }
            Err(_) => prop_assert!(bytes.first() != Some(&0)),
        }
    }

    #[test]
    fn fingerprint_and_bucket_are_deterministic(e in entry(), ttl in any::<u64>()) {
        let f = wire::fingerprint(&e);
        prop_assert_eq!(f, wire::fingerprint(&e.clone()));
        // The ttl is a per-node residual: it must not make digests of equal entries differ.
        prop_assert_eq!(f, wire::fingerprint(&EntryRecord { ttl_ms: ttl, ..e.clone() }));
        let b = wire::bucket_of(&e.table, &e.key);
        prop_assert!(b < BUCKETS);
        prop_assert_eq!(b, wire::bucket_of(&e.table.clone(), &e.key.clone()));
    }

    #[test]
    fn fingerprint_sees_the_state(e in entry()) {
        // A newer version or a deletion is a different state, so the digest must change
        // (a 64-bit collision here would be a bug in the hash, not bad luck).
        let bumped = EntryRecord { version: e.version.wrapping_add(1), ..e.clone() };
        prop_assert_ne!(wire::fingerprint(&e), wire::fingerprint(&bumped));
        if e.value.is_some() {
            let deleted = EntryRecord { value: None, ..e.clone() };
            prop_assert_ne!(wire::fingerprint(&e), wire::fingerprint(&deleted));
        }
    }
}
