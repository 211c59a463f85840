//! Pure planner of the host table: desired [`HostSpec`] vs the table read from the kernel
//! ([`super::host_state`]) -> one `nft -f` script holding the minimal change. No I/O here.
//!
//! Layout of table `ip swarmnet_mesh` in the host namespace:
//!
//! ```text
//! ct timeout idle_<secs>   { protocol tcp; policy = { established: <secs> } }
//! map published     { type inet_proto . inet_service : verdict }   tcp . 8080 : goto p_t8080
//! set ingress_ifs   { type ifname }                               the ingress endpoints
//! set snat_backends { type ipv4_addr }                            backends reached with SNAT
//! set members       { type inet_proto . inet_service . ipv4_addr } every backend of every port
//! set pub_addrs { type ipv4_addr }  set pub_ifs { type ifname }   only when configured
//! chain prerouting  nat    prerouting -110: [meta time < T] [iifname @pub_ifs]
//!                   (fib daddr type local | ip daddr @pub_addrs)
//!                   meta l4proto . th dport vmap @published
//! chain output      nat    output     -110: the same for the host's own connections (not 127/8)
//! chain postrouting nat    postrouting 90:  oifname @ingress_ifs ct mark M
//!                                           ip daddr @snat_backends masquerade
//! chain forward     filter forward    -10:  ct mark M ct status dnat accept;
//!                                           iifname @ingress_ifs drop; oifname @ingress_ifs drop
//! chain input       filter input      -10:  iifname @ingress_ifs ct state established,related
//!                                           accept; iifname @ingress_ifs drop
//! chain p_t8080: ct mark set M ct timeout set "idle_<secs>"
//!                dnat ip to jhash ip saddr . tcp sport mod N seed S map { 0 : b . 80, ... }
//!           or:  meta l4proto tcp reject with tcp reset          (no usable backend)
//! ```
//!
//! * Every rule this planner writes carries a comment: the base rules `swarmnet-mesh v1
//!   <what>` (the entry rules also `until=<T>`, the lease), the port chains' single rule a
//!   digest of what it was written from (`h=<16 hex>`). The reader recognises rules by these
//!   comments only; a chain whose rules differ in number or comment is rewritten. (A hand
//!   edit that keeps our comment is not seen; one that adds, deletes or replaces a rule is.)
//! * The idle timeout object is named after its value, so a new value is a new skeleton
//!   (the table is rebuilt in one transaction).
//! * `members` records every backend each port had (enabled or draining), so a later call
//!   can tell, from the kernel alone, which backends left and whose conntrack entries must go
//!   ([`Plan::sweep`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::{HOST_CT_MARK, PortSpec};
use crate::lb::nft_plan::fnv1a;
use crate::nft::Script;
use crate::records::Protocol;

/// The mesh's table (family `ip`) in the host namespace. No other table is ever touched.
pub const TABLE: &str = "swarmnet_mesh";
pub const PORTS_MAP: &str = "published";
pub const INGRESS_SET: &str = "ingress_ifs";
pub const SNAT_SET: &str = "snat_backends";
pub const MEMBERS_SET: &str = "members";
pub const ADDRS_SET: &str = "pub_addrs";
pub const IFACES_SET: &str = "pub_ifs";
/// Comment prefix of the base rules; a different layout version is rebuilt.
pub const LAYOUT: &str = "swarmnet-mesh v1";
/// Seed of the backend hash (any constant: conntrack pins a flow; the hash only makes a
/// flow whose entry was lost land on the same backend again).
pub const JHASH_SEED: u32 = 0x5353;

/// A base chain: (name, type, hook, priority).
pub const BASE_CHAINS: [(&str, &str, &str, i64); 5] = [
    ("prerouting", "nat", "prerouting", -110),
    ("output", "nat", "output", -110),
    ("postrouting", "nat", "postrouting", 90),
    ("forward", "filter", "forward", -10),
    ("input", "filter", "input", -10),
];

/// Everything the host table should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSpec {
    /// Published ports, by (protocol, port).
    pub ports: BTreeMap<(Protocol, u16), PortSpec>,
    /// Names of this node's ingress endpoints.
    pub ingress: BTreeSet<String>,
    /// Backends reached with SNAT (their node cannot keep the client address).
    pub snat: BTreeSet<Ipv4Addr>,
    /// Every backend (enabled or draining) of every port, for the conntrack sweep.
    pub members: BTreeSet<(Protocol, u16, Ipv4Addr)>,
    /// Answer only on these addresses (empty: every local address).
    pub addrs: BTreeSet<Ipv4Addr>,
    /// Answer only on these interfaces (empty: every interface).
    pub ifaces: BTreeSet<String>,
    /// Established-connection idle timeout of TCP ports, seconds.
    pub idle_timeout: u32,
    /// The entry rules stop matching at this time (seconds since the epoch); 0: never.
    pub lease_until: u64,
}

impl HostSpec {
    /// Nothing published: the table should not exist.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

/// What a port chain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainContent {
    /// One rule written from this digest ([`digest`]).
    Rule(u64),
    /// Anything else (read from the kernel only); rewritten.
    Unrecognized,
}

/// The table's objects, desired or read from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    /// `ports`: (protocol, port) -> chain.
    pub ports: BTreeMap<(Protocol, u16), String>,
    pub ingress: BTreeSet<String>,
    pub snat: BTreeSet<Ipv4Addr>,
    pub members: BTreeSet<(Protocol, u16, Ipv4Addr)>,
    pub addrs: BTreeSet<Ipv4Addr>,
    pub ifaces: BTreeSet<String>,
    /// Port chains and their content.
    pub chains: BTreeMap<String, ChainContent>,
    /// The base rules (chain -> comments in order).
    pub base: BTreeMap<String, Vec<String>>,
}

/// The table's fixed parts: what must match exactly, or the table is rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skeleton {
    /// Name of the ct timeout object (`idle_<secs>`).
    pub timeout: String,
    /// Whether `addrs` / `ifaces` exist.
    pub with_addrs: bool,
    pub with_ifaces: bool,
}

/// The table as read from the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actual {
    /// `None` when the skeleton is not exactly what this planner writes (rebuilt).
    pub skeleton: Option<Skeleton>,
    pub state: TableState,
}

/// The result of [`plan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One `nft -f` script (one transaction); empty when nothing differs.
    pub script: String,
    /// Kernel objects changed.
    pub changes: usize,
    /// Ports that lost a backend -> the backends they keep. Conntrack entries of mesh flows
    /// to such a port answered by a backend not kept are to be deleted after the script.
    pub sweep: BTreeMap<(Protocol, u16), BTreeSet<Ipv4Addr>>,
}

/// Name of a port chain: `p_t<port>` or `p_u<port>`.
pub fn chain_name(protocol: Protocol, port: u16) -> String {
    match protocol {
        Protocol::Tcp => format!("p_t{port}"),
        Protocol::Udp => format!("p_u{port}"),
    }
}

/// Name of the ct timeout object for `secs`.
pub fn timeout_name(secs: u32) -> String {
    format!("idle_{secs}")
}

/// The skeleton `spec` needs.
pub fn skeleton_of(spec: &HostSpec) -> Skeleton {
    Skeleton {
        timeout: timeout_name(spec.idle_timeout),
        with_addrs: !spec.addrs.is_empty(),
        with_ifaces: !spec.ifaces.is_empty(),
    }
}

/// The rule text of a port chain.
pub fn rule_text(p: &PortSpec, timeout: &str) -> String {
    let (proto, refuse) = match p.protocol {
        Protocol::Tcp => ("tcp", "meta l4proto tcp reject with tcp reset"),
        Protocol::Udp => ("udp", "meta l4proto udp reject"),
    };
    if p.backends.is_empty() {
        return refuse.to_string();
    }
    let mut map = String::new();
    for (i, ip) in p.backends.iter().enumerate() {
        if i > 0 {
            map.push_str(", ");
        }
        let _ = write!(map, "{i} : {ip} . {}", p.target);
    }
    let timeout = match p.protocol {
        Protocol::Tcp => format!(" ct timeout set \"{timeout}\""),
        Protocol::Udp => String::new(),
    };
    format!(
        "ct mark set {HOST_CT_MARK:#010x}{timeout} dnat ip to jhash ip saddr . {proto} sport mod {} seed {JHASH_SEED:#x} map {{ {map} }}",
        p.backends.len()
    )
}

/// Digest of a port chain's rule (its comment).
pub fn digest(p: &PortSpec, timeout: &str) -> u64 {
    fnv1a(&[rule_text(p, timeout).as_bytes()])
}

/// The comment of a port chain's rule.
pub fn digest_comment(d: u64) -> String {
    format!("h={d:016x}")
}

/// The base rules of `spec` in order: (chain, body, comment).
pub fn base_rules(spec: &HostSpec) -> Vec<(&'static str, String, String)> {
    let lease = if spec.lease_until == 0 {
        String::new()
    } else {
        format!("meta time < {} ", spec.lease_until)
    };
    let dest = if spec.addrs.is_empty() {
        "fib daddr type local".to_string()
    } else {
        format!("ip daddr @{ADDRS_SET}")
    };
    let iif = if spec.ifaces.is_empty() {
        String::new()
    } else {
        format!("iifname @{IFACES_SET} ")
    };
    let until = format!("until={}", spec.lease_until);
    let vmap = format!("meta l4proto . th dport vmap @{PORTS_MAP}");
    let m = format!("{HOST_CT_MARK:#010x}");
    vec![
        (
            "prerouting",
            format!("{lease}{iif}{dest} {vmap}"),
            format!("{LAYOUT} in {until}"),
        ),
        (
            "output",
            format!("{lease}ip daddr != 127.0.0.0/8 {dest} {vmap}"),
            format!("{LAYOUT} out {until}"),
        ),
        (
            "postrouting",
            format!("oifname @{INGRESS_SET} ct mark {m} ip daddr @{SNAT_SET} masquerade"),
            format!("{LAYOUT} snat"),
        ),
        (
            "forward",
            format!("ct mark {m} ct status dnat accept"),
            format!("{LAYOUT} published flows"),
        ),
        (
            "forward",
            format!("iifname @{INGRESS_SET} drop"),
            format!("{LAYOUT} nothing else from ingress"),
        ),
        (
            "forward",
            format!("oifname @{INGRESS_SET} drop"),
            format!("{LAYOUT} nothing else to ingress"),
        ),
        (
            "input",
            format!("iifname @{INGRESS_SET} ct state established,related accept"),
            format!("{LAYOUT} replies"),
        ),
        (
            "input",
            format!("iifname @{INGRESS_SET} drop"),
            format!("{LAYOUT} no host services through ingress"),
        ),
    ]
}

/// The lease (`until=`) the entry rules of `actual` carry; `None` when they are not ours.
pub fn actual_lease(actual: &Actual) -> Option<u64> {
    actual
        .state
        .base
        .get("prerouting")?
        .first()?
        .strip_prefix(&format!("{LAYOUT} in until="))?
        .parse()
        .ok()
}

/// The desired table state of `spec` (without the base rules' content, see [`plan`]).
pub fn desired(spec: &HostSpec) -> TableState {
    let timeout = timeout_name(spec.idle_timeout);
    let mut t = TableState {
        ingress: spec.ingress.clone(),
        snat: spec.snat.clone(),
        members: spec.members.clone(),
        addrs: spec.addrs.clone(),
        ifaces: spec.ifaces.clone(),
        ..TableState::default()
    };
    for (key, p) in &spec.ports {
        let name = chain_name(key.0, key.1);
        t.chains
            .insert(name.clone(), ChainContent::Rule(digest(p, &timeout)));
        t.ports.insert(*key, name);
    }
    let mut base: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (chain, _, comment) in base_rules(spec) {
        base.entry(chain.to_string()).or_default().push(comment);
    }
    t.base = base;
    t
}

/// Plans the change from `actual` (`None`: no table) to `spec`.
///
/// * Nothing published: delete the table (if any).
/// * No table, or a skeleton that differs: (delete and) create it whole.
/// * Otherwise only what differs, in an order valid inside one transaction: base chains
///   whose rules differ are flushed and refilled, new port chains created, changed ones
///   flushed and refilled, stale elements deleted, missing ones added, chains no longer
///   wanted deleted.
pub fn plan(spec: &HostSpec, actual: Option<&Actual>) -> Plan {
    let mut s = Script::new(TABLE);
    let want = desired(spec);
    let sweep = sweep(&want, actual.map(|a| &a.state));
    if spec.is_empty() {
        if actual.is_some() {
            s.cmd(format!("delete table ip {TABLE}"));
        }
    } else {
        match actual {
            Some(a) if a.skeleton.as_ref() == Some(&skeleton_of(spec)) => {
                diff(spec, &want, &a.state, &mut s);
            }
            _ => rebuild_into(spec, &want, actual.is_some(), &mut s),
        }
    }
    Plan {
        script: s.text,
        changes: s.changes,
        sweep,
    }
}

/// A script that deletes the table (when `exists`) and creates it whole (the repair path
/// when an incremental script was refused).
pub fn rebuild(spec: &HostSpec, exists: bool) -> Plan {
    let mut s = Script::new(TABLE);
    if spec.is_empty() {
        if exists {
            s.cmd(format!("delete table ip {TABLE}"));
        }
    } else {
        rebuild_into(spec, &desired(spec), exists, &mut s);
    }
    Plan {
        script: s.text,
        changes: s.changes,
        sweep: BTreeMap::new(),
    }
}

fn sweep(
    want: &TableState,
    actual: Option<&TableState>,
) -> BTreeMap<(Protocol, u16), BTreeSet<Ipv4Addr>> {
    let mut out = BTreeMap::new();
    let Some(actual) = actual else {
        return out;
    };
    for (proto, port, b) in &actual.members {
        if !want.members.contains(&(*proto, *port, *b)) {
            out.entry((*proto, *port)).or_insert_with(|| {
                want.members
                    .iter()
                    .filter(|(p, q, _)| p == proto && q == port)
                    .map(|(_, _, ip)| *ip)
                    .collect()
            });
        }
    }
    out
}

fn rebuild_into(spec: &HostSpec, want: &TableState, exists: bool, s: &mut Script) {
    if exists {
        s.cmd(format!("delete table ip {TABLE}"));
    }
    let sk = skeleton_of(spec);
    s.cmd(format!("add table ip {TABLE}"));
    s.line(format!(
        "add ct timeout ip {TABLE} {} {{ protocol tcp; l3proto ip; policy = {{ established: {} }}; }}",
        sk.timeout, spec.idle_timeout
    ));
    s.line(format!(
        "add map ip {TABLE} {PORTS_MAP} {{ type inet_proto . inet_service : verdict; }}"
    ));
    s.line(format!(
        "add set ip {TABLE} {INGRESS_SET} {{ type ifname; }}"
    ));
    s.line(format!(
        "add set ip {TABLE} {SNAT_SET} {{ type ipv4_addr; }}"
    ));
    s.line(format!(
        "add set ip {TABLE} {MEMBERS_SET} {{ type inet_proto . inet_service . ipv4_addr; }}"
    ));
    if sk.with_addrs {
        s.line(format!(
            "add set ip {TABLE} {ADDRS_SET} {{ type ipv4_addr; }}"
        ));
    }
    if sk.with_ifaces {
        s.line(format!(
            "add set ip {TABLE} {IFACES_SET} {{ type ifname; }}"
        ));
    }
    for (name, ty, hook, prio) in BASE_CHAINS {
        s.line(format!(
            "add chain ip {TABLE} {name} {{ type {ty} hook {hook} priority {prio}; policy accept; }}"
        ));
    }
    let empty = TableState::default();
    // Elements the base rules use come before them (a set must exist; its content may be
    // empty), port chains before the map elements that jump to them.
    diff(spec, want, &empty, s);
}

fn diff(spec: &HostSpec, d: &TableState, a: &TableState, s: &mut Script) {
    let timeout = timeout_name(spec.idle_timeout);
    // 1. Port chains, before any element points at them.
    for (key, p) in &spec.ports {
        let name = chain_name(key.0, key.1);
        let h = digest(p, &timeout);
        let rule = format!(
            "add rule ip {TABLE} {name} {} comment \"{}\"",
            rule_text(p, &timeout),
            digest_comment(h)
        );
        match a.chains.get(&name) {
            None => {
                s.cmd(format!("add chain ip {TABLE} {name}"));
                s.line(rule);
            }
            Some(have) if *have != ChainContent::Rule(h) => {
                s.cmd(format!("flush chain ip {TABLE} {name}"));
                s.line(rule);
            }
            Some(_) => {}
        }
    }
    // 2. Stale elements.
    let port_key = |(proto, port): &(Protocol, u16)| format!("{} . {port}", proto.as_str());
    let member = |(proto, port, ip): &(Protocol, u16, Ipv4Addr)| {
        format!("{} . {port} . {ip}", proto.as_str())
    };
    let quoted = |n: &String| format!("\"{n}\"");
    let ports_del: Vec<String> = a
        .ports
        .iter()
        .filter(|(k, v)| d.ports.get(*k) != Some(*v))
        .map(|(k, _)| port_key(k))
        .collect();
    s.elements("delete", PORTS_MAP, &ports_del);
    s.elements(
        "delete",
        INGRESS_SET,
        &a.ingress
            .difference(&d.ingress)
            .map(quoted)
            .collect::<Vec<_>>(),
    );
    s.elements(
        "delete",
        SNAT_SET,
        &a.snat
            .difference(&d.snat)
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    );
    s.elements(
        "delete",
        MEMBERS_SET,
        &a.members
            .difference(&d.members)
            .map(member)
            .collect::<Vec<_>>(),
    );
    if !spec.addrs.is_empty() {
        s.elements(
            "delete",
            ADDRS_SET,
            &a.addrs
                .difference(&d.addrs)
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
    }
    if !spec.ifaces.is_empty() {
        s.elements(
            "delete",
            IFACES_SET,
            &a.ifaces
                .difference(&d.ifaces)
                .map(quoted)
                .collect::<Vec<_>>(),
        );
    }
    // 3. Missing elements.
    let ports_add: Vec<String> = d
        .ports
        .iter()
        .filter(|(k, v)| a.ports.get(*k) != Some(*v))
        .map(|(k, c)| format!("{} : goto {c}", port_key(k)))
        .collect();
    s.elements("add", PORTS_MAP, &ports_add);
    s.elements(
        "add",
        INGRESS_SET,
        &d.ingress
            .difference(&a.ingress)
            .map(quoted)
            .collect::<Vec<_>>(),
    );
    s.elements(
        "add",
        SNAT_SET,
        &d.snat
            .difference(&a.snat)
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
    );
    s.elements(
        "add",
        MEMBERS_SET,
        &d.members
            .difference(&a.members)
            .map(member)
            .collect::<Vec<_>>(),
    );
    if !spec.addrs.is_empty() {
        s.elements(
            "add",
            ADDRS_SET,
            &d.addrs
                .difference(&a.addrs)
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        );
    }
    if !spec.ifaces.is_empty() {
        s.elements(
            "add",
            IFACES_SET,
            &d.ifaces
                .difference(&a.ifaces)
                .map(quoted)
                .collect::<Vec<_>>(),
        );
    }
    // 4. Base rules (after the sets they use exist), per chain whose comments differ.
    let rules = base_rules(spec);
    for (chain, _, _, _) in BASE_CHAINS {
        if d.base.get(chain) == a.base.get(chain) {
            continue;
        }
        if a.base.contains_key(chain) {
            s.cmd(format!("flush chain ip {TABLE} {chain}"));
        } else {
            s.changes += 1;
        }
        for (c, body, comment) in rules.iter().filter(|(c, _, _)| *c == chain) {
            s.line(format!(
                "add rule ip {TABLE} {c} {body} comment \"{comment}\""
            ));
        }
    }
    // 5. Chains no longer wanted (their elements went in step 2).
    for name in a.chains.keys() {
        if !d.chains.contains_key(name) {
            s.cmd(format!("delete chain ip {TABLE} {name}"));
        }
    }
}

#[cfg(test)]
#[path = "host_plan_tests.rs"]
mod tests;
