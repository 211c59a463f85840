//! API listeners: a unix socket (mode 0600: root only) and TCP with mutual TLS (a client
//! without a certificate from the configured CA is refused during the handshake).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use proto::pb::cluster_server::ClusterServer;
use proto::pb::debug_server::DebugServer;
use proto::pb::endpoints_server::EndpointsServer;
use proto::pb::networks_server::NetworksServer;
use proto::pb::services_server::ServicesServer;
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

fn router(api: &Api, builder: Server) -> tonic::transport::server::Router {
    let mut builder = builder;
    builder
        .add_service(ClusterServer::new(api.clone()))
        .add_service(NetworksServer::new(api.clone()))
        .add_service(EndpointsServer::new(api.clone()))
        .add_service(ServicesServer::new(api.clone()))
        .add_service(DebugServer::new(api.clone()))
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
    for (path, l) in listeners.unix {
        let r = router(&api, Server::builder());
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
        let r = router(&api, builder);
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
