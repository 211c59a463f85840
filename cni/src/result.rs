//! The CNI result of an ADD: the container interface (with its MAC and sandbox), its
//! address with the network's gateway, the subnet route the address gives, and DNS (the
//! agent's resolver, `127.0.0.11`, unless the configuration names others). In a chain the
//! previous result is passed through with ours appended (interface indexes adjusted).
//!
//! swarmnet gives containers no default route (egress is the orchestrator's business): the
//! `gateway` of the address is the network's bridge address on every node.

use std::net::Ipv4Addr;

use proto::pb;
use serde_json::{Value, json};

use crate::conf::{Env, NetConf};
use crate::error::*;

/// `10.1.2.3/24` -> (`10.1.2.3`, 24).
fn split_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/')?;
    let p: u8 = p.parse().ok().filter(|p| *p <= 32)?;
    Some((a.parse().ok()?, p))
}

/// The network address of `ip/prefix`.
fn network_of(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    Ipv4Addr::from(u32::from(ip) & mask)
}

/// The DNS part: the configuration's servers, else the agent's resolver (if it serves one).
fn dns(ep: &pb::Endpoint, conf: &NetConf) -> Value {
    let servers = conf.dns.nameservers.clone().unwrap_or_else(|| {
        if ep.dns_server.is_empty() {
            Vec::new()
        } else {
            vec![ep.dns_server.clone()]
        }
    });
    let mut d = serde_json::Map::new();
    if !servers.is_empty() {
        d.insert("nameservers".into(), json!(servers));
    }
    if !conf.dns.search.is_empty() {
        d.insert("search".into(), json!(conf.dns.search));
    }
    if !conf.dns.options.is_empty() {
        d.insert("options".into(), json!(conf.dns.options));
    }
    Value::Object(d)
}

/// The result of our attachment alone, in the configuration's version.
pub fn build(ep: &pb::Endpoint, conf: &NetConf, env: &Env) -> Result<Value, CniError> {
    let (ip, prefix) = split_cidr(&ep.ip).ok_or_else(|| {
        CniError::new(
            AGENT_REFUSED,
            format!("the agent returned an invalid address {:?}", ep.ip),
        )
    })?;
    let mut addr = json!({
        "address": ep.ip,
        "interface": 0,
    });
    if !ep.gateway.is_empty() {
        addr["gateway"] = json!(ep.gateway);
    }
    if conf.cni_version != "1.0.0" {
        addr["version"] = json!("4");
    }
    let mut out = json!({
        "cniVersion": conf.cni_version,
        "interfaces": [{
            "name": env.ifname,
            "mac": ep.mac,
            "sandbox": env.netns,
        }],
        "ips": [addr],
        "routes": [{"dst": format!("{}/{prefix}", network_of(ip, prefix))}],
    });
    let d = dns(ep, conf);
    if d.as_object().is_some_and(|m| !m.is_empty()) {
        out["dns"] = d;
    }
    Ok(out)
}

fn array(v: &Value, key: &str) -> Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn union(a: Option<&Value>, b: Option<&Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in [a, b].into_iter().flatten() {
        for x in v.as_array().into_iter().flatten() {
            if !out.contains(x) {
                out.push(x.clone());
            }
        }
    }
    out
}

/// `prev` (the previous plugin's result) with `ours` appended: interfaces, addresses (their
/// `interface` index shifted), routes; our DNS servers first.
pub fn chain(prev: &Value, ours: &Value, cni_version: &str) -> Value {
    let mut interfaces = array(prev, "interfaces");
    let shift = interfaces.len() as u64;
    interfaces.extend(array(ours, "interfaces"));
    let mut ips = array(prev, "ips");
    for mut ip in array(ours, "ips") {
        if let Some(i) = ip.get("interface").and_then(Value::as_u64) {
            ip["interface"] = json!(i + shift);
        }
        ips.push(ip);
    }
    let mut routes = array(prev, "routes");
    routes.extend(array(ours, "routes"));
    let mut out = prev.clone();
    out["cniVersion"] = json!(cni_version);
    out["interfaces"] = json!(interfaces);
    out["ips"] = json!(ips);
    out["routes"] = json!(routes);
    let (pd, od) = (prev.get("dns"), ours.get("dns"));
    if pd.is_some() || od.is_some() {
        let mut d = serde_json::Map::new();
        for key in ["nameservers", "search", "options"] {
            let v = union(od.and_then(|d| d.get(key)), pd.and_then(|d| d.get(key)));
            if !v.is_empty() {
                d.insert(key.into(), json!(v));
            }
        }
        if let Some(domain) = pd.and_then(|d| d.get("domain")) {
            d.insert("domain".into(), domain.clone());
        }
        out["dns"] = Value::Object(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::parse;

    fn ep() -> pb::Endpoint {
        pb::Endpoint {
            ip: "10.128.0.5/24".into(),
            mac: "02:42:0a:80:00:05".into(),
            gateway: "10.128.0.1".into(),
            dns_server: "127.0.0.11".into(),
            ..Default::default()
        }
    }

    fn env() -> Env {
        Env {
            netns: "/proc/42/ns/net".into(),
            ifname: "eth0".into(),
            ..Env::default()
        }
    }

    #[test]
    fn a_result_has_the_interface_address_gateway_route_and_the_agents_resolver() {
        let conf =
            parse(br#"{"cniVersion":"1.0.0","name":"app","dns":{"search":["app.svc"]}}"#).unwrap();
        let r = build(&ep(), &conf, &env()).unwrap();
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "02:42:0a:80:00:05", "sandbox": "/proc/42/ns/net"}],
                "ips": [{"address": "10.128.0.5/24", "gateway": "10.128.0.1", "interface": 0}],
                "routes": [{"dst": "10.128.0.0/24"}],
                "dns": {"nameservers": ["127.0.0.11"], "search": ["app.svc"]}
            })
        );
        let old = parse(br#"{"cniVersion":"0.4.0","name":"app"}"#).unwrap();
        assert_eq!(
            build(&ep(), &old, &env()).unwrap()["ips"][0]["version"],
            "4"
        );
    }

    #[test]
    fn in_a_chain_the_previous_result_is_kept_and_ours_appended() {
        let conf = parse(br#"{"cniVersion":"1.0.0","name":"app"}"#).unwrap();
        let ours = build(&ep(), &conf, &env()).unwrap();
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [{"address": "10.88.0.2/16", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}],
            "dns": {"nameservers": ["10.88.0.1"], "domain": "d"}
        });
        let c = chain(&prev, &ours, "1.0.0");
        assert_eq!(c["interfaces"].as_array().unwrap().len(), 3);
        assert_eq!(c["ips"][0], prev["ips"][0]);
        assert_eq!(c["ips"][1]["interface"], 2);
        assert_eq!(c["routes"].as_array().unwrap().len(), 2);
        assert_eq!(c["dns"]["nameservers"], json!(["127.0.0.11", "10.88.0.1"]));
        assert_eq!(c["dns"]["domain"], "d");
    }
}
