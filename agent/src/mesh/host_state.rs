//! Reads the host table from `nft -j list table ip swarmnet_mesh` output into the planner's
//! [`Actual`]. Pure (text in, value out); tolerant in the way of
//! [`crate::lb::nft_state`]: anything unexpected becomes [`ChainContent::Unrecognized`] (the
//! chain is rewritten) or a missing skeleton (the table is rebuilt); nothing panics on kernel
//! output. Rules are recognised by their comments (see [`super::host_plan`]).

use std::collections::BTreeSet;

use serde_json::Value;

use super::host_plan::{
    ADDRS_SET, Actual, BASE_CHAINS, ChainContent, IFACES_SET, INGRESS_SET, MEMBERS_SET, PORTS_MAP,
    SNAT_SET, Skeleton, TABLE, TableState,
};
use crate::nft::{
    concat_of, goto_of, ip_of, proto_of, set_elems, str_of, table_objects, u16_of, unwrap_elem,
};
use crate::records::Protocol;

/// Parses the JSON listing of the table. `Err` only when the text is not nft JSON at all.
pub fn parse(json: &str) -> Result<Actual, String> {
    let objects = table_objects(json, TABLE)?;
    let mut ok = true;
    let mut st = TableState::default();
    let mut timeouts: Vec<String> = Vec::new();
    let mut sets: BTreeSet<String> = BTreeSet::new();
    let mut base_seen: BTreeSet<&str> = BTreeSet::new();
    let mut rules: Vec<(String, String)> = Vec::new();
    for (kind, body) in &objects {
        match kind.as_str() {
            "metainfo" | "table" => {}
            "ct timeout" => timeouts.push(str_of(body, "name").to_string()),
            "map" | "set" => {
                let name = str_of(body, "name");
                sets.insert(name.to_string());
                ok &= read_set(kind == "map", name, body, &mut st);
            }
            "chain" => {
                let name = str_of(body, "name");
                if let Some((n, ty, hook, prio)) =
                    BASE_CHAINS.iter().find(|(n, _, _, _)| *n == name)
                {
                    ok &= str_of(body, "type") == *ty
                        && str_of(body, "hook") == *hook
                        && body.get("prio").and_then(Value::as_i64) == Some(*prio)
                        && str_of(body, "policy") == "accept";
                    base_seen.insert(n);
                    st.base.insert(name.to_string(), Vec::new());
                } else if body.get("hook").is_some() {
                    ok = false;
                } else {
                    st.chains
                        .insert(name.to_string(), ChainContent::Unrecognized);
                }
            }
            "rule" => rules.push((
                str_of(body, "chain").to_string(),
                str_of(body, "comment").to_string(),
            )),
            _ => ok = false, // counters, quotas, flowtables...: not ours
        }
    }
    ok &= base_seen.len() == BASE_CHAINS.len();
    for required in [PORTS_MAP, INGRESS_SET, SNAT_SET, MEMBERS_SET] {
        ok &= sets.contains(required);
    }
    let known = [
        PORTS_MAP,
        INGRESS_SET,
        SNAT_SET,
        MEMBERS_SET,
        ADDRS_SET,
        IFACES_SET,
    ];
    ok &= sets.iter().all(|s| known.contains(&s.as_str()));
    let timeout = match timeouts.as_slice() {
        [one] if one.starts_with("idle_") => Some(one.clone()),
        _ => None,
    };
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for (chain, comment) in rules {
        if let Some(list) = st.base.get_mut(&chain) {
            list.push(comment);
            continue;
        }
        let Some(content) = st.chains.get_mut(&chain) else {
            continue;
        };
        let n = counts.entry(chain).or_default();
        *n += 1;
        *content = match comment.strip_prefix("h=") {
            Some(h) if *n == 1 => {
                u64::from_str_radix(h, 16).map_or(ChainContent::Unrecognized, ChainContent::Rule)
            }
            _ => ChainContent::Unrecognized,
        };
    }
    let skeleton = match (ok, timeout) {
        (true, Some(timeout)) => Some(Skeleton {
            timeout,
            with_addrs: sets.contains(ADDRS_SET),
            with_ifaces: sets.contains(IFACES_SET),
        }),
        _ => None,
    };
    Ok(Actual {
        skeleton,
        state: st,
    })
}

/// Reads one map or set; false if it is not exactly what the planner creates or an element
/// cannot be read.
fn read_set(is_map: bool, name: &str, body: &Value, st: &mut TableState) -> bool {
    let expected: (&[&str], bool) = match name {
        PORTS_MAP => (&["inet_proto", "inet_service"], true),
        INGRESS_SET | IFACES_SET => (&["ifname"], false),
        SNAT_SET | ADDRS_SET => (&["ipv4_addr"], false),
        MEMBERS_SET => (&["inet_proto", "inet_service", "ipv4_addr"], false),
        _ => return false,
    };
    let Some(elems) = set_elems(body, is_map, expected) else {
        return false;
    };
    let mut all = true;
    for e in elems {
        let e = unwrap_elem(e);
        let good = match name {
            PORTS_MAP => read_port(e).map(|(k, c)| {
                st.ports.insert(k, c);
            }),
            INGRESS_SET => e.as_str().map(|s| {
                st.ingress.insert(s.to_string());
            }),
            IFACES_SET => e.as_str().map(|s| {
                st.ifaces.insert(s.to_string());
            }),
            SNAT_SET => ip_of(e).map(|ip| {
                st.snat.insert(ip);
            }),
            ADDRS_SET => ip_of(e).map(|ip| {
                st.addrs.insert(ip);
            }),
            _ => concat_of(e)
                .filter(|c| c.len() == 3)
                .and_then(|c| Some((proto_of(&c[0])?, u16_of(&c[1])?, ip_of(&c[2])?)))
                .map(|m| {
                    st.members.insert(m);
                }),
        };
        all &= good.is_some();
    }
    all
}

fn read_port(e: &Value) -> Option<((Protocol, u16), String)> {
    let pair = e.as_array().filter(|a| a.len() == 2)?;
    let key = concat_of(unwrap_elem(&pair[0])).filter(|c| c.len() == 2)?;
    Some(((proto_of(&key[0])?, u16_of(&key[1])?), goto_of(&pair[1])?))
}
