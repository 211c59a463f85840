//! The crate's error type.

use crate::types::NetworkId;

/// Errors from decoding a frame. Peer input: counted and dropped, never a panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    #[error("unknown wire version {0}")]
    UnknownVersion(u8),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Errors of networkdb's API and runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("not a member of network {0:?}: join it first")]
    NotMember(NetworkId),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("membership: {0}")]
    Membership(String),
    #[error("sealing: {0}")]
    Seal(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the networkdb runtime has stopped")]
    Stopped,
    #[error("durable tables file {path}: {reason}")]
    Persist {
        path: std::path::PathBuf,
        reason: String,
    },
}
