//! The agent's validated requests: what an API call asks for once every field has been
//! checked, and the rules that check them. Pure: no I/O, no wire types; the API layer
//! (`crate::api::convert`) turns messages into these and every error into
//! `INVALID_ARGUMENT` naming the field.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnetwork::Ipv4Network;

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
/// A validated `CreateNetworkRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    /// Client-supplied id (see [`validate_id`]); `None`: a random one.
    pub id: Option<String>,
    pub name: String,
    pub subnet: Option<Ipv4Network>,
    pub gateway: Option<Ipv4Addr>,
    pub vni: Option<u32>,
    pub mtu: Option<u32>,
    pub encrypted: bool,
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
    /// The caller's stable identity of the attachment (see [`validate_client_id`]).
    pub client_id: Option<String>,
    /// The container end is created in `netns` (the agent's own namespace) as `ifname` and
    /// handed to a runtime that moves it into the container itself (Docker's remote network
    /// drivers work so). Never set from the API: the agent's Docker plugin sets it.
    pub handoff: bool,
}

/// Interface name used in the container when the request gives none.
pub const DEFAULT_IFNAME: &str = "eth0";
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
    /// Client-supplied id (see [`validate_id`]); `None`: a random one.
    pub id: Option<String>,
    pub name: String,
    /// Network names or ids, deduplicated, in request order.
    pub networks: Vec<String>,
    pub mode: ServiceModeArg,
    /// Sorted, unique by (protocol, port).
    pub ports: Vec<PortSpec>,
    pub aliases: Vec<String>,
    /// Published ports, sorted, unique by (protocol, published port).
    pub published: Vec<crate::records::PublishedPort>,
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

/// Client-supplied ids of networks and services: the rules of names ([`validate_name`]).
pub fn validate_id(field: &'static str, id: &str) -> Result<(), FieldError> {
    validate_name(field, id)
}

/// Longest client id of an endpoint.
pub const MAX_CLIENT_ID_LEN: usize = 255;

/// Client ids of endpoints: 1..=255 printable ASCII characters, no spaces.
pub fn validate_client_id(field: &'static str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() || id.len() > MAX_CLIENT_ID_LEN {
        return Err(FieldError::new(
            field,
            format!(
                "{} characters: a client id has 1..={MAX_CLIENT_ID_LEN}",
                id.len()
            ),
        ));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(FieldError::new(
            field,
            format!("{id:?} contains {c:?}: only printable ASCII without spaces is allowed"),
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

/// Linux interface name rules (the overlay's, which creates the interfaces).
pub use overlay::valid_ifname;
