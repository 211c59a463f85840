//! Reads the balancer's table from `nft -j list table ip swarmnet_lb` output into the
//! planner's [`Actual`]. Pure (text in, value out).
//!
//! Parsed with `serde_json::Value` and a narrow, tolerant reader rather than the
//! `nftables` crate's typed schema: nftables 0.6.3 fails to deserialize nft 1.0.6's listing
//! of a verdict map with `goto` elements ("data did not match any variant of untagged enum
//! NfObject"), and a typed reader that fails on one unexpected object would turn a hand edit
//! into an error instead of a repair. Here anything unexpected becomes
//! [`ChainContent::Unrecognized`] (the chain is rewritten) or `skeleton_ok == false` (the
//! table is rebuilt); nothing panics on kernel output.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::nft_plan::{
    ANY_MAP, Actual, BASE_RULES, Balance, ChainContent, FILTER_CHAIN, LAYOUT, MEMBERS_SET,
    NAT_CHAIN, PORTS_MAP, TABLE, TableState, Traffic, VIPS_SET,
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
    let mut base_seen: BTreeSet<&str> = BTreeSet::new();
    let mut sets_seen: BTreeSet<String> = BTreeSet::new();
    let mut rules: Vec<(String, Value)> = Vec::new();
    for (kind, body) in &objects {
        match kind.as_str() {
            "metainfo" | "table" => {}
            "map" | "set" => {
                let name = str_of(body, "name");
                sets_seen.insert(name.to_string());
                ok &= read_set(kind, name, body, &mut st);
            }
            "chain" => {
                let name = str_of(body, "name");
                match name {
                    NAT_CHAIN | FILTER_CHAIN => {
                        let (ty, prio) = if name == NAT_CHAIN {
                            ("nat", -100)
                        } else {
                            ("filter", 0)
                        };
                        ok &= str_of(body, "type") == ty
                            && str_of(body, "hook") == "output"
                            && body.get("prio").and_then(Value::as_i64) == Some(prio)
                            && str_of(body, "policy") == "accept";
                        base_seen.insert(if name == NAT_CHAIN {
                            NAT_CHAIN
                        } else {
                            FILTER_CHAIN
                        });
                    }
                    _ if body.get("hook").is_some() => ok = false,
                    _ => {
                        st.chains.insert(name.to_string(), ChainContent::Empty);
                    }
                }
            }
            "rule" => rules.push((str_of(body, "chain").to_string(), body.clone())),
            _ => ok = false, // counters, quotas, flowtables...: not ours
        }
    }
    ok &= base_seen.len() == 2;
    ok &= [PORTS_MAP, ANY_MAP, VIPS_SET, MEMBERS_SET]
        .iter()
        .all(|n| sets_seen.contains(*n))
        && sets_seen.len() == 4;
    // Base-chain rules, recognised by their layout comments, in order.
    let mut base = rules
        .iter()
        .filter(|(c, _)| c == NAT_CHAIN || c == FILTER_CHAIN)
        .map(|(c, r)| (c.as_str(), str_of(r, "comment").to_string()));
    for (chain, _, what) in BASE_RULES {
        ok &= base.next() == Some((chain, format!("{LAYOUT} {what}")));
    }
    ok &= base.next().is_none();
    // Service chains: one recognised rule or none.
    let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
    for (chain, rule) in &rules {
        let Some(content) = st.chains.get_mut(chain.as_str()) else {
            continue;
        };
        let n = count.entry(chain).or_default();
        *n += 1;
        *content = if *n == 1 {
            read_rule(rule).map_or(ChainContent::Unrecognized, ChainContent::Balance)
        } else {
            ChainContent::Unrecognized
        };
    }
    Ok(Actual {
        skeleton_ok: ok,
        state: st,
    })
}

/// Reads one map or set; false if it is not exactly what the planner creates.
fn read_set(kind: &str, name: &str, body: &Value, st: &mut TableState) -> bool {
    let expected: (&[&str], bool) = match name {
        PORTS_MAP => (&["ipv4_addr", "inet_proto", "inet_service"], true),
        ANY_MAP => (&["ipv4_addr"], true),
        VIPS_SET => (&["ipv4_addr"], false),
        MEMBERS_SET => (&["ipv4_addr", "ipv4_addr"], false),
        _ => return false,
    };
    let Some(elems) = set_elems(body, kind == "map", expected) else {
        return false;
    };
    let mut all_read = true;
    for e in elems {
        let e = unwrap_elem(e);
        let good = match name {
            PORTS_MAP => read_port_elem(e).map(|(k, c)| st.ports.insert(k, c)),
            ANY_MAP => read_any_elem(e).map(|(k, c)| st.any.insert(k, c)),
            VIPS_SET => ip_of(e).map(|ip| {
                st.vips.insert(ip);
                None
            }),
            _ => concat_of(e)
                .filter(|c| c.len() == 2)
                .and_then(|c| Some((ip_of(&c[0])?, ip_of(&c[1])?)))
                .map(|m| {
                    st.members.insert(m);
                    None
                }),
        };
        // An element we cannot name cannot be deleted: rebuild (after reading the rest,
        // which the conntrack sweep still uses).
        all_read &= good.is_some();
    }
    all_read
}

fn read_port_elem(e: &Value) -> Option<((Ipv4Addr, Protocol, u16), String)> {
    let pair = e.as_array().filter(|a| a.len() == 2)?;
    let key = concat_of(unwrap_elem(&pair[0])).filter(|c| c.len() == 3)?;
    let vip = ip_of(&key[0])?;
    let proto = proto_of(&key[1])?;
    let port = u16_of(&key[2])?;
    Some(((vip, proto, port), goto_of(&pair[1])?))
}

fn read_any_elem(e: &Value) -> Option<(Ipv4Addr, String)> {
    let pair = e.as_array().filter(|a| a.len() == 2)?;
    Some((ip_of(unwrap_elem(&pair[0]))?, goto_of(&pair[1])?))
}

/// Reads `<match> dnat [ip] to numgen inc mod N map { 0 : a [. port], ... }`.
fn read_rule(rule: &Value) -> Option<Balance> {
    if rule.get("comment").is_some() {
        return None;
    }
    let expr = rule.get("expr")?.as_array().filter(|e| e.len() == 2)?;
    let traffic = read_match(expr[0].get("match")?)?;
    let dnat = expr[1].get("dnat")?.as_object()?;
    if dnat.keys().any(|k| k != "family" && k != "addr")
        || dnat.get("family").is_some_and(|f| f != "ip")
    {
        return None;
    }
    let map = dnat.get("addr")?.get("map")?;
    let ng = map.get("key")?.get("numgen")?;
    if str_of(ng, "mode") != "inc" || ng.get("offset").and_then(Value::as_u64).unwrap_or(0) != 0 {
        return None;
    }
    let modulus = ng.get("mod")?.as_u64()?;
    let items = map.get("data")?.get("set")?.as_array()?;
    let mut entries: Vec<(u64, Ipv4Addr, Option<u16>)> = Vec::new();
    for item in items {
        let pair = item.as_array().filter(|a| a.len() == 2)?;
        let index = pair[0].as_u64()?;
        let (ip, port) = match &pair[1] {
            Value::String(_) => (ip_of(&pair[1])?, None),
            v => {
                let c = concat_of(v).filter(|c| c.len() == 2)?;
                (ip_of(&c[0])?, Some(u16_of(&c[1])?))
            }
        };
        entries.push((index, ip, port));
    }
    entries.sort();
    let n = entries.len() as u64;
    if n == 0 || modulus != n || entries.iter().enumerate().any(|(i, e)| e.0 != i as u64) {
        return None;
    }
    let port = entries[0].2;
    if entries.iter().any(|e| e.2 != port) {
        return None;
    }
    let needs_port = matches!(traffic, Traffic::Tcp | Traffic::Udp);
    if needs_port != port.is_some() {
        return None;
    }
    Some(Balance {
        traffic,
        port,
        backends: entries.iter().map(|e| e.1).collect(),
    })
}

fn read_match(m: &Value) -> Option<Traffic> {
    if str_of(m, "op") != "==" {
        return None;
    }
    let left = m.get("left")?;
    let right = m.get("right")?;
    if let Some(meta) = left.get("meta") {
        if str_of(meta, "key") != "l4proto" {
            return None;
        }
        return match right {
            Value::String(s) if s == "tcp" => Some(Traffic::Tcp),
            Value::String(s) if s == "udp" => Some(Traffic::Udp),
            v => {
                let set: BTreeSet<&str> = v
                    .get("set")?
                    .as_array()?
                    .iter()
                    .map(|x| x.as_str().unwrap_or("?"))
                    .collect();
                (set == BTreeSet::from(["icmp", "tcp", "udp"])).then_some(Traffic::All)
            }
        };
    }
    let payload = left.get("payload")?;
    (str_of(payload, "protocol") == "icmp"
        && str_of(payload, "field") == "type"
        && right.as_str() == Some("echo-request"))
    .then_some(Traffic::IcmpEcho)
}

#[cfg(test)]
#[path = "nft_state_tests.rs"]
mod tests;
