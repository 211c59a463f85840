//! nftables pieces shared by the VIP balancer (`lb::nft_plan`, `lb::nft_state`) and the
//! published-port host table (`mesh::host_plan`, `mesh::host_state`): the `nft -f` script
//! builder and the readers of `nft -j list table` JSON. Running `nft` is [`crate::sys`]'s.

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::records::Protocol;

/// An `nft -f` script on one `ip` table, counting its changes (one per command or element).
#[derive(Debug)]
pub struct Script {
    pub text: String,
    pub changes: usize,
    table: &'static str,
}

impl Script {
    /// An empty script for table `ip <table>`.
    pub fn new(table: &'static str) -> Self {
        Script {
            text: String::new(),
            changes: 0,
            table,
        }
    }

    /// A command that is one change.
    pub fn cmd(&mut self, line: String) {
        self.line(line);
        self.changes += 1;
    }

    /// A command that is part of the previous change.
    pub fn line(&mut self, line: String) {
        self.text.push_str(&line);
        self.text.push('\n');
    }

    /// `add`/`delete element` commands for `items` (one change each), in chunks so no line
    /// grows without bound.
    pub fn elements(&mut self, verb: &str, set: &str, items: &[String]) {
        for chunk in items.chunks(256) {
            self.line(format!(
                "{verb} element ip {} {set} {{ {} }}",
                self.table,
                chunk.join(", ")
            ));
        }
        self.changes += items.len();
    }
}

/// The objects of `nft -j list ...` output that belong to table `table` (or to no table:
/// metainfo), as (kind, body). `Err` only when the text is not nft JSON at all.
pub fn table_objects(json: &str, table: &str) -> Result<Vec<(String, Value)>, String> {
    let mut v: Value = serde_json::from_str(json).map_err(|e| format!("nft -j output: {e}"))?;
    let Some(Value::Array(objects)) = v.get_mut("nftables").map(Value::take) else {
        return Err("nft -j output: no \"nftables\" array".into());
    };
    Ok(objects
        .into_iter()
        .filter_map(|obj| match obj {
            Value::Object(o) => o.into_iter().next(),
            _ => None,
        })
        .filter(|(_, body)| {
            body.get("table")
                .and_then(Value::as_str)
                .is_none_or(|t| t == table)
        })
        .collect())
}

/// The string under `key`, or "".
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The elements of a listed set or map, if it is exactly of the shape a planner creates:
/// key types `expected.0`, a map (of verdicts) iff `expected.1`, no flags. `is_map` is what the
/// listing says it is. An empty set lists no `elem`: `Some(&[])`.
pub fn set_elems<'a>(
    body: &'a Value,
    is_map: bool,
    expected: (&[&str], bool),
) -> Option<&'a [Value]> {
    let types: Vec<&str> = match body.get("type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().map(|t| t.as_str().unwrap_or("?")).collect(),
        _ => return None,
    };
    if types != expected.0
        || is_map != expected.1
        || (is_map && str_of(body, "map") != "verdict")
        || body.get("flags").is_some()
    {
        return None;
    }
    match body.get("elem") {
        None => Some(&[]),
        Some(Value::Array(a)) => Some(a),
        Some(_) => None,
    }
}

/// `{"elem": {"val": X, ...}}` (an element with options) -> X.
pub fn unwrap_elem(e: &Value) -> &Value {
    e.get("elem").and_then(|x| x.get("val")).unwrap_or(e)
}

/// The parts of a concatenated key.
pub fn concat_of(v: &Value) -> Option<&Vec<Value>> {
    v.get("concat")?.as_array()
}

/// The chain a `goto` verdict names.
pub fn goto_of(v: &Value) -> Option<String> {
    v.get("goto")?.get("target")?.as_str().map(str::to_string)
}

/// `tcp`/`udp`, by name or number.
pub fn proto_of(v: &Value) -> Option<Protocol> {
    match v {
        Value::String(s) if s == "tcp" => Some(Protocol::Tcp),
        Value::String(s) if s == "udp" => Some(Protocol::Udp),
        Value::Number(n) if n.as_u64() == Some(6) => Some(Protocol::Tcp),
        Value::Number(n) if n.as_u64() == Some(17) => Some(Protocol::Udp),
        _ => None,
    }
}

/// An IPv4 address.
pub fn ip_of(v: &Value) -> Option<Ipv4Addr> {
    v.as_str()?.parse().ok()
}

/// A port, by number or as a string.
pub fn u16_of(v: &Value) -> Option<u16> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_of_another_shape_is_not_read_and_an_empty_one_reads_as_no_elements() {
        let set: Value =
            serde_json::from_str(r#"{"type": ["ipv4_addr", "ipv4_addr"], "elem": [1]}"#).unwrap();
        assert_eq!(
            set_elems(&set, false, (&["ipv4_addr", "ipv4_addr"], false)).map(<[_]>::len),
            Some(1)
        );
        assert!(set_elems(&set, false, (&["ipv4_addr"], false)).is_none());
        assert!(set_elems(&set, true, (&["ipv4_addr", "ipv4_addr"], false)).is_none());
        let empty: Value = serde_json::from_str(r#"{"type": "ifname"}"#).unwrap();
        assert_eq!(
            set_elems(&empty, false, (&["ifname"], false)),
            Some(&[][..])
        );
        let flagged: Value =
            serde_json::from_str(r#"{"type": "ifname", "flags": ["interval"]}"#).unwrap();
        assert!(set_elems(&flagged, false, (&["ifname"], false)).is_none());
    }

    #[test]
    fn elements_are_chunked_and_each_is_one_change() {
        let mut s = Script::new("t");
        let items: Vec<String> = (0..300).map(|i| i.to_string()).collect();
        s.elements("add", "set", &items);
        assert_eq!(s.changes, 300);
        assert_eq!(s.text.lines().count(), 2);
        assert!(s.text.starts_with("add element ip t set { 0, 1,"));
    }
}
