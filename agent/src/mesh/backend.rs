//! Backend containers of published ports: replies leave through the ingress endpoint their
//! connection came in by (see the module docs of [`crate::mesh`]).
//!
//! In the container's namespace, per interface that published-port traffic arrives on
//! (`slot` = a byte derived from its name; a mark carries the slot and the low 16 bits of
//! the ingress endpoint's address):
//!
//! ```text
//! table ip swarmnet_mesh
//!   map ingress_mark { type ifname . ether_addr : mark }   "eth0" . <ingress MAC> : 0x53SSIIII
//!   chain prerouting  filter prerouting -150: meta mark set iifname . ether saddr map
//!                                             @ingress_mark ct mark set meta mark
//!   chain output      route  output     -150: meta mark 0 ct mark & 0xff000000 == 0x53000000
//!                                             meta mark set ct mark         (UDP, ICMP, RST)
//! table netdev swarmnet_mesh
//!   map ingress_mac  { type mark : ether_addr }
//!   chain e_<slot>    filter egress device <ifname> 0: meta mark & 0xff000000 == 0x53000000
//!                                             ether daddr set meta mark map @ingress_mac
//! ip rule pref 5300 fwmark 0x53SS0000/0xffff0000 lookup 0x53SS      (per slot)
//! ip rule pref 5301 ipproto udp sport <target> lookup 0x53SS        (per published UDP target)
//! table 0x53SS: default via 169.254.53.53 dev <ifname> onlink; <subnet> dev <ifname> src <ip>
//! neigh 169.254.53.53 lladdr 02:53:53:53:00:00 dev <ifname> nud permanent
//! sysctl net.ipv4.tcp_fwmark_accept=1 net.ipv4.fwmark_reflect=1 net.ipv4.conf.all.src_valid_mark=1
//! ```
//!
//! Both nft tables are replaced whole in one transaction when the spec changed or anyone
//! committed to the namespace's nf_tables since (generation check); rules, routes and the
//! neighbour are reconciled over rtnetlink (rules diffed, routes and neighbour replaced)
//! when the spec changed or the repair is due. The container's own routes and rules are
//! never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::TryStreamExt as _;
use ipnetwork::Ipv4Network;
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{RouteAttribute, RouteScope};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage, RulePortRange};
use netlink_packet_route::{AddressFamily, IpProtocol};
use nix::sched::{CloneFlags, setns};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use crate::lb::LbError;
use crate::lb::nfnl;
use crate::lb::nft_plan::fnv1a;

/// Name of both tables (families `ip` and `netdev`) in a backend container.
pub const TABLE: &str = "swarmnet_mesh";
/// Top byte of every packet mark this module sets.
pub const TAG: u32 = 0x5300_0000;
pub const TAG_MASK: u32 = 0xff00_0000;
/// Priority of the per-slot mark rules (before `main`, 32766, so marked replies never take
/// the container's own routes).
pub const PREF_MARK: u32 = 5300;
/// Priority of the UDP staging rules.
pub const PREF_UDP: u32 = 5301;
/// Routing table of slot `s` is `TABLE_BASE + s`.
pub const TABLE_BASE: u32 = 0x5300;
/// The next hop every marked packet is routed to; the egress chain rewrites the MAC.
pub const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 53);
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x53, 0x53, 0x53, 0x00, 0x00];

/// Sysctls every backend container gets (path under `/proc/sys`, value).
pub const SYSCTLS: [(&str, &str); 3] = [
    // Accepted sockets take the SYN's mark: replies are routed by it, no conntrack needed.
    ("net/ipv4/tcp_fwmark_accept", "1"),
    // Kernel-made RSTs and ICMP errors take the mark of what they answer.
    ("net/ipv4/fwmark_reflect", "1"),
    // rp_filter lookups honour the mark (the client's address is routed by it).
    ("net/ipv4/conf/all/src_valid_mark", "1"),
];

/// One interface of a backend container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceSpec {
    pub ifname: String,
    /// Byte of the marks and the routing table of this interface ([`slot_of`]).
    pub slot: u8,
    /// The endpoint's address and subnet on it.
    pub ip: Ipv4Addr,
    pub subnet: Ipv4Network,
    /// Ingress endpoints of the network: MAC -> mark ([`mark_of`]).
    pub ingress: BTreeMap<[u8; 6], u32>,
    /// Target ports of published UDP ports the container answers on this interface.
    pub udp_ports: BTreeSet<u16>,
}

/// Everything one backend container gets; empty: nothing (what there was is removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Unique by name and by slot.
    pub ifaces: Vec<IfaceSpec>,
}

/// The slot of an interface: a byte of a hash of its name (two interfaces of one container
/// whose slots collide are reported and the second is skipped by the caller).
pub fn slot_of(ifname: &str) -> u8 {
    (fnv1a(&[b"slot", ifname.as_bytes()]) & 0xff) as u8
}

/// The packet mark of replies through the ingress endpoint at `ingress` on slot `slot`.
/// Stable for the endpoint's life (accepted sockets keep it).
pub fn mark_of(slot: u8, ingress: Ipv4Addr) -> u32 {
    TAG | (u32::from(slot) << 16) | (u32::from(ingress) & 0xffff)
}

fn mac_text(m: &[u8; 6]) -> String {
    crate::spec::format_mac(m)
}

/// The `nft -f` script that replaces both tables with `spec` (or only deletes them).
pub fn nft_script(spec: &ContainerSpec) -> String {
    let mut s = String::new();
    for family in ["ip", "netdev"] {
        s.push_str(&format!(
            "table {family} {TABLE}\ndelete table {family} {TABLE}\n"
        ));
    }
    if spec.ifaces.is_empty() {
        return s;
    }
    s.push_str(&format!(
        "add table ip {TABLE}\n\
         add map ip {TABLE} ingress_mark {{ type ifname . ether_addr : mark; }}\n\
         add chain ip {TABLE} prerouting {{ type filter hook prerouting priority -150; policy accept; }}\n\
         add chain ip {TABLE} output {{ type route hook output priority -150; policy accept; }}\n\
         add rule ip {TABLE} prerouting meta mark set iifname . ether saddr map @ingress_mark ct mark set meta mark\n\
         add rule ip {TABLE} output meta mark 0 ct mark & {TAG_MASK:#010x} == {TAG:#010x} meta mark set ct mark\n\
         add table netdev {TABLE}\n\
         add map netdev {TABLE} ingress_mac {{ type mark : ether_addr; }}\n"
    ));
    let mut marks = Vec::new();
    let mut macs = Vec::new();
    for i in &spec.ifaces {
        s.push_str(&format!(
            "add chain netdev {TABLE} e_{slot} {{ type filter hook egress device \"{ifname}\" priority 0; policy accept; }}\n\
             add rule netdev {TABLE} e_{slot} meta mark & {TAG_MASK:#010x} == {TAG:#010x} ether daddr set meta mark map @ingress_mac\n",
            slot = i.slot,
            ifname = i.ifname
        ));
        for (mac, mark) in &i.ingress {
            marks.push(format!(
                "\"{}\" . {} : {mark:#010x}",
                i.ifname,
                mac_text(mac)
            ));
            macs.push(format!("{mark:#010x} : {}", mac_text(mac)));
        }
    }
    for chunk in marks.chunks(256) {
        s.push_str(&format!(
            "add element ip {TABLE} ingress_mark {{ {} }}\n",
            chunk.join(", ")
        ));
    }
    for chunk in macs.chunks(256) {
        s.push_str(&format!(
            "add element netdev {TABLE} ingress_mac {{ {} }}\n",
            chunk.join(", ")
        ));
    }
    s
}

/// One policy rule this module writes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub pref: u32,
    /// (mark, mask) for the per-slot rule.
    pub fwmark: Option<(u32, u32)>,
    /// UDP source port for a staging rule.
    pub udp_sport: Option<u16>,
    pub table: u32,
}

/// The rules `spec` needs.
pub fn rules_of(spec: &ContainerSpec) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for i in &spec.ifaces {
        let table = TABLE_BASE + u32::from(i.slot);
        out.insert(Rule {
            pref: PREF_MARK,
            fwmark: Some((TAG | (u32::from(i.slot) << 16), 0xffff_0000)),
            udp_sport: None,
            table,
        });
        for p in &i.udp_ports {
            out.insert(Rule {
                pref: PREF_UDP,
                fwmark: None,
                udp_sport: Some(*p),
                table,
            });
        }
    }
    out
}

/// What [`BackendMesh::program`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendReport {
    /// nft transactions, rules added or deleted, routes and neighbours replaced.
    pub changes: usize,
}

/// The executor of backend containers (see the module docs). Blocking: call from a blocking
/// thread; calls for different namespaces may run concurrently.
#[derive(Debug, Default)]
pub struct BackendMesh {
    cache: Mutex<BTreeMap<PathBuf, Cached>>,
}

#[derive(Debug)]
struct Cached {
    ns: (u64, u64),
    generation: u32,
    spec: ContainerSpec,
    routed: Instant,
}

impl BackendMesh {
    pub fn new() -> BackendMesh {
        BackendMesh::default()
    }

    /// Drops what is remembered about `netns` (it went away).
    pub fn forget(&self, netns: &Path) {
        lock(&self.cache).remove(netns);
    }

    /// Makes the namespace at `netns` match `spec`; routing state is re-read when the spec
    /// changed or `due` passed since it was last reconciled.
    pub fn program(
        &self,
        netns: &Path,
        spec: &ContainerSpec,
        due: Duration,
    ) -> Result<BackendReport, LbError> {
        let meta = std::fs::metadata(netns).map_err(|source| LbError::Netns {
            path: netns.display().to_string(),
            source,
        })?;
        let ns = (meta.dev(), meta.ino());
        let cached = lock(&self.cache).remove(netns).filter(|c| c.ns == ns);
        let g0 = nfnl::generation(netns)?;
        let mut report = BackendReport::default();
        let same_spec = cached.as_ref().is_some_and(|c| c.spec == *spec);
        let nft_ok = same_spec && cached.as_ref().is_some_and(|c| c.generation == g0);
        let mut generation = g0;
        if !nft_ok {
            crate::sys::nft_apply(Some(netns), &nft_script(spec))?;
            report.changes += 1;
            generation = nfnl::generation(netns)?;
        }
        let route_due = !same_spec || cached.as_ref().is_none_or(|c| c.routed.elapsed() >= due);
        let mut routed = cached.as_ref().map_or_else(Instant::now, |c| c.routed);
        if route_due {
            report.changes += in_netns_rt(netns, spec.clone(), routing)?;
            routed = Instant::now();
        }
        if !spec.ifaces.is_empty() {
            lock(&self.cache).insert(
                netns.to_path_buf(),
                Cached {
                    ns,
                    generation,
                    spec: spec.clone(),
                    routed,
                },
            );
        }
        Ok(report)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn kernel(what: impl Into<String>, detail: impl ToString) -> LbError {
    LbError::Kernel {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// Runs `f` with the sysctls set (when `spec` is not empty) and an rtnetlink handle inside
/// `netns`, on a thread of its own with a current-thread runtime.
fn in_netns_rt<T: Send>(
    netns: &Path,
    spec: ContainerSpec,
    f: fn(
        rtnetlink::Handle,
        ContainerSpec,
    ) -> futures::future::BoxFuture<'static, Result<T, LbError>>,
) -> Result<T, LbError> {
    let file = File::open(netns).map_err(|source| LbError::Netns {
        path: netns.display().to_string(),
        source,
    })?;
    let shown = netns.display().to_string();
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| LbError::Netns {
                path: shown.clone(),
                source: io::Error::from(e),
            })?;
            if !spec.ifaces.is_empty() {
                for (key, value) in SYSCTLS {
                    set_sysctl(key, value)
                        .map_err(|e| kernel(format!("sysctl {key} in {shown}"), e))?;
                }
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| kernel("start a runtime", e))?;
            rt.block_on(async move {
                let (conn, handle, _) = rtnetlink::new_connection()
                    .map_err(|e| kernel(format!("rtnetlink in {shown}"), e))?;
                let task = tokio::spawn(conn);
                let r = f(handle, spec).await;
                task.abort();
                r
            })
        })
        .join()
        .unwrap_or_else(|_| Err(kernel("backend routing", "worker thread panicked")))
    })
}

/// Writes `/proc/sys/<key>` unless it already holds `value` (the calling thread's
/// namespace is the one written).
pub fn set_sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = Path::new("/proc/sys").join(key);
    let now = std::fs::read_to_string(&path)?;
    if now.trim() != value {
        std::fs::write(&path, value)?;
    }
    Ok(())
}

fn routing(
    h: rtnetlink::Handle,
    spec: ContainerSpec,
) -> futures::future::BoxFuture<'static, Result<usize, LbError>> {
    Box::pin(async move {
        let mut changes = 0;
        // Rules: ours are recognised by their priority.
        let want = rules_of(&spec);
        let mut have: Vec<(Rule, RuleMessage)> = Vec::new();
        let mut stream = h.rule().get(IpVersion::V4).execute();
        while let Some(m) = stream
            .try_next()
            .await
            .map_err(|e| kernel("list rules", e))?
        {
            if let Some(r) = rule_of(&m).filter(|r| r.pref == PREF_MARK || r.pref == PREF_UDP) {
                have.push((r, m));
            }
        }
        let mut seen = BTreeSet::new();
        for (r, m) in have {
            if want.contains(&r) && seen.insert(r.clone()) {
                continue;
            }
            h.rule()
                .del(m)
                .execute()
                .await
                .map_err(|e| kernel(format!("delete rule {r:?}"), e))?;
            changes += 1;
        }
        for r in want.difference(&seen) {
            let mut req = h
                .rule()
                .add()
                .v4()
                .priority(r.pref)
                .table_id(r.table)
                .action(RuleAction::ToTable);
            if let Some((mark, mask)) = r.fwmark {
                req = req.fw_mark(mark);
                req.message_mut()
                    .attributes
                    .push(RuleAttribute::FwMask(mask));
            }
            if let Some(p) = r.udp_sport {
                let attrs = &mut req.message_mut().attributes;
                attrs.push(RuleAttribute::IpProtocol(IpProtocol::Udp));
                attrs.push(RuleAttribute::SourcePortRange(RulePortRange {
                    start: p,
                    end: p,
                }));
            }
            match req.execute().await {
                Ok(()) => changes += 1,
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.code.map(|c| c.get()) == Some(-libc_eexist()) => {}
                Err(e) => return Err(kernel(format!("add rule {r:?}"), e)),
            }
        }
        // Per interface: the next hop's neighbour entry and the slot table's routes.
        for i in &spec.ifaces {
            let link = h
                .link()
                .get()
                .match_name(i.ifname.clone())
                .execute()
                .try_next()
                .await
                .map_err(|e| kernel(format!("find {}", i.ifname), e))?
                .ok_or_else(|| kernel(format!("find {}", i.ifname), "no such interface"))?;
            let idx = link.header.index;
            h.neighbours()
                .add(idx, IpAddr::V4(NEXT_HOP))
                .link_layer_address(&NEXT_HOP_MAC)
                .state(NeighbourState::Permanent)
                .replace()
                .execute()
                .await
                .map_err(|e| kernel(format!("next-hop neighbour on {}", i.ifname), e))?;
            let table = TABLE_BASE + u32::from(i.slot);
            let mut default = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .gateway(NEXT_HOP)
                .output_interface(idx)
                .table_id(table)
                .onlink()
                .build();
            default.header.address_family = AddressFamily::Inet;
            h.route()
                .add(default)
                .replace()
                .execute()
                .await
                .map_err(|e| kernel(format!("default route of table {table}"), e))?;
            let subnet = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(i.subnet.network(), i.subnet.prefix())
                .output_interface(idx)
                .pref_source(i.ip)
                .scope(RouteScope::Link)
                .table_id(table)
                .build();
            h.route()
                .add(subnet)
                .replace()
                .execute()
                .await
                .map_err(|e| kernel(format!("subnet route of table {table}"), e))?;
            changes += 3;
        }
        if spec.ifaces.is_empty() {
            changes += remove_routes(&h).await?;
        }
        Ok(changes)
    })
}

/// Deletes every route of the slot tables (a container that backs nothing any more).
async fn remove_routes(h: &rtnetlink::Handle) -> Result<usize, LbError> {
    let mut doomed = Vec::new();
    let mut stream = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(m) = stream
        .try_next()
        .await
        .map_err(|e| kernel("list routes", e))?
    {
        let table = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(m.header.table));
        if (TABLE_BASE..=TABLE_BASE + 0xff).contains(&table) {
            doomed.push(m);
        }
    }
    let n = doomed.len();
    for m in doomed {
        h.route()
            .del(m)
            .execute()
            .await
            .map_err(|e| kernel("delete a slot route", e))?;
    }
    Ok(n)
}

/// A rule as this module writes it, from a kernel message (any rule).
fn rule_of(m: &RuleMessage) -> Option<Rule> {
    let mut r = Rule {
        pref: 0,
        fwmark: None,
        udp_sport: None,
        table: u32::from(m.header.table),
    };
    let (mut mark, mut mask, mut udp, mut sport) = (None, None, false, None);
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => r.pref = *p,
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = Some(*v),
            RuleAttribute::IpProtocol(IpProtocol::Udp) => udp = true,
            RuleAttribute::SourcePortRange(p) if p.start == p.end => sport = Some(p.start),
            _ => {}
        }
    }
    r.fwmark = mark.map(|m| (m, mask.unwrap_or(u32::MAX)));
    r.udp_sport = sport.filter(|_| udp);
    Some(r)
}

fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

/// Whether this kernel and nft can hook netdev egress (kernel >= 5.16): tried with a table
/// that is created and deleted in one transaction in the calling thread's namespace.
pub fn egress_supported() -> Result<(), String> {
    let script = "add table netdev swarmnet_probe\n\
                  add chain netdev swarmnet_probe e { type filter hook egress device \"lo\" priority 0; policy accept; }\n\
                  delete table netdev swarmnet_probe\n";
    crate::sys::nft_apply(None, script).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        let slot = slot_of("eth0");
        ContainerSpec {
            ifaces: vec![IfaceSpec {
                ifname: "eth0".into(),
                slot,
                ip: Ipv4Addr::new(10, 0, 0, 5),
                subnet: "10.0.0.0/24".parse().unwrap(),
                ingress: BTreeMap::from([(
                    [2, 0x42, 10, 0, 0, 251],
                    mark_of(slot, Ipv4Addr::new(10, 0, 0, 251)),
                )]),
                udp_ports: BTreeSet::from([53]),
            }],
        }
    }

    #[test]
    fn a_mark_carries_the_tag_the_slot_and_the_ingress_address_low_bits() {
        assert_eq!(mark_of(0x12, Ipv4Addr::new(10, 1, 2, 251)), 0x5312_02fb);
        assert_eq!(slot_of("eth0"), slot_of("eth0"));
    }

    #[test]
    fn the_script_replaces_both_tables_and_maps_the_ingress_mac_both_ways() {
        let s = spec();
        let text = nft_script(&s);
        let mark = s.ifaces[0].ingress.values().next().copied().unwrap();
        assert!(text.starts_with(
            "table ip swarmnet_mesh\ndelete table ip swarmnet_mesh\ntable netdev swarmnet_mesh\ndelete table netdev swarmnet_mesh\n"
        ));
        assert!(text.contains(&format!("\"eth0\" . 02:42:0a:00:00:fb : {mark:#010x}")));
        assert!(text.contains(&format!("{mark:#010x} : 02:42:0a:00:00:fb")));
        assert!(text.contains("hook egress device \"eth0\""));
        let empty = nft_script(&ContainerSpec::default());
        assert!(!empty.contains("add "), "{empty}");
    }

    #[test]
    fn every_interface_gets_a_mark_rule_and_every_udp_target_a_staging_rule() {
        let s = spec();
        let table = TABLE_BASE + u32::from(s.ifaces[0].slot);
        let rules = rules_of(&s);
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().any(|r| r.pref == PREF_MARK
            && r.table == table
            && r.fwmark == Some((TAG | (u32::from(s.ifaces[0].slot) << 16), 0xffff_0000))));
        assert!(
            rules
                .iter()
                .any(|r| r.pref == PREF_UDP && r.udp_sport == Some(53) && r.table == table)
        );
        assert!(rules_of(&ContainerSpec::default()).is_empty());
    }
}
