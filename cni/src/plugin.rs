//! The commands: ADD attaches, DEL detaches (idempotent, without needing the namespace),
//! CHECK compares the agent's endpoint, the previous result and the container, VERSION
//! lists the versions. Nothing is half-made: the agent rolls a failed attach back, and when
//! it cannot be reached nothing is created at all.

use std::net::Ipv4Addr;
use std::path::Path;

use serde_json::{Value, json};

use crate::conf::{self, Env, NetConf};
use crate::error::*;
use crate::{agent, check, result};

/// Run the command of `env` with the configuration `stdin`; `Some` is printed on stdout.
pub async fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    match env.command.as_str() {
        "VERSION" => Ok(Some(json!({
            "cniVersion": "1.0.0",
            "supportedVersions": crate::SUPPORTED_VERSIONS,
        }))),
        "ADD" => {
            let c = conf::parse(stdin)?;
            env.require_identity()?;
            add(env, &c).await.map(Some)
        }
        "DEL" => {
            let c = conf::parse(stdin)?;
            env.require_identity()?;
            del(env, &c).await.map(|_| None)
        }
        "CHECK" => {
            let c = conf::parse(stdin)?;
            env.require_identity()?;
            check(env, &c).await.map(|()| None)
        }
        "" => Err(CniError::new(INVALID_ENV, "CNI_COMMAND is not set")),
        other => Err(CniError::new(
            INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not one of ADD, DEL, CHECK, VERSION"),
        )),
    }
}

async fn add(env: &Env, c: &NetConf) -> Result<Value, CniError> {
    if env.netns.is_empty() {
        return Err(CniError::new(INVALID_ENV, "CNI_NETNS is not set"));
    }
    if !Path::new(&env.netns).exists() {
        return Err(CniError::new(
            UNKNOWN_CONTAINER,
            format!("CNI_NETNS {} does not exist", env.netns),
        ));
    }
    let req = conf::attach_request(c, env)?;
    let mut client = agent::connect(&c.agent_socket).await?;
    let ep = agent::attach(&mut client, req).await?;
    let ours = result::build(&ep, c, env)?;
    Ok(match &c.prev_result {
        Some(prev) => result::chain(prev, &ours, &c.cni_version),
        None => ours,
    })
}

async fn del(env: &Env, c: &NetConf) -> Result<(), CniError> {
    let mut client = agent::connect(&c.agent_socket).await?;
    agent::detach(&mut client, &conf::client_id(c, env)).await?;
    Ok(())
}

async fn check(env: &Env, c: &NetConf) -> Result<(), CniError> {
    let mut client = agent::connect(&c.agent_socket).await?;
    let id = conf::client_id(c, env);
    let ep = agent::inspect(&mut client, &id).await?.ok_or_else(|| {
        CniError::new(
            UNKNOWN_CONTAINER,
            format!("the agent has no attachment {id} (ADD was not done, or DEL was)"),
        )
    })?;
    let ip: Ipv4Addr = ep
        .ip
        .split('/')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| CniError::new(CHECK_FAILED, format!("agent address {:?}", ep.ip)))?;
    if let Some(prev) = &c.prev_result {
        compare_prev(prev, env, &ep.mac, &ep.ip)?;
    }
    if env.netns.is_empty() {
        return Err(CniError::new(INVALID_ENV, "CNI_NETNS is not set"));
    }
    check::enter(Path::new(&env.netns))?;
    check::verify(&env.ifname, &ep.mac, ip, check::seen(&env.ifname)?)
}

/// The previous result shows our interface with the agent's MAC and address.
fn compare_prev(prev: &Value, env: &Env, mac: &str, cidr: &str) -> Result<(), CniError> {
    let fail = |what: String| CniError::new(CHECK_FAILED, format!("prevResult: {what}"));
    let ifaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let idx = ifaces
        .iter()
        .position(|i| {
            i.get("name").and_then(Value::as_str) == Some(env.ifname.as_str())
                && i.get("sandbox").and_then(Value::as_str) == Some(env.netns.as_str())
        })
        .ok_or_else(|| fail(format!("no interface {} in {}", env.ifname, env.netns)))?;
    let prev_mac = ifaces[idx].get("mac").and_then(Value::as_str).unwrap_or("");
    if !prev_mac.eq_ignore_ascii_case(mac) {
        return Err(fail(format!(
            "{} has MAC {prev_mac}, the agent holds {mac}",
            env.ifname
        )));
    }
    let has_ip = prev
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|ip| {
            ip.get("interface").and_then(Value::as_u64) == Some(idx as u64)
                && ip.get("address").and_then(Value::as_str) == Some(cidr)
        });
    if !has_ip {
        return Err(fail(format!(
            "{} lacks {cidr}, the address the agent holds",
            env.ifname
        )));
    }
    Ok(())
}
