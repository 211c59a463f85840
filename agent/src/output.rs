//! Human tables and JSON for the CLI.

use proto::pb;
use serde::Serialize;

/// Left-aligned columns separated by three spaces; one header line.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("API messages serialize") + "\n"
}

fn mtu(m: u32) -> String {
    if m == 0 { "auto".into() } else { m.to_string() }
}

pub fn networks(list: &[pb::Network]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.id[..n.id.len().min(12)].to_string(),
                n.subnet.clone(),
                n.gateway.clone(),
                n.vni.to_string(),
                mtu(n.mtu),
                n.endpoints.to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "ID", "SUBNET", "GATEWAY", "VNI", "MTU", "ENDPOINTS"],
        &rows,
    )
}

pub fn network(n: &pb::Network) -> String {
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<11} {v}\n"));
    kv("Name:", n.name.clone());
    kv("ID:", n.id.clone());
    kv("Subnet:", n.subnet.clone());
    kv("Gateway:", n.gateway.clone());
    kv("VNI:", n.vni.to_string());
    kv("MTU:", mtu(n.mtu));
    kv("Encrypted:", n.encrypted.to_string());
    kv("Creator:", n.creator_node.clone());
    kv("Endpoints:", n.endpoints.to_string());
    if !n.nodes.is_empty() {
        kv("Nodes:", n.nodes.join(", "));
    }
    if n.revision > 0 {
        kv("Revision:", n.revision.to_string());
        kv("Note:", n.note.clone());
    }
    s
}

pub fn endpoints(list: &[pb::Endpoint]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            vec![
                e.name.clone(),
                e.id[..e.id.len().min(12)].to_string(),
                e.network_name.clone(),
                e.ip.clone(),
                e.mac.clone(),
                if e.local {
                    format!("{} ({})", e.ifname, e.netns)
                } else {
                    format!("node {}", e.node_id)
                },
            ]
        })
        .collect();
    table(&["NAME", "ID", "NETWORK", "IP", "MAC", "WHERE"], &rows)
}

pub fn endpoint(e: &pb::Endpoint) -> String {
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<10} {v}\n"));
    kv("Name:", e.name.clone());
    kv("ID:", e.id.clone());
    kv("Network:", format!("{} ({})", e.network_name, e.network_id));
    kv("IP:", e.ip.clone());
    kv("MAC:", e.mac.clone());
    kv("Interface:", format!("{} in {}", e.ifname, e.netns));
    kv("MTU:", e.mtu.to_string());
    if !e.aliases.is_empty() {
        kv("Aliases:", e.aliases.join(", "));
    }
    if !e.service_id.is_empty() {
        let name = if e.service_name.is_empty() {
            e.service_id.clone()
        } else {
            e.service_name.clone()
        };
        kv(
            "Service:",
            format!("{name}{}", if e.disabled { " (draining)" } else { "" }),
        );
    }
    if !e.dns_server.is_empty() {
        kv("DNS:", e.dns_server.clone());
    }
    s
}

fn ports_text(ports: &[pb::ServicePort]) -> String {
    if ports.is_empty() {
        return "all".into();
    }
    ports
        .iter()
        .map(|p| {
            if p.target_port == p.port || p.target_port == 0 {
                format!("{}/{}", p.port, p.protocol)
            } else {
                format!("{}:{}/{}", p.port, p.target_port, p.protocol)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn services(list: &[pb::Service]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.id[..s.id.len().min(12)].to_string(),
                s.mode.clone(),
                s.vips
                    .iter()
                    .map(|v| format!("{}@{}", v.vip, v.network_name))
                    .collect::<Vec<_>>()
                    .join(", "),
                ports_text(&s.ports),
                published_text(&s.published),
            ]
        })
        .collect();
    table(&["NAME", "ID", "MODE", "VIPS", "PORTS", "PUBLISHED"], &rows)
}

pub fn service(s: &pb::Service) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k:<9} {v}\n"));
    kv("Name:", s.name.clone());
    kv("ID:", s.id.clone());
    kv("Mode:", s.mode.clone());
    if s.mode == "vip" {
        kv("Ports:", ports_text(&s.ports));
    }
    for v in &s.vips {
        kv("VIP:", format!("{} on {}", v.vip, v.network_name));
    }
    if !s.aliases.is_empty() {
        kv("Aliases:", s.aliases.join(", "));
    }
    if !s.published.is_empty() {
        kv("Published:", published_text(&s.published));
    }
    if !s.backends.is_empty() {
        let rows: Vec<Vec<String>> = s
            .backends
            .iter()
            .map(|b| {
                vec![
                    b.endpoint_name.clone(),
                    b.ip.clone(),
                    b.network_name.clone(),
                    if b.node_name.is_empty() {
                        b.node_id.clone()
                    } else {
                        b.node_name.clone()
                    },
                    if b.disabled { "draining" } else { "active" }.into(),
                ]
            })
            .collect();
        out.push_str("Backends (on the networks this agent is on):\n");
        out.push_str(&table(
            &["ENDPOINT", "IP", "NETWORK", "NODE", "STATE"],
            &rows,
        ));
    }
    if !s.published_status.is_empty() {
        let rows: Vec<Vec<String>> = s
            .published_status
            .iter()
            .map(|p| {
                vec![
                    format!("{}/{}", p.published_port, p.protocol),
                    if p.node_name.is_empty() {
                        p.node_id.clone()
                    } else {
                        p.node_name.clone()
                    },
                    if p.ready { "ready" } else { "not ready" }.into(),
                    p.reason.clone(),
                ]
            })
            .collect();
        out.push_str("Published ports per node:\n");
        out.push_str(&table(&["PORT", "NODE", "STATE", "DETAIL"], &rows));
    }
    out
}

/// `8080:80/tcp (mesh), 53/udp (local)`.
pub fn published_text(ports: &[pb::PublishedPort]) -> String {
    ports
        .iter()
        .map(|p| {
            let target = if p.target_port == 0 || p.target_port == p.published_port {
                String::new()
            } else {
                format!(":{}", p.target_port)
            };
            format!("{}{target}/{} ({})", p.published_port, p.protocol, p.mode)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn members(list: &[pb::Member]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            vec![
                if m.name.is_empty() {
                    "?".into()
                } else {
                    m.name.clone()
                },
                m.node_id.clone(),
                m.gossip_addr.clone(),
                m.data_path_addr.clone(),
                if m.up { "up" } else { "down" }.into(),
                if m.self_ { "*" } else { "" }.into(),
            ]
        })
        .collect();
    table(
        &["NAME", "ID", "GOSSIP", "DATA PATH", "STATE", "SELF"],
        &rows,
    )
}

fn ring_text(r: Option<&pb::KeyRingInfo>) -> String {
    match r {
        Some(r) if !r.tags.is_empty() => {
            let tags: Vec<String> = r.tags.iter().map(u64::to_string).collect();
            format!("tags {} (primary {})", tags.join(", "), r.primary)
        }
        _ => "none set with SetKeys".into(),
    }
}

/// What `cluster keys set` / `ls` print.
pub fn keys_set(r: &pb::SetKeysResponse) -> String {
    let line = |name: &str, r: Option<&pb::KeyRingInfo>| {
        let mut l = format!("{name:<10} {}", ring_text(r));
        if let Some(r) = r.filter(|r| r.added + r.pruned > 0 || r.primary_changed) {
            l.push_str(&format!(
                "; {} added, {} pruned{}",
                r.added,
                r.pruned,
                if r.primary_changed {
                    ", primary switched"
                } else {
                    ""
                }
            ));
        }
        l + "\n"
    };
    line("gossip", r.gossip.as_ref()) + &line("dataplane", r.dataplane.as_ref())
}

pub fn status(s: &pb::StatusResponse) -> String {
    let mut out = String::new();
    let mut kv = |k: &str, v: String| out.push_str(&format!("{k:<17} {v}\n"));
    kv("Node:", format!("{} ({})", s.node_name, s.node_id));
    kv("Gossip address:", s.advertise_addr.clone());
    kv("Data path:", s.data_path_addr.clone());
    kv("Members up:", s.members_up.to_string());
    kv("Networks:", s.networks.to_string());
    kv("Local endpoints:", s.local_endpoints.to_string());
    kv("Dataplane:", s.dataplane.clone());
    if !s.load_balancer.is_empty() {
        kv(
            "Load balancer:",
            format!("{} ({})", s.load_balancer, s.load_balancer_note),
        );
    }
    kv(
        "Reconciles:",
        format!("{} ({} with errors)", s.reconcile_runs, s.reconcile_errors),
    );
    kv(
        "Encryption:",
        if s.esp {
            format!(
                "IPsec ESP available; {} encrypted network(s) here, {} SAs",
                s.encrypted_networks, s.esp_sas
            )
        } else {
            format!("encrypted networks cannot attach here ({})", s.esp_note)
        },
    );
    kv("Gossip keys:", ring_text(s.gossip_keys.as_ref()));
    kv("Dataplane keys:", ring_text(s.dataplane_keys.as_ref()));
    kv("Uptime:", format!("{}s", s.uptime_secs));
    kv("Version:", s.version.clone());
    if !s.join_state.is_empty() {
        kv("Join:", s.join_state.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["A", "LONGER"],
            &[
                vec!["x".into(), "1".into()],
                vec!["yyyy".into(), "2".into()],
            ],
        );
        assert_eq!(t, "A      LONGER\nx      1\nyyyy   2\n");
    }
}
