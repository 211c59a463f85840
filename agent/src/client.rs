//! Connecting to an agent's API: `unix:///path` or `https://host:port` with mutual TLS.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--api {0}: expected unix:///path or https://host:port")]
    BadUrl(String),
    #[error(
        "--api {url} needs --tls-ca (and --tls-cert/--tls-key: the agent requires a client certificate)"
    )]
    NoCa { url: String },
    #[error("{flag}: cannot read {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach the agent at {url}: {reason} (is `swarmnet agent` running there? see --api)"
    )]
    Connect { url: String, reason: String },
}

/// TLS material of a client.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// An error and its sources, joined by ": ".
fn describe(e: &dyn std::error::Error) -> String {
    let chain: Vec<String> = std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect();
    chain.join(": ")
}

/// A channel to the agent at `url`.
pub async fn connect(url: &str, tls: &ClientTls) -> Result<Channel, ClientError> {
    let fail = |reason: String| ClientError::Connect {
        url: url.to_string(),
        reason,
    };
    if let Some(path) = url.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(ClientError::BadUrl(url.to_string()));
        }
        let path = PathBuf::from(path);
        // The URI is required by the API but unused: the connector dials the socket.
        let ep = Endpoint::from_static("http://localhost");
        return ep
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }))
            .await
            .map_err(|e| fail(describe(&e)));
    }
    if url.starts_with("https://") {
        let ca = tls.ca.as_ref().ok_or_else(|| ClientError::NoCa {
            url: url.to_string(),
        })?;
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::BadUrl(url.to_string()))?;
        let host = uri
            .host()
            .ok_or_else(|| ClientError::BadUrl(url.to_string()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let mut cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?))
            .domain_name(host);
        if let (Some(c), Some(k)) = (&tls.cert, &tls.key) {
            cfg = cfg.identity(Identity::from_pem(
                read("--tls-cert", c)?,
                read("--tls-key", k)?,
            ));
        }
        let ep = Endpoint::from_shared(url.to_string())
            .map_err(|_| ClientError::BadUrl(url.to_string()))?
            .tls_config(cfg)
            .map_err(|e| fail(describe(&e)))?
            .connect_timeout(std::time::Duration::from_secs(5));
        return ep.connect().await.map_err(|e| fail(describe(&e)));
    }
    Err(ClientError::BadUrl(url.to_string()))
}
