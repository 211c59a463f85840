//! Reading kernel replies into values.

use crate::Error;
use crate::attr::IpvsAttr;
use crate::constants::*;
use crate::destination::Destination;
use crate::message::IpvsMessage;
use crate::service::{Family, Service};

/// The service of an IPVS_CMD_NEW_SERVICE reply (GET_SERVICE, one per dump element).
pub fn service_of(msg: &IpvsMessage) -> Result<Service, Error> {
    if msg.cmd != IPVS_CMD_NEW_SERVICE {
        return Err(Error::Decode(format!(
            "service reply with command {}, want IPVS_CMD_NEW_SERVICE",
            msg.cmd
        )));
    }
    for a in &msg.attrs {
        if let IpvsAttr::Service(attrs) = a {
            return Service::from_attrs(attrs);
        }
    }
    Err(Error::Decode(
        "service reply without IPVS_CMD_ATTR_SERVICE".into(),
    ))
}

/// The destination of an IPVS_CMD_NEW_DEST reply (one per GET_DEST dump element), of a
/// service of family `family`.
pub fn dest_of(msg: &IpvsMessage, family: Family) -> Result<Destination, Error> {
    if msg.cmd != IPVS_CMD_NEW_DEST {
        return Err(Error::Decode(format!(
            "destination reply with command {}, want IPVS_CMD_NEW_DEST",
            msg.cmd
        )));
    }
    for a in &msg.attrs {
        if let IpvsAttr::Dest(attrs) = a {
            return Destination::from_attrs(attrs, family);
        }
    }
    Err(Error::Decode(
        "destination reply without IPVS_CMD_ATTR_DEST".into(),
    ))
}
