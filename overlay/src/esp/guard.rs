//! The fail-closed guard: an nftables table in the host namespace (where the VXLAN sockets
//! live) that drops clear-text VXLAN of encrypted networks, in both directions.
//!
//! ```text
//! table inet swarmnet_esp {
//!     chain output {
//!         type filter hook output priority filter; policy accept;
//!         udp dport 4789 @th,96,24 42 rt ipsec missing counter drop
//!     }
//!     chain input {
//!         type filter hook input priority filter; policy accept;
//!         udp dport 4789 @th,96,24 42 meta secpath missing counter drop
//!     }
//! }
//! ```
//!
//! * `@th,96,24` is the VNI: 24 bits at byte 12 of the transport header (8-byte UDP header,
//!   then the VXLAN header's flags and reserved bytes). A raw payload match works on any
//!   nf_tables kernel (no `xt_u32`, no inner-header expressions, which need 6.2).
//! * Output: the outer VXLAN packet passes `output` before ESP transforms it, carrying the
//!   route the xfrm policy lookup produced. `rt ipsec missing` is true when that route is not
//!   an xfrm bundle, i.e. the packet would leave in clear (no policy for the peer, no keys).
//!   The ESP packet that comes out of the transform is protocol 50 and does not match.
//! * Input: a VXLAN packet decrypted by ESP (transport mode) is re-injected and reaches
//!   `input` with a security path; `meta secpath missing` is true for one that arrived in
//!   clear. The kernel's own inbound policy check cannot do this job: the UDP encapsulation
//!   socket of VXLAN takes the packet before that check runs.
//! * Both expressions are part of nf_tables itself (meta and rt), available since Linux 4.19
//!   (so on Debian's 6.1 as on 6.18), unlike the `ipsec` expression (module `nft_xfrm`).
//!
//! The table is always written whole in one `nft -f` transaction (create, delete, create),
//! so no moment exists without the rules; counters restart then.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{GuardCounter, GuardHook, GuardRule, GuardState};
use crate::Error;

/// Name of the guard table (family `inet`).
pub const GUARD_TABLE: &str = "swarmnet_esp";

/// The `nft -f` script that replaces the guard table with exactly `rules` (sorted and
/// deduplicated).
pub fn render_guard(rules: &[GuardRule]) -> String {
    let mut rules = rules.to_vec();
    rules.sort_unstable();
    rules.dedup();
    let mut s = format!("table inet {GUARD_TABLE} {{}}\ndelete table inet {GUARD_TABLE}\n");
    s.push_str(&format!("table inet {GUARD_TABLE} {{\n"));
    for (chain, test) in [
        ("output", "rt ipsec missing"),
        ("input", "meta secpath missing"),
    ] {
        s.push_str(&format!(
            "\tchain {chain} {{\n\t\ttype filter hook {chain} priority filter; policy accept;\n"
        ));
        for r in &rules {
            s.push_str(&format!(
                "\t\tudp dport {} @th,96,24 {} {test} counter drop\n",
                r.port, r.vni
            ));
        }
        s.push_str("\t}\n");
    }
    s.push_str("}\n");
    s
}

/// The `nft -f` script that removes the guard table (succeeds when it is absent).
pub fn render_guard_delete() -> String {
    format!("table inet {GUARD_TABLE} {{}}\ndelete table inet {GUARD_TABLE}\n")
}

/// Parses `nft -j list table inet swarmnet_esp` output.
pub fn parse_guard(json: &str) -> Result<GuardState, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no \"nftables\" array")?;
    let mut state = GuardState {
        rules: Vec::new(),
        well_formed: true,
    };
    let mut chains = Vec::new();
    for item in items {
        if item.get("metainfo").is_some() || item.get("table").is_some() {
            continue;
        }
        if let Some(c) = item.get("chain") {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let ok = matches!(name, "output" | "input")
                && c.get("hook").and_then(Value::as_str) == Some(name)
                && c.get("type").and_then(Value::as_str) == Some("filter")
                && c.get("prio").and_then(Value::as_i64) == Some(0)
                && c.get("policy").and_then(Value::as_str) == Some("accept");
            if ok {
                chains.push(name.to_string());
            } else {
                state.well_formed = false;
            }
            continue;
        }
        if let Some(r) = item.get("rule") {
            match parse_rule(r) {
                Some(c) => state.rules.push(c),
                None => state.well_formed = false,
            }
            continue;
        }
        state.well_formed = false; // sets, maps, anything else
    }
    chains.sort();
    if chains != ["input", "output"] {
        state.well_formed = false;
    }
    Ok(state)
}

fn parse_rule(r: &Value) -> Option<GuardCounter> {
    let hook = match r.get("chain")?.as_str()? {
        "output" => GuardHook::Output,
        "input" => GuardHook::Input,
        _ => return None,
    };
    let e = r.get("expr")?.as_array()?;
    let [port, vni, ipsec, counter, verdict] = e.as_slice() else {
        return None;
    };
    let eq = |m: &Value| -> Option<(Value, Value)> {
        let m = m.get("match")?;
        (m.get("op")?.as_str()? == "==")
            .then_some((m.get("left")?.clone(), m.get("right")?.clone()))
    };
    let (l, p) = eq(port)?;
    let pl = l.get("payload")?;
    if pl.get("protocol")?.as_str()? != "udp" || pl.get("field")?.as_str()? != "dport" {
        return None;
    }
    let (l, v) = eq(vni)?;
    let pl = l.get("payload")?;
    if pl.get("base")?.as_str()? != "th"
        || pl.get("offset")?.as_u64()? != 96
        || pl.get("len")?.as_u64()? != 24
    {
        return None;
    }
    let (l, f) = eq(ipsec)?;
    let key = match hook {
        GuardHook::Output => l.get("rt")?,
        GuardHook::Input => l.get("meta")?,
    };
    if key.get("key")?.as_str()? != "ipsec" || f.as_bool()? {
        return None;
    }
    let c = counter.get("counter")?;
    verdict.get("drop")?;
    Some(GuardCounter {
        hook,
        rule: GuardRule {
            port: u16::try_from(p.as_u64()?).ok()?,
            vni: u32::try_from(v.as_u64()?).ok()?,
        },
        packets: c.get("packets")?.as_u64()?,
        bytes: c.get("bytes")?.as_u64()?,
    })
}

/// Where `nft` is: `$PATH`, then the sbin directories.
pub fn nft_path() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
}

fn nft() -> Result<Command, Error> {
    nft_path().map(Command::new).ok_or_else(|| Error::Guard {
        op: "run nft".into(),
        detail: "`nft` is not installed (apt-get install nftables)".into(),
    })
}

/// Reads the guard table of the **calling thread's** network namespace (`nft` inherits it);
/// `None` when absent.
pub fn read_guard() -> Result<Option<GuardState>, Error> {
    let out = nft()?
        .args(["-j", "list", "table", "inet", GUARD_TABLE])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Guard {
            op: "run nft".into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(Error::Guard {
            op: format!("nft list table inet {GUARD_TABLE}"),
            detail: err.trim().to_string(),
        });
    }
    parse_guard(&String::from_utf8_lossy(&out.stdout))
        .map(Some)
        .map_err(|detail| Error::Guard {
            op: format!("parse table inet {GUARD_TABLE}"),
            detail,
        })
}

/// Runs `script` with one `nft -f -` (one transaction) in the calling thread's namespace.
pub fn apply_guard_script(script: &str) -> Result<(), Error> {
    let err = |detail: String| Error::Guard {
        op: format!("nft -f (table inet {GUARD_TABLE})"),
        detail,
    };
    let mut child = nft()?
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_renders_one_output_and_one_input_rule_per_network_in_one_transaction() {
        let s = render_guard(&[
            GuardRule { port: 4790, vni: 7 },
            GuardRule {
                port: 4789,
                vni: 42,
            },
            GuardRule {
                port: 4789,
                vni: 42,
            },
        ]);
        assert_eq!(
            s,
            "table inet swarmnet_esp {}\n\
             delete table inet swarmnet_esp\n\
             table inet swarmnet_esp {\n\
             \tchain output {\n\
             \t\ttype filter hook output priority filter; policy accept;\n\
             \t\tudp dport 4789 @th,96,24 42 rt ipsec missing counter drop\n\
             \t\tudp dport 4790 @th,96,24 7 rt ipsec missing counter drop\n\
             \t}\n\
             \tchain input {\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t\tudp dport 4789 @th,96,24 42 meta secpath missing counter drop\n\
             \t\tudp dport 4790 @th,96,24 7 meta secpath missing counter drop\n\
             \t}\n\
             }\n"
        );
        assert_eq!(
            render_guard_delete(),
            "table inet swarmnet_esp {}\ndelete table inet swarmnet_esp\n"
        );
    }

    #[test]
    fn the_listing_of_nft_1_0_6_parses_into_the_rules_with_counters() {
        let g = parse_guard(include_str!("testdata/guard-nft-1.0.6.json")).unwrap();
        assert!(g.well_formed);
        let rules: Vec<_> = g
            .rules
            .iter()
            .map(|c| (c.hook, c.rule.port, c.rule.vni))
            .collect();
        assert_eq!(
            rules,
            vec![
                (GuardHook::Output, 4789, 42),
                (GuardHook::Output, 4790, 7),
                (GuardHook::Input, 4789, 42),
                (GuardHook::Input, 4790, 7),
            ]
        );
        assert!(g.rules.iter().all(|c| c.packets == 0 && c.bytes == 0));
    }

    #[test]
    fn a_table_with_anything_else_is_not_well_formed() {
        let base = include_str!("testdata/guard-nft-1.0.6.json");
        let accept = base.replacen("{\"drop\": null}", "{\"accept\": null}", 1);
        assert_ne!(accept, base);
        let g = parse_guard(&accept).unwrap();
        assert!(!g.well_formed);
        let policy = base.replacen("\"policy\": \"accept\"", "\"policy\": \"drop\"", 1);
        assert_ne!(policy, base);
        assert!(!parse_guard(&policy).unwrap().well_formed);
        assert!(parse_guard("{").is_err());
    }
}
