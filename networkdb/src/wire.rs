//! Frames on the wire.
//!
//! Every datagram and every stream message is one frame: a tag byte, then the body.
//! Tag [`TAG_FOCA`] carries a foca packet unchanged; tag [`TAG_TABLE`] carries a version byte
//! ([`WIRE_VERSION`]) and a postcard-encoded [`Message`]. Frames are sealed (see
//! `keyring`) after encoding and opened before decoding; this module never sees keys.
//!
//! Decoding never panics and never allocates more than the input's length would allow:
//! the frame is size-checked first, and postcard bounds every length prefix by the bytes left.

use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::types::{EntryRecord, NetworkId, NodeId, Peer};

/// Frame tag of a foca (membership) packet.
pub const TAG_FOCA: u8 = 1;
/// Frame tag of a networkdb table message.
pub const TAG_TABLE: u8 = 2;
/// Version of the table message encoding. A receiver drops other versions and counts them.
pub const WIRE_VERSION: u8 = 1;
/// Number of hash buckets an owner's entries are split into when digests differ.
pub const BUCKETS: u16 = 256;

/// A networkdb table message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub enum Message {
    /// Entries pushed by their writer or relayed by a node that learnt them.
    Gossip(Gossip),
    /// One step of an anti-entropy exchange. Every step is self-describing, so the exchange
    /// needs no session state: a receiver applies `entries`, answers `digests` with what the
    /// sender lacks plus bucket hashes for owners that differ, answers `buckets` with entries
    /// of differing buckets (and asks for the sender's), and answers `want_*` with entries.
    Sync(Sync),
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct Gossip {
    pub from: NodeId,
    /// The sender's Lamport clock, witnessed by the receiver.
    pub clock: u64,
    pub entries: Vec<EntryRecord>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug, Default)]
pub struct Sync {
    pub from: NodeId,
    /// The sender's gossip address, where replies go (a stream's source port is ephemeral,
    /// and the sender may not be a member the receiver knows yet).
    pub addr: Option<std::net::SocketAddr>,
    pub clock: u64,
    /// Step 1: per network, per owner, a count and an order-independent hash of entries.
    pub digests: Vec<NetworkDigest>,
    /// Entries the receiver lacks (or may lack).
    pub entries: Vec<EntryRecord>,
    /// Owners of whom the sender has nothing: send all their entries.
    pub want_all: Vec<OwnerRef>,
    /// Bucket hashes of owners whose digests differed: compare and exchange differing buckets.
    pub buckets: Vec<OwnerBuckets>,
    /// Buckets whose entries the sender wants.
    pub want_buckets: Vec<BucketRef>,
    /// Hash of the sender's membership view (itself and every member it holds alive or
    /// suspect, by id, address and generation). A receiver whose view differs answers with
    /// `members` and `want_members`.
    pub members_hash: Option<u64>,
    /// The sender's membership state (foca's), fed to the receiver's foca: anti-entropy of
    /// membership, so a node learns every member within a sync instead of waiting to be
    /// probed by it.
    pub members: Vec<foca::Member<Peer>>,
    /// The sender wants the receiver's `members`.
    pub want_members: bool,
}

impl Sync {
    /// True when the message asks nothing and carries nothing.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
            && self.entries.is_empty()
            && self.want_all.is_empty()
            && self.buckets.is_empty()
            && self.want_buckets.is_empty()
            && self.members_hash.is_none()
            && self.members.is_empty()
            && !self.want_members
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct NetworkDigest {
    pub network: NetworkId,
    pub owners: Vec<OwnerDigest>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug, Default)]
pub struct OwnerDigest {
    pub owner: NodeId,
    pub count: u32,
    pub hash: u64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct OwnerRef {
    pub network: NetworkId,
    pub owner: NodeId,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct OwnerBuckets {
    pub network: NetworkId,
    pub owner: NodeId,
    /// Non-empty buckets only, ascending by bucket number.
    pub buckets: Vec<BucketDigest>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct BucketDigest {
    pub bucket: u16,
    pub count: u32,
    pub hash: u64,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Debug)]
pub struct BucketRef {
    pub network: NetworkId,
    pub owner: NodeId,
    pub buckets: Vec<u16>,
}

/// A decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A foca packet, to be handed to foca as is.
    Foca(&'a [u8]),
    Table(Message),
}

/// Encode a table message as a frame.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = vec![TAG_TABLE, WIRE_VERSION];
    // Encoding into a Vec cannot fail for these types (no maps with non-string keys,
    // no sequences of unknown length).
    out.extend(postcard::to_stdvec(msg).expect("postcard encoding into a Vec is infallible"));
    out
}

/// Wrap a foca packet as a frame.
pub fn encode_foca(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 1);
    out.push(TAG_FOCA);
    out.extend_from_slice(packet);
    out
}

/// Decode one frame of at most `limit` bytes.
pub fn decode(bytes: &[u8], limit: usize) -> Result<Frame<'_>, WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    match bytes.split_first() {
        None => Err(WireError::Empty),
        Some((&TAG_FOCA, rest)) => Ok(Frame::Foca(rest)),
        Some((&TAG_TABLE, rest)) => match rest.split_first() {
            Some((&WIRE_VERSION, body)) => {
                let (msg, tail) = postcard::take_from_bytes::<Message>(body)
                    .map_err(|e| WireError::Malformed(e.to_string()))?;
                if !tail.is_empty() {
                    return Err(WireError::TrailingBytes(tail.len()));
                }
                Ok(Frame::Table(msg))
            }
            Some((&v, _)) => Err(WireError::UnknownVersion(v)),
            None => Err(WireError::Malformed("missing version byte".into())),
        },
        Some((&tag, _)) => Err(WireError::UnknownTag(tag)),
    }
}

/// Stable 64-bit fingerprint of an entry's identity and state, used by digests. It must be
/// identical on every node and every build, so it is FNV-1a with a splitmix64 finaliser, not
/// `std`'s hasher.
pub fn fingerprint(e: &EntryRecord) -> u64 {
    let mut h = Fnv::new();
    h.write(e.table.as_bytes());
    h.write(&[0xff]);
    h.write(e.key.as_bytes());
    h.write(&[0xff]);
    h.write(&e.owner.0.to_le_bytes());
    h.write(&e.version.to_le_bytes());
    match &e.value {
        None => h.write(&[0]),
        Some(v) => {
            h.write(&[1]);
            h.write(v);
        }
    }
    mix(h.0)
}

/// Stable 64-bit hash of a byte string (FNV-1a, splitmix64 finaliser).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    mix(h.0)
}

/// Bucket of a (table, key): stable across nodes.
pub fn bucket_of(table: &str, key: &str) -> u16 {
    let mut h = Fnv::new();
    h.write(table.as_bytes());
    h.write(&[0xff]);
    h.write(key.as_bytes());
    (mix(h.0) % u64::from(BUCKETS)) as u16
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
