//! The IPVS load balancer: libnetwork's model B, in each client container's namespace.
//!
//! Per balanced entry — a VIP with no `ports` (every TCP/UDP port and ICMP echo), or one
//! `(protocol, port)` of a VIP — one firewall mark `M`:
//! * nftables, table `ip swarmnet_ipvs` of the container namespace:
//!   chain `mark_out` (`type filter hook output priority mangle`) marks locally originated
//!   packets, `ip daddr VIP [tcp|udp dport P] meta mark set M`; chain `nat_out`
//!   (`type nat hook output priority -100`) answers ping to every VIP that has an enabled
//!   backend, `ip daddr VIP icmp type echo-request dnat to 127.0.0.1`; chain `filter_out`
//!   (`type filter hook output priority 0`, after IPVS rewrote what it balances) refuses
//!   what is still addressed to a VIP, `ip daddr VIP reject` (ICMP port-unreachable): a port
//!   the service does not publish, or ping to a VIP whose backends are all draining. Clients
//!   get an error at once, as with the nftables balancer, instead of a connect that hangs
//!   on an unanswered ARP for the VIP. (A VIP whose backends all drain is refused by IPVS
//!   itself: no destination available, ICMP port-unreachable.)
//! * IPVS: a fwmark service `M` (AF_INET, scheduler `rr`) with one masquerading destination
//!   per backend: port = the entry's target port (0 for a VIP without ports, so the packet's
//!   port is kept), weight 1, or 0 while the backend drains. A backend that leaves the spec
//!   is deleted (DEL_DEST).
//! * sysctls of the namespace: `net/ipv4/vs/expire_nodest_conn = 1`, so packets of a
//!   connection whose destination was deleted expire its IPVS entry and the client's next
//!   packet is scheduled to a live backend (this is how this backend meets the trait's
//!   "flush connections to removed backends": the state is in IPVS's connection table, not
//!   in conntrack, so [`LbReport::conntrack_flushed`] stays 0); `conn_reuse_mode` from
//!   [`conn_reuse_mode`].
//!
//! **Marks.** A mark is derived from its entry: `MARK_BASE + fnv1a32(vip, protocol, port) %
//! MARK_SPAN` (range `0x0010_0000..0x0020_0000`, clear of Docker's counter from 256 and of
//! small marks other tools use). Uniqueness within a namespace: an entry keeps the mark its
//! `mark_out` rule already carries (if still unique), so marks never move while an entry
//! exists; new entries take their derived mark, or the next free one (wrapping in the range)
//! on a collision, in sorted entry order. The result is a function of (spec, actual rules).
//! Only fwmark services inside this range are managed; any other IPVS service in the
//! namespace is left alone.
//!
//! **Split.** [`plan`] is pure: desired spec plus actual state ([`NftActual`] parsed from
//! `nft -j list table`, [`IpvsActual`] from IPVS dumps) to [`Op`]s, unit-tested below.
//! [`IpvsBalancer`] reads the actual state, plans and applies. Order of application: IPVS
//! services and destinations first, then the nftables table (so no packet is marked before
//! its service exists), then deletions. The nftables part is one `nft -f -` transaction run
//! with `nsenter --net=<netns>`; it rewrites the whole table when anything in it differs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use ipvs::{Destination, Family, Handle, Service, ServiceKey};

use super::{LbError, LbKind, LbReport, LbSpec, LoadBalancer};
use crate::records::Protocol;

/// nftables table (family `ip`) holding the marks and the ping answer.
pub const TABLE: &str = "swarmnet_ipvs";
/// First mark of the managed range.
pub const MARK_BASE: u32 = 0x0010_0000;
/// Size of the managed range.
pub const MARK_SPAN: u32 = 0x0010_0000;
/// IPVS scheduler of every service.
pub const SCHEDULER: &str = "rr";
/// Destination weight of an enabled backend (draining: 0).
pub const WEIGHT: u32 = 1;

const SYSCTL_EXPIRE_NODEST: &str = "net/ipv4/vs/expire_nodest_conn";
const SYSCTL_CONN_REUSE: &str = "net/ipv4/vs/conn_reuse_mode";

/// Whether this kernel has IPVS (the `--lb auto` decision): `Err` carries the reason, e.g.
/// `"ipvs family lookup: generic netlink family \"IPVS\" not found (the kernel has no ip_vs)"`.
pub fn ipvs_available() -> Result<(), String> {
    ipvs::probe().map_err(|e| format!("ipvs family lookup: {e}"))
}

/// `net.ipv4.vs.conn_reuse_mode` for a kernel `release` such as `"6.1.0-18-amd64"`
/// (kubernetes/kubernetes#70747, moby/moby#35082): mode 1 makes IPVS reschedule a new connection that reuses the
/// source port of an old one, but before 5.9 it does so by dropping the first SYN while the
/// old conntrack entry exists, a 1 s stall per reused port under many short connections
/// (kubernetes#70747); mode 0 avoids the stall but pins reused ports to the old backend,
/// even a deleted one (kubernetes#81775). Kernels from 5.9 carry the fix that makes mode 1
/// stall-free (kubernetes#93297), so: 1 from 5.9 on, 0 before (and 0 when the release does
/// not parse, the safe choice for old kernels).
pub fn conn_reuse_mode(release: &str) -> u8 {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|s| s.parse::<u32>().ok());
    let minor = parts.next().and_then(|s| s.parse::<u32>().ok());
    match (major, minor) {
        (Some(ma), Some(mi)) if (ma, mi) >= (5, 9) => 1,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// One balanced entry: a whole VIP (`port: None`) or one port of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarkKey {
    pub vip: Ipv4Addr,
    pub port: Option<(Protocol, u16)>,
}

/// A `mark_out` rule: packets of `key` get `mark`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MarkRule {
    pub key: MarkKey,
    pub mark: u32,
}

/// What `nft -j list table ip swarmnet_ipvs` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NftActual {
    pub table_present: bool,
    /// The three chains exist with the expected type, hook and priority, and no other chain.
    pub chains_ok: bool,
    pub marks: BTreeSet<MarkRule>,
    /// VIPs whose echo requests are DNATed to 127.0.0.1.
    pub echo: BTreeSet<Ipv4Addr>,
    /// VIPs whose untranslated packets are rejected (`filter_out`).
    pub refuse: BTreeSet<Ipv4Addr>,
    /// Rules of any other shape (hand edits): they force a rewrite of the table.
    pub unknown_rules: usize,
}

/// One managed IPVS service as dumped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActualService {
    pub scheduler: String,
    /// `(address, port) -> weight` of its destinations.
    pub dests: BTreeMap<(Ipv4Addr, u16), u32>,
}

/// Managed IPVS state of a namespace plus its IPVS sysctls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpvsActual {
    /// Fwmark services (AF_INET) whose mark is in the managed range, by mark.
    pub services: BTreeMap<u32, ActualService>,
    /// Current sysctl values (`net/ipv4/vs/...` -> trimmed content); missing when unread.
    pub sysctls: BTreeMap<String, String>,
}

/// One change to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    AddService {
        mark: u32,
    },
    /// Reset scheduler and flags of an existing service.
    SetService {
        mark: u32,
    },
    AddDest {
        mark: u32,
        ip: Ipv4Addr,
        port: u16,
        weight: u32,
    },
    SetDest {
        mark: u32,
        ip: Ipv4Addr,
        port: u16,
        weight: u32,
    },
    DelDest {
        mark: u32,
        ip: Ipv4Addr,
        port: u16,
    },
    DelService {
        mark: u32,
    },
    /// Replace table `ip swarmnet_ipvs` with this ruleset (one `nft -f -` transaction).
    Nft {
        ruleset: String,
    },
    /// Delete table `ip swarmnet_ipvs`.
    NftDelete,
    Sysctl {
        name: &'static str,
        value: String,
    },
}

/// Desired state derived from a spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub marks: BTreeSet<MarkRule>,
    /// VIPs with at least one enabled backend: ping is answered.
    pub echo: BTreeSet<Ipv4Addr>,
    /// Every VIP: what IPVS did not translate is refused.
    pub refuse: BTreeSet<Ipv4Addr>,
    /// mark -> `(backend, port) -> weight`.
    pub services: BTreeMap<u32, BTreeMap<(Ipv4Addr, u16), u32>>,
}

fn proto_byte(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

/// The mark an entry gets when nothing collides with it.
pub fn derived_mark(key: &MarkKey) -> u32 {
    let mut bytes = key.vip.octets().to_vec();
    match key.port {
        None => bytes.extend([0, 0, 0]),
        Some((p, port)) => {
            bytes.push(proto_byte(p));
            bytes.extend(port.to_be_bytes());
        }
    }
    MARK_BASE + fnv1a32(&bytes) % MARK_SPAN
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn in_range(mark: u32) -> bool {
    (MARK_BASE..MARK_BASE + MARK_SPAN).contains(&mark)
}

/// Marks for `keys` (sorted, unique), keeping the marks of `actual` rules (see module docs).
pub fn assign_marks(
    keys: &BTreeSet<MarkKey>,
    actual: &BTreeSet<MarkRule>,
) -> BTreeMap<MarkKey, u32> {
    let mut taken = BTreeSet::new();
    let mut out = BTreeMap::new();
    for rule in actual {
        if keys.contains(&rule.key)
            && in_range(rule.mark)
            && !out.contains_key(&rule.key)
            && taken.insert(rule.mark)
        {
            out.insert(rule.key, rule.mark);
        }
    }
    for key in keys {
        if out.contains_key(key) {
            continue;
        }
        let mut mark = derived_mark(key);
        while taken.contains(&mark) {
            mark = if mark + 1 == MARK_BASE + MARK_SPAN {
                MARK_BASE
            } else {
                mark + 1
            };
        }
        taken.insert(mark);
        out.insert(*key, mark);
    }
    out
}

/// The desired marks, echo answers and IPVS services of `spec`.
pub fn desired(spec: &LbSpec, actual_marks: &BTreeSet<MarkRule>) -> Desired {
    // key -> (backend, port) -> weight
    let mut entries: BTreeMap<MarkKey, BTreeMap<(Ipv4Addr, u16), u32>> = BTreeMap::new();
    let mut echo = BTreeSet::new();
    let mut refuse = BTreeSet::new();
    for svc in &spec.services {
        refuse.insert(svc.vip);
        if svc.backends.iter().any(|b| b.enabled) {
            echo.insert(svc.vip);
        }
        let weights = |port: u16| {
            svc.backends
                .iter()
                .map(move |b| ((b.ip, port), if b.enabled { WEIGHT } else { 0 }))
        };
        if svc.ports.is_empty() {
            entries
                .entry(MarkKey {
                    vip: svc.vip,
                    port: None,
                })
                .or_default()
                .extend(weights(0));
        } else {
            for p in &svc.ports {
                entries
                    .entry(MarkKey {
                        vip: svc.vip,
                        port: Some((p.protocol, p.port)),
                    })
                    .or_default()
                    .extend(weights(p.target));
            }
        }
    }
    let keys: BTreeSet<MarkKey> = entries.keys().copied().collect();
    let marks = assign_marks(&keys, actual_marks);
    let mut d = Desired {
        echo,
        refuse,
        ..Desired::default()
    };
    for (key, dests) in entries {
        let mark = marks[&key];
        d.marks.insert(MarkRule { key, mark });
        d.services.insert(mark, dests);
    }
    d
}

/// The `nft -f` input that replaces the table with `d`'s rules (deleting it first inside
/// the same transaction; the leading `table ... {}` makes the delete valid when absent).
pub fn ruleset(d: &Desired) -> String {
    let mut s = format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n");
    s.push_str(&format!("table ip {TABLE} {{\n"));
    s.push_str("  chain mark_out {\n    type filter hook output priority mangle; policy accept;\n");
    for r in &d.marks {
        match r.key.port {
            None => s.push_str(&format!(
                "    ip daddr {} meta mark set {:#010x}\n",
                r.key.vip, r.mark
            )),
            Some((p, port)) => s.push_str(&format!(
                "    ip daddr {} {} dport {} meta mark set {:#010x}\n",
                r.key.vip,
                p.as_str(),
                port,
                r.mark
            )),
        }
    }
    s.push_str("  }\n  chain nat_out {\n    type nat hook output priority -100; policy accept;\n");
    for vip in &d.echo {
        s.push_str(&format!(
            "    ip daddr {vip} icmp type echo-request dnat to 127.0.0.1\n"
        ));
    }
    s.push_str(
        "  }\n  chain filter_out {\n    type filter hook output priority 0; policy accept;\n",
    );
    for vip in &d.refuse {
        s.push_str(&format!("    ip daddr {vip} reject\n"));
    }
    s.push_str("  }\n}\n");
    s
}

/// Everything that makes the namespace match `spec`. Empty when it already does.
pub fn plan(spec: &LbSpec, nft: &NftActual, ipvs: &IpvsActual, reuse_mode: u8) -> Vec<Op> {
    let d = desired(spec, &nft.marks);
    let mut adds = Vec::new();
    let mut dels = Vec::new();
    for (&mark, dests) in &d.services {
        let actual = ipvs.services.get(&mark);
        match actual {
            None => adds.push(Op::AddService { mark }),
            Some(a) if a.scheduler != SCHEDULER => adds.push(Op::SetService { mark }),
            Some(_) => {}
        }
        let empty = BTreeMap::new();
        let have = actual.map_or(&empty, |a| &a.dests);
        for (&(ip, port), &weight) in dests {
            match have.get(&(ip, port)) {
                None => adds.push(Op::AddDest {
                    mark,
                    ip,
                    port,
                    weight,
                }),
                Some(&w) if w != weight => adds.push(Op::SetDest {
                    mark,
                    ip,
                    port,
                    weight,
                }),
                Some(_) => {}
            }
        }
        for &(ip, port) in have.keys() {
            if !dests.contains_key(&(ip, port)) {
                dels.push(Op::DelDest { mark, ip, port });
            }
        }
    }
    for &mark in ipvs.services.keys() {
        if !d.services.contains_key(&mark) {
            dels.push(Op::DelService { mark });
        }
    }
    let mut ops = adds;
    if d.marks.is_empty() && d.echo.is_empty() && d.refuse.is_empty() {
        if nft.table_present {
            ops.push(Op::NftDelete);
        }
    } else if !(nft.table_present
        && nft.chains_ok
        && nft.unknown_rules == 0
        && nft.marks == d.marks
        && nft.echo == d.echo
        && nft.refuse == d.refuse)
    {
        ops.push(Op::Nft {
            ruleset: ruleset(&d),
        });
    }
    ops.extend(dels);
    if !d.services.is_empty() {
        for (name, value) in [
            (SYSCTL_EXPIRE_NODEST, "1".to_string()),
            (SYSCTL_CONN_REUSE, reuse_mode.to_string()),
        ] {
            if ipvs.sysctls.get(name) != Some(&value) {
                ops.push(Op::Sysctl { name, value });
            }
        }
    }
    ops
}

// ---------------------------------------------------------------------------------------------
// Reading nft JSON
// ---------------------------------------------------------------------------------------------

/// Parses `nft -j list table ip swarmnet_ipvs` output. Rules it does not recognize are
/// counted in `unknown_rules`; a document that is not nft JSON is an error.
pub fn parse_nft_json(text: &str) -> Result<NftActual, String> {
    use serde_json::Value;
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("nft JSON: {e}"))?;
    let items = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("nft JSON without \"nftables\" array")?;
    let mut out = NftActual::default();
    let mut chains = Vec::new();
    for item in items {
        if let Some(t) = item.get("table") {
            out.table_present |= t.get("name").and_then(Value::as_str) == Some(TABLE);
        } else if let Some(c) = item.get("chain") {
            let f = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
            chains.push((f("name"), f("type"), f("hook"), f("prio")));
        } else if let Some(r) = item.get("rule") {
            let chain = r.get("chain").and_then(Value::as_str).unwrap_or("");
            let expr = r
                .get("expr")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match (chain, parse_rule(&expr)) {
                ("mark_out", Some(Parsed::Mark(rule))) => {
                    out.marks.insert(rule);
                }
                ("nat_out", Some(Parsed::Echo(vip))) => {
                    out.echo.insert(vip);
                }
                ("filter_out", Some(Parsed::Refuse(vip))) => {
                    out.refuse.insert(vip);
                }
                _ => out.unknown_rules += 1,
            }
        }
    }
    let want = |name: &str, ty: &str, prio: i64| {
        (
            Value::from(name),
            Value::from(ty),
            Value::from("output"),
            Value::from(prio),
        )
    };
    chains.sort_by_key(|c| c.0.to_string());
    out.chains_ok = chains
        == vec![
            want("filter_out", "filter", 0),
            want("mark_out", "filter", -150),
            want("nat_out", "nat", -100),
        ];
    Ok(out)
}

enum Parsed {
    Mark(MarkRule),
    Echo(Ipv4Addr),
    Refuse(Ipv4Addr),
}

fn parse_rule(expr: &[serde_json::Value]) -> Option<Parsed> {
    use serde_json::Value;
    let matches = |e: &Value| -> Option<(String, String, Value)> {
        let m = e.get("match")?;
        if m.get("op")?.as_str()? != "==" {
            return None;
        }
        let p = m.get("left")?.get("payload")?;
        Some((
            p.get("protocol")?.as_str()?.to_string(),
            p.get("field")?.as_str()?.to_string(),
            m.get("right")?.clone(),
        ))
    };
    let (first, rest) = expr.split_first()?;
    let (proto, field, right) = matches(first)?;
    if (proto.as_str(), field.as_str()) != ("ip", "daddr") {
        return None;
    }
    let vip: Ipv4Addr = right.as_str()?.parse().ok()?;
    match rest {
        [last] if last.get("dnat").is_some() => None,
        [last] if last.get("reject").is_some() => {
            let r = last.get("reject")?;
            let plain = r.is_null()
                || (r.get("type").and_then(Value::as_str) == Some("icmp")
                    && r.get("expr").and_then(Value::as_str) == Some("port-unreachable"));
            plain.then_some(Parsed::Refuse(vip))
        }
        [m] => {
            let mark = m.get("mangle")?;
            (mark.get("key")?.get("meta")?.get("key")?.as_str()? == "mark").then_some(())?;
            Some(Parsed::Mark(MarkRule {
                key: MarkKey { vip, port: None },
                mark: u32::try_from(mark.get("value")?.as_u64()?).ok()?,
            }))
        }
        [second, last] => {
            let (proto, field, right) = matches(second)?;
            if let Some(d) = last.get("dnat") {
                let ok = (proto.as_str(), field.as_str()) == ("icmp", "type")
                    && right.as_str() == Some("echo-request")
                    && d.get("addr")?.as_str()? == "127.0.0.1"
                    && d.get("port").is_none();
                return ok.then_some(Parsed::Echo(vip));
            }
            let protocol = match (proto.as_str(), field.as_str()) {
                ("tcp", "dport") => Protocol::Tcp,
                ("udp", "dport") => Protocol::Udp,
                _ => return None,
            };
            let port = u16::try_from(right.as_u64()?).ok()?;
            let mark = last.get("mangle")?;
            (mark.get("key")?.get("meta")?.get("key")?.as_str()? == "mark").then_some(())?;
            Some(Parsed::Mark(MarkRule {
                key: MarkKey {
                    vip,
                    port: Some((protocol, port)),
                },
                mark: u32::try_from(mark.get("value")?.as_u64()?).ok()?,
            }))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Executor
// ---------------------------------------------------------------------------------------------

/// The IPVS [`LoadBalancer`]. Stateless: every `program` call reads the namespace.
#[derive(Debug, Default)]
pub struct IpvsBalancer {
    _private: (),
}

impl IpvsBalancer {
    pub fn new() -> IpvsBalancer {
        IpvsBalancer::default()
    }
}

fn kernel(what: &str, detail: impl ToString) -> LbError {
    LbError::Kernel {
        what: what.to_string(),
        detail: detail.to_string(),
    }
}

fn ipvs_err(what: &str, e: ipvs::Error) -> LbError {
    match e {
        ipvs::Error::Netns { path, source } => LbError::Netns { path, source },
        e => kernel(what, e),
    }
}

/// Reads the table's actual rules (absent table: the default, empty state).
pub fn read_nft(netns: &Path) -> Result<NftActual, LbError> {
    let out = crate::sys::nft(Some(netns), &["-j", "list", "table", "ip", TABLE], None)?;
    if out.table_absent() {
        return Ok(NftActual::default());
    }
    if !out.ok {
        return Err(kernel("nft list table", out.stderr));
    }
    parse_nft_json(&out.stdout).map_err(|e| kernel("nft list table", e))
}

/// Applies the nftables ops of a plan (the IPVS ones are skipped).
pub fn apply_nft(netns: &Path, ops: &[Op]) -> Result<usize, LbError> {
    let mut n = 0;
    for op in ops {
        let text = match op {
            Op::Nft { ruleset } => ruleset.clone(),
            Op::NftDelete => format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"),
            _ => continue,
        };
        crate::sys::nft_apply(Some(netns), &text)?;
        n += 1;
    }
    Ok(n)
}

fn read_ipvs(handle: &Handle, netns: &Path) -> Result<IpvsActual, LbError> {
    let mut actual = IpvsActual::default();
    for svc in handle
        .service()
        .list()
        .execute()
        .map_err(|e| ipvs_err("list IPVS services", e))?
    {
        let ServiceKey::Fwmark {
            af: Family::Inet,
            mark,
        } = svc.key
        else {
            continue;
        };
        if !in_range(mark) {
            continue;
        }
        let mut s = ActualService {
            scheduler: svc.scheduler.clone(),
            ..ActualService::default()
        };
        let dests = handle
            .destination()
            .list(svc.key)
            .execute()
            .map_err(|e| ipvs_err("list IPVS destinations", e))?;
        for d in dests {
            if let IpAddr::V4(ip) = d.addr {
                s.dests.insert((ip, d.port), d.weight);
            }
        }
        actual.services.insert(mark, s);
    }
    actual.sysctls = ipvs::netns::run_in_netns(netns, || {
        [SYSCTL_EXPIRE_NODEST, SYSCTL_CONN_REUSE]
            .into_iter()
            .filter_map(|name| {
                let v = std::fs::read_to_string(Path::new("/proc/sys").join(name)).ok()?;
                Some((name.to_string(), v.trim().to_string()))
            })
            .collect()
    })
    .map_err(|e| ipvs_err("read IPVS sysctls", e))?;
    Ok(actual)
}

fn apply_ipvs(handle: &Handle, netns: &Path, op: &Op) -> Result<bool, LbError> {
    let key = |mark: u32| ServiceKey::fwmark(mark);
    let service = |mark: u32| Service {
        scheduler: SCHEDULER.into(),
        ..Service::new(key(mark))
    };
    let dest = |ip: Ipv4Addr, port: u16, weight: u32| Destination {
        weight,
        ..Destination::masquerade(IpAddr::V4(ip), port)
    };
    // Like libnetwork: EEXIST on create and a missing object on delete are not failures.
    let result = match op {
        Op::AddService { mark } => handle.service().add(service(*mark)).execute(),
        Op::SetService { mark } => handle.service().set(service(*mark)).execute(),
        Op::DelService { mark } => handle.service().del(key(*mark)).execute(),
        Op::AddDest {
            mark,
            ip,
            port,
            weight,
        } => handle
            .destination()
            .add(key(*mark), dest(*ip, *port, *weight))
            .execute(),
        Op::SetDest {
            mark,
            ip,
            port,
            weight,
        } => handle
            .destination()
            .set(key(*mark), dest(*ip, *port, *weight))
            .execute(),
        Op::DelDest { mark, ip, port } => handle
            .destination()
            .del(key(*mark), IpAddr::V4(*ip), *port)
            .execute(),
        Op::Sysctl { name, value } => {
            let (name, value) = (*name, value.clone());
            return ipvs::netns::run_in_netns(netns, move || {
                std::fs::write(Path::new("/proc/sys").join(name), value)
            })
            .map_err(|e| ipvs_err("write sysctl", e))?
            .map(|()| true)
            .map_err(|e| kernel(&format!("write sysctl {name}"), e));
        }
        Op::Nft { .. } | Op::NftDelete => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.is_exists() && matches!(op, Op::AddService { .. } | Op::AddDest { .. }) => {
            Ok(false)
        }
        Err(e) if e.is_not_found() && matches!(op, Op::DelService { .. } | Op::DelDest { .. }) => {
            Ok(false)
        }
        Err(e) => Err(ipvs_err(&format!("{op:?}"), e)),
    }
}

impl LoadBalancer for IpvsBalancer {
    fn kind(&self) -> LbKind {
        LbKind::Ipvs
    }

    fn program(&self, netns: &Path, spec: &LbSpec) -> Result<LbReport, LbError> {
        let handle = Handle::in_netns(netns).map_err(|e| ipvs_err("open IPVS", e))?;
        let nft_actual = read_nft(netns)?;
        let ipvs_actual = read_ipvs(&handle, netns)?;
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let ops = plan(
            spec,
            &nft_actual,
            &ipvs_actual,
            conn_reuse_mode(release.trim()),
        );
        let mut changes = 0;
        // Plan order: IPVS additions, nftables, deletions, sysctls.
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Nft { .. } | Op::NftDelete => {
                    changes += apply_nft(netns, &ops[i..=i])?;
                }
                _ => {
                    if apply_ipvs(&handle, netns, op)? {
                        changes += 1;
                    }
                }
            }
        }
        Ok(LbReport {
            changes,
            conntrack_flushed: 0,
        })
    }
}

#[cfg(test)]
mod tests;
