//! The socket side: a [`Handle`] owns one `NETLINK_GENERIC` socket bound to the network
//! namespace it was created in, plus the resolved IPVS family id.

use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use netlink_packet_core::ParseableParametrized;
use netlink_packet_generic::GenlHeader;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

use crate::Error;
use crate::constants::IPVS_GENL_NAME;
use crate::message::{FamilyReply, Frame, IpvsMessage, family_request, parse_frames};
use crate::request::{AckRequest, DestinationHandle, InfoRequest, Request, ServiceHandle};

/// How long one receive waits for the kernel before the request fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a send may block.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on datagrams read for one request (a dump of ~100k services fits).
const MAX_DATAGRAMS: usize = 1 << 16;

/// A connection to the IPVS of one network namespace. Blocking. Requests from several
/// threads are serialized (one request in flight at a time).
#[derive(Debug)]
pub struct Handle {
    socket: Socket,
    family_id: u16,
    seq: AtomicU32,
    in_flight: Mutex<()>,
}

impl Handle {
    /// Opens a socket in the calling thread's current network namespace and resolves the
    /// "IPVS" generic-netlink family. [`Error::NotSupported`] when the kernel has no IPVS.
    pub fn new() -> Result<Handle, Error> {
        let socket = open_socket()?;
        let mut handle = Handle {
            socket,
            family_id: 0,
            seq: AtomicU32::new(1),
            in_flight: Mutex::new(()),
        };
        handle.family_id = handle.resolve_family(IPVS_GENL_NAME)?;
        Ok(handle)
    }

    /// [`Handle::new`] for the network namespace at `path` (e.g. `/var/run/netns/c1`): the
    /// socket is created on a short-lived thread that enters the namespace, and keeps that
    /// namespace for its whole life. Needs `CAP_SYS_ADMIN`.
    pub fn in_netns(path: impl AsRef<Path>) -> Result<Handle, Error> {
        crate::netns::run_in_netns(path.as_ref(), Handle::new)?
    }

    /// The IPVS family id the controller assigned.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    /// Service requests: `handle.service().add(svc).execute()`.
    pub fn service(&self) -> ServiceHandle<'_> {
        ServiceHandle(self)
    }

    /// Destination requests: `handle.destination().add(key, dest).execute()`.
    pub fn destination(&self) -> DestinationHandle<'_> {
        DestinationHandle(self)
    }

    /// Deletes every service and destination of the namespace.
    pub fn flush(&self) -> AckRequest<'_> {
        AckRequest::new(self, Ok(Request::flush()))
    }

    /// IPVS version and connection table size.
    pub fn info(&self) -> InfoRequest<'_> {
        InfoRequest::new(self)
    }

    fn next_seq(&self) -> u32 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn resolve_family(&self, name: &str) -> Result<u16, Error> {
        let seq = self.next_seq();
        let replies: Vec<FamilyReply> = self
            .exchange("CTRL_CMD_GETFAMILY", &family_request(name, seq), seq, false)
            .map_err(|e| match e.errno() {
                Some(nix::libc::ENOENT) => Error::NotSupported,
                _ => e,
            })?;
        replies
            .iter()
            .find_map(|r| r.family_id)
            .filter(|id| *id != 0)
            .ok_or_else(|| Error::Decode("family lookup reply without CTRL_ATTR_FAMILY_ID".into()))
    }

    /// Sends `request` and collects the IPVS messages answering it.
    pub(crate) fn transact(&self, request: &Request) -> Result<Vec<IpvsMessage>, Error> {
        let seq = self.next_seq();
        let bytes = request.to_bytes(self.family_id, seq);
        self.exchange(request.op, &bytes, seq, request.dump)
    }

    /// Sends `bytes` (sequence `seq`) and reads until the ack/error (or, for a dump, the
    /// `NLMSG_DONE`) carrying `seq`; frames of other sequence numbers are skipped.
    fn exchange<T>(
        &self,
        op: &'static str,
        bytes: &[u8],
        seq: u32,
        dump: bool,
    ) -> Result<Vec<T>, Error>
    where
        T: ParseableParametrized<[u8], GenlHeader> + std::fmt::Debug,
    {
        let _guard = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        self.socket.send(bytes, 0).map_err(|source| Error::Socket {
            what: "send",
            source,
        })?;
        let mut out = Vec::new();
        let mut malformed: Option<String> = None;
        for _ in 0..MAX_DATAGRAMS {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .map_err(|source| Error::Socket {
                    what: if source.kind() == io::ErrorKind::WouldBlock {
                        "receive: no answer within the receive timeout"
                    } else {
                        "receive"
                    },
                    source,
                })?;
            for received in parse_frames::<T>(&datagram)? {
                if received.seq != seq {
                    continue;
                }
                match received.frame {
                    Frame::Message(m) => out.push(m),
                    Frame::Malformed(why) => {
                        malformed.get_or_insert(why);
                    }
                    Frame::Error(code) => return Err(Error::Kernel { op, code }),
                    Frame::Ack if !dump => return finish(out, malformed),
                    Frame::Done => return finish(out, malformed),
                    Frame::Ack | Frame::Ignored => {}
                }
            }
        }
        Err(Error::Decode(format!(
            "{op}: no end of reply after {MAX_DATAGRAMS} datagrams"
        )))
    }
}

/// Resolves any generic-netlink family `name` through the controller, in the calling
/// thread's network namespace: its id, or [`Error::NotSupported`] when the kernel does not
/// know it. (The same code path as [`Handle::new`]; exposed so it can be checked against a
/// family every kernel has, `nlctrl`.)
pub fn lookup_family(name: &str) -> Result<u16, Error> {
    let handle = Handle {
        socket: open_socket()?,
        family_id: 0,
        seq: AtomicU32::new(1),
        in_flight: Mutex::new(()),
    };
    handle.resolve_family(name)
}

fn finish<T>(out: Vec<T>, malformed: Option<String>) -> Result<Vec<T>, Error> {
    match malformed {
        Some(why) => Err(Error::Decode(why)),
        None => Ok(out),
    }
}

fn open_socket() -> Result<Socket, Error> {
    let sock_err = |what| move |source| Error::Socket { what, source };
    let mut socket = Socket::new(NETLINK_GENERIC).map_err(sock_err("create"))?;
    socket.bind_auto().map_err(sock_err("bind"))?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(sock_err("connect"))?;
    let tv = |d: Duration| TimeVal::new(d.as_secs() as _, d.subsec_micros() as _);
    setsockopt(&socket, sockopt::ReceiveTimeout, &tv(RECV_TIMEOUT)).map_err(|e| Error::Socket {
        what: "set receive timeout",
        source: e.into(),
    })?;
    setsockopt(&socket, sockopt::SendTimeout, &tv(SEND_TIMEOUT)).map_err(|e| Error::Socket {
        what: "set send timeout",
        source: e.into(),
    })?;
    Ok(socket)
}
