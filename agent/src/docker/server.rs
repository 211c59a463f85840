//! HTTP/1.1 on the plugin's unix socket: `POST /<Interface>.<Method>` with a JSON body (Docker
//! sends none for some calls, and no content type), answered with JSON and Docker's plugin
//! content type.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::plugin::Plugin;
use super::protocol::{CONTENT_TYPE, error};

/// Bind the socket (replacing a stale one; creating its directory).
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("docker_plugin: create {}: {e}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        } else {
            return Err(format!(
                "docker_plugin: {} exists and is not a socket",
                path.display()
            ));
        }
    }
    let l = UnixListener::bind(path)
        .map_err(|e| format!("docker_plugin: bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("docker_plugin: chmod {}: {e}", path.display()))?;
    Ok(l)
}

async fn answer(
    plugin: Arc<Plugin>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let method = req.uri().path().trim_start_matches('/').to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => error(format!("swarmnet: {method}: the body is not JSON: {e}")),
        }
    };
    let (status, out) = match plugin.handle(&method, &value).await {
        Some(v) => (StatusCode::OK, v),
        None => (
            StatusCode::NOT_FOUND,
            error(format!("swarmnet: {method} is not supported")),
        ),
    };
    tracing::debug!(%method, request = %value, answer = %out, "docker plugin call");
    let bytes = serde_json::to_vec(&out).unwrap_or_default();
    Ok(Response::builder()
        .status(status)
        .header("Content-Type", CONTENT_TYPE)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// Serve until `stop` turns true; the socket file is removed on the way out.
pub async fn serve(
    plugin: Arc<Plugin>,
    listener: UnixListener,
    path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let p = plugin.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| answer(p.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(error = %e, "docker plugin connection");
                    }
                });
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}
