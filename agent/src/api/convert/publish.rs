//! Published ports on the wire: the `published` field of `CreateServiceRequest` validated
//! into [`PublishedPort`]s, and ports and their per-node status back to messages.

use proto::pb;

use crate::node::views::PublishedStatusInfo;
use crate::records::{Protocol, PublishMode, PublishedPort};
use crate::spec::{FieldError, MAX_PORTS};

/// Validates published ports: protocol, ports in 1..=65535 (target 0: the published port),
/// mode; unique by (protocol, published port). Sorted.
pub(super) fn published_in(ports: &[pb::PublishedPort]) -> Result<Vec<PublishedPort>, FieldError> {
    if ports.len() > MAX_PORTS {
        return Err(FieldError::new(
            "published",
            format!("{} given, at most {MAX_PORTS}", ports.len()),
        ));
    }
    let mut out: Vec<PublishedPort> = Vec::new();
    for p in ports {
        let protocol = match p.protocol.as_str() {
            "" | "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(FieldError::new(
                    "published.protocol",
                    format!("{other:?} is not a protocol: use \"tcp\" or \"udp\""),
                ));
            }
        };
        let published = u16::try_from(p.published_port)
            .ok()
            .filter(|v| *v != 0)
            .ok_or_else(|| {
                FieldError::new(
                    "published.published_port",
                    format!("{} is outside 1..=65535", p.published_port),
                )
            })?;
        let target = match p.target_port {
            0 => published,
            t => u16::try_from(t).map_err(|_| {
                FieldError::new("published.target_port", format!("{t} is outside 1..=65535"))
            })?,
        };
        let mode = match p.mode.as_str() {
            "" | "mesh" => PublishMode::Mesh,
            "local" => PublishMode::Local,
            other => {
                return Err(FieldError::new(
                    "published.mode",
                    format!("{other:?} is not a publish mode: use \"mesh\" or \"local\""),
                ));
            }
        };
        if out
            .iter()
            .any(|q| q.protocol == protocol && q.published == published)
        {
            return Err(FieldError::new(
                "published",
                format!("{}/{published} given twice", protocol.as_str()),
            ));
        }
        out.push(PublishedPort {
            protocol,
            published,
            target,
            mode,
        });
    }
    out.sort();
    Ok(out)
}

impl From<&PublishedPort> for pb::PublishedPort {
    fn from(p: &PublishedPort) -> Self {
        pb::PublishedPort {
            protocol: p.protocol.as_str().into(),
            published_port: p.published.into(),
            target_port: p.target.into(),
            mode: p.mode.as_str().into(),
        }
    }
}

impl From<&PublishedStatusInfo> for pb::PublishedStatus {
    fn from(s: &PublishedStatusInfo) -> Self {
        pb::PublishedStatus {
            node_id: s.node.to_string(),
            node_name: s.node_name.clone(),
            protocol: s.protocol.as_str().into(),
            published_port: s.port.into(),
            ready: s.ready,
            reason: s.reason.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(proto: &str, p: u32, t: u32, mode: &str) -> pb::PublishedPort {
        pb::PublishedPort {
            protocol: proto.into(),
            published_port: p,
            target_port: t,
            mode: mode.into(),
        }
    }

    #[test]
    fn published_ports_are_validated_and_every_error_names_its_field() {
        let ok = published_in(&[port("", 8080, 80, ""), port("udp", 53, 0, "local")]).unwrap();
        assert_eq!(
            ok,
            vec![
                PublishedPort {
                    protocol: Protocol::Tcp,
                    published: 8080,
                    target: 80,
                    mode: PublishMode::Mesh
                },
                PublishedPort {
                    protocol: Protocol::Udp,
                    published: 53,
                    target: 53,
                    mode: PublishMode::Local
                },
            ]
        );
        for (bad, field) in [
            (port("sctp", 1, 0, ""), "published.protocol"),
            (port("tcp", 0, 0, ""), "published.published_port"),
            (port("tcp", 70000, 0, ""), "published.published_port"),
            (port("tcp", 80, 70000, ""), "published.target_port"),
            (port("tcp", 80, 0, "host"), "published.mode"),
        ] {
            assert_eq!(published_in(&[bad]).unwrap_err().field, field);
        }
        let twice = published_in(&[port("tcp", 80, 1, ""), port("tcp", 80, 2, "")]).unwrap_err();
        assert_eq!(twice.field, "published");
        assert!(published_in(&[port("tcp", 80, 0, ""), port("udp", 80, 0, "")]).is_ok());
    }
}
