//! The command line: `swarmnet agent ...` runs the daemon; every other command is a client of
//! an agent's API.

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

use crate::config::{AgentArgs, DEFAULT_API};

/// swarmnet: swarm-mode overlay networking for Linux hosts, without Docker.
///
/// Run `swarmnet agent` on every host (as root); drive any agent with the other commands.
/// Clients talk to the agent's API: the local unix socket by default, or a remote agent over
/// TCP with mutual TLS (`--api https://host:port --tls-cert ... --tls-key ... --tls-ca ...`).
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(name = "swarmnet", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How a client reaches an agent and prints results.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct ClientArgs {
    /// Agent API: unix:///path or https://host:port.
    #[arg(long, global = true, value_name = "URL", env = "SWARMNET_API", default_value = DEFAULT_API)]
    pub api: String,
    /// Client certificate (PEM) for https:// APIs.
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) the agent's certificate must chain to.
    #[arg(long, global = true, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the agent (daemon): gossip, API, dataplane reconcilers. Stops cleanly on
    /// SIGTERM/SIGINT, leaving the cluster.
    Agent(Box<AgentArgs>),
    /// Overlay networks: create, list, inspect, remove.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Container attachments on the agent's node.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Services: a name with a virtual IP per network, balanced over the endpoints that back
    /// it (or, in dnsrr mode, resolved to them).
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Cluster membership.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Read-only diagnostics.
    #[command(subcommand)]
    Debug(DebugCmd),
    /// Build a 3-host cluster in network namespaces on this machine, attach a container per
    /// host, show the pings and tables, tear it all down (needs root).
    Demo(DemoArgs),
}

/// Flags of `swarmnet demo`.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoArgs {
    /// Keep the cluster running after the demo, until Enter or Ctrl-C, to explore it with the
    /// CLI (the commands to try are printed).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum NetworkCmd {
    /// Create an overlay network; any agent may, and every agent learns it. Subnet and VNI
    /// come from the agents' pools unless given.
    Create {
        name: String,
        /// IPv4 subnet, e.g. 10.20.0.0/24.
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway address (default: first address of the subnet; needs --subnet).
        #[arg(long)]
        gateway: Option<String>,
        /// VXLAN network identifier, 1-16777215.
        #[arg(long)]
        vni: Option<u32>,
        /// MTU of the network's interfaces (default: underlay MTU - 50 on each node, less
        /// the IPsec overhead when encrypted).
        #[arg(long)]
        mtu: Option<u32>,
        /// Encrypt the network's traffic between nodes with IPsec ESP (needs dataplane keys:
        /// `swarmnet cluster keys set --dataplane ...`; a node whose kernel has no ESP
        /// refuses to attach; clear traffic of the network is dropped everywhere).
        #[arg(long)]
        encrypted: bool,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show one network (by name or id).
    Inspect { network: String },
    /// Remove a network (refused while it has endpoints).
    #[command(alias = "delete")]
    Rm { network: String },
}

// Parsed once per process: the size of Attach does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum EndpointCmd {
    /// Attach a container network namespace to a network on the agent's node.
    Attach {
        /// Network name or id.
        network: String,
        /// The container's network namespace (/var/run/netns/NAME or /proc/PID/ns/net).
        #[arg(long)]
        netns: String,
        /// Endpoint name (unique on the network; resolvable by DNS later).
        #[arg(long)]
        name: String,
        /// Extra DNS name (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Requested IPv4 address (default: allocated).
        #[arg(long)]
        ip: Option<String>,
        /// Requested MAC (default: 02:42 + the IPv4 address).
        #[arg(long)]
        mac: Option<String>,
        /// Interface name in the container [default: eth0].
        #[arg(long)]
        ifname: Option<String>,
        /// Service (name or id) this endpoint backs; it must be on the network.
        #[arg(long)]
        service: Option<String>,
        /// Write the container's resolv.conf here (nameserver 127.0.0.11); removed on detach.
        #[arg(long, value_name = "PATH")]
        resolv_conf: Option<String>,
        /// Search domain for --resolv-conf (repeatable).
        #[arg(long = "dns-search", value_name = "DOMAIN")]
        dns_search: Vec<String>,
        /// resolv.conf option for --resolv-conf, e.g. ndots:1 (repeatable) [default: ndots:0].
        #[arg(long = "dns-option", value_name = "OPT")]
        dns_options: Vec<String>,
    },
    /// Put an endpoint back into its service's rotation.
    Enable {
        endpoint: String,
        /// Network, when the name is used on several.
        #[arg(long)]
        network: Option<String>,
    },
    /// Drain an endpoint: no new connections through the VIP and no DNS answers for it,
    /// while established connections continue. Do this before stopping a backend.
    Disable {
        endpoint: String,
        /// Network, when the name is used on several.
        #[arg(long)]
        network: Option<String>,
    },
    /// Detach an endpoint of the agent's node (by name or id).
    Detach {
        endpoint: String,
        /// Network, when the name is used on several.
        #[arg(long)]
        network: Option<String>,
    },
    /// List endpoints.
    #[command(alias = "list")]
    Ls {
        /// Only this network (name or id).
        #[arg(long)]
        network: Option<String>,
    },
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum ServiceCmd {
    /// Create a service. Attach endpoints with `--service NAME` to make them its backends.
    Create {
        name: String,
        /// Network (name or id) the service is on (repeatable, at least one).
        #[arg(long = "network", required = true)]
        networks: Vec<String>,
        /// vip: a virtual IP per network balanced in every client container; dnsrr: no VIP,
        /// DNS returns the backends.
        #[arg(long, default_value = "vip", value_parser = ["vip", "dnsrr"])]
        mode: String,
        /// Port to balance: PORT, PORT:TARGET or PORT:TARGET/udp (default tcp), e.g. 80:8080.
        /// Repeatable. None: every port reaches the backends unchanged.
        #[arg(long = "port", value_name = "PORT[:TARGET][/PROTO]")]
        ports: Vec<String>,
        /// Extra DNS name (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Port to publish on every node's own addresses: PUBLISHED[:TARGET][/PROTO]
        /// (default tcp), e.g. 8080:80/tcp. Repeatable. Backends on the first network
        /// receive TARGET and see the client's own address.
        #[arg(long = "publish", value_name = "PUBLISHED[:TARGET][/PROTO]")]
        publish: Vec<String>,
        /// mesh: every node answers, balancing over all backends; local: a node answers only
        /// with its own backends (health at /published/<proto>/<port> on the metrics
        /// listener, for an external balancer).
        #[arg(long, default_value = "mesh", value_parser = ["mesh", "local"])]
        publish_mode: String,
    },
    /// List services.
    #[command(alias = "list")]
    Ls,
    /// Show one service with its VIPs and backends.
    Inspect { service: String },
    /// Remove a service (its endpoints stay attached and back nothing).
    #[command(alias = "delete")]
    Rm { service: String },
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum ClusterCmd {
    /// This node's identity and counters.
    Status,
    /// Nodes of the cluster.
    Members,
    /// Join a cluster through a seed (HOST:PORT, repeatable).
    Join {
        #[arg(required = true)]
        seeds: Vec<String>,
    },
    /// Leave the cluster gracefully (the agent keeps running).
    Leave,
    /// Key rings: gossip encryption and IPsec of encrypted networks.
    #[command(subcommand)]
    Keys(KeysCmd),
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum KeysCmd {
    /// Replace this node's key ring(s). Send the same rings to every node, one rotation step
    /// at a time (add a key everywhere; then drop the oldest everywhere): the key that seals
    /// or sends is the second-newest by tag, so every node can receive with a key before
    /// anyone sends with it. Example: `swarmnet cluster keys set --dataplane
    /// 1:00112233445566778899aabbccddeeff --dataplane 2:...`.
    Set {
        /// Gossip key as TAG:HEX (16 or 32 bytes; repeatable, 1-3; replaces the whole ring).
        #[arg(long = "gossip", value_name = "TAG:HEX")]
        gossip: Vec<String>,
        /// IPsec key of encrypted networks as TAG:HEX (16 or 32 bytes; repeatable, 1-3;
        /// replaces the whole ring).
        #[arg(long = "dataplane", value_name = "TAG:HEX")]
        dataplane: Vec<String>,
    },
    /// Show the rings in use (tags and primary; never key bytes).
    #[command(alias = "list")]
    Ls,
    /// Print a new random key as hex (for --gossip-key or `keys set`). Local: needs no agent.
    Generate {
        /// Key length in bytes: 16 (AES-128) or 32 (AES-256).
        #[arg(long, default_value_t = 16, value_parser = clap::builder::PossibleValuesParser::new(["16", "32"]).map(|s| s.parse::<usize>().unwrap_or(16)))]
        bytes: usize,
    },
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum DebugCmd {
    /// Dump tables, members, local state and dataplane state (JSON).
    Dump,
    /// Run a tiny server that answers with its name and the client's address (HTTP on TCP
    /// ports, plain text on UDP ports): start it in backend containers to try services out,
    /// e.g. `ip netns exec web1 swarmnet debug whoami --name web1 --tcp 80`, then
    /// `curl http://<service>/` from another container. Local: needs no agent.
    Whoami {
        /// Name in every answer [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// TCP port to serve HTTP on (repeatable).
        #[arg(long)]
        tcp: Vec<u16>,
        /// UDP port to answer on (repeatable).
        #[arg(long)]
        udp: Vec<u16>,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 3600)]
        max_secs: u64,
    },
}

#[cfg(test)]
mod tests;
