//! Outgoing: the agent's views ([`crate::node::views`]) to wire messages. Pure and total.

use proto::pb;

use crate::node::views::{
    BackendInfo, EndpointInfo, KeysInfo, Member, NetworkInfo, RingInfo, ServiceInfo, StatusInfo,
    VipInfo,
};
use crate::records::ServicePort;
use crate::spec::format_mac;

impl From<&NetworkInfo> for pb::Network {
    fn from(n: &NetworkInfo) -> Self {
        let def = &n.def;
        pb::Network {
            id: def.id.clone(),
            name: def.name.clone(),
            vni: def.vni,
            subnet: def.subnet().to_string(),
            gateway: def.gateway.to_string(),
            mtu: def.mtu,
            encrypted: def.encrypted,
            creator_node: def.creator.to_string(),
            created: def.created,
            revision: def.revision,
            note: def.note.clone(),
            endpoints: n.endpoints,
            nodes: n.nodes.clone(),
        }
    }
}

impl From<&EndpointInfo> for pb::Endpoint {
    fn from(e: &EndpointInfo) -> Self {
        let (service_id, service_name) = e.service.clone().unwrap_or_default();
        pb::Endpoint {
            id: e.id.clone(),
            name: e.name.clone(),
            network_id: e.network_id.clone(),
            network_name: e.network_name.clone(),
            node_id: e.node.to_string(),
            aliases: e.aliases.clone(),
            ip: format!("{}/{}", e.ip, e.prefix),
            mac: format_mac(&e.mac),
            ifname: e
                .local
                .as_ref()
                .map(|l| l.ifname.clone())
                .unwrap_or_default(),
            netns: e
                .local
                .as_ref()
                .map(|l| l.netns.display().to_string())
                .unwrap_or_default(),
            mtu: e.local.as_ref().map_or(0, |l| l.mtu),
            disabled: e.disabled,
            local: e.local.is_some(),
            service_id,
            service_name,
            dns_server: e.dns_server.map(|ip| ip.to_string()).unwrap_or_default(),
            client_id: e.client_id.clone().unwrap_or_default(),
            gateway: e.gateway.to_string(),
        }
    }
}

impl From<&ServicePort> for pb::ServicePort {
    fn from(p: &ServicePort) -> Self {
        pb::ServicePort {
            protocol: p.protocol.as_str().to_string(),
            port: p.port.into(),
            target_port: p.target.into(),
        }
    }
}

impl From<&VipInfo> for pb::ServiceVip {
    fn from(v: &VipInfo) -> Self {
        pb::ServiceVip {
            network_id: v.network_id.clone(),
            network_name: v.network_name.clone(),
            vip: v.vip.to_string(),
        }
    }
}

impl From<&BackendInfo> for pb::Backend {
    fn from(b: &BackendInfo) -> Self {
        pb::Backend {
            endpoint_id: b.endpoint_id.clone(),
            endpoint_name: b.endpoint_name.clone(),
            network_id: b.network_id.clone(),
            network_name: b.network_name.clone(),
            node_id: b.node.to_string(),
            node_name: b.node_name.clone(),
            ip: b.ip.to_string(),
            disabled: b.disabled,
        }
    }
}

impl From<&ServiceInfo> for pb::Service {
    fn from(s: &ServiceInfo) -> Self {
        pb::Service {
            id: s.def.id.clone(),
            name: s.def.name.clone(),
            mode: s.def.mode.as_str().to_string(),
            aliases: s.def.aliases.clone(),
            ports: s.def.ports.iter().map(pb::ServicePort::from).collect(),
            vips: s.vips.iter().map(pb::ServiceVip::from).collect(),
            backends: s.backends.iter().map(pb::Backend::from).collect(),
            creator_node_id: s.def.creator.to_string(),
            published: s
                .def
                .published
                .iter()
                .map(pb::PublishedPort::from)
                .collect(),
            published_status: s
                .published_status
                .iter()
                .map(pb::PublishedStatus::from)
                .collect(),
        }
    }
}

impl From<&Member> for pb::Member {
    fn from(m: &Member) -> Self {
        pb::Member {
            node_id: m.node.to_string(),
            name: m.name.clone(),
            gossip_addr: m.gossip_addr.to_string(),
            data_path_addr: m.data_path.map(|a| a.to_string()).unwrap_or_default(),
            up: m.up,
            self_: m.is_self,
            generation: m.generation,
            esp: m.esp,
        }
    }
}

impl From<&RingInfo> for pb::KeyRingInfo {
    fn from(r: &RingInfo) -> Self {
        pb::KeyRingInfo {
            tags: r.tags.clone(),
            primary: r.primary,
            added: r.added,
            pruned: r.pruned,
            primary_changed: r.primary_changed,
        }
    }
}

impl From<&KeysInfo> for pb::SetKeysResponse {
    fn from(k: &KeysInfo) -> Self {
        pb::SetKeysResponse {
            gossip: Some((&k.gossip).into()),
            dataplane: Some((&k.dataplane).into()),
        }
    }
}

impl From<&StatusInfo> for pb::StatusResponse {
    fn from(s: &StatusInfo) -> Self {
        pb::StatusResponse {
            node_id: s.node.to_string(),
            node_name: s.node_name.clone(),
            advertise_addr: s.advertise_addr.to_string(),
            data_path_addr: s.data_path_addr.to_string(),
            members_up: s.members_up,
            networks: s.networks,
            local_endpoints: s.local_endpoints,
            dataplane: s.dataplane.to_string(),
            version: s.version.to_string(),
            uptime_secs: s.uptime_secs,
            reconcile_runs: s.reconcile_runs,
            reconcile_errors: s.reconcile_errors,
            join_state: s.join_state.clone(),
            load_balancer: s.load_balancer.unwrap_or_default().to_string(),
            load_balancer_note: s.load_balancer_note.clone(),
            esp: s.esp.is_ok(),
            esp_note: s.esp.clone().err().unwrap_or_default(),
            gossip_keys: Some((&s.keys.gossip).into()),
            dataplane_keys: Some((&s.keys.dataplane).into()),
            encrypted_networks: s.encrypted_networks,
            esp_sas: s.esp_sas,
        }
    }
}
