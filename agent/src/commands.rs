//! Client commands: call the API, format the answer.

use proto::pb;
use proto::pb::cluster_client::ClusterClient;
use proto::pb::debug_client::DebugClient;
use proto::pb::endpoints_client::EndpointsClient;
use proto::pb::networks_client::NetworksClient;
use proto::pb::services_client::ServicesClient;
use serde::Serialize;

use crate::cli::{
    ClientArgs, ClusterCmd, Command, DebugCmd, EndpointCmd, KeysCmd, NetworkCmd, ServiceCmd,
};
use crate::client::{self, ClientError, ClientTls};
use crate::output;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("{}", describe_status(.0))]
    Api(#[from] tonic::Status),
    #[error("invalid argument: {0}")]
    Usage(String),
}

/// `{}` in JSON mode, else `text` (what commands without a result print).
fn ack(json: bool, text: String) -> String {
    if json { "{}\n".into() } else { text }
}

/// JSON, or the text form.
fn show<T: Serialize + ?Sized>(json: bool, v: &T, text: impl FnOnce(&T) -> String) -> String {
    if json { output::json(&v) } else { text(v) }
}

/// `TAG:HEX` of `cluster keys set`.
pub fn parse_tagged_key(flag: &str, s: &str) -> Result<pb::Key, CommandError> {
    let bad = |why: &str| {
        CommandError::Usage(format!(
            "{flag} {}: {why}; expected TAG:HEX, e.g. 3:00112233445566778899aabbccddeeff",
            s.split(':').next().unwrap_or("")
        ))
    };
    let (tag, hex) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
    let tag: u64 = tag.parse().map_err(|_| bad("the tag is not a number"))?;
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) || hex.is_empty() {
        return Err(bad("the key is not hex"));
    }
    let key = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad("the key is not hex"))?;
    Ok(pb::Key { tag, key })
}

/// A random key of `bytes` bytes, as hex.
pub fn generate_key(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// `PORT[:TARGET][/tcp|udp]`.
pub fn parse_port(s: &str) -> Result<pb::ServicePort, CommandError> {
    let bad = || {
        CommandError::Usage(format!(
            "--port {s}: expected PORT[:TARGET][/tcp|udp], e.g. 80:8080/tcp"
        ))
    };
    let (ports, protocol) = match s.split_once('/') {
        Some((p, proto @ ("tcp" | "udp"))) => (p, proto),
        Some(_) => return Err(bad()),
        None => (s, "tcp"),
    };
    let (port, target) = match ports.split_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (ports, None),
    };
    let port: u32 = port.parse().map_err(|_| bad())?;
    let target_port: u32 = match target {
        Some(t) => t.parse().map_err(|_| bad())?,
        None => 0,
    };
    Ok(pb::ServicePort {
        protocol: protocol.into(),
        port,
        target_port,
    })
}

fn describe_status(s: &tonic::Status) -> String {
    use tonic::Code::*;
    let kind = match s.code() {
        InvalidArgument => "invalid argument",
        NotFound => "not found",
        AlreadyExists => "already exists",
        FailedPrecondition => "refused",
        ResourceExhausted => "exhausted",
        Unavailable => "unavailable",
        Unimplemented => "not supported",
        Unauthenticated | PermissionDenied => "not allowed",
        _ => "error",
    };
    format!("{kind}: {}", s.message())
}

/// Run a client command against the agent; the text to print on success.
pub async fn run(args: &ClientArgs, cmd: Command) -> Result<String, CommandError> {
    let tls = ClientTls {
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        ca: args.tls_ca.clone(),
    };
    let ch = client::connect(&args.api, &tls).await?;
    let json = args.json;
    Ok(match cmd {
        Command::Agent(_) | Command::Demo(_) => unreachable!("handled by main"),
        Command::Network(n) => {
            let mut c = NetworksClient::new(ch);
            match n {
                NetworkCmd::Create {
                    name,
                    subnet,
                    gateway,
                    vni,
                    mtu,
                    encrypted,
                } => {
                    let net = c
                        .create(pb::CreateNetworkRequest {
                            name,
                            subnet: subnet.unwrap_or_default(),
                            gateway: gateway.unwrap_or_default(),
                            vni: vni.unwrap_or(0),
                            mtu: mtu.unwrap_or(0),
                            encrypted,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    show(json, &net, output::network)
                }
                NetworkCmd::Ls => {
                    let list = c.list(pb::ListNetworksRequest {}).await?.into_inner();
                    show(json, list.networks.as_slice(), output::networks)
                }
                NetworkCmd::Inspect { network } => {
                    let net = c
                        .inspect(pb::InspectNetworkRequest { network })
                        .await?
                        .into_inner();
                    show(json, &net, output::network)
                }
                NetworkCmd::Rm { network } => {
                    c.delete(pb::DeleteNetworkRequest {
                        network: network.clone(),
                    })
                    .await?;
                    ack(json, format!("{network}\n"))
                }
            }
        }
        Command::Endpoint(e) => {
            let mut c = EndpointsClient::new(ch);
            match e {
                EndpointCmd::Attach {
                    network,
                    netns,
                    name,
                    aliases,
                    ip,
                    mac,
                    ifname,
                    service,
                    resolv_conf,
                    dns_search,
                    dns_options,
                } => {
                    let ep = c
                        .attach(pb::AttachRequest {
                            network,
                            netns,
                            name,
                            aliases,
                            ip: ip.unwrap_or_default(),
                            mac: mac.unwrap_or_default(),
                            ifname: ifname.unwrap_or_default(),
                            service: service.unwrap_or_default(),
                            resolv_conf: resolv_conf.unwrap_or_default(),
                            dns_search,
                            dns_options,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    show(json, &ep, output::endpoint)
                }
                EndpointCmd::Detach { endpoint, network } => {
                    c.detach(pb::DetachRequest {
                        endpoint: endpoint.clone(),
                        network: network.unwrap_or_default(),
                        ..Default::default()
                    })
                    .await?;
                    ack(json, format!("{endpoint}\n"))
                }
                EndpointCmd::Enable { endpoint, network } => {
                    let req = pb::EndpointServiceRequest {
                        endpoint,
                        network: network.unwrap_or_default(),
                    };
                    let ep = c.enable(req).await?.into_inner();
                    show(json, &ep, output::endpoint)
                }
                EndpointCmd::Disable { endpoint, network } => {
                    let req = pb::EndpointServiceRequest {
                        endpoint,
                        network: network.unwrap_or_default(),
                    };
                    let ep = c.disable(req).await?.into_inner();
                    show(json, &ep, output::endpoint)
                }
                EndpointCmd::Ls { network } => {
                    let list = c
                        .list(pb::ListEndpointsRequest {
                            network: network.unwrap_or_default(),
                        })
                        .await?
                        .into_inner();
                    show(json, list.endpoints.as_slice(), output::endpoints)
                }
            }
        }
        Command::Service(sc) => {
            let mut c = ServicesClient::new(ch);
            match sc {
                ServiceCmd::Create {
                    name,
                    networks,
                    mode,
                    ports,
                    aliases,
                    publish,
                    publish_mode,
                } => {
                    let ports = ports
                        .iter()
                        .map(|p| parse_port(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    let published = publish
                        .iter()
                        .map(|p| {
                            parse_port(p).map(|q| pb::PublishedPort {
                                protocol: q.protocol,
                                published_port: q.port,
                                target_port: q.target_port,
                                mode: publish_mode.clone(),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| match e {
                            CommandError::Usage(m) => {
                                CommandError::Usage(m.replacen("--port", "--publish", 1))
                            }
                            other => other,
                        })?;
                    let req = pb::CreateServiceRequest {
                        name,
                        networks,
                        mode,
                        ports,
                        aliases,
                        published,
                        ..Default::default()
                    };
                    let s = c.create(req).await?.into_inner();
                    show(json, &s, output::service)
                }
                ServiceCmd::Ls => {
                    let l = c.list(pb::ListServicesRequest {}).await?.into_inner();
                    show(json, l.services.as_slice(), output::services)
                }
                ServiceCmd::Inspect { service } => {
                    let s = c
                        .inspect(pb::InspectServiceRequest { service })
                        .await?
                        .into_inner();
                    show(json, &s, output::service)
                }
                ServiceCmd::Rm { service } => {
                    c.delete(pb::DeleteServiceRequest {
                        service: service.clone(),
                    })
                    .await?;
                    ack(json, format!("{service}\n"))
                }
            }
        }
        Command::Cluster(cc) => {
            let mut c = ClusterClient::new(ch);
            match cc {
                ClusterCmd::Status => {
                    let s = c.status(pb::StatusRequest {}).await?.into_inner();
                    show(json, &s, output::status)
                }
                ClusterCmd::Members => {
                    let m = c.members(pb::MembersRequest {}).await?.into_inner();
                    show(json, m.members.as_slice(), output::members)
                }
                ClusterCmd::Join { seeds } => {
                    c.join(pb::JoinRequest {
                        seeds: seeds.clone(),
                    })
                    .await?;
                    ack(
                        json,
                        format!(
                            "joining {} (see `swarmnet cluster members`)\n",
                            seeds.join(", ")
                        ),
                    )
                }
                ClusterCmd::Leave => {
                    c.leave(pb::LeaveRequest {}).await?;
                    ack(json, "left the cluster\n".into())
                }
                ClusterCmd::Keys(KeysCmd::Set { gossip, dataplane }) => {
                    if gossip.is_empty() && dataplane.is_empty() {
                        return Err(CommandError::Usage(
                            "give --gossip TAG:HEX and/or --dataplane TAG:HEX".into(),
                        ));
                    }
                    let ring =
                        |flag: &str, v: &[String]| -> Result<Option<pb::KeyRing>, CommandError> {
                            if v.is_empty() {
                                return Ok(None);
                            }
                            let keys = v
                                .iter()
                                .map(|s| parse_tagged_key(flag, s))
                                .collect::<Result<Vec<_>, _>>()?;
                            Ok(Some(pb::KeyRing { keys }))
                        };
                    let r = c
                        .set_keys(pb::SetKeysRequest {
                            gossip: ring("--gossip", &gossip)?,
                            dataplane: ring("--dataplane", &dataplane)?,
                        })
                        .await?
                        .into_inner();
                    show(json, &r, output::keys_set)
                }
                ClusterCmd::Keys(KeysCmd::Ls) => {
                    let s = c.status(pb::StatusRequest {}).await?.into_inner();
                    let r = pb::SetKeysResponse {
                        gossip: s.gossip_keys,
                        dataplane: s.dataplane_keys,
                    };
                    show(json, &r, output::keys_set)
                }
                ClusterCmd::Keys(KeysCmd::Generate { .. }) => {
                    unreachable!("handled by main")
                }
            }
        }
        Command::Debug(DebugCmd::Whoami { .. }) => unreachable!("handled by main"),
        Command::Debug(DebugCmd::Dump) => {
            let mut c = DebugClient::new(ch);
            c.dump(pb::DumpRequest {}).await?.into_inner().json + "\n"
        }
    })
}
