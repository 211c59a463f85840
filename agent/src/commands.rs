//! Client commands: call the API, format the answer.

use proto::pb;
use proto::pb::cluster_client::ClusterClient;
use proto::pb::debug_client::DebugClient;
use proto::pb::endpoints_client::EndpointsClient;
use proto::pb::networks_client::NetworksClient;

use crate::cli::{ClientArgs, ClusterCmd, Command, DebugCmd, EndpointCmd, NetworkCmd};
use crate::client::{self, ClientError, ClientTls};
use crate::output;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("{}", describe_status(.0))]
    Api(#[from] tonic::Status),
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
                } => {
                    let net = c
                        .create(pb::CreateNetworkRequest {
                            name,
                            subnet: subnet.unwrap_or_default(),
                            gateway: gateway.unwrap_or_default(),
                            vni: vni.unwrap_or(0),
                            mtu: mtu.unwrap_or(0),
                            encrypted: false,
                        })
                        .await?
                        .into_inner();
                    if json {
                        output::json(&net)
                    } else {
                        output::network(&net)
                    }
                }
                NetworkCmd::Ls => {
                    let list = c.list(pb::ListNetworksRequest {}).await?.into_inner();
                    if json {
                        output::json(&list.networks)
                    } else {
                        output::networks(&list.networks)
                    }
                }
                NetworkCmd::Inspect { network } => {
                    let net = c
                        .inspect(pb::InspectNetworkRequest { network })
                        .await?
                        .into_inner();
                    if json {
                        output::json(&net)
                    } else {
                        output::network(&net)
                    }
                }
                NetworkCmd::Rm { network } => {
                    c.delete(pb::DeleteNetworkRequest {
                        network: network.clone(),
                    })
                    .await?;
                    if json {
                        "{}\n".into()
                    } else {
                        format!("{network}\n")
                    }
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
                        })
                        .await?
                        .into_inner();
                    if json {
                        output::json(&ep)
                    } else {
                        output::endpoint(&ep)
                    }
                }
                EndpointCmd::Detach { endpoint, network } => {
                    c.detach(pb::DetachRequest {
                        endpoint: endpoint.clone(),
                        network: network.unwrap_or_default(),
                    })
                    .await?;
                    if json {
                        "{}\n".into()
                    } else {
                        format!("{endpoint}\n")
                    }
                }
                EndpointCmd::Ls { network } => {
                    let list = c
                        .list(pb::ListEndpointsRequest {
                            network: network.unwrap_or_default(),
                        })
                        .await?
                        .into_inner();
                    if json {
                        output::json(&list.endpoints)
                    } else {
                        output::endpoints(&list.endpoints)
                    }
                }
            }
        }
        Command::Cluster(cc) => {
            let mut c = ClusterClient::new(ch);
            match cc {
                ClusterCmd::Status => {
                    let s = c.status(pb::StatusRequest {}).await?.into_inner();
                    if json {
                        output::json(&s)
                    } else {
                        output::status(&s)
                    }
                }
                ClusterCmd::Members => {
                    let m = c.members(pb::MembersRequest {}).await?.into_inner();
                    if json {
                        output::json(&m.members)
                    } else {
                        output::members(&m.members)
                    }
                }
                ClusterCmd::Join { seeds } => {
                    c.join(pb::JoinRequest {
                        seeds: seeds.clone(),
                    })
                    .await?;
                    if json {
                        "{}\n".into()
                    } else {
                        format!(
                            "joining {} (see `swarmnet cluster members`)\n",
                            seeds.join(", ")
                        )
                    }
                }
                ClusterCmd::Leave => {
                    c.leave(pb::LeaveRequest {}).await?;
                    if json {
                        "{}\n".into()
                    } else {
                        "left the cluster\n".into()
                    }
                }
            }
        }
        Command::Debug(DebugCmd::Dump) => {
            let mut c = DebugClient::new(ch);
            c.dump(pb::DumpRequest {}).await?.into_inner().json + "\n"
        }
    })
}
