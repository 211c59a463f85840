//! The crate's one error type.

use std::io;

/// Everything that can go wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel has no generic-netlink family "IPVS" (module `ip_vs` absent or not
    /// loadable): the controller answered the family lookup with `ENOENT`.
    #[error("generic netlink family \"IPVS\" not found (the kernel has no ip_vs)")]
    NotSupported,
    /// The kernel refused a request. `code` is the positive errno (`EEXIST`, `ENOENT`,
    /// `ESRCH`, `EPERM`, ...).
    #[error("kernel refused {op}: {}", io::Error::from_raw_os_error(*.code))]
    Kernel { op: &'static str, code: i32 },
    /// Socket I/O failed (create, bind, send, receive, receive timeout).
    #[error("netlink socket ({what}): {source}")]
    Socket {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// Entering the network namespace for [`crate::Handle::in_netns`] failed.
    #[error("network namespace {path}: {source}")]
    Netns {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A reply from the kernel did not parse (never a panic: the reason is in the text).
    #[error("malformed reply: {0}")]
    Decode(String),
    /// A value cannot be expressed on the wire (e.g. a scheduler name too long).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    /// The errno of a kernel refusal, if this is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The object to create already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::libc::EEXIST)
    }

    /// The object to change or delete does not exist: `ESRCH` (service) or `ENOENT`
    /// (destination).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(nix::libc::ESRCH) | Some(nix::libc::ENOENT)
        )
    }
}

impl From<netlink_packet_core::DecodeError> for Error {
    fn from(e: netlink_packet_core::DecodeError) -> Self {
        Error::Decode(e.to_string())
    }
}
