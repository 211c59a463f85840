//! The agent's configuration: a TOML file (`--config`) overridden by flags, validated into an
//! [`AgentConfig`]. Every error names the field it is about (the file key; flags have the
//! same names with dashes).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use ipnetwork::Ipv4Network;
use serde::Deserialize;

use crate::pools::{self, Pools};

pub mod publish;

pub use publish::{PublishArgs, PublishConfig};

pub const DEFAULT_API: &str = "unix:///run/swarmnet/api.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/swarmnet";
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
pub const DEFAULT_VXLAN_PORT_ENCRYPTED: u16 = 4790;
pub const DEFAULT_PREFIX: &str = "swn";
pub const DEFAULT_BLOCK_PREFIX: u8 = 28;
pub const DEFAULT_SETTLE_MS: u64 = 1000;
pub const DEFAULT_RECONCILE_SECS: u64 = 10;
pub const DEFAULT_METRICS_PORT: u16 = 9323;
pub const DEFAULT_NODE_REAP_SECS: u64 = 1800;

/// A configuration error: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Which dataplane the agent drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneKind {
    /// VXLAN sandboxes through netlink (needs root).
    #[default]
    Kernel,
    /// No kernel work at all: networks and gossip work, attach fails with a clear error.
    /// For tests and control-plane-only nodes.
    None,
}

impl DataplaneKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DataplaneKind::Kernel => "kernel",
            DataplaneKind::None => "none",
        }
    }
}

/// Which service load balancer the agent uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LbChoice {
    /// nftables (IPVS is used only when chosen explicitly, until its backend is proven end
    /// to end on a kernel with IPVS).
    #[default]
    Auto,
    /// nftables maps in each client container (any kernel with nf_tables).
    Nftables,
    /// IPVS fwmark services in each client container.
    Ipvs,
}

impl LbChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            LbChoice::Auto => "auto",
            LbChoice::Nftables => "nftables",
            LbChoice::Ipvs => "ipvs",
        }
    }
}

/// Flags of `swarmnet agent`; each overrides the same key of the config file.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct AgentArgs {
    /// TOML config file; its keys are the flag names with '_' for '-' (e.g. node_name,
    /// gossip_keys = ["..."], join = ["h:7946"]). Flags override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Human name of this node (default: the hostname).
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Where the node id and local state are kept.
    #[arg(long, value_name = "DIR", help = format!("Where the node id and local state are kept [default: {DEFAULT_STATE_DIR}]"))]
    pub state_dir: Option<PathBuf>,
    /// IP the gossip sockets (UDP and TCP) bind to [default: 0.0.0.0].
    #[arg(long, value_name = "IP")]
    pub listen_addr: Option<IpAddr>,
    /// IP peers reach this node at [default: the listen address; required when that is
    /// unspecified].
    #[arg(long, value_name = "IP")]
    pub advertise_addr: Option<IpAddr>,
    /// IPv4 address of this node's VXLAN endpoint (VTEP) [default: the advertise address].
    #[arg(long, value_name = "IP")]
    pub data_path_addr: Option<IpAddr>,
    /// Gossip port (UDP and TCP) [default: 7946].
    #[arg(long, value_name = "PORT")]
    pub gossip_port: Option<u16>,
    /// VXLAN UDP port [default: 4789].
    #[arg(long, value_name = "PORT")]
    pub vxlan_port: Option<u16>,
    /// VXLAN UDP port of encrypted networks: IPsec protects exactly this port between
    /// nodes, so unencrypted networks stay clear (open it in the firewall too; IP protocol 50,
    /// ESP, must pass as well) [default: 4790].
    #[arg(long, value_name = "PORT")]
    pub vxlan_port_encrypted: Option<u16>,
    /// Seed to join, HOST:PORT (repeatable). Retried with backoff until one answers.
    #[arg(long = "join", value_name = "HOST:PORT")]
    pub join: Vec<String>,
    /// API endpoint to serve (repeatable): unix:///path (mode 0600) or tcp://IP:PORT (needs
    /// --api-tls-cert, --api-tls-key and --api-tls-ca: mutual TLS) [default:
    /// unix:///run/swarmnet/api.sock].
    #[arg(long = "api-listen", value_name = "URL")]
    pub api_listen: Vec<String>,
    /// PEM certificate chain the TCP API presents.
    #[arg(long, value_name = "PEM")]
    pub api_tls_cert: Option<PathBuf>,
    /// PEM private key of --api-tls-cert.
    #[arg(long, value_name = "PEM")]
    pub api_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that client certificates must chain to.
    #[arg(long, value_name = "PEM")]
    pub api_tls_ca: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter) [default: info].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Gossip encryption key, hex (16 or 32 bytes; repeatable; the first is the primary).
    #[arg(long = "gossip-key", value_name = "HEX")]
    pub gossip_key: Vec<String>,
    /// Prefix of the namespaces and interfaces this agent creates: 1-7 of [a-z0-9], starting
    /// with a letter; agents sharing a machine need different ones [default: swn].
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Serve /metrics and /healthz over HTTP here (PORT or IP:PORT; off by default; a bare
    /// port binds 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Dataplane: kernel (VXLAN via netlink) or none (no kernel work; attach fails)
    /// [default: kernel].
    #[arg(long, value_enum)]
    pub dataplane: Option<DataplaneKind>,
    /// Service load balancer: auto (nftables; the IPVS backend only when chosen
    /// explicitly), nftables or ipvs [default: auto].
    #[arg(long, value_enum)]
    pub lb: Option<LbChoice>,
    /// Pool new networks' subnets come from [default: 10.128.0.0/9].
    #[arg(long, value_name = "CIDR")]
    pub subnet_pool: Option<String>,
    /// Prefix length of allocated subnets [default: 24].
    #[arg(long, value_name = "LEN")]
    pub subnet_prefix: Option<u8>,
    /// VNI pool, FIRST-LAST [default: 4096-16777215].
    #[arg(long, value_name = "FIRST-LAST")]
    pub vni_pool: Option<String>,
    /// Prefix length of the address blocks a node claims [default: 28].
    #[arg(long, value_name = "LEN")]
    pub block_prefix: Option<u8>,
    /// How long a block claim (and a new network) must stand unchallenged before use, in
    /// milliseconds [default: 1000].
    #[arg(long, value_name = "MS")]
    pub settle_ms: Option<u64>,
    /// Period of the full dataplane reconcile, in seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    pub reconcile_interval_secs: Option<u64>,
    /// How long the endpoints and address blocks of a node that failed are kept (hidden)
    /// before every other node drops them, in seconds; a node back within it restores them
    /// at once. Networks and services are never dropped with a node [default: 1800].
    #[arg(long, value_name = "SECS")]
    pub node_reap_secs: Option<u64>,
    /// Upstream DNS server for names that are not internal (IP or IP:PORT; repeatable)
    /// [default: the nameservers of /etc/resolv.conf].
    #[arg(long = "dns-upstream", value_name = "ADDR")]
    pub dns_upstreams: Vec<String>,
    /// TTL of internal DNS answers, in seconds [default: 5].
    #[arg(long, value_name = "SECS")]
    pub dns_ttl_secs: Option<u32>,
    /// Time a forwarded DNS query may take across all upstreams before the container gets
    /// SERVFAIL, in ms [default: 2000].
    #[arg(long, value_name = "MS")]
    pub dns_timeout_ms: Option<u64>,
    /// Forwarded DNS queries in flight at once; more get SERVFAIL at once [default: 1024].
    #[arg(long, value_name = "N")]
    pub dns_max_forwards: Option<usize>,
    /// Published ports (the routing mesh).
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Serve Docker's network and IPAM plugin protocol (driver name `swarmnet`) on this unix
    /// socket, e.g. /run/docker/plugins/swarmnet.sock [default: not served]. Also answers
    /// DNS on each network's gateway address for Docker's embedded resolver.
    #[arg(long, value_name = "PATH")]
    pub docker_plugin: Option<PathBuf>,
    /// dockerd's API, where the plugin learns container names and aliases
    /// [default: unix:///var/run/docker.sock].
    #[arg(long, value_name = "URL")]
    pub docker_api: Option<String>,
}

/// The config file: the same keys as the flags (with `_`), plus `gossip_keys`, `join` and
/// `api_listen` as arrays.
#[derive(Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_name: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub listen_addr: Option<String>,
    pub advertise_addr: Option<String>,
    pub data_path_addr: Option<String>,
    pub gossip_port: Option<u16>,
    pub vxlan_port: Option<u16>,
    pub vxlan_port_encrypted: Option<u16>,
    #[serde(default)]
    pub join: Vec<String>,
    #[serde(default)]
    pub api_listen: Vec<String>,
    pub api_tls_cert: Option<PathBuf>,
    pub api_tls_key: Option<PathBuf>,
    pub api_tls_ca: Option<PathBuf>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub gossip_keys: Vec<String>,
    pub prefix: Option<String>,
    pub metrics_addr: Option<String>,
    pub dataplane: Option<DataplaneKind>,
    pub lb: Option<LbChoice>,
    pub subnet_pool: Option<String>,
    pub subnet_prefix: Option<u8>,
    pub vni_pool: Option<String>,
    pub block_prefix: Option<u8>,
    pub settle_ms: Option<u64>,
    pub reconcile_interval_secs: Option<u64>,
    pub node_reap_secs: Option<u64>,
    #[serde(default)]
    pub dns_upstreams: Vec<String>,
    pub dns_ttl_secs: Option<u32>,
    pub dns_timeout_ms: Option<u64>,
    pub dns_max_forwards: Option<usize>,
    #[serde(default)]
    pub publish_addrs: Vec<String>,
    #[serde(default)]
    pub publish_interfaces: Vec<String>,
    pub publish_lease_secs: Option<u64>,
    pub publish_idle_timeout_secs: Option<u32>,
    #[serde(default)]
    pub publish_accept_iptables: bool,
    pub docker_plugin: Option<PathBuf>,
    pub docker_api: Option<String>,
}

impl FileConfig {
    /// Parse TOML text; errors name the offending key.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            // toml reports unknown fields as "unknown field `x`, expected ...".
            let field = msg
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "config".into());
            ConfigError {
                field,
                message: msg.trim().to_string(),
            }
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("config", format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }
}

/// Where the API is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiEndpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl std::fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiEndpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            ApiEndpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Parse `unix:///path` or `tcp://ip:port` (for `field`).
pub fn parse_api_endpoint(field: &str, s: &str) -> Result<ApiEndpoint, ConfigError> {
    if let Some(path) = s.strip_prefix("unix://") {
        let p = PathBuf::from(path);
        if !p.is_absolute() {
            return Err(err(
                field,
                format!("{s}: the socket path must be absolute (unix:///run/x.sock)"),
            ));
        }
        Ok(ApiEndpoint::Unix(p))
    } else if let Some(addr) = s.strip_prefix("tcp://") {
        addr.parse().map(ApiEndpoint::Tcp).map_err(|_| {
            err(
                field,
                format!("{s}: expected tcp://IP:PORT (e.g. tcp://0.0.0.0:4243)"),
            )
        })
    } else {
        Err(err(
            field,
            format!("{s}: expected unix:///path or tcp://IP:PORT"),
        ))
    }
}

/// PEM files of the TCP API's mutual TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The validated configuration of one agent.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub node_name: String,
    pub state_dir: PathBuf,
    pub listen_addr: IpAddr,
    pub advertise_addr: IpAddr,
    pub data_path_addr: Ipv4Addr,
    pub gossip_port: u16,
    pub vxlan_port: u16,
    pub vxlan_port_encrypted: u16,
    pub join: Vec<String>,
    pub api: Vec<ApiEndpoint>,
    pub tls: Option<TlsFiles>,
    pub log_level: String,
    pub gossip_keys: Vec<Vec<u8>>,
    pub prefix: String,
    pub metrics_addr: Option<SocketAddr>,
    pub dataplane: DataplaneKind,
    pub lb: LbChoice,
    pub pools: Pools,
    pub block_prefix: u8,
    pub settle: Duration,
    pub reconcile_interval: Duration,
    /// See [`AgentArgs::node_reap_secs`].
    pub node_reap: Duration,
    /// The embedded DNS resolver's settings.
    pub dns: crate::dns::DnsConfig,
    /// Published ports (the routing mesh).
    pub publish: PublishConfig,
    /// Docker's plugin protocol: where to serve it, and dockerd's API socket (see
    /// [`AgentArgs::docker_plugin`]).
    pub docker: Option<DockerPlugin>,
}

/// Where the Docker plugin is served and where dockerd's API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerPlugin {
    pub socket: PathBuf,
    pub api: PathBuf,
}

/// Default dockerd API socket.
pub const DEFAULT_DOCKER_API: &str = "unix:///var/run/docker.sock";

impl AgentConfig {
    /// Merge the file (if `args.config`) and the flags, then validate.
    pub fn from_args(args: &AgentArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Flags win over the file; then every value is checked.
    pub fn merge(a: &AgentArgs, f: FileConfig) -> Result<Self, ConfigError> {
        let dns = dns_config(a, &f)?;
        let publish = PublishConfig::merge(&a.publish, &f)?;
        let node_name = match a.node_name.clone().or(f.node_name) {
            Some(n) => n,
            None => hostname(),
        };
        crate::spec::validate_name("node_name", &node_name)
            .map_err(|e| err("node_name", e.message))?;
        let state_dir = a
            .state_dir
            .clone()
            .or(f.state_dir)
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        if !state_dir.is_absolute() {
            return Err(err(
                "state_dir",
                format!("{} is not an absolute path", state_dir.display()),
            ));
        }
        let listen_addr = match (a.listen_addr, f.listen_addr) {
            (Some(ip), _) => ip,
            (None, Some(s)) => parse_ip("listen_addr", &s)?,
            (None, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let advertise_addr = match (a.advertise_addr, f.advertise_addr) {
            (Some(ip), _) => ip,
            (None, Some(s)) => parse_ip("advertise_addr", &s)?,
            (None, None) if !listen_addr.is_unspecified() => listen_addr,
            (None, None) => {
                return Err(err(
                    "advertise_addr",
                    "required when listen_addr is unspecified (0.0.0.0 or ::): \
                     give the address other nodes reach this one at",
                ));
            }
        };
        if advertise_addr.is_unspecified() || advertise_addr.is_multicast() {
            return Err(err(
                "advertise_addr",
                format!("{advertise_addr} is not a unicast address"),
            ));
        }
        let data_path = match (a.data_path_addr, f.data_path_addr) {
            (Some(ip), _) => ip,
            (None, Some(s)) => parse_ip("data_path_addr", &s)?,
            (None, None) => advertise_addr,
        };
        let data_path_addr = match data_path {
            IpAddr::V4(v4) if !v4.is_unspecified() && !v4.is_multicast() && !v4.is_broadcast() => {
                v4
            }
            other => {
                return Err(err(
                    "data_path_addr",
                    format!("{other} is not a unicast IPv4 address (VXLAN runs over IPv4)"),
                ));
            }
        };
        let gossip_port = a
            .gossip_port
            .or(f.gossip_port)
            .unwrap_or(DEFAULT_GOSSIP_PORT);
        let vxlan_port = a.vxlan_port.or(f.vxlan_port).unwrap_or(DEFAULT_VXLAN_PORT);
        if vxlan_port == 0 {
            return Err(err("vxlan_port", "0 is not a usable port"));
        }
        let vxlan_port_encrypted = a
            .vxlan_port_encrypted
            .or(f.vxlan_port_encrypted)
            .unwrap_or(DEFAULT_VXLAN_PORT_ENCRYPTED);
        if vxlan_port_encrypted == 0 || vxlan_port_encrypted == vxlan_port {
            return Err(err(
                "vxlan_port_encrypted",
                format!(
                    "{vxlan_port_encrypted} must be a port other than 0 and vxlan_port ({vxlan_port})"
                ),
            ));
        }
        let join = if a.join.is_empty() {
            f.join
        } else {
            a.join.clone()
        };
        for s in &join {
            check_host_port("join", s)?;
        }
        let api_strings = if !a.api_listen.is_empty() {
            a.api_listen.clone()
        } else if !f.api_listen.is_empty() {
            f.api_listen
        } else {
            vec![DEFAULT_API.to_string()]
        };
        let api = api_strings
            .iter()
            .map(|s| parse_api_endpoint("api_listen", s))
            .collect::<Result<Vec<_>, _>>()?;
        let cert = a.api_tls_cert.clone().or(f.api_tls_cert);
        let key = a.api_tls_key.clone().or(f.api_tls_key);
        let ca = a.api_tls_ca.clone().or(f.api_tls_ca);
        let tls = match (cert, key, ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            (c, k, _) => {
                let missing = if c.is_none() {
                    "api_tls_cert"
                } else if k.is_none() {
                    "api_tls_key"
                } else {
                    "api_tls_ca"
                };
                return Err(err(
                    missing,
                    "mutual TLS needs all of api_tls_cert, api_tls_key and api_tls_ca",
                ));
            }
        };
        if tls.is_none()
            && let Some(tcp) = api.iter().find(|e| matches!(e, ApiEndpoint::Tcp(_)))
        {
            return Err(err(
                "api_listen",
                format!(
                    "{tcp} needs mutual TLS: give api_tls_cert, api_tls_key and api_tls_ca \
                     (the API is never served on TCP without it)"
                ),
            ));
        }
        let log_level = a
            .log_level
            .clone()
            .or(f.log_level)
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(err(
                "log_level",
                format!("{log_level:?} is not a valid level or tracing filter"),
            ));
        }
        let key_strings = if a.gossip_key.is_empty() {
            f.gossip_keys
        } else {
            a.gossip_key.clone()
        };
        let gossip_keys = key_strings
            .iter()
            .map(|k| parse_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let prefix = a
            .prefix
            .clone()
            .or(f.prefix)
            .unwrap_or_else(|| DEFAULT_PREFIX.into());
        overlay::Names::new(prefix.clone()).map_err(|e| match e {
            overlay::Error::Invalid { reason, .. } => {
                err("prefix", format!("{prefix:?}: {reason}"))
            }
            other => err("prefix", other.to_string()),
        })?;
        let metrics_addr = a
            .metrics_addr
            .clone()
            .or(f.metrics_addr)
            .map(|s| parse_metrics_addr(&s))
            .transpose()?;
        let dataplane = a.dataplane.or(f.dataplane).unwrap_or_default();
        let lb = a.lb.or(f.lb).unwrap_or_default();
        let subnet_pool = match a.subnet_pool.clone().or(f.subnet_pool) {
            Some(s) => s
                .parse::<Ipv4Network>()
                .ok()
                .filter(|n| n.network() == n.ip())
                .ok_or_else(|| {
                    err(
                        "subnet_pool",
                        format!("{s} is not a valid IPv4 CIDR without host bits"),
                    )
                })?,
            None => pools::DEFAULT_SUBNET_POOL.parse().expect("valid"),
        };
        let subnet_prefix = a
            .subnet_prefix
            .or(f.subnet_prefix)
            .unwrap_or(pools::DEFAULT_SUBNET_PREFIX);
        if !crate::spec::SUBNET_PREFIX_RANGE.contains(&subnet_prefix)
            || subnet_prefix < subnet_pool.prefix()
        {
            return Err(err(
                "subnet_prefix",
                format!(
                    "{subnet_prefix} must be within 8..=30 and at least the pool's prefix ({})",
                    subnet_pool.prefix()
                ),
            ));
        }
        let vni = match a.vni_pool.clone().or(f.vni_pool) {
            Some(s) => parse_vni_pool(&s)?,
            None => pools::DEFAULT_VNI_POOL,
        };
        let block_prefix = a
            .block_prefix
            .or(f.block_prefix)
            .unwrap_or(DEFAULT_BLOCK_PREFIX);
        if !(16..=30).contains(&block_prefix) {
            return Err(err(
                "block_prefix",
                format!("{block_prefix} is outside 16..=30"),
            ));
        }
        let settle_ms = a.settle_ms.or(f.settle_ms).unwrap_or(DEFAULT_SETTLE_MS);
        if settle_ms > 60_000 {
            return Err(err("settle_ms", format!("{settle_ms} is above 60000")));
        }
        let secs = a
            .reconcile_interval_secs
            .or(f.reconcile_interval_secs)
            .unwrap_or(DEFAULT_RECONCILE_SECS);
        if secs == 0 {
            return Err(err("reconcile_interval_secs", "must be at least 1"));
        }
        let node_reap = a
            .node_reap_secs
            .or(f.node_reap_secs)
            .unwrap_or(DEFAULT_NODE_REAP_SECS);
        if !(5..=30 * 24 * 3600).contains(&node_reap) {
            return Err(err(
                "node_reap_secs",
                format!("{node_reap} is outside 5..=2592000 (30 days)"),
            ));
        }
        let docker = match a.docker_plugin.clone().or(f.docker_plugin) {
            None => None,
            Some(socket) => {
                if !socket.is_absolute() {
                    return Err(err(
                        "docker_plugin",
                        format!("{} is not an absolute path", socket.display()),
                    ));
                }
                let url = a
                    .docker_api
                    .clone()
                    .or(f.docker_api)
                    .unwrap_or_else(|| DEFAULT_DOCKER_API.into());
                let api = url
                    .strip_prefix("unix://")
                    .map(PathBuf::from)
                    .filter(|p| p.is_absolute())
                    .ok_or_else(|| err("docker_api", format!("{url}: expected unix:///path")))?;
                Some(DockerPlugin { socket, api })
            }
        };
        Ok(AgentConfig {
            docker,
            node_name,
            state_dir,
            listen_addr,
            advertise_addr,
            data_path_addr,
            gossip_port,
            vxlan_port,
            vxlan_port_encrypted,
            join,
            api,
            tls,
            log_level,
            gossip_keys,
            prefix,
            metrics_addr,
            dataplane,
            lb,
            pools: Pools {
                subnet_pool,
                subnet_prefix,
                vni,
            },
            block_prefix,
            settle: Duration::from_millis(settle_ms),
            reconcile_interval: Duration::from_secs(secs),
            node_reap: Duration::from_secs(node_reap),
            dns,
            publish,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

fn parse_ip(field: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.parse()
        .map_err(|_| err(field, format!("{s} is not a valid IP address")))
}

fn check_host_port(field: &str, s: &str) -> Result<(), ConfigError> {
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(())
    } else {
        Err(err(field, format!("{s} is not HOST:PORT")))
    }
}

/// A gossip key: 32 or 64 hex digits.
pub fn parse_key(s: &str) -> Result<Vec<u8>, ConfigError> {
    let s = s.trim();
    let bad = || {
        err(
            "gossip_keys",
            format!(
                "a key must be 32 or 64 hex digits (16 or 32 bytes); got {} characters",
                s.len()
            ),
        )
    };
    if !(s.len() == 32 || s.len() == 64) {
        return Err(bad());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

/// The resolver settings from flags (first) and file.
fn dns_config(a: &AgentArgs, f: &FileConfig) -> Result<crate::dns::DnsConfig, ConfigError> {
    let mut d = crate::dns::DnsConfig::default();
    let ups = if a.dns_upstreams.is_empty() {
        &f.dns_upstreams
    } else {
        &a.dns_upstreams
    };
    for u in ups {
        let addr = u
            .parse::<SocketAddr>()
            .or_else(|_| u.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map_err(|_| err("dns_upstreams", format!("{u} is not IP or IP:PORT")))?;
        d.upstreams.push(addr);
    }
    if let Some(t) = a.dns_ttl_secs.or(f.dns_ttl_secs) {
        if t > 86_400 {
            return Err(err("dns_ttl_secs", format!("{t} is above 86400")));
        }
        d.ttl = Duration::from_secs(t.into());
    }
    if let Some(ms) = a.dns_timeout_ms.or(f.dns_timeout_ms) {
        if !(10..=60_000).contains(&ms) {
            return Err(err("dns_timeout_ms", format!("{ms} is outside 10..=60000")));
        }
        d.forward_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = a.dns_max_forwards.or(f.dns_max_forwards) {
        if n == 0 {
            return Err(err("dns_max_forwards", "must be at least 1"));
        }
        d.max_concurrent_forwards = n;
    }
    Ok(d)
}

fn parse_metrics_addr(s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().map_err(|_| {
        err(
            "metrics_addr",
            format!("{s} is not PORT or IP:PORT (e.g. 127.0.0.1:{DEFAULT_METRICS_PORT})"),
        )
    })
}

fn parse_vni_pool(s: &str) -> Result<std::ops::RangeInclusive<u32>, ConfigError> {
    let bad = || {
        err(
            "vni_pool",
            format!("{s} is not FIRST-LAST within 1-16777215"),
        )
    };
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b > crate::spec::MAX_VNI || a > b {
        return Err(bad());
    }
    Ok(a..=b)
}

#[cfg(test)]
mod tests;
