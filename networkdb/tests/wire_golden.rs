//! Golden byte fixtures for every frame networkdb puts on the wire.
//!
//! Each fixture under `tests/fixtures/wire/` is hex text (comment lines start with `#`). Every
//! test decodes the fixture to the expected value *and* encodes the value to exactly the
//! fixture's bytes, so any change of the encoding (field order, integer encoding, tags, the
//! sealed layout) fails here before it can split a cluster running mixed builds.
//!
//! A deliberate encoding change must bump `wire::WIRE_VERSION`; regenerate the fixtures with
//!
//! ```text
//! UPDATE_FIXTURES=1 cargo test -p networkdb --test wire_golden
//! ```
//!
//! and review the diff of `tests/fixtures/wire/`.

use std::fmt::Write as _;
use std::path::PathBuf;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};
use networkdb::error::WireError;
use networkdb::keyring::{Keyring, OVERHEAD};
use networkdb::types::{EntryRecord, NodeId};
use networkdb::wire::{
    self, BUCKETS, BucketDigest, BucketRef, Frame, Gossip, Message, NetworkDigest, OwnerBuckets,
    OwnerDigest, OwnerRef, Sync, TAG_FOCA, TAG_TABLE, WIRE_VERSION,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const LIMIT: usize = 64 * 1024;
const REGENERATE: &str = "regenerate: UPDATE_FIXTURES=1 cargo test -p networkdb --test wire_golden";

// ---------------------------------------------------------------------------------------------
// Fixture files
// ---------------------------------------------------------------------------------------------

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wire")
        .join(format!("{name}.hex"))
}

fn updating() -> bool {
    std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| !v.is_empty() && v != "0")
}

fn to_hex_lines(bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in bytes.chunks(16) {
        let words: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

fn parse_hex(name: &str, text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "fixture {name}: odd number of hex digits"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .unwrap_or_else(|e| panic!("fixture {name}: bad hex at digit {i}: {e}"))
        })
        .collect()
}

/// Reads fixture `name`; with `UPDATE_FIXTURES=1` writes `produced` to it first.
fn load(name: &str, description: &str, produced: &[u8]) -> Vec<u8> {
    let path = fixture_path(name);
    if updating() {
        let mut text = String::new();
        for line in description.lines() {
            writeln!(text, "# {line}").unwrap();
        }
        writeln!(text, "# {} bytes; {REGENERATE}", produced.len()).unwrap();
        text.push_str(&to_hex_lines(produced));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} missing ({e}); {REGENERATE}", path.display()));
    parse_hex(name, &text)
}

/// Asserts that `produced` is exactly the fixture's bytes, with a readable diff if not.
fn assert_bytes(name: &str, fixture: &[u8], produced: &[u8]) {
    if fixture == produced {
        return;
    }
    let at = fixture
        .iter()
        .zip(produced)
        .position(|(a, b)| a != b)
        .unwrap_or(fixture.len().min(produced.len()));
    panic!(
        "encoding of {name} changed (first difference at byte {at}; fixture {} bytes, \
         encoded {} bytes).\nIf intended, bump WIRE_VERSION and {REGENERATE}\n\
         fixture:\n{}encoded:\n{}",
        fixture.len(),
        produced.len(),
        to_hex_lines(fixture),
        to_hex_lines(produced),
    );
}

/// The full golden check of a table message: the fixture decodes to `msg`, and `msg` encodes
/// to exactly the fixture.
fn golden_table(name: &str, description: &str, msg: &Message) -> Vec<u8> {
    let encoded = wire::encode(msg);
    let fixture = load(name, description, &encoded);
    assert_eq!(fixture[0], TAG_TABLE, "fixture {name}: tag");
    assert_eq!(fixture[1], WIRE_VERSION, "fixture {name}: version");
    assert_eq!(
        wire::decode(&fixture, LIMIT),
        Ok(Frame::Table(msg.clone())),
        "fixture {name} no longer decodes to the expected message"
    );
    assert_bytes(name, &fixture, &encoded);
    fixture
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// Ids wide enough that their varints take every length class.
const A: NodeId = NodeId(0x1122_3344_5566_7788);
const B: NodeId = NodeId(0x00a1);
const C: NodeId = NodeId(u64::MAX);

fn live() -> EntryRecord {
    EntryRecord {
        network: "net-1".into(),
        table: "endpoints".into(),
        key: "svc/web.1".into(),
        owner: A,
        version: 300,
        value: Some(vec![0xde, 0xad, 0xbe, 0xef, 0x00, 0x7f, 0x80, 0xff]),
        ttl_ms: 0,
    }
}

fn tombstone() -> EntryRecord {
    EntryRecord {
        network: networkdb::types::CLUSTER.into(),
        table: "nodes".into(),
        key: "é".into(),
        owner: B,
        version: 1,
        value: None,
        ttl_ms: 1_800_000,
    }
}

fn gossip(entries: Vec<EntryRecord>) -> Message {
    Message::Gossip(Gossip {
        from: A,
        clock: 1_000_000,
        entries,
    })
}

fn sync() -> Sync {
    Sync {
        from: B,
        addr: Some("127.0.0.2:7946".parse().expect("address")),
        clock: 42,
        ..Sync::default()
    }
}

fn sync_digests() -> Message {
    Message::Sync(Sync {
        digests: vec![
            NetworkDigest {
                network: "".into(),
                owners: vec![
                    OwnerDigest {
                        owner: A,
                        count: 3,
                        hash: 0x0123_4567_89ab_cdef,
                    },
                    OwnerDigest {
                        owner: C,
                        count: 0,
                        hash: 0,
                    },
                ],
            },
            NetworkDigest {
                network: "net-1".into(),
                owners: vec![],
            },
        ],
        members_hash: Some(0x0fed_cba9_8765_4321),
        members: vec![foca::Member::new(
            networkdb::Peer {
                id: A,
                addr: "127.0.0.1:7946".parse().expect("address"),
                generation: 1_700_000_000_000,
            },
            2,
            foca::State::Suspect,
        )],
        want_members: true,
        ..sync()
    })
}

fn sync_entries_want_all() -> Message {
    Message::Sync(Sync {
        entries: vec![live(), tombstone()],
        want_all: vec![
            OwnerRef {
                network: "net-1".into(),
                owner: C,
            },
            OwnerRef {
                network: "".into(),
                owner: B,
            },
        ],
        ..sync()
    })
}

fn sync_buckets() -> Message {
    Message::Sync(Sync {
        buckets: vec![OwnerBuckets {
            network: "net-1".into(),
            owner: A,
            buckets: vec![
                BucketDigest {
                    bucket: 0,
                    count: 1,
                    hash: 7,
                },
                BucketDigest {
                    bucket: 127,
                    count: 128,
                    hash: u64::MAX,
                },
                BucketDigest {
                    bucket: BUCKETS - 1,
                    count: 70_000,
                    hash: 0x8000_0000_0000_0000,
                },
            ],
        }],
        ..sync()
    })
}

fn sync_want_buckets() -> Message {
    Message::Sync(Sync {
        want_buckets: vec![
            BucketRef {
                network: "net-1".into(),
                owner: A,
                buckets: vec![0, 127, 128, BUCKETS - 1],
            },
            BucketRef {
                network: "".into(),
                owner: B,
                buckets: vec![],
            },
        ],
        ..sync()
    })
}

const ENTRY_DESC: &str = "live = {network \"net-1\", table \"endpoints\", key \"svc/web.1\", \
owner 1122334455667788, version 300, value de ad be ef 00 7f 80 ff, ttl_ms 0}; \
tombstone = {network \"\" (cluster), table \"nodes\", key \"\\u{e9}\", owner 00000000000000a1, \
version 1, value None, ttl_ms 1800000}";

// ---------------------------------------------------------------------------------------------
// Frame fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn foca_frame() {
    // Not a real foca packet: the frame carries foca's bytes unchanged, whatever they are.
    let packet: &[u8] = &[
        0x00,
        0x01,
        0x02,
        0x03,
        0x80,
        0xff,
        TAG_FOCA,
        TAG_TABLE,
        WIRE_VERSION,
    ];
    let encoded = wire::encode_foca(packet);
    let fixture = load(
        "foca",
        "foca frame: TAG_FOCA (01) followed by the foca packet unchanged \
         (packet = 00 01 02 03 80 ff 01 02 01)",
        &encoded,
    );
    assert_eq!(wire::decode(&fixture, LIMIT), Ok(Frame::Foca(packet)));
    assert_bytes("foca", &fixture, &encoded);

    // An empty foca packet is still a frame (foca rejects it, not the wire layer).
    assert_eq!(wire::encode_foca(&[]), [TAG_FOCA]);
    assert_eq!(wire::decode(&[TAG_FOCA], LIMIT), Ok(Frame::Foca(&[])));
}

#[test]
fn gossip_without_entries() {
    let fixture = golden_table(
        "gossip_empty",
        "Message::Gossip {from 1122334455667788, clock 1000000, entries []}\n\
         layout: 02 TAG_TABLE, 01 WIRE_VERSION, 00 variant Gossip, from (varint), \
         clock (varint), 00 entry count",
        &gossip(vec![]),
    );
    // Spot-check the postcard layout the comment describes.
    assert_eq!(&fixture[..3], &[TAG_TABLE, WIRE_VERSION, 0]);
    assert_eq!(fixture.last(), Some(&0));
}

#[test]
fn gossip_with_one_live_entry() {
    golden_table(
        "gossip_one",
        &format!(
            "Message::Gossip {{from 1122334455667788, clock 1000000, entries [live]}}\n{ENTRY_DESC}"
        ),
        &gossip(vec![live()]),
    );
}

#[test]
fn gossip_with_a_live_entry_and_a_tombstone() {
    golden_table(
        "gossip_two",
        &format!(
            "Message::Gossip {{from 1122334455667788, clock 1000000, entries [live, tombstone]}}\n{ENTRY_DESC}"
        ),
        &gossip(vec![live(), tombstone()]),
    );
}

#[test]
fn sync_with_digests_and_membership() {
    golden_table(
        "sync_digests",
        "Message::Sync {from 00000000000000a1, clock 42, digests [\
         {network \"\", owners [{1122334455667788, count 3, hash 0123456789abcdef}, \
         {ffffffffffffffff, count 0, hash 0}]}, {network \"net-1\", owners []}], \
         members_hash 0fedcba987654321, members [1122334455667788@127.0.0.1:7946 generation \
         1700000000000 incarnation 2 suspect], want_members, everything else empty}",
        &sync_digests(),
    );
}

#[test]
fn sync_with_entries_and_want_all() {
    golden_table(
        "sync_entries_want_all",
        &format!(
            "Message::Sync {{from 00000000000000a1, clock 42, entries [live, tombstone], \
             want_all [{{\"net-1\", ffffffffffffffff}}, {{\"\", 00000000000000a1}}], \
             everything else empty}}\n{ENTRY_DESC}"
        ),
        &sync_entries_want_all(),
    );
}

#[test]
fn sync_with_buckets() {
    golden_table(
        "sync_buckets",
        "Message::Sync {from 00000000000000a1, clock 42, buckets [{network \"net-1\", \
         owner 1122334455667788, buckets [{0, count 1, hash 7}, {127, count 128, \
         hash ffffffffffffffff}, {255, count 70000, hash 8000000000000000}]}], \
         everything else empty}",
        &sync_buckets(),
    );
}

#[test]
fn sync_with_want_buckets() {
    golden_table(
        "sync_want_buckets",
        "Message::Sync {from 00000000000000a1, clock 42, want_buckets [{\"net-1\", \
         1122334455667788, [0, 127, 128, 255]}, {\"\", 00000000000000a1, []}], \
         everything else empty}",
        &sync_want_buckets(),
    );
}

#[test]
fn empty_sync() {
    let msg = Message::Sync(sync());
    let fixture = golden_table(
        "sync_empty",
        "Message::Sync {from 00000000000000a1, addr 127.0.0.2:7946, clock 42, all five lists empty}\n\
         layout: 02 TAG_TABLE, 01 WIRE_VERSION, 01 variant Sync, from (varint a1 01), \
         addr (01 Some, 00 V4, 7f 00 00 02, port varint 8a 3e), clock (2a), five 00 list counts, 00 members_hash None, 00 members, 00 want_members",
        &msg,
    );
    assert_eq!(
        fixture,
        [
            TAG_TABLE,
            WIRE_VERSION,
            1,
            0xa1,
            0x01,
            1,
            0,
            127,
            0,
            0,
            2,
            0x8a,
            0x3e,
            42,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0
        ]
    );
    let Message::Sync(s) = msg else {
        unreachable!()
    };
    assert!(s.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Sealed payloads
// ---------------------------------------------------------------------------------------------

const SEED: u64 = 0x5eed;
const KEY128: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

fn key256() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn seeded() -> StdRng {
    StdRng::seed_from_u64(SEED)
}

fn sealed_frame() -> Vec<u8> {
    wire::encode(&gossip(vec![live()]))
}

#[test]
fn clear_payload_layout() {
    let frame = sealed_frame();
    let sealed = Keyring::default().seal(&frame, &mut seeded());
    let fixture = load(
        "sealed_clear",
        "payload with no key configured: 00 (clear marker) + the gossip_one frame",
        &sealed,
    );
    assert_eq!(fixture[0], 0, "clear marker");
    assert_eq!(&fixture[1..], &frame[..]);
    assert_eq!(Keyring::default().open(&fixture).unwrap(), frame);
    assert_bytes("sealed_clear", &fixture, &sealed);
}

/// Checks a sealed fixture: `[1][nonce 12][ciphertext][tag 16]`, opened independently of the
/// keyring with `decrypt`.
fn golden_sealed(
    name: &str,
    key: &[u8],
    decrypt: impl Fn(&Nonce<aes_gcm::aead::consts::U12>, &mut Vec<u8>, &Tag) -> bool,
) {
    let frame = sealed_frame();
    let ring = Keyring::new(&[key.to_vec()]).unwrap();
    let sealed = ring.seal(&frame, &mut seeded());
    let fixture = load(
        name,
        &format!(
            "payload sealed with AES-{}-GCM, key {}, nonce from StdRng::seed_from_u64({SEED:#x})\n\
             layout: 01 (sealed marker), 12-byte nonce, ciphertext of the gossip_one frame \
             (same length), 16-byte GCM tag; no associated data",
            key.len() * 8,
            key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ),
        &sealed,
    );

    // Layout.
    assert_eq!(fixture.len(), frame.len() + OVERHEAD);
    assert_eq!(OVERHEAD, 1 + 12 + 16);
    assert_eq!(fixture[0], 1, "sealed marker");
    let nonce: [u8; 12] = seeded().random();
    assert_eq!(
        &fixture[1..13],
        &nonce,
        "the nonce is the rng's first 12 bytes"
    );
    let (ct, tag) = fixture[13..].split_at(frame.len());
    assert_ne!(ct, &frame[..], "the frame is encrypted");

    // Independent decryption: ciphertext then detached tag, no associated data.
    let mut buf = ct.to_vec();
    assert!(
        decrypt(Nonce::from_slice(&nonce), &mut buf, Tag::from_slice(tag)),
        "{name}: AES-GCM with the tag as the last 16 bytes does not authenticate"
    );
    assert_eq!(buf, frame);

    // The keyring opens it, alone or as a secondary key, and the frame decodes.
    assert_eq!(ring.open(&fixture).unwrap(), frame);
    let rotated = Keyring::new(&[vec![9; 32], key.to_vec()]).unwrap();
    assert_eq!(rotated.open(&fixture).unwrap(), frame);
    assert_eq!(
        wire::decode(&ring.open(&fixture).unwrap(), LIMIT),
        Ok(Frame::Table(gossip(vec![live()])))
    );

    // Sealing is deterministic given the rng. (StdRng's stream is only stable within one rand
    // release: if this alone fails after a rand upgrade, the wire is fine; regenerate.)
    assert_bytes(name, &fixture, &sealed);
}

#[test]
fn sealed_payload_layout_aes128() {
    golden_sealed("sealed_aes128", &KEY128, |n, buf, tag| {
        Aes128Gcm::new_from_slice(&KEY128)
            .unwrap()
            .decrypt_in_place_detached(n, b"", buf, tag)
            .is_ok()
    });
}

#[test]
fn sealed_payload_layout_aes256() {
    golden_sealed("sealed_aes256", &key256(), |n, buf, tag| {
        Aes256Gcm::new_from_slice(&key256())
            .unwrap()
            .decrypt_in_place_detached(n, b"", buf, tag)
            .is_ok()
    });
}

// ---------------------------------------------------------------------------------------------
// Digest hashes: identical on every node and every build
// ---------------------------------------------------------------------------------------------

#[test]
fn fingerprint_and_bucket_values_are_pinned() {
    // These feed anti-entropy digests compared across nodes: a change here makes every
    // mixed-version pair of nodes see all owners as differing.
    let got = [
        wire::fingerprint(&live()),
        wire::fingerprint(&tombstone()),
        u64::from(wire::bucket_of("endpoints", "svc/web.1")),
        u64::from(wire::bucket_of("nodes", "é")),
        u64::from(wire::bucket_of("", "")),
    ];
    let text: String = got.iter().map(|v| format!("{v:016x}")).collect();
    let fixture = load(
        "hashes",
        "not a frame: pinned digest hashes, each a big-endian u64\n\
         fingerprint(live), fingerprint(tombstone), bucket_of(\"endpoints\", \"svc/web.1\"), \
         bucket_of(\"nodes\", \"\\u{e9}\"), bucket_of(\"\", \"\")",
        &parse_hex("hashes", &text),
    );
    assert_bytes("hashes", &fixture, &parse_hex("hashes", &text));
}

// ---------------------------------------------------------------------------------------------
// Decode errors: peer input, so a typed error and never a panic
// ---------------------------------------------------------------------------------------------

fn valid_frame() -> Vec<u8> {
    wire::encode(&gossip(vec![live(), tombstone()]))
}

#[test]
fn an_empty_frame_is_empty() {
    assert_eq!(wire::decode(&[], LIMIT), Err(WireError::Empty));
    assert_eq!(wire::decode(&[], 0), Err(WireError::Empty));
}

#[test]
fn an_unknown_tag_is_reported() {
    for tag in [0u8, 3, 0x7f, 0xff] {
        assert_eq!(wire::decode(&[tag], LIMIT), Err(WireError::UnknownTag(tag)));
        let mut frame = valid_frame();
        frame[0] = tag;
        assert_eq!(wire::decode(&frame, LIMIT), Err(WireError::UnknownTag(tag)));
    }
}

#[test]
fn an_unknown_version_is_reported() {
    for v in [0u8, 2, 0xff] {
        let mut frame = valid_frame();
        frame[1] = v;
        assert_eq!(
            wire::decode(&frame, LIMIT),
            Err(WireError::UnknownVersion(v))
        );
        assert_eq!(
            wire::decode(&[TAG_TABLE, v], LIMIT),
            Err(WireError::UnknownVersion(v))
        );
    }
}

#[test]
fn a_table_frame_without_version_is_malformed() {
    assert!(matches!(
        wire::decode(&[TAG_TABLE], LIMIT),
        Err(WireError::Malformed(_))
    ));
}

#[test]
fn every_truncation_of_a_message_is_malformed() {
    for msg in [
        gossip(vec![live(), tombstone()]),
        sync_digests(),
        sync_entries_want_all(),
        sync_buckets(),
        sync_want_buckets(),
        Message::Sync(sync()),
    ] {
        let frame = wire::encode(&msg);
        for len in 2..frame.len() {
            let got = wire::decode(&frame[..len], LIMIT);
            assert!(
                matches!(got, Err(WireError::Malformed(_))),
                "{msg:?} cut to {len} of {} bytes gave {got:?}",
                frame.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_are_reported() {
    for extra in [1usize, 3, 100] {
        let mut frame = valid_frame();
        frame.extend(std::iter::repeat_n(0u8, extra));
        assert_eq!(
            wire::decode(&frame, LIMIT),
            Err(WireError::TrailingBytes(extra))
        );
    }
    let mut frame = wire::encode(&Message::Sync(sync()));
    frame.push(0xff);
    assert_eq!(
        wire::decode(&frame, LIMIT),
        Err(WireError::TrailingBytes(1))
    );
}

#[test]
fn a_frame_over_the_limit_is_too_large() {
    let frame = valid_frame();
    let len = frame.len();
    assert!(
        wire::decode(&frame, len).is_ok(),
        "a frame at the limit is fine"
    );
    assert_eq!(
        wire::decode(&frame, len - 1),
        Err(WireError::TooLarge {
            len,
            limit: len - 1
        })
    );
    // The size check comes first, whatever the content.
    let foca = wire::encode_foca(&[0; 100]);
    assert_eq!(
        wire::decode(&foca, 100),
        Err(WireError::TooLarge {
            len: 101,
            limit: 100
        })
    );
    assert_eq!(
        wire::decode(&[0xff, 0xff], 1),
        Err(WireError::TooLarge { len: 2, limit: 1 })
    );
}

#[test]
fn corrupt_bodies_are_malformed_not_panics() {
    let head = [TAG_TABLE, WIRE_VERSION];
    let cases: &[(&str, &[u8])] = &[
        ("unknown message variant", &[2]),
        (
            "variant varint overflow",
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ),
        // Gossip { from 1, clock 1, entries: 2^63 of them } — must not allocate.
        (
            "huge entry count",
            &[
                0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
        ),
        // Gossip with one entry whose network string claims 2^32 bytes.
        (
            "huge string length",
            &[0, 1, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x10],
        ),
        // Gossip with one entry whose network is invalid UTF-8.
        ("invalid utf-8", &[0, 1, 1, 1, 2, 0xc3, 0x28]),
        // A u64 varint of 11 bytes.
        (
            "overlong varint",
            &[
                0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
        ),
        // Entry with Option tag 2 for `value`.
        ("bad option tag", &[0, 1, 1, 1, 0, 0, 0, 1, 1, 2, 0]),
    ];
    for (what, body) in cases {
        let frame: Vec<u8> = head.iter().chain(body.iter()).copied().collect();
        let got = wire::decode(&frame, LIMIT);
        assert!(
            matches!(got, Err(WireError::Malformed(_))),
            "{what}: {got:?}"
        );
    }
}

#[test]
fn bucket_count_is_part_of_the_protocol() {
    // Bucket numbers travel in BucketDigest/BucketRef: every node must agree on BUCKETS.
    assert_eq!(BUCKETS, 256);
    assert_eq!((TAG_FOCA, TAG_TABLE, WIRE_VERSION), (1, 2, 1));
}
