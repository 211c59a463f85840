//! Service balancing of this node's containers: the desired [`LbSpec`] of every local
//! container namespace (every VIP service on every network the container is on, with all its
//! live backends, enabled or draining), and the run that programs them through the
//! [`crate::lb::LoadBalancer`].
//!
//! A namespace is reprogrammed when its spec changed since the last successful program, or
//! when that was longer ago than the reconcile interval (the balancer re-reads the kernel, so
//! this repairs hand edits); a namespace whose last endpoint left is programmed empty once.
//! Backends of a failed node disappear from the `endpoints` snapshot when networkdb suspends
//! that node's entries, so they leave every spec within the failure-detection time.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use super::Reconciler;
use crate::lb::{Backend, LbSpec, VipService};
use crate::node::Agent;
use crate::records::{EndpointRecord, ServiceDef, ServiceMode};
use crate::state::{LocalEndpoint, LocalState};
use crate::tables::{Snapshot, by_service};

/// Backends per network id, then per service id.
pub type BackendTable = BTreeMap<String, BTreeMap<String, Vec<(String, EndpointRecord)>>>;

/// The desired spec of every namespace holding a local endpoint (pure).
pub fn lb_specs(
    endpoints: &[&LocalEndpoint],
    services: &[ServiceDef],
    backends: &BackendTable,
) -> BTreeMap<PathBuf, LbSpec> {
    let mut by_ns: BTreeMap<PathBuf, BTreeMap<Ipv4Addr, VipService>> = BTreeMap::new();
    for ep in endpoints {
        let vips = by_ns.entry(ep.netns.clone()).or_default();
        for svc in services.iter().filter(|s| s.mode == ServiceMode::Vip) {
            let Some(vip) = svc.vips.get(&ep.network) else {
                continue;
            };
            let mut list: BTreeMap<Ipv4Addr, bool> = BTreeMap::new();
            for (_, r) in backends
                .get(&ep.network)
                .and_then(|b| b.get(&svc.id))
                .into_iter()
                .flatten()
            {
                // The same address twice (a stale record during re-use): enabled wins.
                *list.entry(r.ip).or_insert(false) |= !r.disabled;
            }
            vips.entry(*vip).or_insert_with(|| VipService {
                id: svc.id.clone(),
                vip: *vip,
                ports: svc.ports.clone(),
                backends: list
                    .into_iter()
                    .map(|(ip, enabled)| Backend { ip, enabled })
                    .collect(),
            });
        }
    }
    by_ns
        .into_iter()
        .map(|(ns, vips)| {
            (
                ns,
                LbSpec {
                    services: vips.into_values().collect(),
                },
            )
        })
        .collect()
}

/// The desired spec of every namespace holding a local endpoint, from a snapshot (pure).
pub fn desired(local: &LocalState, snap: &Snapshot) -> BTreeMap<PathBuf, LbSpec> {
    let backends: BackendTable = snap
        .endpoints
        .iter()
        .map(|(net, recs)| (net.clone(), by_service(recs.iter().cloned())))
        .collect();
    let eps: Vec<&LocalEndpoint> = local
        .endpoints
        .values()
        .filter(|e| e.in_container())
        .collect();
    lb_specs(&eps, &snap.services, &backends)
}

impl Reconciler {
    /// Program every container namespace whose spec changed (or is due for a repair).
    /// Failures are logged, counted and retried by the next run.
    pub(super) async fn program_balancers(
        &self,
        agent: &Agent,
        local: &LocalState,
        snap: &Snapshot,
    ) {
        let Some(lb) = self.lb.clone() else { return };
        let desired = desired(local, snap);
        let mut done = self.lb_done.lock().await;
        let due = agent.cfg.reconcile_interval;
        let mut todo: Vec<(PathBuf, LbSpec)> = desired
            .iter()
            .filter(|(ns, spec)| {
                done.get(*ns)
                    .is_none_or(|(s, at)| s != *spec || at.elapsed() >= due)
            })
            .map(|(ns, spec)| (ns.clone(), spec.clone()))
            .collect();
        for ns in done.keys() {
            if !desired.contains_key(ns) {
                todo.push((ns.clone(), LbSpec::default()));
            }
        }
        if todo.is_empty() {
            return;
        }
        let results = tokio::task::spawn_blocking(move || {
            todo.into_iter()
                .map(|(ns, spec)| {
                    let r = if ns.exists() {
                        Some(lb.program(&ns, &spec))
                    } else {
                        lb.forget(&ns);
                        None
                    };
                    (ns, spec, r)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "balancer task failed");
                return;
            }
        };
        let m = &agent.metrics;
        for (ns, spec, r) in results {
            match r {
                None => {
                    done.remove(&ns);
                }
                Some(Ok(report)) => {
                    m.lb_programs.inc();
                    m.lb_changes.inc_by(report.changes as u64);
                    m.lb_conntrack_flushed
                        .inc_by(report.conntrack_flushed as u64);
                    if report.changes > 0 {
                        tracing::debug!(netns = %ns.display(), changes = report.changes, flushed = report.conntrack_flushed, "balancer programmed");
                    }
                    if spec.services.is_empty() && !desired.contains_key(&ns) {
                        done.remove(&ns);
                    } else {
                        done.insert(ns, (spec, Instant::now()));
                    }
                }
                Some(Err(e)) => {
                    m.lb_errors.inc();
                    tracing::warn!(netns = %ns.display(), error = %e, "programming the balancer (retried on the next reconcile)");
                    done.remove(&ns);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use networkdb::NodeId;

    use super::*;
    use crate::records::{Protocol, ServicePort};

    fn ep(id: &str, net: &str, ns: &str, ip: [u8; 4]) -> LocalEndpoint {
        LocalEndpoint {
            id: id.into(),
            name: id.into(),
            network: net.into(),
            aliases: vec![],
            ip: ip.into(),
            prefix: 24,
            mac: [2, 0x42, ip[0], ip[1], ip[2], ip[3]],
            ifname: "eth0".into(),
            netns: format!("/var/run/netns/{ns}").into(),
            mtu: 1450,
            service: None,
            disabled: false,
            resolv_conf: None,
            client_id: None,
            netns_id: None,
            handoff: false,
            handed_off: false,
        }
    }

    fn svc(id: &str, mode: ServiceMode, vips: &[(&str, [u8; 4])]) -> ServiceDef {
        ServiceDef {
            id: id.into(),
            name: id.into(),
            aliases: vec![],
            mode,
            ports: vec![ServicePort {
                protocol: Protocol::Tcp,
                port: 80,
                target: 8080,
            }],
            networks: vips.iter().map(|(n, _)| n.to_string()).collect(),
            vips: vips
                .iter()
                .map(|(n, ip)| (n.to_string(), (*ip).into()))
                .collect(),
            creator: NodeId(1),
            created: 0,
            published: Vec::new(),
        }
    }

    fn rec(net: &str, svc: &str, ip: [u8; 4], disabled: bool) -> EndpointRecord {
        EndpointRecord {
            name: format!("b{}", ip[3]),
            aliases: vec![],
            ip: ip.into(),
            prefix: 24,
            mac: [0; 6],
            network: net.into(),
            node: NodeId(2),
            disabled,
            service: Some(svc.into()),
        }
    }

    fn table(rows: &[(&str, &str, EndpointRecord)]) -> BackendTable {
        let mut t = BackendTable::new();
        for (i, (net, svc, r)) in rows.iter().enumerate() {
            t.entry(net.to_string())
                .or_default()
                .entry(svc.to_string())
                .or_default()
                .push((format!("e{i}"), r.clone()));
        }
        t
    }

    #[test]
    fn a_container_gets_every_vip_of_its_networks_with_enabled_and_draining_backends() {
        let c = ep("c", "n1", "c1", [10, 0, 0, 2]);
        let services = vec![
            svc("web", ServiceMode::Vip, &[("n1", [10, 0, 0, 100])]),
            svc("other", ServiceMode::Vip, &[("n2", [10, 1, 0, 100])]),
            svc("rr", ServiceMode::Dnsrr, &[]),
        ];
        let t = table(&[
            ("n1", "web", rec("n1", "web", [10, 0, 0, 4], false)),
            ("n1", "web", rec("n1", "web", [10, 0, 0, 3], true)),
            ("n2", "other", rec("n2", "other", [10, 1, 0, 3], false)),
        ]);
        let specs = lb_specs(&[&c], &services, &t);
        let spec = &specs[&PathBuf::from("/var/run/netns/c1")];
        assert_eq!(spec.services.len(), 1);
        let v = &spec.services[0];
        assert_eq!(v.vip, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(v.ports[0].target, 8080);
        assert_eq!(
            v.backends,
            vec![
                Backend {
                    ip: [10, 0, 0, 3].into(),
                    enabled: false
                },
                Backend {
                    ip: [10, 0, 0, 4].into(),
                    enabled: true
                },
            ]
        );
    }

    #[test]
    fn a_container_on_two_networks_gets_both_networks_vips_in_one_spec() {
        let a = ep("a", "n1", "c1", [10, 0, 0, 2]);
        let b = ep("b", "n2", "c1", [10, 1, 0, 2]);
        let services = vec![svc(
            "web",
            ServiceMode::Vip,
            &[("n1", [10, 0, 0, 100]), ("n2", [10, 1, 0, 100])],
        )];
        let specs = lb_specs(&[&a, &b], &services, &BackendTable::new());
        assert_eq!(specs.len(), 1);
        let vips: Vec<Ipv4Addr> = specs
            .values()
            .next()
            .unwrap()
            .services
            .iter()
            .map(|s| s.vip)
            .collect();
        assert_eq!(
            vips,
            vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 1, 0, 100)]
        );
    }

    #[test]
    fn a_container_without_services_gets_an_empty_spec_and_duplicate_ips_count_once() {
        let a = ep("a", "n1", "c1", [10, 0, 0, 2]);
        let specs = lb_specs(&[&a], &[], &BackendTable::new());
        assert_eq!(
            specs[&PathBuf::from("/var/run/netns/c1")],
            LbSpec::default()
        );
        let services = vec![svc("web", ServiceMode::Vip, &[("n1", [10, 0, 0, 100])])];
        let t = table(&[
            ("n1", "web", rec("n1", "web", [10, 0, 0, 4], true)),
            ("n1", "web", rec("n1", "web", [10, 0, 0, 4], false)),
        ]);
        let specs = lb_specs(&[&a], &services, &t);
        let b = &specs.values().next().unwrap().services[0].backends;
        assert_eq!(
            b,
            &vec![Backend {
                ip: [10, 0, 0, 4].into(),
                enabled: true
            }]
        );
    }
}
