//! A generic-netlink client for the kernel's IPVS (IP Virtual Server), in rtnetlink's style:
//! builders build messages, and only `execute()` touches the socket.
//!
//! ```no_run
//! use ipvs::{Destination, Handle, Service, ServiceKey};
//! # fn main() -> Result<(), ipvs::Error> {
//! let handle = Handle::in_netns("/var/run/netns/c1")?; // Err(NotSupported) without IPVS
//! let key = ServiceKey::fwmark(0x100);
//! handle.service().add(Service::new(key)).execute()?;
//! let backend = Destination::masquerade("10.0.1.5".parse().unwrap(), 0);
//! handle.destination().add(key, backend).execute()?;
//! for svc in handle.service().list().execute()? {
//!     println!("{svc:?}: {:?}", handle.destination().list(svc.key).execute()?);
//! }
//! # Ok(()) }
//! ```
//!
//! Layers, each usable alone:
//! * [`attr`]: the attributes, one enum per nesting level, named after the kernel constants
//!   in [`constants`] (`IPVS_SVC_ATTR_FWMARK` ...), on `netlink-packet-core`'s `Nla`;
//! * [`Service`], [`Destination`], [`Info`]: values, with `to_attrs` / `from_attrs`;
//! * [`Request`]: the message of every operation, encoded with `netlink-packet-generic`'s
//!   `GenlMessage` ([`Request::to_bytes`]) — pure, no socket;
//! * [`message::parse_frames`]: splits what the kernel answers into acks, errors and
//!   messages — pure, never panics on any input;
//! * [`Handle`]: one `NETLINK_GENERIC` socket (`netlink-sys`), blocking, with a 3 s receive
//!   timeout; [`Handle::in_netns`] creates it inside another network namespace.
//!
//! Errors: [`Error::NotSupported`] when the controller does not know the family "IPVS" (the
//! kernel has no `ip_vs`; this is how a caller decides to fall back), [`Error::Kernel`] with
//! the errno for refusals (`is_exists()`, `is_not_found()`).
//!
//! Wire fixtures: `tests/fixtures/*.hex` hold every message this crate emits and parses:
//! hand-derived ones (from the uapi layout and the attribute order of `ip_vs_ctl.c`) and
//! replies captured from a real kernel's IPVS (`kernel_*.hex`, Debian's 6.1 in the kernel
//! VM, see `cluster-tests/tests/vm_ipvs.rs`). The crate is tested end to end against that
//! kernel by `tests/kernel_ipvs.rs`, run inside the VM.
//!
//! Kernel behaviour worth knowing (seen on the real kernel): the GET_DEST dump of an absent
//! service is empty, not an error; an IPv4 destination is refused with `EINVAL` in a
//! namespace without a local routing table (fresh, `lo` down, no address).

pub mod attr;
pub mod constants;
mod destination;
mod error;
mod handle;
pub mod message;
pub mod netns;
pub mod reply;
mod request;
mod service;

pub use attr::{DestAttr, IpvsAttr, ServiceFlags, StatsAttr, SvcAttr};
pub use destination::{DestConns, Destination, ForwardMethod};
pub use error::Error;
pub use handle::{Handle, RECV_TIMEOUT, SEND_TIMEOUT, lookup_family};
pub use message::{Info, IpvsMessage};
pub use request::{
    AckRequest, DestinationHandle, DestinationListRequest, InfoRequest, Request, ServiceGetRequest,
    ServiceHandle, ServiceListRequest,
};
pub use service::{Family, Protocol, Service, ServiceKey, Stats};

/// Whether this kernel has IPVS in the calling thread's network namespace: resolves the
/// generic-netlink family and returns `Ok(())`, or the reason ([`Error::NotSupported`] when
/// the family is unknown). Needs no privilege.
pub fn probe() -> Result<(), Error> {
    Handle::new().map(|_| ())
}
