//! Conversions between wire messages and validated domain values.
//!
//! Contract: every `TryFrom<pb::...>` either returns a value whose fields are all valid
//! (addresses parsed, ranges checked) or a [`FieldError`] naming the first invalid field;
//! `From<&Domain> for pb::...` is its inverse (a round trip is the identity).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

use crate::pb;

/// Longest network or endpoint name.
pub const MAX_NAME_LEN: usize = 64;
/// Most aliases one endpoint may have.
pub const MAX_ALIASES: usize = 32;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// Prefix lengths a network subnet may have: room for a gateway and endpoints.
pub const SUBNET_PREFIX_RANGE: std::ops::RangeInclusive<u8> = 8..=30;

/// An invalid argument: which field, and why. Becomes `INVALID_ARGUMENT` with the message
/// `"<field>: <message>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// A validated `CreateNetworkRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    pub name: String,
    pub subnet: Option<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub vni: Option<u32>,
    pub mtu: Option<u32>,
    pub encrypted: bool,
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
        Ok(NetworkRequest {
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
            name: n.name.clone(),
            subnet: n.subnet.map(|s| s.to_string()).unwrap_or_default(),
            gateway: n.gateway.map(|g| g.to_string()).unwrap_or_default(),
            vni: n.vni.unwrap_or(0),
            mtu: n.mtu.unwrap_or(0),
            encrypted: n.encrypted,
        }
    }
}

/// A validated `AttachRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSpec {
    /// Network name or id.
    pub network: String,
    pub netns: PathBuf,
    pub name: String,
    pub aliases: Vec<String>,
    pub ip: Option<Ipv4Addr>,
    pub mac: Option<[u8; 6]>,
    /// Interface name in the container (default `eth0`).
    pub ifname: String,
    /// Service name or id this endpoint backs.
    pub service: Option<String>,
    /// resolv.conf the agent writes for the container.
    pub resolv_conf: Option<PathBuf>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
}

/// Interface name used in the container when the request gives none.
pub const DEFAULT_IFNAME: &str = "eth0";

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
        Ok(AttachSpec {
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
        }
    }
}

/// Service mode in requests: `vip` or `dnsrr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceModeArg {
    Vip,
    Dnsrr,
}

impl ServiceModeArg {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceModeArg::Vip => "vip",
            ServiceModeArg::Dnsrr => "dnsrr",
        }
    }
}

/// A validated service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortSpec {
    /// True for UDP, false for TCP.
    pub udp: bool,
    pub port: u16,
    pub target: u16,
}

/// Most ports one service may have.
pub const MAX_PORTS: usize = 64;

/// A validated `CreateServiceRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    pub name: String,
    /// Network names or ids, deduplicated, in request order.
    pub networks: Vec<String>,
    pub mode: ServiceModeArg,
    /// Sorted, unique by (protocol, port).
    pub ports: Vec<PortSpec>,
    pub aliases: Vec<String>,
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
        Ok(ServiceRequest {
            name: r.name,
            networks,
            mode,
            ports,
            aliases: r.aliases,
        })
    }
}

impl From<&ServiceRequest> for pb::CreateServiceRequest {
    fn from(s: &ServiceRequest) -> Self {
        pb::CreateServiceRequest {
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

/// Most keys in one ring of `SetKeys`.
pub const MAX_RING_KEYS: usize = 3;
/// Key lengths a ring accepts (AES-128, AES-256).
pub const KEY_LENGTHS: [usize; 2] = [16, 32];

/// One key of a validated ring.
#[derive(Clone, PartialEq, Eq)]
pub struct TaggedKey {
    pub tag: u64,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TaggedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key bytes.
        write!(f, "TaggedKey(tag {}, {} bytes)", self.tag, self.key.len())
    }
}

/// A validated `SetKeysRequest`: each ring sorted by tag (oldest first), or `None` when the
/// request leaves it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysRequest {
    pub gossip: Option<Vec<TaggedKey>>,
    pub dataplane: Option<Vec<TaggedKey>>,
}

/// The primary of a ring sorted by tag: the second-newest key, or the only one.
pub fn ring_primary(ring: &[TaggedKey]) -> Option<&TaggedKey> {
    match ring.len() {
        0 => None,
        1 => ring.first(),
        n => ring.get(n - 2),
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

/// Names of networks, endpoints and aliases: 1..=64 characters of `[A-Za-z0-9_.-]`, the first
/// a letter or digit.
pub fn validate_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::new(field, "required (a name)"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!("{name:?} is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(FieldError::new(
            field,
            format!("{name:?} must start with a letter or digit"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(FieldError::new(
            field,
            format!("{name:?} contains {c:?}: only letters, digits, '_', '.' and '-' are allowed"),
        ));
    }
    Ok(())
}

/// At most [`MAX_ALIASES`] names, each valid by [`validate_name`].
pub fn validate_aliases(aliases: &[String]) -> Result<(), FieldError> {
    if aliases.len() > MAX_ALIASES {
        return Err(FieldError::new(
            "aliases",
            format!("{} given, at most {MAX_ALIASES}", aliases.len()),
        ));
    }
    aliases.iter().try_for_each(|a| validate_name("aliases", a))
}

/// An IPv4 address.
pub fn parse_ipv4(field: &'static str, s: &str) -> Result<Ipv4Addr, FieldError> {
    s.parse()
        .map_err(|_| FieldError::new(field, format!("{s} is not a valid IPv4 address")))
}

/// An IPv4 CIDR usable as a network subnet: canonical (no host bits), prefix 8..=30.
pub fn parse_subnet(field: &'static str, s: &str) -> Result<Ipv4Network, FieldError> {
    let invalid = || FieldError::new(field, format!("{s} is not a valid IPv4 CIDR"));
    let (addr, prefix) = s.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let net = Ipv4Network::new(addr, prefix).map_err(|_| invalid())?;
    if !SUBNET_PREFIX_RANGE.contains(&prefix) {
        return Err(FieldError::new(
            field,
            format!(
                "{s}: prefix length must be {}..={}",
                SUBNET_PREFIX_RANGE.start(),
                SUBNET_PREFIX_RANGE.end()
            ),
        ));
    }
    if net.network() != addr {
        return Err(FieldError::new(
            field,
            format!(
                "{s} has host bits set: did you mean {}/{prefix}?",
                net.network()
            ),
        ));
    }
    Ok(net)
}

/// `ip` lies in `net` and is neither its network nor its broadcast address.
pub fn check_host_address(
    field: &'static str,
    ip: Ipv4Addr,
    net: Ipv4Network,
) -> Result<(), FieldError> {
    if !net.contains(ip) {
        return Err(FieldError::new(
            field,
            format!("{ip} is outside subnet {net}"),
        ));
    }
    if ip == net.network() || ip == net.broadcast() {
        return Err(FieldError::new(
            field,
            format!("{ip} is the network or broadcast address of {net}"),
        ));
    }
    Ok(())
}

/// A unicast MAC address `aa:bb:cc:dd:ee:ff` (or with `-`).
pub fn parse_mac(field: &'static str, s: &str) -> Result<[u8; 6], FieldError> {
    let invalid = || FieldError::new(field, format!("{s} is not a valid MAC address"));
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for slot in &mut out {
        let part = parts.next().ok_or_else(invalid)?;
        if part.is_empty() || part.len() > 2 {
            return Err(invalid());
        }
        *slot = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
    }
    if parts.next().is_some() {
        return Err(invalid());
    }
    if out == [0; 6] || out[0] & 1 == 1 {
        return Err(FieldError::new(
            field,
            format!("{s} is not a unicast MAC address"),
        ));
    }
    Ok(out)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Linux interface name rules: 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

#[cfg(test)]
mod tests;
