//! Other rulesets of the host that would block the mesh.
//!
//! Mesh flows are forwarded (client interface <-> ingress endpoint). Our forward chain
//! accepts them, but an `accept` ends only our own base chain: a base chain of another table
//! on the forward hook whose policy is `drop` (iptables' `FORWARD` after Docker set it to
//! DROP, firewalld's tables) drops them whatever the priorities. Such a chain is found here
//! and reported on the published ports it blocks, unless it accepts our connection mark
//! ([`super::HOST_CT_MARK`]). With `--publish-accept-iptables` the agent inserts that
//! accept into iptables' `DOCKER-USER` (or `FORWARD`) chain itself; it never edits a native
//! nftables table of someone else (firewalld rewrites its own; configure it there).
//!
//! Also found here: another table's DNAT of a port we would publish (Docker with
//! `userland-proxy=false` holds no socket, so [`super::reserve`] cannot see it): our nat
//! chain runs first and would silently take the port over, so it is refused instead.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::HOST_CT_MARK;
use super::host_plan::TABLE;
use crate::records::Protocol;

/// A base chain of another table that drops forwarded packets by policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardDrop {
    pub family: String,
    pub table: String,
    pub chain: String,
}

impl ForwardDrop {
    /// Whether it is iptables' (iptables-nft's) filter `FORWARD` chain.
    pub fn is_iptables(&self) -> bool {
        self.family == "ip" && self.table == "filter" && self.chain == "FORWARD"
    }

    /// What is wrong and how to fix it.
    pub fn describe(&self) -> String {
        let fix = if self.is_iptables() {
            format!(
                "add `iptables -I DOCKER-USER -m connmark --mark {HOST_CT_MARK:#x} -j ACCEPT` (or FORWARD), or run the agent with --publish-accept-iptables"
            )
        } else {
            format!("accept `ct mark {HOST_CT_MARK:#x}` there")
        };
        format!(
            "forwarded traffic is dropped by the policy of chain {} in table {} {}: {fix}",
            self.chain, self.family, self.table
        )
    }
}

/// Forward-hook base chains with policy drop in other tables, from `nft -j list chains`
/// output, each with the text of its rules (`nft -j list chain ...`) when `rules` gives it:
/// a chain whose rules mention our mark is taken to accept our flows. Pure.
pub fn blocking(chains_json: &str, rules: impl Fn(&ForwardDrop) -> String) -> Vec<ForwardDrop> {
    let Ok(v) = serde_json::from_str::<Value>(chains_json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for obj in v
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(c) = obj.get("chain") else { continue };
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if s("hook") != "forward" || s("policy") != "drop" || s("table") == TABLE {
            continue;
        }
        let family = s("family");
        if family != "ip" && family != "inet" {
            continue;
        }
        let d = ForwardDrop {
            family,
            table: s("table"),
            chain: s("name"),
        };
        let text = rules(&d);
        if text.contains(&HOST_CT_MARK.to_string()) || text.contains(&format!("{HOST_CT_MARK:#x}"))
        {
            continue;
        }
        out.push(d);
    }
    out
}

/// [`blocking`] on this host (the calling thread's namespace). For iptables' `FORWARD`, an
/// accept in `DOCKER-USER` (which Docker jumps to first) counts too.
pub fn scan() -> Result<Vec<ForwardDrop>, String> {
    let out = crate::sys::nft(None, &["-j", "list", "chains"], None).map_err(|e| e.to_string())?;
    if !out.ok {
        return Err(out.stderr);
    }
    Ok(blocking(&out.stdout, |d| {
        let mut text = list_chain(&d.family, &d.table, &d.chain);
        if d.is_iptables() {
            text.push_str(&list_chain("ip", "filter", "DOCKER-USER"));
            text.push_str(&iptables_has_accept());
        }
        text
    }))
}

fn list_chain(family: &str, table: &str, chain: &str) -> String {
    crate::sys::nft(None, &["-j", "list", "chain", family, table, chain], None)
        .ok()
        .filter(|o| o.ok)
        .map(|o| o.stdout)
        .unwrap_or_default()
}

/// iptables-nft stores `-m connmark` as an xtables match whose value nft cannot show: ask
/// iptables itself (its answer contains our mark when the rule is there).
fn iptables_has_accept() -> String {
    let Ok(tool) = crate::sys::tool("iptables") else {
        return String::new();
    };
    for chain in ["DOCKER-USER", "FORWARD"] {
        let ok = std::process::Command::new(&tool)
            .args(accept_args("-C", chain))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return format!("{HOST_CT_MARK:#x}");
        }
    }
    String::new()
}

fn accept_args(op: &str, chain: &str) -> Vec<String> {
    [
        "-w",
        op,
        chain,
        "-m",
        "connmark",
        "--mark",
        &format!("{HOST_CT_MARK:#x}"),
        "-j",
        "ACCEPT",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// Inserts our accept at the top of iptables' `DOCKER-USER` chain when it exists, else
/// `FORWARD` (idempotent: checked first).
pub fn accept_in_iptables() -> Result<String, String> {
    let tool = crate::sys::tool("iptables").map_err(|e| e.to_string())?;
    let run = |args: Vec<String>| {
        std::process::Command::new(&tool)
            .args(&args)
            .output()
            .map_err(|e| format!("iptables: {e}"))
    };
    let chain = if run(vec!["-w".into(), "-S".into(), "DOCKER-USER".into()])?
        .status
        .success()
    {
        "DOCKER-USER"
    } else {
        "FORWARD"
    };
    if run(accept_args("-C", chain))?.status.success() {
        return Ok(chain.to_string());
    }
    let mut args = accept_args("-I", chain);
    args.insert(3, "1".into());
    let out = run(args)?;
    if out.status.success() {
        Ok(chain.to_string())
    } else {
        Err(format!(
            "iptables -I {chain}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The ports of `wanted` that a rule of another table DNATs (`tcp|udp|th dport == P` in a
/// rule that also DNATs, natively or as iptables' `DNAT` target), from `nft -j list ruleset`
/// output, each with the table and chain. Pure.
pub fn foreign_dnat(
    ruleset_json: &str,
    wanted: &BTreeSet<(Protocol, u16)>,
) -> BTreeMap<(Protocol, u16), String> {
    let mut out = BTreeMap::new();
    let Ok(v) = serde_json::from_str::<Value>(ruleset_json) else {
        return out;
    };
    for obj in v
        .get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(r) = obj.get("rule") else { continue };
        let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if s("table").starts_with("swarmnet_") {
            continue;
        }
        let Some(expr) = r.get("expr").and_then(Value::as_array) else {
            continue;
        };
        let dnat = expr.iter().any(|e| {
            e.get("dnat").is_some()
                || e.get("xt").is_some_and(|x| {
                    x.get("type").and_then(Value::as_str) == Some("target")
                        && x.get("name").and_then(Value::as_str) == Some("DNAT")
                })
        });
        if !dnat {
            continue;
        }
        for e in expr {
            let Some(m) = e.get("match") else { continue };
            let Some(p) = m.get("left").and_then(|l| l.get("payload")) else {
                continue;
            };
            let field = p.get("field").and_then(Value::as_str);
            let protos: &[Protocol] = match p.get("protocol").and_then(Value::as_str) {
                Some("tcp") => &[Protocol::Tcp],
                Some("udp") => &[Protocol::Udp],
                Some("th") => &[Protocol::Tcp, Protocol::Udp],
                _ => &[],
            };
            let port = m.get("right").and_then(Value::as_u64);
            if field != Some("dport") || m.get("op").and_then(Value::as_str) != Some("==") {
                continue;
            }
            for proto in protos {
                if let Some(port) = port.and_then(|p| u16::try_from(p).ok())
                    && wanted.contains(&(*proto, port))
                {
                    out.entry((*proto, port)).or_insert_with(|| {
                        format!(
                            "{}/{port} is DNATed by chain {} of table {} {} on this host (another publisher, e.g. Docker without its userland proxy)",
                            proto.as_str(),
                            s("chain"),
                            s("family"),
                            s("table")
                        )
                    });
                }
            }
        }
    }
    out
}

/// [`foreign_dnat`] on this host (the calling thread's namespace): one ruleset listing.
pub fn scan_dnat(
    wanted: &BTreeSet<(Protocol, u16)>,
) -> Result<BTreeMap<(Protocol, u16), String>, String> {
    if wanted.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = crate::sys::nft(None, &["-j", "list", "ruleset"], None).map_err(|e| e.to_string())?;
    if !out.ok {
        return Err(out.stderr);
    }
    Ok(foreign_dnat(&out.stdout, wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAINS: &str = r#"{"nftables": [
      {"metainfo": {"version": "1.0.6"}},
      {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "inet", "table": "fw", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
      {"chain": {"family": "inet", "table": "ok", "name": "fwd", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
      {"chain": {"family": "ip", "table": "swarmnet_mesh", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": -10, "policy": "drop"}},
      {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}
    ]}"#;

    #[test]
    fn forward_chains_dropping_by_policy_are_found_unless_they_accept_our_mark() {
        let found = blocking(CHAINS, |_| String::new());
        let names: Vec<_> = found
            .iter()
            .map(|d| format!("{} {} {}", d.family, d.table, d.chain))
            .collect();
        assert_eq!(names, ["ip filter FORWARD", "inet fw fwd"]);
        assert!(found[0].is_iptables() && !found[1].is_iptables());
        assert!(found[0].describe().contains("--publish-accept-iptables"));
        let fixed = blocking(CHAINS, |d| {
            if d.table == "fw" {
                format!("{{\"ct\": {{\"key\": \"mark\"}}, \"right\": {HOST_CT_MARK}}}")
            } else {
                String::new()
            }
        });
        assert_eq!(fixed.len(), 1);
        assert!(blocking("not json", |_| String::new()).is_empty());
    }

    #[test]
    fn another_tables_dnat_of_a_wanted_port_is_found_natively_or_as_an_iptables_target() {
        // As nft 1.0.6 lists Docker's (iptables-nft) rule and a native one.
        let ruleset = r#"{"nftables": [
          {"rule": {"family": "ip", "table": "nat", "chain": "DOCKER", "handle": 5, "expr": [
            {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "docker0"}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
            {"counter": {"packets": 0, "bytes": 0}},
            {"xt": {"type": "target", "name": "DNAT"}}]}},
          {"rule": {"family": "ip", "table": "x", "chain": "p", "handle": 2, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}},
            {"dnat": {"addr": "1.2.3.4"}}]}},
          {"rule": {"family": "ip", "table": "x", "chain": "f", "handle": 3, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 9090}},
            {"accept": null}]}},
          {"rule": {"family": "ip", "table": "swarmnet_mesh", "chain": "p_t7070", "handle": 4, "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 7070}},
            {"dnat": {"addr": "10.0.0.3"}}]}}
        ]}"#;
        let wanted = BTreeSet::from([
            (Protocol::Tcp, 8080),
            (Protocol::Udp, 53),
            (Protocol::Tcp, 53),
            (Protocol::Tcp, 9090),
            (Protocol::Tcp, 7070),
        ]);
        let found = foreign_dnat(ruleset, &wanted);
        assert_eq!(
            found.keys().copied().collect::<Vec<_>>(),
            vec![(Protocol::Tcp, 8080), (Protocol::Udp, 53)],
            "no DNAT for 9090, ours for 7070, UDP only for 53"
        );
        assert!(found[&(Protocol::Tcp, 8080)].contains("chain DOCKER of table ip nat"));
    }
}
