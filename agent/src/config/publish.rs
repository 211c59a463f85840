//! Settings of published ports (the routing mesh, [`crate::mesh`]): flags, file keys and
//! their validation.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::Args;

use super::{ConfigError, FileConfig, err};

/// Default lease of the host table's entry rules (see [`PublishConfig::lease`]).
pub const DEFAULT_LEASE_SECS: u64 = 30;
/// Default idle timeout of established published-port TCP connections: the kernel's own
/// default (5 days), whatever the host's conntrack sysctl says.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u32 = 432_000;

/// Flags of published ports (each overrides the same key of the config file).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct PublishArgs {
    /// Answer published ports only on this host address (repeatable) [default: every local
    /// address].
    #[arg(long = "publish-addr", value_name = "IP")]
    pub publish_addrs: Vec<Ipv4Addr>,
    /// Answer published ports only on this interface (repeatable); forwarding is enabled on
    /// exactly these [default: every interface, and forwarding on every interface].
    #[arg(long = "publish-interface", value_name = "NAME")]
    pub publish_interfaces: Vec<String>,
    /// A node whose agent stopped renewing it stops answering new connections on published
    /// ports after this long (0: its rules stay for ever) [default: 30].
    #[arg(long, value_name = "SECS")]
    pub publish_lease_secs: Option<u64>,
    /// Idle timeout of established TCP connections through published ports [default:
    /// 432000, the kernel's 5 days; independent of nf_conntrack_tcp_timeout_established].
    #[arg(long, value_name = "SECS")]
    pub publish_idle_timeout_secs: Option<u32>,
    /// When iptables' FORWARD chain drops by policy, insert an ACCEPT for published-port
    /// flows (connmark) into DOCKER-USER or FORWARD [default: off: reported only].
    #[arg(long)]
    pub publish_accept_iptables: bool,
}

/// Validated settings of published ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishConfig {
    pub addrs: Vec<Ipv4Addr>,
    pub interfaces: Vec<String>,
    /// `None`: no lease.
    pub lease: Option<Duration>,
    pub idle_timeout_secs: u32,
    pub accept_iptables: bool,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            addrs: Vec::new(),
            interfaces: Vec::new(),
            lease: Some(Duration::from_secs(DEFAULT_LEASE_SECS)),
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            accept_iptables: false,
        }
    }
}

impl PublishConfig {
    /// Flags win over the file.
    pub fn merge(a: &PublishArgs, f: &FileConfig) -> Result<Self, ConfigError> {
        let addrs = if a.publish_addrs.is_empty() {
            f.publish_addrs
                .iter()
                .map(|s| {
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| err("publish_addrs", format!("{s} is not an IPv4 address")))
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            a.publish_addrs.clone()
        };
        if let Some(bad) = addrs
            .iter()
            .find(|a| a.is_unspecified() || a.is_multicast() || a.is_broadcast())
        {
            return Err(err(
                "publish_addrs",
                format!("{bad} is not a unicast address"),
            ));
        }
        let interfaces = if a.publish_interfaces.is_empty() {
            f.publish_interfaces.clone()
        } else {
            a.publish_interfaces.clone()
        };
        if let Some(bad) = interfaces
            .iter()
            .find(|n| !crate::spec::valid_ifname(n) || n.contains('"'))
        {
            return Err(err(
                "publish_interfaces",
                format!("{bad:?} is not a valid interface name"),
            ));
        }
        let lease_secs = a
            .publish_lease_secs
            .or(f.publish_lease_secs)
            .unwrap_or(DEFAULT_LEASE_SECS);
        if lease_secs != 0 && !(3..=86_400).contains(&lease_secs) {
            return Err(err(
                "publish_lease_secs",
                format!("{lease_secs} is outside 3..=86400 (0: no lease)"),
            ));
        }
        let idle = a
            .publish_idle_timeout_secs
            .or(f.publish_idle_timeout_secs)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
        if idle < 60 {
            return Err(err(
                "publish_idle_timeout_secs",
                format!("{idle} is below 60"),
            ));
        }
        Ok(PublishConfig {
            addrs,
            interfaces,
            lease: (lease_secs != 0).then(|| Duration::from_secs(lease_secs)),
            idle_timeout_secs: idle,
            accept_iptables: a.publish_accept_iptables || f.publish_accept_iptables,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_flags_over_the_file_and_bad_values_name_their_field() {
        let d = PublishConfig::merge(&PublishArgs::default(), &FileConfig::default()).unwrap();
        assert_eq!(d, PublishConfig::default());
        let f = FileConfig {
            publish_addrs: vec!["10.1.1.1".into()],
            publish_lease_secs: Some(0),
            ..FileConfig::default()
        };
        let c = PublishConfig::merge(&PublishArgs::default(), &f).unwrap();
        assert_eq!(c.addrs, vec![Ipv4Addr::new(10, 1, 1, 1)]);
        assert_eq!(c.lease, None);
        let a = PublishArgs {
            publish_addrs: vec![Ipv4Addr::new(10, 2, 2, 2)],
            publish_lease_secs: Some(6),
            ..PublishArgs::default()
        };
        let c = PublishConfig::merge(&a, &f).unwrap();
        assert_eq!(c.addrs, vec![Ipv4Addr::new(10, 2, 2, 2)]);
        assert_eq!(c.lease, Some(Duration::from_secs(6)));
        for (a, field) in [
            (
                PublishArgs {
                    publish_lease_secs: Some(1),
                    ..PublishArgs::default()
                },
                "publish_lease_secs",
            ),
            (
                PublishArgs {
                    publish_idle_timeout_secs: Some(5),
                    ..PublishArgs::default()
                },
                "publish_idle_timeout_secs",
            ),
            (
                PublishArgs {
                    publish_interfaces: vec!["a/b".into()],
                    ..PublishArgs::default()
                },
                "publish_interfaces",
            ),
            (
                PublishArgs {
                    publish_addrs: vec![Ipv4Addr::UNSPECIFIED],
                    ..PublishArgs::default()
                },
                "publish_addrs",
            ),
        ] {
            let e = PublishConfig::merge(&a, &FileConfig::default()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
