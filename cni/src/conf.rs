//! What the runtime asks: the network configuration (stdin), the `CNI_*` environment and
//! `CNI_ARGS`, turned into the agent request.
//!
//! Configuration keys (besides `cniVersion`, `name`, `type`, `capabilities`,
//! `runtimeConfig`, `prevResult`):
//!
//! | key | meaning | default |
//! | --- | --- | --- |
//! | `network` | swarmnet network name or id | the configuration's `name` |
//! | `service` | service the endpoint backs | none (`CNI_ARGS` `SWARMNET_SERVICE=` too) |
//! | `aliases` | extra DNS names of every container | none |
//! | `ip` | requested IPv4 address | allocated by the agent |
//! | `agentSocket` | the agent's API socket (path or `unix://` URL) | `/run/swarmnet/api.sock` |
//! | `dns` | `{"nameservers", "search", "options"}` returned to the runtime | the agent's resolver (`127.0.0.11`) |
//!
//! From the runtime: `CNI_ARGS` `IP=` and `MAC=` (podman's `--ip`, `--mac-address`),
//! `K8S_POD_NAME=` (the endpoint name; podman passes the container name), and the
//! capabilities `aliases` (`runtimeConfig.aliases[<name>]`), `ips` and `mac`. The agent socket
//! comes only from the configuration: podman's DEL runs in a cleanup process without the
//! caller's environment. Aliases that are not valid swarmnet names are left out.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use proto::pb;
use serde_json::Value;

use crate::error::*;

/// The `CNI_*` environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

impl Env {
    /// From the process environment.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
        }
    }

    /// The value of `key` in `CNI_ARGS` (`K=V;K=V`).
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
    }

    /// `CNI_CONTAINERID` and `CNI_IFNAME`, which every command but VERSION needs.
    pub fn require_identity(&self) -> Result<(), CniError> {
        if self.container_id.is_empty() {
            return Err(CniError::new(INVALID_ENV, "CNI_CONTAINERID is not set"));
        }
        if self.ifname.is_empty() {
            return Err(CniError::new(INVALID_ENV, "CNI_IFNAME is not set"));
        }
        Ok(())
    }
}

/// DNS settings returned in the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConf {
    pub nameservers: Option<Vec<String>>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// The parsed network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    /// The configuration's `name`.
    pub name: String,
    /// swarmnet network name or id.
    pub network: String,
    pub service: Option<String>,
    pub aliases: Vec<String>,
    pub ip: Option<Ipv4Addr>,
    /// Path of the agent's unix socket.
    pub agent_socket: PathBuf,
    pub dns: DnsConf,
    /// `runtimeConfig.aliases[name]`.
    pub runtime_aliases: Vec<String>,
    /// `runtimeConfig.ips`.
    pub runtime_ips: Vec<String>,
    /// `runtimeConfig.mac`.
    pub runtime_mac: Option<String>,
    /// The previous plugin's result, when chained.
    pub prev_result: Option<Value>,
}

fn strings(v: Option<&Value>, key: &str) -> Result<Vec<String>, CniError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(String::from).ok_or_else(|| {
                    CniError::new(INVALID_CONFIG, format!("{key}: {x} is not a string"))
                })
            })
            .collect(),
        Some(other) => Err(CniError::new(
            INVALID_CONFIG,
            format!("{key}: {other} is not a list of strings"),
        )),
    }
}

fn string(v: &Value, key: &str) -> Result<Option<String>, CniError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::new(
            INVALID_CONFIG,
            format!("{key}: {other} is not a string"),
        )),
    }
}

/// The socket path of `agentSocket` (a path or a `unix://` URL).
fn socket_path(s: &str) -> Result<PathBuf, CniError> {
    let p = s.strip_prefix("unix://").unwrap_or(s);
    let p = PathBuf::from(p);
    if !p.is_absolute() {
        return Err(CniError::new(
            INVALID_CONFIG,
            format!("agentSocket: {s} is not an absolute path or unix:// URL"),
        ));
    }
    Ok(p)
}

/// An IPv4 address, with or without a prefix length.
fn ipv4(field: &str, s: &str) -> Result<Ipv4Addr, CniError> {
    let addr = s.split('/').next().unwrap_or(s);
    addr.parse().map_err(|_| {
        CniError::new(
            INVALID_CONFIG,
            format!("{field}: {s} is not an IPv4 address"),
        )
    })
}

/// Parse stdin.
pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            DECODE_FAILURE,
            format!("the network configuration is not JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        return Err(CniError::new(
            DECODE_FAILURE,
            "the network configuration is not a JSON object",
        ));
    }
    let cni_version = string(&v, "cniVersion")?.unwrap_or_default();
    if !crate::SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {cni_version:?} is not supported (supported: {})",
                crate::SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    let name = string(&v, "name")?
        .ok_or_else(|| CniError::new(INVALID_CONFIG, "name: required (the network name)"))?;
    let network = string(&v, "network")?.unwrap_or_else(|| name.clone());
    let agent_socket = match string(&v, "agentSocket")? {
        Some(s) => socket_path(&s)?,
        None => PathBuf::from(crate::DEFAULT_AGENT_SOCKET),
    };
    let ip = string(&v, "ip")?.map(|s| ipv4("ip", &s)).transpose()?;
    let dns = match v.get("dns") {
        None | Some(Value::Null) => DnsConf::default(),
        Some(d @ Value::Object(_)) => DnsConf {
            nameservers: d
                .get("nameservers")
                .map(|n| strings(Some(n), "dns.nameservers"))
                .transpose()?,
            search: strings(d.get("search"), "dns.search")?,
            options: strings(d.get("options"), "dns.options")?,
        },
        Some(other) => {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("dns: {other} is not an object"),
            ));
        }
    };
    let rc = v.get("runtimeConfig").cloned().unwrap_or(Value::Null);
    let runtime_aliases = strings(
        rc.get("aliases").and_then(|a| a.get(&name)),
        "runtimeConfig.aliases",
    )?;
    let runtime_ips = strings(rc.get("ips"), "runtimeConfig.ips")?;
    let runtime_mac = string(&rc, "mac")?;
    Ok(NetConf {
        cni_version,
        name,
        network,
        service: string(&v, "service")?,
        aliases: strings(v.get("aliases"), "aliases")?,
        ip,
        agent_socket,
        dns,
        runtime_aliases,
        runtime_ips,
        runtime_mac,
        prev_result: v.get("prevResult").cloned().filter(|p| !p.is_null()),
    })
}

/// The agent's client id of this attachment.
pub fn client_id(conf: &NetConf, env: &Env) -> String {
    format!("cni/{}/{}/{}", conf.name, env.container_id, env.ifname)
}

/// A valid swarmnet name (1..=64 of `[A-Za-z0-9_.-]`, starting alphanumeric).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The endpoint name: `K8S_POD_NAME` (podman: the container name) when it is a valid name,
/// else the container id (its first 64 valid characters).
pub fn endpoint_name(env: &Env) -> String {
    if let Some(n) = env.arg("K8S_POD_NAME").filter(|n| valid_name(n)) {
        return n.to_string();
    }
    let id: String = env
        .container_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(64)
        .collect();
    id
}

/// The Attach request for ADD.
pub fn attach_request(conf: &NetConf, env: &Env) -> Result<pb::AttachRequest, CniError> {
    let name = endpoint_name(env);
    if name.is_empty() {
        return Err(CniError::new(
            INVALID_ENV,
            format!(
                "CNI_CONTAINERID {:?} gives no endpoint name (and K8S_POD_NAME is not set)",
                env.container_id
            ),
        ));
    }
    let ip = match env.arg("IP") {
        Some(s) => Some(ipv4("CNI_ARGS IP", s)?),
        None => match conf.runtime_ips.first() {
            Some(s) => Some(ipv4("runtimeConfig.ips", s)?),
            None => conf.ip,
        },
    };
    let mac = env
        .arg("MAC")
        .map(String::from)
        .or_else(|| conf.runtime_mac.clone());
    let mut aliases: Vec<String> = Vec::new();
    for a in conf.aliases.iter().chain(&conf.runtime_aliases) {
        if valid_name(a) && *a != name && !aliases.contains(a) {
            aliases.push(a.clone());
        }
    }
    let service = conf
        .service
        .clone()
        .or_else(|| env.arg("SWARMNET_SERVICE").map(String::from));
    Ok(pb::AttachRequest {
        network: conf.network.clone(),
        netns: env.netns.clone(),
        name,
        aliases,
        ip: ip.map(|i| i.to_string()).unwrap_or_default(),
        mac: mac.unwrap_or_default(),
        ifname: env.ifname.clone(),
        service: service.unwrap_or_default(),
        client_id: client_id(conf, env),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn podman_add() -> (NetConf, Env) {
        let conf = parse(
            br#"{"cniVersion":"1.0.0","name":"app","type":"swarmnet-cni",
                 "agentSocket":"unix:///run/sw/api.sock","aliases":["db"],
                 "capabilities":{"aliases":true,"ips":true,"mac":true},
                 "runtimeConfig":{"aliases":{"app":["web","2c9d32b38370","not valid"]},
                                  "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}"#,
        )
        .unwrap();
        let env = Env {
            command: "ADD".into(),
            container_id: "2c9d32b383703aee440ca9a74dcba3c4b3707d2a0ec7c1db1f88f1c3e334f17c".into(),
            netns: "/run/netns/netns-001af3b8".into(),
            ifname: "eth0".into(),
            args: "IgnoreUnknown=1;K8S_POD_NAME=c1;MAC=02:00:00:00:00:42;IP=10.77.1.50".into(),
        };
        (conf, env)
    }

    #[test]
    fn podmans_add_becomes_one_attach_with_its_name_aliases_ip_and_mac() {
        let (conf, env) = podman_add();
        assert_eq!(conf.agent_socket, PathBuf::from("/run/sw/api.sock"));
        assert_eq!(conf.network, "app");
        let r = attach_request(&conf, &env).unwrap();
        assert_eq!(r.name, "c1");
        assert_eq!(r.aliases, ["db", "web", "2c9d32b38370"]);
        assert_eq!(r.ip, "10.77.1.50");
        assert_eq!(r.mac, "02:00:00:00:00:42");
        assert_eq!(r.ifname, "eth0");
        assert_eq!(r.netns, "/run/netns/netns-001af3b8");
        assert_eq!(
            r.client_id,
            "cni/app/2c9d32b383703aee440ca9a74dcba3c4b3707d2a0ec7c1db1f88f1c3e334f17c/eth0"
        );
    }

    #[test]
    fn without_a_pod_name_the_container_id_names_the_endpoint() {
        let env = Env {
            container_id: "h1-b3".into(),
            ..Env::default()
        };
        assert_eq!(endpoint_name(&env), "h1-b3");
        let env = Env {
            container_id: "--x/y".into(),
            args: "K8S_POD_NAME=bad name".into(),
            ..Env::default()
        };
        assert_eq!(endpoint_name(&env), "xy");
    }

    #[test]
    fn bad_configurations_are_refused_with_the_spec_codes() {
        assert_eq!(parse(b"{not json").unwrap_err().code, DECODE_FAILURE);
        assert_eq!(parse(b"[]").unwrap_err().code, DECODE_FAILURE);
        let e = parse(br#"{"cniVersion":"9.9.9","name":"a"}"#).unwrap_err();
        assert_eq!(e.code, INCOMPATIBLE_VERSION);
        let e = parse(br#"{"cniVersion":"1.0.0"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (INVALID_CONFIG, "name: required (the network name)")
        );
        let e = parse(br#"{"cniVersion":"1.0.0","name":"a","agentSocket":"rel/x"}"#).unwrap_err();
        assert!(e.msg.starts_with("agentSocket: "), "{e:?}");
        let e = parse(br#"{"cniVersion":"1.0.0","name":"a","ip":"10.0.0.300"}"#).unwrap_err();
        assert!(e.msg.starts_with("ip: "), "{e:?}");
        let e = parse(br#"{"cniVersion":"1.0.0","name":"a","aliases":"x"}"#).unwrap_err();
        assert!(e.msg.starts_with("aliases: "), "{e:?}");
    }

    #[test]
    fn an_error_is_the_spec_json() {
        let e = CniError::new(TRY_AGAIN_LATER, "agent down").with_details("x");
        let v: Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cniVersion":"1.0.0","code":11,"msg":"agent down","details":"x"})
        );
    }
}
