//! The connection to the local agent: gRPC over its unix socket, with bounded waits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use proto::pb;
use proto::pb::endpoints_client::EndpointsClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::*;

/// Longest wait for the socket to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one call (the first attach of a network waits for an address block).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An error and its sources, joined by ": ".
fn describe(e: &dyn std::error::Error) -> String {
    let chain: Vec<String> = std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect();
    chain.join(": ")
}

/// A client of the agent at `socket`; "try again later" when it cannot be reached.
pub async fn connect(socket: &Path) -> Result<EndpointsClient<Channel>, CniError> {
    let path: PathBuf = socket.to_path_buf();
    let unreachable = |reason: String| {
        CniError::new(
            TRY_AGAIN_LATER,
            format!(
                "cannot reach the swarmnet agent at {}: {reason} (is `swarmnet agent` running? \
                 the socket is the configuration's agentSocket)",
                socket.display()
            ),
        )
    };
    let ep = Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let ch = ep.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    }));
    let ch = tokio::time::timeout(CONNECT_TIMEOUT, ch)
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unreachable(describe(&e)))?;
    Ok(EndpointsClient::new(ch))
}

/// Attach (idempotent by the request's client id).
pub async fn attach(
    c: &mut EndpointsClient<Channel>,
    req: pb::AttachRequest,
) -> Result<pb::Endpoint, CniError> {
    let network = req.network.clone();
    c.attach(req)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| CniError::from_status(&format!("attach to network {network}"), &s))
}

/// Detach by client id; fine when there is nothing to detach.
pub async fn detach(c: &mut EndpointsClient<Channel>, client_id: &str) -> Result<bool, CniError> {
    c.detach(pb::DetachRequest {
        client_id: client_id.to_string(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().deleted)
    .map_err(|s| CniError::from_status("detach", &s))
}

/// The endpoint of `client_id`, `None` when the agent has none.
pub async fn inspect(
    c: &mut EndpointsClient<Channel>,
    client_id: &str,
) -> Result<Option<pb::Endpoint>, CniError> {
    match c
        .inspect(pb::InspectEndpointRequest {
            client_id: client_id.to_string(),
            ..Default::default()
        })
        .await
    {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(CniError::from_status("inspect", &s)),
    }
}
