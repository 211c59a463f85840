//! The names the embedded resolver answers, per network, built from the agent's tables.
//!
//! Pure: [`Zone::build`] takes the decoded table values and returns an immutable snapshot;
//! the agent rebuilds it on every table change and hands it to
//! [`Resolver::set_zone`](super::Resolver::set_zone). Because a zone is always rebuilt from
//! whole tables, a coalesced update (an endpoint whose name or service changed in one write)
//! simply yields the new names: nothing from the old value survives.
//!
//! Names of network `N` (named `n`), all case-insensitive and without the trailing dot:
//!
//! | name | answer | PTR |
//! | --- | --- | --- |
//! | endpoint name, each endpoint alias, and each `<that>.<n>` | the endpoint IP (not while it drains) | endpoint IP -> `<endpoint name>.<n>.` |
//! | service name, each service alias, and `<that>.<n>` (VIP mode) | the service's VIP on `N` | VIP -> `<service name>.<n>.` |
//! | the same names (dnsrr mode) | every enabled backend IP on `N` | no |
//! | `tasks.<service name or alias>` and `tasks.<...>.<n>` | every enabled backend IP on `N` | no |
//!
//! * **Draining** (`EndpointRecord::disabled`): the endpoint is in no answer (its own names,
//!   `tasks.`, dnsrr), as `records.rs` promises ("no new connections or DNS answers go to
//!   it"); its PTR stays (it is still attached, and reverse lookups of live connections keep
//!   working). A VIP service keeps answering its VIP whatever its backends do.
//! * **Existing names with no address** (every backend drained, a VIP not allocated yet) are
//!   kept with an empty address set: the resolver answers them NOERROR with no records
//!   instead of forwarding them.
//! * **Collisions on one network:** service names (name, aliases, `tasks.`) win over endpoint
//!   names. A service name is a deliberate, cluster-wide identity created through the API;
//!   endpoint names are chosen per container and are not unique, so a container that happens
//!   to share a service's name must not capture (or split) the service's traffic. Among names
//!   of the same kind the addresses are merged (two endpoints with one name answer both
//!   addresses, like Docker). For PTR, a VIP wins over an endpoint with the same address, and
//!   among endpoints the lowest endpoint id wins (deterministic).
//! * A name that is not a valid DNS name (hickory's `Name::from_ascii` rejects it) is skipped.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::rr::Name;
use ipnetwork::Ipv4Network;

use crate::records::{EndpointRecord, NetworkDef, ServiceDef, ServiceMode};

/// Precedence of a name's source: lower wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Service,
    Endpoint,
}

#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    /// Sorted, unique.
    ips: Vec<Ipv4Addr>,
}

/// The names of one network.
#[derive(Clone, Debug, Default)]
struct NetZone {
    /// Lower-case key of the network name; `None` while the definition is unknown.
    name: Option<String>,
    subnet: Option<Ipv4Network>,
    names: HashMap<String, Entry>,
    /// Address -> (precedence, tie-break key, fully qualified target).
    ptr: HashMap<Ipv4Addr, (Kind, String, Name)>,
}

impl NetZone {
    fn insert(&mut self, key: String, kind: Kind, ips: &[Ipv4Addr]) {
        match self.names.get_mut(&key) {
            Some(e) if e.kind < kind => {}
            Some(e) if e.kind == kind => {
                e.ips.extend_from_slice(ips);
                e.ips.sort_unstable();
                e.ips.dedup();
            }
            _ => {
                let mut ips = ips.to_vec();
                ips.sort_unstable();
                ips.dedup();
                self.names.insert(key, Entry { kind, ips });
            }
        }
    }

    /// Inserts `name` and `name.<network>` (when the network name is known).
    fn insert_both(&mut self, name: &str, kind: Kind, ips: &[Ipv4Addr]) {
        let Some(key) = key_of(name) else { return };
        if let Some(net) = self.name.clone() {
            self.insert(format!("{key}.{net}"), kind, ips);
        }
        self.insert(key, kind, ips);
    }

    fn insert_ptr(&mut self, ip: Ipv4Addr, kind: Kind, tie: &str, name: &str) {
        let Some(key) = key_of(name) else { return };
        let fqdn = match &self.name {
            Some(net) => format!("{key}.{net}."),
            None => format!("{key}."),
        };
        let Ok(target) = Name::from_ascii(&fqdn) else {
            return;
        };
        let better = match self.ptr.get(&ip) {
            Some((k, t, _)) => (kind, tie) < (*k, t.as_str()),
            None => true,
        };
        if better {
            self.ptr.insert(ip, (kind, tie.to_string(), target));
        }
    }
}

/// What a zone knows about a name as seen from some networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The name exists; its addresses (sorted; may be empty: NOERROR without records).
    Found(&'a [Ipv4Addr]),
    /// Not an internal name on these networks.
    Missing,
}

/// An immutable snapshot of every internal name, per network id. Cheap to share (`Arc`).
#[derive(Clone, Debug, Default)]
pub struct Zone {
    nets: HashMap<String, NetZone>,
}

/// The lookup key of a name: lower case, no trailing dot, as hickory prints it. `None` when
/// `name` is not a valid DNS name (or is empty).
pub fn key_of(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() {
        return None;
    }
    Name::from_ascii(name).ok().map(|n| key_of_name(&n))
}

/// The lookup key of a parsed name (see [`key_of`]).
pub fn key_of_name(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s
}

impl Zone {
    /// Builds the zone from the decoded tables: every network definition, every endpoint
    /// `(endpoint id, record)` of every network, every service. Order of the inputs does not
    /// matter (endpoints are processed by id). Never fails: unusable values are skipped.
    pub fn build(
        networks: &[NetworkDef],
        endpoints: &[(String, EndpointRecord)],
        services: &[ServiceDef],
    ) -> Zone {
        let mut nets: HashMap<String, NetZone> = HashMap::new();
        for n in networks {
            let z = nets.entry(n.id.clone()).or_default();
            z.name = key_of(&n.name);
            z.subnet = Some(n.subnet());
        }
        let mut eps: Vec<&(String, EndpointRecord)> = endpoints.iter().collect();
        eps.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, ep) in &eps {
            let z = nets.entry(ep.network.clone()).or_default();
            // An anonymous endpoint is named by its first alias (as Docker does).
            let primary = if ep.name.is_empty() {
                ep.aliases.first().map(String::as_str).unwrap_or("")
            } else {
                ep.name.as_str()
            };
            z.insert_ptr(ep.ip, Kind::Endpoint, id, primary);
            if ep.disabled {
                continue;
            }
            for name in std::iter::once(&ep.name).chain(&ep.aliases) {
                z.insert_both(name, Kind::Endpoint, &[ep.ip]);
            }
        }
        let mut svcs: Vec<&ServiceDef> = services.iter().collect();
        svcs.sort_by(|a, b| a.id.cmp(&b.id));
        for svc in svcs {
            for net in &svc.networks {
                let backends: Vec<Ipv4Addr> = eps
                    .iter()
                    .filter(|(_, e)| {
                        !e.disabled && &e.network == net && e.service.as_deref() == Some(&svc.id)
                    })
                    .map(|(_, e)| e.ip)
                    .collect();
                let z = nets.entry(net.clone()).or_default();
                let vip = svc.vips.get(net).copied();
                let front: Vec<Ipv4Addr> = match svc.mode {
                    ServiceMode::Vip => vip.into_iter().collect(),
                    ServiceMode::Dnsrr => backends.clone(),
                };
                for name in std::iter::once(&svc.name).chain(&svc.aliases) {
                    z.insert_both(name, Kind::Service, &front);
                    if let Some(k) = key_of(name) {
                        z.insert_both(&format!("tasks.{k}"), Kind::Service, &backends);
                    }
                }
                if let (ServiceMode::Vip, Some(vip)) = (svc.mode, vip) {
                    z.insert_ptr(vip, Kind::Service, &svc.id, &svc.name);
                }
            }
        }
        Zone { nets }
    }

    /// Looks `key` (see [`key_of`]) up on `networks` (ids, in the container's order): the
    /// first network with addresses for it wins; a name that exists only without addresses
    /// is `Found(&[])`. Unknown network ids are ignored.
    pub fn lookup<'a>(&'a self, networks: &[String], key: &str) -> Lookup<'a> {
        let mut found = false;
        for n in networks {
            let Some(e) = self.nets.get(n).and_then(|z| z.names.get(key)) else {
                continue;
            };
            if !e.ips.is_empty() {
                return Lookup::Found(&e.ips);
            }
            found = true;
        }
        if found {
            Lookup::Found(&[])
        } else {
            Lookup::Missing
        }
    }

    /// The PTR target of `ip` on `networks` (first network in order that knows it).
    pub fn reverse(&self, networks: &[String], ip: Ipv4Addr) -> Option<&Name> {
        networks
            .iter()
            .filter_map(|n| self.nets.get(n))
            .find_map(|z| z.ptr.get(&ip).map(|(_, _, name)| name))
    }

    /// Whether `ip` lies in the subnet of one of `networks`: the resolver is authoritative
    /// for reverse names there (a miss is NXDOMAIN, never forwarded upstream).
    pub fn owns_address(&self, networks: &[String], ip: Ipv4Addr) -> bool {
        networks
            .iter()
            .filter_map(|n| self.nets.get(n))
            .any(|z| z.subnet.is_some_and(|s| s.contains(ip)))
    }

    /// Number of names over all networks (for logs and tests).
    pub fn len(&self) -> usize {
        self.nets.values().map(|z| z.names.len()).sum()
    }

    /// Whether the zone has no names at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
