//! The crate's one error type. Every variant names the object and the operation.

use std::io;

/// Errors of validation, namespace handling and netlink operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The desired state or configuration is invalid; nothing was applied.
    #[error("invalid {object}: {reason}")]
    Invalid {
        /// What is wrong, e.g. `endpoint "ep1"`.
        object: String,
        /// Why.
        reason: String,
    },

    /// A system call (namespace switch, mount, file) failed.
    #[error("{op} {object}: {source}")]
    Io {
        /// The operation, e.g. `"enter namespace"`.
        op: &'static str,
        /// The object, e.g. `"/var/run/netns/swn-256"`.
        object: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The kernel refused a netlink request (or the netlink socket failed).
    #[error("{op} {object}: {source}")]
    Netlink {
        /// The operation, e.g. `"create vxlan"`.
        op: &'static str,
        /// The object, e.g. `"vxlan0 in swn-256"`.
        object: String,
        /// The netlink error (use [`Error::errno`] for the code).
        #[source]
        source: rtnetlink::Error,
    },

    /// An object the operation needs does not exist.
    #[error("{op} {object}: not found")]
    NotFound {
        /// The operation.
        op: &'static str,
        /// The missing object.
        object: String,
    },

    /// The kernel refused an xfrm (IPsec SA or policy) request, or the xfrm socket failed.
    #[error("{op} {object}: {reason}")]
    Xfrm {
        /// The operation, e.g. `"add sa"`.
        op: &'static str,
        /// The object, e.g. `"10.0.0.1 -> 10.0.0.2 spi 0x1234abcd"`.
        object: String,
        /// Positive errno, when the kernel gave one.
        errno: Option<i32>,
        /// Why, in words.
        reason: String,
    },

    /// The nftables guard of encrypted networks could not be read or written.
    #[error("{op}: {detail}")]
    Guard {
        /// What was attempted, e.g. `"nft -f (table inet swarmnet_esp)"`.
        op: String,
        /// nft's message or the reason it could not run.
        detail: String,
    },

    /// This host cannot do what encrypted networks need (see [`crate::esp::probe_esp`]).
    #[error("{feature} is not supported here: {reason}")]
    Unsupported {
        /// The missing capability, e.g. `"IPsec ESP"`.
        feature: &'static str,
        /// Why, with what to install or enable.
        reason: String,
        /// Positive errno of the failed attempt, if any.
        errno: Option<i32>,
    },

    /// Not attempted because the sandbox it acts in could not be created.
    #[error("skipped: sandbox {sandbox} could not be created")]
    SandboxUnavailable {
        /// The sandbox namespace name.
        sandbox: String,
    },

    /// The executor's thread is gone (it stopped after an unrecoverable namespace error,
    /// or panicked). Create a new executor.
    #[error("the overlay executor thread has stopped: {0}")]
    ExecutorGone(String),
}

impl Error {
    /// The positive errno of an OS or netlink failure, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Netlink { source, .. } => netlink_errno(source),
            Error::Xfrm { errno, .. } | Error::Unsupported { errno, .. } => *errno,
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, object: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op,
            object: object.into(),
            source,
        }
    }

    pub(crate) fn nix(op: &'static str, object: impl Into<String>, e: nix::Error) -> Self {
        Error::Io {
            op,
            object: object.into(),
            source: io::Error::from_raw_os_error(e as i32),
        }
    }

    pub(crate) fn netlink(
        op: &'static str,
        object: impl Into<String>,
        source: rtnetlink::Error,
    ) -> Self {
        Error::Netlink {
            op,
            object: object.into(),
            source,
        }
    }
}

/// The positive errno carried by a netlink error message.
pub(crate) fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get().abs()),
        _ => None,
    }
}
