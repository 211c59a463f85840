//! Pure planner of the nftables balancer: desired [`LbSpec`] vs the table read from the
//! kernel ([`super::nft_state`]) -> one `nft -f` script holding the minimal change, plus the
//! VIPs whose conntrack entries must be swept. No I/O here.
//!
//! Layout of table `ip swarmnet_lb` in the client container's namespace:
//!
//! ```text
//! map vip_ports { type ipv4_addr . inet_proto . inet_service : verdict }   VIP . tcp . 80 : goto s_web_1a2b3c4d_t80
//! map vip_any   { type ipv4_addr : verdict }                               VIP : goto s_web_1a2b3c4d_icmp | s_db_.._all
//! set vips      { type ipv4_addr }                                         every VIP (refused if not translated)
//! set members   { type ipv4_addr . ipv4_addr }                             VIP . backend, enabled or draining
//! chain nat_out    (nat, hook output, priority -100)
//!     ip daddr . meta l4proto . th dport vmap @vip_ports
//!     ip daddr vmap @vip_any
//! chain filter_out (filter, hook output, priority 0)
//!     ip daddr @vips reject with tcp reset      (only TCP)
//!     ip daddr @vips reject                     (icmp port-unreachable)
//! chain s_<id>_<hash>_t80
//!     meta l4proto tcp dnat ip to numgen inc mod N map { 0 : b1 . 8080, 1 : b2 . 8080, ... }
//! ```
//!
//! * A service with ports gets one chain per port (`t<port>` / `u<port>`) plus an `icmp`
//!   chain (ICMP echo to the VIP reaches a backend, so the VIP answers `ping`); a service
//!   without ports gets one `all` chain (every TCP and UDP port unchanged, and ICMP echo).
//! * Chains hold only ENABLED backends; a draining backend leaves the map (no new flows)
//!   while conntrack keeps the DNAT binding of its established flows.
//! * The filter chain rejects any packet still addressed to a VIP after the nat hook: a VIP
//!   whose backends are all draining or absent (its chain is empty), or a port the service
//!   does not publish. Clients get a TCP reset or an ICMP port-unreachable at once instead
//!   of a connect that hangs on an unanswered ARP for the VIP.
//! * `members` records every backend of every VIP (enabled or draining), so a later call can
//!   tell, from the kernel alone, which backends left the spec and whose conntrack entries
//!   must go ([`Plan::sweep`]); nothing is kept in the agent's memory.
//! * Balancing is `numgen inc` (strict round robin per client namespace) rather than
//!   `jhash`: conntrack already pins a flow to its backend, so a hash buys nothing, while
//!   round robin spreads even a handful of connections evenly. To keep the many client
//!   namespaces from all sending their first connection to the same backend (each counter
//!   starts at 0 and restarts when a chain is refilled), the backend list of each chain is
//!   rotated by a per-namespace seed ([`desired`]).
//!
//! The script is nft's text syntax rather than JSON: every name in it is generated here from
//! `[a-z0-9_]`, addresses and ports are typed values, so there is nothing to quote, and the
//! text forms are the ones verified on the target kernel (kernel-lab.md section 3).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::LbSpec;
use crate::nft::Script;
use crate::records::Protocol;

/// The balancer's table (family `ip`). No other table is ever touched.
pub const TABLE: &str = "swarmnet_lb";
/// Base chain: nat, hook output, priority -100 (nft 1.0.6 rejects `dstnat` in output).
pub const NAT_CHAIN: &str = "nat_out";
/// Base chain: filter, hook output, priority 0.
pub const FILTER_CHAIN: &str = "filter_out";
pub const PORTS_MAP: &str = "vip_ports";
pub const ANY_MAP: &str = "vip_any";
pub const VIPS_SET: &str = "vips";
pub const MEMBERS_SET: &str = "members";
/// Comment prefix of the base-chain rules; a table whose rules carry another layout
/// version is rebuilt.
pub const LAYOUT: &str = "swarmnet-lb v1";

/// The base-chain rules in order: (chain, rule body without comment, comment suffix).
pub const BASE_RULES: [(&str, &str, &str); 4] = [
    (
        NAT_CHAIN,
        "ip daddr . meta l4proto . th dport vmap @vip_ports",
        "ports",
    ),
    (NAT_CHAIN, "ip daddr vmap @vip_any", "any"),
    (
        FILTER_CHAIN,
        "ip daddr @vips meta l4proto tcp reject with tcp reset",
        "refuse tcp",
    ),
    (FILTER_CHAIN, "ip daddr @vips reject", "refuse"),
];

/// Which packets a service chain translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Traffic {
    Tcp,
    Udp,
    /// ICMP echo requests (the `icmp` chain of a service with ports).
    IcmpEcho,
    /// TCP, UDP (ports unchanged) and ICMP: a service without ports.
    All,
}

/// The one rule of a non-empty service chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    pub traffic: Traffic,
    /// Target port (`Tcp`/`Udp` only).
    pub port: Option<u16>,
    /// Enabled backends in numgen order (index i answers `numgen` value i).
    pub backends: Vec<Ipv4Addr>,
}

/// What a service chain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainContent {
    /// No rule: no enabled backend (the filter chain refuses the VIP).
    Empty,
    /// One `dnat ... numgen` rule.
    Balance(Balance),
    /// Anything this planner does not write (read from the kernel only); rewritten.
    Unrecognized,
}

/// The balancer's objects in one namespace, desired or read from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    /// `vip_ports`: (VIP, protocol, port) -> chain.
    pub ports: BTreeMap<(Ipv4Addr, Protocol, u16), String>,
    /// `vip_any`: VIP -> chain.
    pub any: BTreeMap<Ipv4Addr, String>,
    /// `vips`.
    pub vips: BTreeSet<Ipv4Addr>,
    /// `members`: (VIP, backend).
    pub members: BTreeSet<(Ipv4Addr, Ipv4Addr)>,
    /// Service chains (not the base chains) and their content.
    pub chains: BTreeMap<String, ChainContent>,
}

impl TableState {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
            && self.any.is_empty()
            && self.vips.is_empty()
            && self.members.is_empty()
            && self.chains.is_empty()
    }
}

/// The table as read from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actual {
    /// Maps, sets and base chains exactly as this planner writes them. When false the table
    /// is deleted and rebuilt in the same transaction.
    pub skeleton_ok: bool,
    /// What could be read (elements of a broken table are still used for the sweep).
    pub state: TableState,
}

/// The result of [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// An `nft -f` script, applied as one transaction; empty when nothing differs.
    pub script: String,
    /// Kernel objects changed: table create/delete, chain create/refill/delete, each map
    /// or set element added or deleted.
    pub changes: usize,
    /// VIPs that lost a backend (or went away) -> the backends they keep (enabled or
    /// draining). Conntrack entries whose original destination is such a VIP and whose reply
    /// source is not kept are to be deleted, after the script is applied.
    pub sweep: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>,
}

/// FNV-1a, 64 bit: stable across runs and platforms (chain names, rotation).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff; // separator, so ("ab","c") != ("a","bc")
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The seed rotating backend lists in one namespace: a hash of its path.
pub fn seed_for(netns: &str) -> u64 {
    fnv1a(&[b"seed", netns.as_bytes()])
}

/// Name of a service chain: `s_<up to 12 id chars>_<8 hex of hash(id, vip)>_<what>`, where
/// `what` is `t<port>`, `u<port>`, `icmp` or `all`. At most 30 characters of `[a-z0-9_]`
/// (below nft's 256 and the pre-4.14 kernels' 32), unique per (service id, VIP, port).
pub fn chain_name(id: &str, vip: Ipv4Addr, what: &str) -> String {
    let short: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    let short = if short.is_empty() { "x".into() } else { short };
    let h = fnv1a(&[id.as_bytes(), &vip.octets()]);
    format!("s_{short}_{:08x}_{what}", h as u32)
}

/// The desired table for `spec` in a namespace with rotation `seed` ([`seed_for`]), and
/// warnings about parts of the spec that were skipped (a repeated VIP, port, or port 0):
/// bad input never fails the whole namespace.
pub fn desired(spec: &LbSpec, seed: u64) -> (TableState, Vec<String>) {
    let mut t = TableState::default();
    let mut warnings = Vec::new();
    let mut services: Vec<_> = spec.services.iter().collect();
    services.sort_by(|a, b| (a.vip, &a.id).cmp(&(b.vip, &b.id)));
    for svc in services {
        if !t.vips.insert(svc.vip) {
            warnings.push(format!(
                "service {}: VIP {} already used by another service; skipped",
                svc.id, svc.vip
            ));
            continue;
        }
        let all: BTreeSet<Ipv4Addr> = svc.backends.iter().map(|b| b.ip).collect();
        let enabled: BTreeSet<Ipv4Addr> = svc
            .backends
            .iter()
            .filter(|b| b.enabled)
            .map(|b| b.ip)
            .collect();
        t.members.extend(all.iter().map(|b| (svc.vip, *b)));
        let content = |name: &str, traffic: Traffic, port: Option<u16>| {
            if enabled.is_empty() {
                return ChainContent::Empty;
            }
            let mut backends: Vec<Ipv4Addr> = enabled.iter().copied().collect();
            let r = fnv1a(&[&seed.to_le_bytes(), name.as_bytes()]) % backends.len() as u64;
            backends.rotate_left(r as usize);
            ChainContent::Balance(Balance {
                traffic,
                port,
                backends,
            })
        };
        if svc.ports.is_empty() {
            let name = chain_name(&svc.id, svc.vip, "all");
            let c = content(&name, Traffic::All, None);
            t.any.insert(svc.vip, name.clone());
            t.chains.insert(name, c);
            continue;
        }
        for p in &svc.ports {
            if p.port == 0 || p.target == 0 {
                warnings.push(format!(
                    "service {}: port {} -> {} is not a valid port; skipped",
                    svc.id, p.port, p.target
                ));
                continue;
            }
            let key = (svc.vip, p.protocol, p.port);
            if t.ports.contains_key(&key) {
                warnings.push(format!(
                    "service {}: {}/{} listed twice; the first one is used",
                    svc.id,
                    p.protocol.as_str(),
                    p.port
                ));
                continue;
            }
            let (what, traffic) = match p.protocol {
                Protocol::Tcp => (format!("t{}", p.port), Traffic::Tcp),
                Protocol::Udp => (format!("u{}", p.port), Traffic::Udp),
            };
            let name = chain_name(&svc.id, svc.vip, &what);
            let c = content(&name, traffic, Some(p.target));
            t.ports.insert(key, name.clone());
            t.chains.insert(name, c);
        }
        let name = chain_name(&svc.id, svc.vip, "icmp");
        let c = content(&name, Traffic::IcmpEcho, None);
        t.any.insert(svc.vip, name.clone());
        t.chains.insert(name, c);
    }
    (t, warnings)
}

/// Plans the change from `actual` (`None`: no table in the namespace) to `desired`.
///
/// * Empty desired state: delete the table (if any).
/// * No table, or a table whose skeleton differs: (delete and) create it whole.
/// * Otherwise only what differs, in an order valid inside one transaction: create new
///   chains, flush and refill changed chains, delete stale elements (and elements whose
///   verdict changed), add missing elements, delete chains no longer wanted.
///
/// [`Plan::sweep`] lists the VIPs that lost a backend according to `actual.members`.
pub fn plan(desired: &TableState, actual: Option<&Actual>) -> Plan {
    let mut script = Script::new(TABLE);
    let sweep = sweep(desired, actual.map(|a| &a.state));
    if desired.is_empty() {
        if actual.is_some() {
            script.cmd(format!("delete table ip {TABLE}"));
        }
    } else {
        match actual {
            Some(a) if a.skeleton_ok => diff(desired, &a.state, &mut script),
            _ => rebuild_into(desired, actual.is_some(), &mut script),
        }
    }
    Plan {
        script: script.text,
        changes: script.changes,
        sweep,
    }
}

/// A script that deletes the table (when `exists`) and creates it whole: the repair path
/// when an incremental script was refused by the kernel (e.g. a hand-added jump to one of
/// our chains). Its `sweep` is empty: the caller keeps the one of the failed plan.
pub fn rebuild(desired: &TableState, exists: bool) -> Plan {
    let mut script = Script::new(TABLE);
    if desired.is_empty() {
        if exists {
            script.cmd(format!("delete table ip {TABLE}"));
        }
    } else {
        rebuild_into(desired, exists, &mut script);
    }
    Plan {
        script: script.text,
        changes: script.changes,
        sweep: BTreeMap::new(),
    }
}

fn sweep(
    desired: &TableState,
    actual: Option<&TableState>,
) -> BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>> {
    let mut out = BTreeMap::new();
    let Some(actual) = actual else {
        return out;
    };
    for (vip, backend) in &actual.members {
        if !desired.members.contains(&(*vip, *backend)) {
            out.entry(*vip).or_insert_with(|| keep_of(desired, *vip));
        }
    }
    out
}

/// Every backend (enabled or draining) `desired` has for `vip`.
pub fn keep_of(desired: &TableState, vip: Ipv4Addr) -> BTreeSet<Ipv4Addr> {
    desired
        .members
        .range((vip, Ipv4Addr::UNSPECIFIED)..=(vip, Ipv4Addr::BROADCAST))
        .map(|(_, b)| *b)
        .collect()
}

fn rebuild_into(desired: &TableState, exists: bool, s: &mut Script) {
    if exists {
        s.cmd(format!("delete table ip {TABLE}"));
    }
    s.cmd(format!("add table ip {TABLE}"));
    s.line(format!(
        "add map ip {TABLE} {PORTS_MAP} {{ type ipv4_addr . inet_proto . inet_service : verdict; }}"
    ));
    s.line(format!(
        "add map ip {TABLE} {ANY_MAP} {{ type ipv4_addr : verdict; }}"
    ));
    s.line(format!(
        "add set ip {TABLE} {VIPS_SET} {{ type ipv4_addr; }}"
    ));
    s.line(format!(
        "add set ip {TABLE} {MEMBERS_SET} {{ type ipv4_addr . ipv4_addr; }}"
    ));
    s.line(format!(
        "add chain ip {TABLE} {NAT_CHAIN} {{ type nat hook output priority -100; policy accept; }}"
    ));
    s.line(format!(
        "add chain ip {TABLE} {FILTER_CHAIN} {{ type filter hook output priority 0; policy accept; }}"
    ));
    for (chain, body, what) in BASE_RULES {
        s.line(format!(
            "add rule ip {TABLE} {chain} {body} comment \"{LAYOUT} {what}\""
        ));
    }
    diff(desired, &TableState::default(), s);
}

fn diff(d: &TableState, a: &TableState, s: &mut Script) {
    // 1. New and changed chains, before any element points at them.
    for (name, want) in &d.chains {
        match a.chains.get(name) {
            None => {
                s.cmd(format!("add chain ip {TABLE} {name}"));
                if let Some(rule) = rule_text(want) {
                    s.line(format!("add rule ip {TABLE} {name} {rule}"));
                }
            }
            Some(have) if have != want => {
                s.cmd(format!("flush chain ip {TABLE} {name}"));
                if let Some(rule) = rule_text(want) {
                    s.line(format!("add rule ip {TABLE} {name} {rule}"));
                }
            }
            Some(_) => {}
        }
    }
    // 2. Stale elements (gone, or mapping to another chain now).
    let port_key = |(vip, proto, port): &(Ipv4Addr, Protocol, u16)| {
        format!("{vip} . {} . {port}", proto.as_str())
    };
    let ports_del: Vec<String> = stale_keys(&d.ports, &a.ports)
        .iter()
        .map(port_key)
        .collect();
    let any_del: Vec<String> = stale_keys(&d.any, &a.any)
        .iter()
        .map(ToString::to_string)
        .collect();
    let vips_del: Vec<String> = a.vips.difference(&d.vips).map(|v| v.to_string()).collect();
    let members_del: Vec<String> = a
        .members
        .difference(&d.members)
        .map(|(v, b)| format!("{v} . {b}"))
        .collect();
    s.elements("delete", PORTS_MAP, &ports_del);
    s.elements("delete", ANY_MAP, &any_del);
    s.elements("delete", VIPS_SET, &vips_del);
    s.elements("delete", MEMBERS_SET, &members_del);
    // 3. Missing elements.
    let ports_add: Vec<String> = missing(&d.ports, &a.ports)
        .iter()
        .map(|(k, c)| format!("{} : goto {c}", port_key(k)))
        .collect();
    let any_add: Vec<String> = missing(&d.any, &a.any)
        .iter()
        .map(|(k, c)| format!("{k} : goto {c}"))
        .collect();
    let vips_add: Vec<String> = d.vips.difference(&a.vips).map(|v| v.to_string()).collect();
    let members_add: Vec<String> = d
        .members
        .difference(&a.members)
        .map(|(v, b)| format!("{v} . {b}"))
        .collect();
    s.elements("add", PORTS_MAP, &ports_add);
    s.elements("add", ANY_MAP, &any_add);
    s.elements("add", VIPS_SET, &vips_add);
    s.elements("add", MEMBERS_SET, &members_add);
    // 4. Chains no longer wanted (their elements went in step 2).
    for name in a.chains.keys() {
        if !d.chains.contains_key(name) {
            s.cmd(format!("delete chain ip {TABLE} {name}"));
        }
    }
}

/// Keys of `have` that `want` lacks or maps elsewhere.
fn stale_keys<K: Ord + Copy>(want: &BTreeMap<K, String>, have: &BTreeMap<K, String>) -> Vec<K> {
    have.iter()
        .filter(|(k, v)| want.get(*k) != Some(*v))
        .map(|(k, _)| *k)
        .collect()
}

/// Entries of `want` that `have` lacks or maps elsewhere.
fn missing<'a, K: Ord + Copy>(
    want: &'a BTreeMap<K, String>,
    have: &BTreeMap<K, String>,
) -> Vec<(K, &'a str)> {
    want.iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (*k, v.as_str()))
        .collect()
}

/// The rule of a service chain (`None` for an empty chain).
pub fn rule_text(c: &ChainContent) -> Option<String> {
    let ChainContent::Balance(b) = c else {
        return None;
    };
    if b.backends.is_empty() {
        return None;
    }
    let matcher = match b.traffic {
        Traffic::Tcp => "meta l4proto tcp",
        Traffic::Udp => "meta l4proto udp",
        Traffic::IcmpEcho => "icmp type echo-request",
        Traffic::All => "meta l4proto { icmp, tcp, udp }",
    };
    let mut map = String::new();
    for (i, ip) in b.backends.iter().enumerate() {
        if i > 0 {
            map.push_str(", ");
        }
        let _ = match b.port {
            Some(p) => write!(map, "{i} : {ip} . {p}"),
            None => write!(map, "{i} : {ip}"),
        };
    }
    Some(format!(
        "{matcher} dnat ip to numgen inc mod {} map {{ {map} }}",
        b.backends.len()
    ))
}

#[cfg(test)]
#[path = "nft_plan_tests.rs"]
mod tests;
