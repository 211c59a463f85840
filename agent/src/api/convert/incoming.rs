//! Incoming: wire messages to validated requests ([`crate::spec`]).
//!
//! Contract: every `TryFrom<pb::...>` either returns a value whose fields are all valid
//! (addresses parsed, ranges checked) or a [`FieldError`] naming the first invalid field;
//! `From<&Request> for pb::...` is its inverse (a round trip is the identity; the CLI builds
//! its messages that way).

use std::path::PathBuf;

use proto::pb;

use crate::spec::*;

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

impl TryFrom<pb::CreateNetworkRequest> for NetworkRequest {
    type Error = FieldError;

    fn try_from(r: pb::CreateNetworkRequest) -> Result<Self, FieldError> {
        validate_name("name", &r.name)?;
        let subnet = optional(&r.subnet, |s| parse_subnet("subnet", s))?;
        let gateway = optional(&r.gateway, |s| parse_ipv4("gateway", s))?;
        if let Some(g) = gateway {
            match subnet {
                Some(net) => check_host_address("gateway", g, net)?,
                None => {
                    return Err(FieldError::new(
                        "gateway",
                        format!("{g} given without a subnet: give the subnet too"),
                    ));
                }
            }
        }
        let vni = match r.vni {
            0 => None,
            v if v > MAX_VNI => {
                return Err(FieldError::new(
                    "vni",
                    format!("{v} is outside 1..={MAX_VNI}"),
                ));
            }
            v => Some(v),
        };
        let mtu = match r.mtu {
            0 => None,
            m if !(68..=65535).contains(&m) => {
                return Err(FieldError::new("mtu", format!("{m} is outside 68..=65535")));
            }
            m => Some(m),
        };
        let id = optional(&r.id, |s| validate_id("id", s).map(|()| s.to_string()))?;
        Ok(NetworkRequest {
            id,
            name: r.name,
            subnet,
            gateway,
            vni,
            mtu,
            encrypted: r.encrypted,
        })
    }
}

impl From<&NetworkRequest> for pb::CreateNetworkRequest {
    fn from(n: &NetworkRequest) -> Self {
        pb::CreateNetworkRequest {
            id: n.id.clone().unwrap_or_default(),
            name: n.name.clone(),
            subnet: n.subnet.map(|s| s.to_string()).unwrap_or_default(),
            gateway: n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            vni: n.vni.unwrap_or(0),
            mtu: n.mtu.unwrap_or(0),
            encrypted: n.encrypted,
        }
    }
}

impl TryFrom<pb::AttachRequest> for AttachSpec {
    type Error = FieldError;

    fn try_from(r: pb::AttachRequest) -> Result<Self, FieldError> {
        if r.network.is_empty() {
            return Err(FieldError::new(
                "network",
                "required (a network name or id)",
            ));
        }
        if r.netns.is_empty() {
            return Err(FieldError::new(
                "netns",
                "required (path of the container's network namespace)",
            ));
        }
        let netns = PathBuf::from(&r.netns);
        if !netns.is_absolute() {
            return Err(FieldError::new(
                "netns",
                format!("{} is not an absolute path", r.netns),
            ));
        }
        validate_name("name", &r.name)?;
        validate_aliases(&r.aliases)?;
        let ip = optional(&r.ip, |s| parse_ipv4("ip", s))?;
        let mac = optional(&r.mac, |s| parse_mac("mac", s))?;
        let ifname = if r.ifname.is_empty() {
            DEFAULT_IFNAME.to_string()
        } else {
            if !valid_ifname(&r.ifname) {
                return Err(FieldError::new(
                    "ifname",
                    format!(
                        "{:?} is not a valid interface name (1..=15 bytes, no '/', ':' or spaces)",
                        r.ifname
                    ),
                ));
            }
            r.ifname
        };
        let service = if r.service.is_empty() {
            None
        } else {
            Some(r.service)
        };
        let resolv_conf = if r.resolv_conf.is_empty() {
            None
        } else {
            let p = PathBuf::from(&r.resolv_conf);
            if !p.is_absolute() {
                return Err(FieldError::new(
                    "resolv_conf",
                    format!("{} is not an absolute path", r.resolv_conf),
                ));
            }
            Some(p)
        };
        for d in &r.dns_search {
            validate_name("dns_search", d)?;
        }
        for o in &r.dns_options {
            if o.is_empty() || o.len() > 64 || o.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(FieldError::new(
                    "dns_options",
                    format!("{o:?} is not a resolv.conf option (1..=64 characters, no spaces)"),
                ));
            }
        }
        let client_id = optional(&r.client_id, |s| {
            validate_client_id("client_id", s).map(|()| s.to_string())
        })?;
        Ok(AttachSpec {
            client_id,
            handoff: false,
            network: r.network,
            netns,
            name: r.name,
            aliases: r.aliases,
            ip,
            mac,
            ifname,
            service,
            resolv_conf,
            dns_search: r.dns_search,
            dns_options: r.dns_options,
        })
    }
}

impl From<&AttachSpec> for pb::AttachRequest {
    fn from(a: &AttachSpec) -> Self {
        pb::AttachRequest {
            network: a.network.clone(),
            netns: a.netns.display().to_string(),
            name: a.name.clone(),
            aliases: a.aliases.clone(),
            ip: a.ip.map(|i| i.to_string()).unwrap_or_default(),
            mac: a.mac.map(|m| format_mac(&m)).unwrap_or_default(),
            ifname: a.ifname.clone(),
            service: a.service.clone().unwrap_or_default(),
            resolv_conf: a
                .resolv_conf
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            dns_search: a.dns_search.clone(),
            dns_options: a.dns_options.clone(),
            client_id: a.client_id.clone().unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::CreateServiceRequest> for ServiceRequest {
    type Error = FieldError;

    fn try_from(r: pb::CreateServiceRequest) -> Result<Self, FieldError> {
        validate_name("name", &r.name)?;
        if r.networks.is_empty() {
            return Err(FieldError::new(
                "networks",
                "required (at least one network name or id)",
            ));
        }
        let mut networks: Vec<String> = Vec::new();
        for n in r.networks {
            if n.is_empty() {
                return Err(FieldError::new("networks", "an empty network name"));
            }
            if !networks.contains(&n) {
                networks.push(n);
            }
        }
        let mode = match r.mode.as_str() {
            "" | "vip" => ServiceModeArg::Vip,
            "dnsrr" => ServiceModeArg::Dnsrr,
            other => {
                return Err(FieldError::new(
                    "mode",
                    format!("{other:?} is not a mode: use \"vip\" or \"dnsrr\""),
                ));
            }
        };
        if r.ports.len() > MAX_PORTS {
            return Err(FieldError::new(
                "ports",
                format!("{} given, at most {MAX_PORTS}", r.ports.len()),
            ));
        }
        if mode == ServiceModeArg::Dnsrr && !r.ports.is_empty() {
            return Err(FieldError::new(
                "ports",
                "dnsrr services have no VIP to balance: give no ports (clients connect to the backends' own ports)",
            ));
        }
        let mut ports = Vec::new();
        for p in &r.ports {
            let udp = match p.protocol.as_str() {
                "" | "tcp" => false,
                "udp" => true,
                other => {
                    return Err(FieldError::new(
                        "ports.protocol",
                        format!("{other:?} is not a protocol: use \"tcp\" or \"udp\""),
                    ));
                }
            };
            let port = u16::try_from(p.port)
                .ok()
                .filter(|v| *v != 0)
                .ok_or_else(|| {
                    FieldError::new("ports.port", format!("{} is outside 1..=65535", p.port))
                })?;
            let target = match p.target_port {
                0 => port,
                t => u16::try_from(t).map_err(|_| {
                    FieldError::new("ports.target_port", format!("{t} is outside 1..=65535"))
                })?,
            };
            let spec = PortSpec { udp, port, target };
            if ports
                .iter()
                .any(|q: &PortSpec| q.udp == udp && q.port == port)
            {
                return Err(FieldError::new(
                    "ports",
                    format!("{}/{} given twice", port, if udp { "udp" } else { "tcp" }),
                ));
            }
            ports.push(spec);
        }
        ports.sort();
        validate_aliases(&r.aliases)?;
        let published = super::publish::published_in(&r.published)?;
        let id = optional(&r.id, |s| validate_id("id", s).map(|()| s.to_string()))?;
        Ok(ServiceRequest {
            id,
            name: r.name,
            networks,
            mode,
            ports,
            aliases: r.aliases,
            published,
        })
    }
}

impl From<&ServiceRequest> for pb::CreateServiceRequest {
    fn from(s: &ServiceRequest) -> Self {
        pb::CreateServiceRequest {
            id: s.id.clone().unwrap_or_default(),
            name: s.name.clone(),
            networks: s.networks.clone(),
            mode: s.mode.as_str().to_string(),
            ports: s
                .ports
                .iter()
                .map(|p| pb::ServicePort {
                    protocol: if p.udp { "udp" } else { "tcp" }.to_string(),
                    port: p.port.into(),
                    target_port: p.target.into(),
                })
                .collect(),
            aliases: s.aliases.clone(),
            published: s.published.iter().map(pb::PublishedPort::from).collect(),
        }
    }
}

fn optional<T>(
    s: &str,
    parse: impl FnOnce(&str) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse(s).map(Some)
    }
}

fn validate_ring(field: &'static str, ring: pb::KeyRing) -> Result<Vec<TaggedKey>, FieldError> {
    if ring.keys.is_empty() {
        return Err(FieldError::new(
            field,
            "the ring is empty: give 1 to 3 keys",
        ));
    }
    if ring.keys.len() > MAX_RING_KEYS {
        return Err(FieldError::new(
            field,
            format!(
                "{} keys: a ring holds at most {MAX_RING_KEYS} (add one, then prune the oldest)",
                ring.keys.len()
            ),
        ));
    }
    let mut out: Vec<TaggedKey> = Vec::with_capacity(ring.keys.len());
    for (i, k) in ring.keys.into_iter().enumerate() {
        if !KEY_LENGTHS.contains(&k.key.len()) {
            return Err(FieldError::new(
                field,
                format!(
                    "keys[{i}].key: must be 16 or 32 bytes (got {})",
                    k.key.len()
                ),
            ));
        }
        if k.key.iter().all(|b| *b == 0) {
            return Err(FieldError::new(
                field,
                format!("keys[{i}].key: is all zeros"),
            ));
        }
        if out.iter().any(|o| o.tag == k.tag) {
            return Err(FieldError::new(
                field,
                format!("keys[{i}].tag: {} is used twice", k.tag),
            ));
        }
        if out.iter().any(|o| o.key == k.key) {
            return Err(FieldError::new(
                field,
                format!("keys[{i}].key: the same key is in the ring twice"),
            ));
        }
        out.push(TaggedKey {
            tag: k.tag,
            key: k.key,
        });
    }
    out.sort_by_key(|k| k.tag);
    Ok(out)
}

impl TryFrom<pb::SetKeysRequest> for KeysRequest {
    type Error = FieldError;

    fn try_from(r: pb::SetKeysRequest) -> Result<Self, FieldError> {
        if r.gossip.is_none() && r.dataplane.is_none() {
            return Err(FieldError::new(
                "gossip",
                "neither gossip nor dataplane keys given: nothing to set",
            ));
        }
        Ok(KeysRequest {
            gossip: r.gossip.map(|g| validate_ring("gossip", g)).transpose()?,
            dataplane: r
                .dataplane
                .map(|d| validate_ring("dataplane", d))
                .transpose()?,
        })
    }
}

impl From<&KeysRequest> for pb::SetKeysRequest {
    fn from(k: &KeysRequest) -> Self {
        let ring = |r: &Vec<TaggedKey>| pb::KeyRing {
            keys: r
                .iter()
                .map(|k| pb::Key {
                    tag: k.tag,
                    key: k.key.clone(),
                })
                .collect(),
        };
        pb::SetKeysRequest {
            gossip: k.gossip.as_ref().map(ring),
            dataplane: k.dataplane.as_ref().map(ring),
        }
    }
}
