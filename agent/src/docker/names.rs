//! Container names and aliases from dockerd's API: Docker's plugin protocol never says
//! which container an endpoint belongs to, but other nodes must resolve it by its name. After
//! Join, a task asks dockerd (`GET /networks/<id>`, then `GET /containers/<id>/json`) until
//! the endpoint shows up, then renames the swarmnet endpoint to the container's name with
//! its aliases on that network (`--network-alias`, and the short container id Docker adds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use super::plugin::{Plugin, client_id};

/// How long a container's name is looked for after Join.
const LEARN_FOR: Duration = Duration::from_secs(60);
/// Pause between lookups.
const RETRY: Duration = Duration::from_millis(250);
/// Longest one API call may take.
const CALL: Duration = Duration::from_secs(5);

/// `GET path` on dockerd's API socket; the JSON body of a 200 answer.
pub async fn get(socket: &std::path::Path, path: &str) -> Result<Value, String> {
    let call = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("Host", "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{path}: HTTP {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{path}: {e}"))
    };
    tokio::time::timeout(CALL, call)
        .await
        .map_err(|_| format!("{path}: no answer within {CALL:?}"))?
}

/// The container name and its aliases on the network, for Docker endpoint `eid`.
pub async fn lookup(
    socket: &std::path::Path,
    network: &str,
    eid: &str,
) -> Result<Option<(String, Vec<String>)>, String> {
    let net = get(socket, &format!("/networks/{network}")).await?;
    let Some(containers) = net.get("Containers").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some((cid, _)) = containers
        .iter()
        .find(|(_, c)| c.get("EndpointID").and_then(Value::as_str) == Some(eid))
    else {
        return Ok(None);
    };
    let c = get(socket, &format!("/containers/{cid}/json")).await?;
    let name = c
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string();
    let aliases = c
        .pointer("/NetworkSettings/Networks")
        .and_then(Value::as_object)
        .and_then(|nets| {
            nets.values()
                .find(|n| n.get("EndpointID").and_then(Value::as_str) == Some(eid))
        })
        .and_then(|n| n.get("Aliases"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok((!name.is_empty()).then_some((name, aliases)))
}

/// Learn the name of endpoint `eid` on Docker network `network` in the background.
pub fn learn_later(plugin: Arc<Plugin>, network: String, eid: String) {
    tokio::spawn(async move {
        let deadline = Instant::now() + LEARN_FOR;
        let cid = client_id(&eid);
        let mut last_err = String::new();
        while Instant::now() < deadline {
            // Left meanwhile: nothing to name.
            if plugin.agent.inspect_endpoint("", "", &cid).await.is_err() {
                return;
            }
            match lookup(&plugin.docker_api, &network, &eid).await {
                Ok(Some((name, aliases))) => {
                    match plugin.agent.rename_endpoint(&cid, &name, &aliases).await {
                        Ok(()) => {
                            tracing::info!(%name, ?aliases, docker = %eid.get(..12).unwrap_or(&eid), "docker: endpoint named after its container");
                        }
                        Err(e) => {
                            tracing::warn!(%name, error = %e, "docker: cannot name the endpoint after its container");
                        }
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => last_err = e,
            }
            tokio::time::sleep(RETRY).await;
        }
        tracing::warn!(docker = %eid, error = %last_err, "docker: the endpoint's container name never showed up in dockerd's API");
    });
}
