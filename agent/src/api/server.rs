//! API listeners: a unix socket (mode 0600: root only) and TCP with mutual TLS (a client
//! without a certificate from the configured CA is refused during the handshake).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use proto::pb::cluster_server::ClusterServer;
use proto::pb::debug_server::DebugServer;
use proto::pb::endpoints_server::EndpointsServer;
use proto::pb::networks_server::NetworksServer;
use proto::pb::services_server::ServicesServer;
use proto::pb::watch_server::WatchServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::Api;
use crate::config::{ApiEndpoint, TlsFiles};

/// Bound API listeners, ready to serve.
#[derive(Debug, Default)]
pub struct Listeners {
    pub unix: Vec<(std::path::PathBuf, UnixListener)>,
    pub tcp: Vec<TcpListener>,
}

impl Listeners {
    /// Bind every endpoint. A stale unix socket file is replaced; a non-socket file at the
    /// path is an error.
    pub async fn bind(endpoints: &[ApiEndpoint]) -> Result<Self, String> {
        let mut out = Listeners::default();
        for ep in endpoints {
            match ep {
                ApiEndpoint::Unix(path) => {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| format!("api_listen: create {}: {e}", dir.display()))?;
                    }
                    if let Ok(meta) = std::fs::symlink_metadata(path) {
                        if meta.file_type().is_socket() {
                            let _ = std::fs::remove_file(path);
                        } else {
                            return Err(format!(
                                "api_listen: {} exists and is not a socket",
                                path.display()
                            ));
                        }
                    }
                    let l = UnixListener::bind(path)
                        .map_err(|e| format!("api_listen: bind {}: {e}", path.display()))?;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| format!("api_listen: chmod {}: {e}", path.display()))?;
                    out.unix.push((path.clone(), l));
                }
                ApiEndpoint::Tcp(addr) => {
                    let l = TcpListener::bind(addr)
                        .await
                        .map_err(|e| format!("api_listen: bind tcp://{addr}: {e}"))?;
                    out.tcp.push(l);
                }
            }
        }
        Ok(out)
    }
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))
}

/// The server TLS config: our identity, and client certificates required from `ca`.
pub fn server_tls(files: &TlsFiles) -> Result<ServerTlsConfig, String> {
    let cert = read("api_tls_cert", &files.cert)?;
    let key = read("api_tls_key", &files.key)?;
    let ca = read("api_tls_ca", &files.ca)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false))
}

/// The standard services beside ours: health (every service SERVING while the agent runs)
/// and server reflection (v1 and v1alpha, from the compiled descriptor sets).
type Health = tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

async fn health() -> Health {
    let reporter = tonic_health::server::HealthReporter::new();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for name in proto::SERVICE_NAMES {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter),
    )
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

fn router(
    api: &Api,
    health: &Health,
    builder: Server,
) -> Result<tonic::transport::server::Router, String> {
    let mut builder = builder;
    let v1 = reflection()
        .build_v1()
        .map_err(|e| format!("reflection: {e}"))?;
    let v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;
    Ok(builder
        .add_service(ClusterServer::new(api.clone()))
        .add_service(NetworksServer::new(api.clone()))
        .add_service(EndpointsServer::new(api.clone()))
        .add_service(ServicesServer::new(api.clone()))
        .add_service(WatchServer::new(api.clone()))
        .add_service(DebugServer::new(api.clone()))
        .add_service(health.clone())
        .add_service(v1)
        .add_service(v1alpha))
}

/// Serve the API on every listener until `stop` turns true. Unix socket files are removed
/// on the way out.
pub async fn serve(
    api: Api,
    listeners: Listeners,
    tls: Option<TlsFiles>,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut tasks = tokio::task::JoinSet::new();
    let tls_cfg = tls.as_ref().map(server_tls).transpose()?;
    let health = health().await;
    for (path, l) in listeners.unix {
        let r = router(&api, &health, Server::builder())?;
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let res = r
                .serve_with_incoming_shutdown(UnixListenerStream::new(l), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            let _ = std::fs::remove_file(&path);
            res.map_err(|e| format!("unix://{}: {e}", path.display()))
        });
    }
    for l in listeners.tcp {
        let cfg = tls_cfg
            .clone()
            .ok_or("api_listen: a TCP endpoint needs mutual TLS")?;
        let builder = Server::builder()
            .tls_config(cfg)
            .map_err(|e| format!("api tls: {e}"))?;
        let r = router(&api, &health, builder)?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        let mut stop = stop.clone();
        tasks.spawn(async move {
            r.serve_with_incoming_shutdown(TcpListenerStream::new(l), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .map_err(|e| format!("tcp://{addr}: {e}"))
        });
    }
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("api task: {e}")),
        }
    }
    Ok(())
}
