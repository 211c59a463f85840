//! Requests: what each operation sends, built without a socket ([`Request`]), and the
//! rtnetlink-style builders that send them ([`crate::Handle::service`], ...).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

use crate::Error;
use crate::attr::IpvsAttr;
use crate::constants::*;
use crate::destination::Destination;
use crate::handle::Handle;
use crate::message::{Info, IpvsMessage, encode};
use crate::service::{Service, ServiceKey};

/// One IPVS request, ready to encode. Pure: building one touches no socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What the request does, for error messages ("NEW_SERVICE", ...).
    pub op: &'static str,
    pub message: IpvsMessage,
    /// A dump (`NLM_F_DUMP`, answered by messages then `NLMSG_DONE`); otherwise
    /// `NLM_F_ACK` (answered by an optional reply then an ack or error).
    pub dump: bool,
}

impl Request {
    fn new(op: &'static str, cmd: u8, attrs: Vec<IpvsAttr>, dump: bool) -> Request {
        Request {
            op,
            message: IpvsMessage { cmd, attrs },
            dump,
        }
    }

    /// IPVS_CMD_NEW_SERVICE with the full service (see [`Service::to_attrs`]; stats are not
    /// sent).
    pub fn new_service(service: &Service) -> Result<Request, Error> {
        service.validate()?;
        let svc = Service {
            stats: None,
            ..service.clone()
        };
        Ok(Self::new(
            "NEW_SERVICE",
            IPVS_CMD_NEW_SERVICE,
            vec![IpvsAttr::Service(svc.to_attrs())],
            false,
        ))
    }

    /// IPVS_CMD_SET_SERVICE: replaces scheduler, flags, timeout and netmask of the service
    /// with the same key.
    pub fn set_service(service: &Service) -> Result<Request, Error> {
        let mut r = Self::new_service(service)?;
        r.op = "SET_SERVICE";
        r.message.cmd = IPVS_CMD_SET_SERVICE;
        Ok(r)
    }

    /// IPVS_CMD_DEL_SERVICE (the kernel answers `ESRCH` when there is none).
    pub fn del_service(key: &ServiceKey) -> Request {
        Self::new(
            "DEL_SERVICE",
            IPVS_CMD_DEL_SERVICE,
            vec![IpvsAttr::Service(key.to_attrs())],
            false,
        )
    }

    /// IPVS_CMD_GET_SERVICE for one service (answered by IPVS_CMD_NEW_SERVICE, or `ESRCH`).
    pub fn get_service(key: &ServiceKey) -> Request {
        Self::new(
            "GET_SERVICE",
            IPVS_CMD_GET_SERVICE,
            vec![IpvsAttr::Service(key.to_attrs())],
            false,
        )
    }

    /// IPVS_CMD_GET_SERVICE dump of every service of the namespace.
    pub fn list_services() -> Request {
        Self::new("GET_SERVICE (dump)", IPVS_CMD_GET_SERVICE, vec![], true)
    }

    /// IPVS_CMD_NEW_DEST: `dest` behind the service `key` (`EEXIST` if present).
    pub fn new_dest(key: &ServiceKey, dest: &Destination) -> Request {
        Self::dest_request("NEW_DEST", IPVS_CMD_NEW_DEST, key, dest)
    }

    /// IPVS_CMD_SET_DEST: changes method, weight and thresholds of the destination with the
    /// same address and port (`ENOENT` if absent).
    pub fn set_dest(key: &ServiceKey, dest: &Destination) -> Request {
        Self::dest_request("SET_DEST", IPVS_CMD_SET_DEST, key, dest)
    }

    fn dest_request(op: &'static str, cmd: u8, key: &ServiceKey, dest: &Destination) -> Request {
        let d = Destination {
            conns: None,
            stats: None,
            ..dest.clone()
        };
        Self::new(
            op,
            cmd,
            vec![
                IpvsAttr::Service(key.to_attrs()),
                IpvsAttr::Dest(d.to_attrs()),
            ],
            false,
        )
    }

    /// IPVS_CMD_DEL_DEST (`ENOENT` if absent).
    pub fn del_dest(key: &ServiceKey, addr: &IpAddr, port: u16) -> Request {
        Self::new(
            "DEL_DEST",
            IPVS_CMD_DEL_DEST,
            vec![
                IpvsAttr::Service(key.to_attrs()),
                IpvsAttr::Dest(Destination::key_attrs(addr, port)),
            ],
            false,
        )
    }

    /// IPVS_CMD_GET_DEST dump of the destinations of service `key`. The kernel ends the
    /// dump of an absent service without an error: it reads as no destinations.
    pub fn list_dests(key: &ServiceKey) -> Request {
        Self::new(
            "GET_DEST (dump)",
            IPVS_CMD_GET_DEST,
            vec![IpvsAttr::Service(key.to_attrs())],
            true,
        )
    }

    /// IPVS_CMD_FLUSH: deletes every service and destination of the namespace.
    pub fn flush() -> Request {
        Self::new("FLUSH", IPVS_CMD_FLUSH, vec![], false)
    }

    /// IPVS_CMD_GET_INFO (answered by IPVS_CMD_SET_INFO).
    pub fn get_info() -> Request {
        Self::new("GET_INFO", IPVS_CMD_GET_INFO, vec![], false)
    }

    /// The netlink flags this request is sent with.
    pub fn flags(&self) -> u16 {
        if self.dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        }
    }

    /// The bytes to send: `nlmsghdr` (type `family_id`, sequence `seq`, port id 0),
    /// `genlmsghdr`, attributes.
    pub fn to_bytes(&self, family_id: u16, seq: u32) -> Vec<u8> {
        encode(&self.message, family_id, self.flags(), seq)
    }
}

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/// Service requests of a [`Handle`].
#[derive(Debug)]
pub struct ServiceHandle<'a>(pub(crate) &'a Handle);

/// Destination requests of a [`Handle`].
#[derive(Debug)]
pub struct DestinationHandle<'a>(pub(crate) &'a Handle);

/// A request answered by an ack. `execute()` sends it.
#[derive(Debug)]
pub struct AckRequest<'a> {
    handle: &'a Handle,
    request: Result<Request, Error>,
}

/// GET_SERVICE of one service.
#[derive(Debug)]
pub struct ServiceGetRequest<'a> {
    handle: &'a Handle,
    request: Request,
}

/// GET_SERVICE dump.
#[derive(Debug)]
pub struct ServiceListRequest<'a> {
    handle: &'a Handle,
    request: Request,
}

/// GET_DEST dump of one service.
#[derive(Debug)]
pub struct DestinationListRequest<'a> {
    handle: &'a Handle,
    key: ServiceKey,
    request: Request,
}

/// GET_INFO.
#[derive(Debug)]
pub struct InfoRequest<'a> {
    handle: &'a Handle,
    request: Request,
}

impl<'a> ServiceHandle<'a> {
    /// Creates `service` (`Error::is_exists` if present).
    pub fn add(&self, service: Service) -> AckRequest<'a> {
        AckRequest::new(self.0, Request::new_service(&service))
    }
    /// Updates the service with `service.key` (`Error::is_not_found` if absent).
    pub fn set(&self, service: Service) -> AckRequest<'a> {
        AckRequest::new(self.0, Request::set_service(&service))
    }
    /// Deletes a service and its destinations (`Error::is_not_found` if absent).
    pub fn del(&self, key: ServiceKey) -> AckRequest<'a> {
        AckRequest::new(self.0, Ok(Request::del_service(&key)))
    }
    /// Reads one service (`Error::is_not_found` if absent).
    pub fn get(&self, key: ServiceKey) -> ServiceGetRequest<'a> {
        ServiceGetRequest {
            handle: self.0,
            request: Request::get_service(&key),
        }
    }
    /// Reads every service.
    pub fn list(&self) -> ServiceListRequest<'a> {
        ServiceListRequest {
            handle: self.0,
            request: Request::list_services(),
        }
    }
}

impl<'a> DestinationHandle<'a> {
    /// Adds `dest` behind service `key` (`Error::is_exists` if present). The kernel refuses
    /// an IPv4 destination with `EINVAL` when the namespace has no local routing table yet
    /// (a fresh namespace whose `lo` is down and that has no address).
    pub fn add(&self, key: ServiceKey, dest: Destination) -> AckRequest<'a> {
        AckRequest::new(self.0, Ok(Request::new_dest(&key, &dest)))
    }
    /// Updates the destination with `dest`'s address and port.
    pub fn set(&self, key: ServiceKey, dest: Destination) -> AckRequest<'a> {
        AckRequest::new(self.0, Ok(Request::set_dest(&key, &dest)))
    }
    /// Removes a destination (`Error::is_not_found` if absent).
    pub fn del(&self, key: ServiceKey, addr: IpAddr, port: u16) -> AckRequest<'a> {
        AckRequest::new(self.0, Ok(Request::del_dest(&key, &addr, port)))
    }
    /// Reads the destinations of service `key` (empty, not an error, when the service is
    /// absent: that is how the kernel answers the dump).
    pub fn list(&self, key: ServiceKey) -> DestinationListRequest<'a> {
        DestinationListRequest {
            handle: self.0,
            key,
            request: Request::list_dests(&key),
        }
    }
}

impl<'a> AckRequest<'a> {
    pub(crate) fn new(handle: &'a Handle, request: Result<Request, Error>) -> Self {
        AckRequest { handle, request }
    }
    /// The request that `execute` sends (or why it cannot be built).
    pub fn request(&self) -> Result<&Request, &Error> {
        self.request.as_ref()
    }
    /// Sends the request and waits for the kernel's ack.
    pub fn execute(self) -> Result<(), Error> {
        let request = self.request?;
        self.handle.transact(&request).map(|_| ())
    }
}

impl ServiceGetRequest<'_> {
    pub fn request(&self) -> &Request {
        &self.request
    }
    pub fn execute(self) -> Result<Service, Error> {
        let replies = self.handle.transact(&self.request)?;
        let msg = replies
            .first()
            .ok_or_else(|| Error::Decode("GET_SERVICE acked without a reply".into()))?;
        crate::reply::service_of(msg)
    }
}

impl ServiceListRequest<'_> {
    pub fn request(&self) -> &Request {
        &self.request
    }
    pub fn execute(self) -> Result<Vec<Service>, Error> {
        let replies = self.handle.transact(&self.request)?;
        replies.iter().map(crate::reply::service_of).collect()
    }
}

impl DestinationListRequest<'_> {
    pub fn request(&self) -> &Request {
        &self.request
    }
    pub fn execute(self) -> Result<Vec<Destination>, Error> {
        let replies = self.handle.transact(&self.request)?;
        let family = self.key.family();
        replies
            .iter()
            .map(|m| crate::reply::dest_of(m, family))
            .collect()
    }
}

impl InfoRequest<'_> {
    pub(crate) fn new(handle: &Handle) -> InfoRequest<'_> {
        InfoRequest {
            handle,
            request: Request::get_info(),
        }
    }
    pub fn request(&self) -> &Request {
        &self.request
    }
    pub fn execute(self) -> Result<Info, Error> {
        let replies = self.handle.transact(&self.request)?;
        let msg = replies
            .first()
            .ok_or_else(|| Error::Decode("GET_INFO acked without a reply".into()))?;
        Info::from_message(msg)
    }
}
