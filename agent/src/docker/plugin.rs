//! The handlers: Docker's calls mapped onto the agent's operations.
//!
//! | Docker call | swarmnet |
//! | --- | --- |
//! | `IpamDriver.RequestPool` | `--ipam-opt swarmnet.network=N` or `--subnet` of a swarmnet network: that network's subnet (pinned); neither: a placeholder pool from 198.18.0.0/15, bound by CreateNetwork |
//! | `IpamDriver.RequestAddress` | the gateway; or an address reserved from this node's blocks (never collides across nodes) |
//! | `IpamDriver.ReleaseAddress` / `ReleasePool` | reservation / pin released |
//! | `NetworkDriver.CreateNetwork` | `-o swarmnet.network=N` names the swarmnet network (pinned on this node) |
//! | `NetworkDriver.CreateEndpoint` | the reservation is handed to the endpoint's client id `docker/<endpoint id>`; the MAC (02:42 + address unless Docker gives one) |
//! | `NetworkDriver.Join` | Attach with a hand-off: the veth's container end waits in the agent's namespace as `swd<id>`, Docker moves it into the container as `eth<n>` |
//! | `NetworkDriver.Leave` | Detach by client id (idempotent) |
//! | `NetworkDriver.DeleteEndpoint` / `DeleteNetwork` | forgotten (reservation and pin released) |
//! | `NetworkDriver.EndpointOperInfo` | the endpoint's swarmnet id, name, address |
//!
//! Container names are not part of the protocol: after Join the plugin asks dockerd's API
//! for the endpoint's container name and aliases and renames the swarmnet endpoint, so other
//! nodes resolve it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnetwork::Ipv4Network;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::protocol::*;
use super::state::{self, DockerState, StateFile};
use crate::error::AgentError;
use crate::node::Agent;
use crate::spec::AttachSpec;

/// Where placeholder pools come from (RFC 2544's benchmarking range: rarely routed).
const PLACEHOLDER_RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);
/// Prefix length of a placeholder pool.
const PLACEHOLDER_PREFIX: u8 = 24;
/// Driver option naming the swarmnet network (`-o` of `docker network create`, and
/// `--ipam-opt`).
pub const NETWORK_OPTION: &str = "swarmnet.network";
/// Driver option: give Docker the gateway (the overlay becomes the default route).
pub const DEFAULT_ROUTE_OPTION: &str = "swarmnet.default-route";
/// Prefix of the veth end handed to Docker (the agent's namespace holds it until Docker
/// moves it): `swd` + 12 hex digits of the endpoint id.
pub const SRC_PREFIX: &str = "swd";

/// The plugin of one agent.
#[derive(Debug)]
pub struct Plugin {
    pub agent: Arc<Agent>,
    pub docker_api: PathBuf,
    file: StateFile,
    state: tokio::sync::Mutex<DockerState>,
}

type Answer = Value;

/// The client id of Docker endpoint `eid`.
pub fn client_id(eid: &str) -> String {
    format!("docker/{eid}")
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn parse<T: DeserializeOwned + Default>(body: &Value) -> Result<T, String> {
    if body.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(body.clone()).map_err(|e| format!("bad request: {e}"))
}

fn cidr_ip(s: &str) -> Option<Ipv4Addr> {
    s.split('/').next()?.parse().ok()
}

impl Plugin {
    /// The plugin, with what it saved before.
    pub fn new(agent: Arc<Agent>, docker_api: PathBuf) -> Result<Arc<Plugin>, AgentError> {
        let file = StateFile::in_dir(&agent.cfg.state_dir);
        let state = file.load()?;
        Ok(Arc::new(Plugin {
            agent,
            docker_api,
            file,
            state: tokio::sync::Mutex::new(state),
        }))
    }

    async fn save(&self, s: &DockerState) -> Result<(), String> {
        let (file, s) = (self.file.clone(), s.clone());
        tokio::task::spawn_blocking(move || file.save(&s))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Answer one call (`method` is the URL path without the leading `/`).
    pub async fn handle(self: &Arc<Self>, method: &str, body: &Value) -> Option<Answer> {
        let r = match method {
            "Plugin.Activate" => Ok(json!({"Implements": ["NetworkDriver", "IpamDriver"]})),
            "NetworkDriver.GetCapabilities" => {
                Ok(json!({"Scope": "local", "ConnectivityScope": "global"}))
            }
            "IpamDriver.GetCapabilities" => {
                Ok(json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}))
            }
            "IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": "swarmnet",
                "GlobalDefaultAddressSpace": "swarmnet"
            })),
            "IpamDriver.RequestPool" => self.request_pool(parse(body).ok()?).await,
            "IpamDriver.ReleasePool" => self.release_pool(parse(body).ok()?).await,
            "IpamDriver.RequestAddress" => self.request_address(parse(body).ok()?).await,
            "IpamDriver.ReleaseAddress" => self.release_address(parse(body).ok()?).await,
            "NetworkDriver.CreateNetwork" => self.create_network(parse(body).ok()?).await,
            "NetworkDriver.DeleteNetwork" => self.delete_network(parse(body).ok()?).await,
            "NetworkDriver.CreateEndpoint" => self.create_endpoint(parse(body).ok()?).await,
            "NetworkDriver.DeleteEndpoint" => self.delete_endpoint(parse(body).ok()?).await,
            "NetworkDriver.Join" => self.join(parse(body).ok()?).await,
            "NetworkDriver.Leave" => self.leave(parse(body).ok()?).await,
            "NetworkDriver.EndpointOperInfo" => self.oper_info(parse(body).ok()?).await,
            "NetworkDriver.ProgramExternalConnectivity"
            | "NetworkDriver.RevokeExternalConnectivity"
            | "NetworkDriver.DiscoverNew"
            | "NetworkDriver.DiscoverDelete"
            | "NetworkDriver.AllocateNetwork"
            | "NetworkDriver.FreeNetwork" => Ok(json!({})),
            _ => return None,
        };
        Some(match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(method, error = %e, "docker plugin: refused");
                error(format!("swarmnet: {e}"))
            }
        })
    }

    async fn request_pool(&self, r: RequestPool) -> Result<Answer, String> {
        if r.v6 {
            return Err(
                "swarmnet networks are IPv4 only: create the Docker network without --ipv6".into(),
            );
        }
        let mut st = self.state.lock().await;
        let def = match (r.options.get(NETWORK_OPTION), r.pool.is_empty()) {
            (Some(name), _) => {
                let def = self.pin(name).await?;
                if !r.pool.is_empty() && r.pool != def.subnet().to_string() {
                    return Err(format!(
                        "--subnet {} is not the subnet of swarmnet network {} ({})",
                        r.pool,
                        def.name,
                        def.subnet()
                    ));
                }
                Some(def)
            }
            (None, false) => {
                let nets = self
                    .agent
                    .list_networks()
                    .await
                    .map_err(|e| e.to_string())?;
                let found = nets
                    .iter()
                    .find(|n| n.def.subnet().to_string() == r.pool)
                    .ok_or_else(|| {
                        format!(
                            "no swarmnet network has subnet {} (give --ipam-opt {NETWORK_OPTION}=<name>)",
                            r.pool
                        )
                    })?;
                Some(self.pin(&found.def.id).await?)
            }
            (None, true) => None,
        };
        let (id, cidr, network) = match def {
            Some(def) => (format!("swarmnet/{}", def.id), def.subnet(), Some(def.id)),
            None => {
                let cidr = self.placeholder(&st).await?;
                (format!("pending/{cidr}"), cidr, None)
            }
        };
        let p = st.pools.entry(id.clone()).or_insert(state::Pool {
            cidr,
            network,
            users: 0,
        });
        p.users += 1;
        self.save(&st).await?;
        tracing::info!(pool = %id, %cidr, "docker: pool handed out");
        Ok(serde_json::to_value(RequestPoolResponse {
            pool_id: id,
            pool: cidr.to_string(),
            data: BTreeMap::new(),
        })
        .unwrap_or_default())
    }

    async fn pin(&self, name: &str) -> Result<crate::records::NetworkDef, String> {
        match self.agent.pin_network(name).await {
            Ok(d) => Ok(d),
            Err(AgentError::NotFound(_)) => Err(format!(
                "swarmnet network {name} does not exist (create it first: swarmnet network create {name})"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A free placeholder pool: not used by another pool, not overlapping a host route
    /// (dockerd refuses such a pool and asks again, forever).
    async fn placeholder(&self, st: &DockerState) -> Result<Ipv4Network, String> {
        let routes = self.agent.refresh_host_routes().await;
        let range = Ipv4Network::new(PLACEHOLDER_RANGE.0, PLACEHOLDER_RANGE.1)
            .map_err(|e| e.to_string())?;
        let count = 1u32 << (PLACEHOLDER_PREFIX - PLACEHOLDER_RANGE.1);
        let size = 1u32 << (32 - PLACEHOLDER_PREFIX);
        for i in 0..count {
            let base = Ipv4Addr::from(u32::from(range.network()) + i * size);
            let cand = Ipv4Network::new(base, PLACEHOLDER_PREFIX).map_err(|e| e.to_string())?;
            let taken = st.pools.values().any(|p| p.cidr == cand)
                || routes
                    .iter()
                    .any(|r| r.prefix() > 0 && crate::pools::overlaps(*r, cand));
            if !taken {
                return Ok(cand);
            }
        }
        Err(format!("no free placeholder pool left in {range}"))
    }

    async fn release_pool(&self, r: ReleasePool) -> Result<Answer, String> {
        let mut st = self.state.lock().await;
        let gone = match st.pools.get_mut(&r.pool_id) {
            Some(p) => {
                p.users = p.users.saturating_sub(1);
                (p.users == 0).then(|| p.network.clone())
            }
            None => None,
        };
        if let Some(net) = gone {
            st.pools.remove(&r.pool_id);
            self.save(&st).await?;
            if let Some(net) = net
                && !st.uses(&net)
            {
                self.agent
                    .unpin_network(&net)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(json!({}))
    }

    async fn request_address(&self, r: RequestAddress) -> Result<Answer, String> {
        let st = self.state.lock().await;
        let pool = st
            .pools
            .get(&r.pool_id)
            .cloned()
            .ok_or_else(|| format!("unknown pool {}", r.pool_id))?;
        drop(st);
        let gateway_request = r
            .options
            .as_ref()
            .and_then(|o| o.get("RequestAddressType"))
            .is_some_and(|t| t == GATEWAY_REQUEST);
        let prefix = pool.cidr.prefix();
        let address = if gateway_request {
            let gw = match &pool.network {
                Some(net) => self
                    .agent
                    .local()
                    .held_network(net)
                    .map(|d| d.gateway)
                    .ok_or_else(|| format!("swarmnet network {net} is not held here"))?,
                None => Ipv4Addr::from(u32::from(pool.cidr.network()) + 1),
            };
            if !r.address.is_empty() && cidr_ip(&r.address) != Some(gw) {
                return Err(format!(
                    "--gateway {} is not the swarmnet network's gateway {gw}",
                    r.address
                ));
            }
            gw
        } else {
            let net = pool.network.clone().ok_or_else(|| {
                format!(
                    "pool {} is not bound to a swarmnet network yet (CreateNetwork names it)",
                    r.pool_id
                )
            })?;
            let requested = if r.address.is_empty() {
                None
            } else {
                Some(
                    cidr_ip(&r.address)
                        .ok_or_else(|| format!("{} is not an IPv4 address", r.address))?,
                )
            };
            let (ip, _) = self
                .agent
                .reserve_address(&net, requested, &format!("docker pool {}", r.pool_id))
                .await
                .map_err(|e| e.to_string())?;
            ip
        };
        Ok(serde_json::to_value(RequestAddressResponse {
            address: format!("{address}/{prefix}"),
            data: BTreeMap::new(),
        })
        .unwrap_or_default())
    }

    async fn release_address(&self, r: ReleaseAddress) -> Result<Answer, String> {
        let net = self
            .state
            .lock()
            .await
            .pools
            .get(&r.pool_id)
            .and_then(|p| p.network.clone());
        if let (Some(net), Some(ip)) = (net, cidr_ip(&r.address)) {
            self.agent
                .release_reservation(&net, ip)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(json!({}))
    }

    async fn create_network(&self, r: CreateNetwork) -> Result<Answer, String> {
        let generic = r
            .options
            .get("com.docker.network.generic")
            .cloned()
            .unwrap_or(Value::Null);
        let opt = |k: &str| generic.get(k).and_then(Value::as_str).map(str::to_string);
        let name = opt(NETWORK_OPTION).ok_or_else(|| {
            format!("name the swarmnet network: docker network create -d swarmnet -o {NETWORK_OPTION}=<name> ...")
        })?;
        let default_route = opt(DEFAULT_ROUTE_OPTION).is_some_and(|v| v == "true");
        let def = self.pin(&name).await?;
        let mut st = self.state.lock().await;
        let pool = match r.ipv4_data.first() {
            Some(d) => {
                let found = st
                    .pools
                    .iter_mut()
                    .find(|(_, p)| p.cidr.to_string() == d.pool);
                match found {
                    Some((id, p)) => {
                        match &p.network {
                            None => p.network = Some(def.id.clone()),
                            Some(n) if *n != def.id => {
                                return Err(format!(
                                    "pool {} belongs to another swarmnet network than {name}",
                                    d.pool
                                ));
                            }
                            Some(_) => {}
                        }
                        Some(id.clone())
                    }
                    None => {
                        return Err(format!(
                            "pool {} was not handed out by swarmnet's IPAM: use --ipam-driver swarmnet",
                            d.pool
                        ));
                    }
                }
            }
            None => None,
        };
        st.networks.insert(
            r.network_id.clone(),
            state::Network {
                network: def.id.clone(),
                pool,
                default_route,
            },
        );
        self.save(&st).await?;
        tracing::info!(docker = %short(&r.network_id), network = %def.name, "docker: network created");
        Ok(json!({}))
    }

    async fn delete_network(&self, r: NetworkRef) -> Result<Answer, String> {
        let mut st = self.state.lock().await;
        if let Some(n) = st.networks.remove(&r.network_id) {
            self.save(&st).await?;
            if !st.uses(&n.network) {
                self.agent
                    .unpin_network(&n.network)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(json!({}))
    }

    async fn create_endpoint(&self, r: CreateEndpoint) -> Result<Answer, String> {
        let mut st = self.state.lock().await;
        let net = st
            .networks
            .get(&r.network_id)
            .cloned()
            .ok_or_else(|| format!("unknown network {}", short(&r.network_id)))?;
        let iface = r.interface.unwrap_or_default();
        let ip = cidr_ip(&iface.address)
            .ok_or_else(|| format!("endpoint without an IPv4 address ({:?})", iface.address))?;
        let prefix = iface
            .address
            .split_once('/')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(32);
        let (mac, answer) = if iface.mac_address.is_empty() {
            let m = crate::node::default_mac(ip);
            (
                m,
                json!({"Interface": {"MacAddress": crate::spec::format_mac(&m)}}),
            )
        } else {
            let m = crate::spec::parse_mac("MacAddress", &iface.mac_address)
                .map_err(|e| e.to_string())?;
            (m, json!({"Interface": {}}))
        };
        self.agent
            .rename_reservation(&net.network, ip, &client_id(&r.endpoint_id))
            .await
            .map_err(|e| e.to_string())?;
        st.endpoints.insert(
            r.endpoint_id.clone(),
            state::Endpoint {
                network: r.network_id.clone(),
                ip,
                prefix,
                mac,
            },
        );
        self.save(&st).await?;
        Ok(answer)
    }

    async fn delete_endpoint(&self, r: EndpointRef) -> Result<Answer, String> {
        let mut st = self.state.lock().await;
        if let Some(ep) = st.endpoints.remove(&r.endpoint_id) {
            self.save(&st).await?;
            if let Some(n) = st.networks.get(&ep.network) {
                let reserved_for_it = self
                    .agent
                    .local()
                    .reservations
                    .get(&n.network)
                    .and_then(|m| m.get(&ep.ip))
                    .is_some_and(|h| *h == client_id(&r.endpoint_id));
                if reserved_for_it {
                    self.agent
                        .release_reservation(&n.network, ep.ip)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(json!({}))
    }

    async fn join(self: &Arc<Self>, r: Join) -> Result<Answer, String> {
        let (ep, net) = {
            let st = self.state.lock().await;
            let ep = st
                .endpoints
                .get(&r.endpoint_id)
                .cloned()
                .ok_or_else(|| format!("unknown endpoint {}", short(&r.endpoint_id)))?;
            let net = st
                .networks
                .get(&r.network_id)
                .cloned()
                .ok_or_else(|| format!("unknown network {}", short(&r.network_id)))?;
            (ep, net)
        };
        let src = format!("{SRC_PREFIX}{}", short(&r.endpoint_id));
        let spec = AttachSpec {
            network: net.network.clone(),
            netns: PathBuf::from("/proc/self/ns/net"),
            // Renamed to the container's name once dockerd tells it (see `names`).
            name: format!("docker-{}", short(&r.endpoint_id)),
            aliases: Vec::new(),
            ip: Some(ep.ip),
            mac: Some(ep.mac),
            ifname: src.clone(),
            service: None,
            resolv_conf: None,
            dns_search: Vec::new(),
            dns_options: Vec::new(),
            client_id: Some(client_id(&r.endpoint_id)),
            handoff: true,
        };
        let info = self.agent.attach(spec).await.map_err(|e| e.to_string())?;
        tracing::info!(docker = %short(&r.endpoint_id), endpoint = %info.id, ip = %info.ip, "docker: joined");
        super::names::learn_later(self.clone(), r.network_id.clone(), r.endpoint_id.clone());
        let gateway = if net.default_route {
            info.gateway.to_string()
        } else {
            String::new()
        };
        Ok(serde_json::to_value(JoinResponse {
            interface_name: InterfaceName {
                src_name: src,
                dst_prefix: "eth".into(),
            },
            gateway,
            static_routes: Vec::new(),
            disable_gateway_service: true,
        })
        .unwrap_or_default())
    }

    async fn leave(&self, r: EndpointRef) -> Result<Answer, String> {
        self.agent
            .detach_client(&client_id(&r.endpoint_id))
            .await
            .map_err(|e| e.to_string())?;
        Ok(json!({}))
    }

    async fn oper_info(&self, r: EndpointRef) -> Result<Answer, String> {
        let mut value = serde_json::Map::new();
        if let Ok(e) = self
            .agent
            .inspect_endpoint("", "", &client_id(&r.endpoint_id))
            .await
        {
            value.insert("swarmnet.endpoint".into(), json!(e.id));
            value.insert("swarmnet.name".into(), json!(e.name));
            value.insert("swarmnet.network".into(), json!(e.network_name));
            value.insert(
                "swarmnet.ip".into(),
                json!(format!("{}/{}", e.ip, e.prefix)),
            );
        }
        Ok(json!({ "Value": value }))
    }

    /// Docker network id -> swarmnet network id, for the name lookups.
    pub async fn swarmnet_network(&self, docker_network: &str) -> Option<String> {
        self.state
            .lock()
            .await
            .networks
            .get(docker_network)
            .map(|n| n.network.clone())
    }
}
