//! Cluster membership: status, members, join (with retries), leave; the debug dump.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use networkdb::NodeId;
use serde_json::json;

use super::Agent;
use super::views::{KeysInfo, Member, StatusInfo};
use crate::error::{AgentError, Result};
use crate::spec::FieldError;
use crate::tables;

/// First and longest pause between join attempts.
const JOIN_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// How long one attempt waits for a seed to show up as a member.
const JOIN_WAIT: Duration = Duration::from_secs(3);

impl Agent {
    /// Whether this node acts for definitions made through `creator` (repairing a network
    /// that lost a conflict, withdrawing a service that lost its name): the creator itself
    /// while it is up, else the live node with the lowest id, so that definitions of a node
    /// that died are still looked after, by one node at a time.
    pub async fn answers_for(&self, creator: NodeId) -> Result<bool> {
        if creator == self.id {
            return Ok(true);
        }
        let members = self.db.members().await?;
        if members.iter().any(|m| m.peer.id == creator && m.up) {
            return Ok(false);
        }
        let lowest = members
            .iter()
            .filter(|m| m.up)
            .map(|m| m.peer.id)
            .chain(std::iter::once(self.id))
            .min();
        Ok(lowest == Some(self.id))
    }

    /// Node names by id (from the `nodes` table), this node included.
    pub async fn node_names(&self) -> Result<BTreeMap<NodeId, String>> {
        let mut out: BTreeMap<NodeId, String> = tables::known_node_records(&self.db)
            .await?
            .into_iter()
            .map(|(id, r)| (id, r.name))
            .collect();
        out.insert(self.id, self.cfg.node_name.clone());
        Ok(out)
    }

    pub async fn status(&self) -> Result<StatusInfo> {
        let stats = self.db.stats().await?;
        let view = tables::network_view(&self.db).await?;
        let rings = self.rings();
        Ok(StatusInfo {
            node: self.id,
            node_name: self.cfg.node_name.clone(),
            advertise_addr: self.db.addr(),
            data_path_addr: self.cfg.data_path_addr,
            members_up: stats.members_up as u32,
            networks: view.accepted().count() as u32,
            local_endpoints: self.local().endpoints.len() as u32,
            dataplane: self.reconciler.dataplane.kind().as_str(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.uptime().as_secs(),
            reconcile_runs: self.metrics.reconcile_runs.get(),
            reconcile_errors: self.metrics.reconcile_errors.get(),
            join_state: self.join_state(),
            load_balancer: self.reconciler.lb.as_ref().map(|l| l.kind().as_str()),
            load_balancer_note: self.reconciler.lb_note.clone(),
            esp: self.reconciler.dataplane.esp(),
            keys: KeysInfo {
                gossip: crate::keys::info(&rings.gossip, None),
                dataplane: crate::keys::info(&rings.dataplane, None),
            },
            encrypted_networks: self.encrypted_networks_here() as u32,
            esp_sas: self
                .reconciler
                .esp_sas
                .load(std::sync::atomic::Ordering::Relaxed) as u32,
        })
    }

    /// This node first, then every node it knows of, by name.
    pub async fn members(&self) -> Result<Vec<Member>> {
        // A node that is down is named from its record, which is suspended, not gone.
        let records = tables::known_node_records(&self.db).await?;
        let me = self.db.me().await?;
        let mut out = vec![Member {
            node: self.id,
            name: self.cfg.node_name.clone(),
            gossip_addr: me.addr,
            data_path: Some(self.cfg.data_path_addr),
            up: true,
            is_self: true,
            generation: me.generation,
            esp: self.reconciler.dataplane.esp().is_ok(),
        }];
        let mut others: Vec<Member> = self
            .db
            .members()
            .await?
            .into_iter()
            .map(|m| {
                let rec = records.get(&m.peer.id);
                Member {
                    node: m.peer.id,
                    name: rec.map(|r| r.name.clone()).unwrap_or_default(),
                    gossip_addr: m.peer.addr,
                    data_path: rec.map(|r| r.data_path),
                    up: m.up,
                    is_self: false,
                    generation: m.peer.generation,
                    esp: rec.is_some_and(|r| r.esp),
                }
            })
            .collect();
        others.sort_by(|a, b| (&a.name, a.node).cmp(&(&b.name, b.node)));
        out.extend(others);
        Ok(out)
    }

    /// Leave the cluster gracefully.
    pub async fn leave(&self) -> Result<()> {
        self.db.leave().await?;
        self.set_join_state("left the cluster".into());
        Ok(())
    }

    /// Debug dump: every table this node holds, members, local state, desired and actual
    /// dataplane state.
    pub async fn dump(&self) -> Result<String> {
        let mut tables: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
        for e in self.db.snapshot(None, None).await? {
            let value = e.new.as_deref().map(|v| decode_any(&e.table, &e.key, v));
            tables
                .entry(format!("{}/{}", e.network, e.table))
                .or_default()
                .insert(
                    e.key.clone(),
                    json!({ "owner": e.owner.to_string(), "value": value }),
                );
        }
        let view = tables::network_view(&self.db).await?;
        let desired = self.reconciler.desired_overlay(self).await?;
        let actual = match self.reconciler.dataplane.read_actual(&desired).await {
            Ok(a) => serde_json::to_value(a).expect("actual state serializes"),
            Err(e) => json!({ "error": e.to_string() }),
        };
        let members = self.members().await?;
        let dump = json!({
            "node": { "id": self.id.to_string(), "name": self.cfg.node_name },
            "members": members,
            "networks": view.defs.iter().map(|d| json!({
                "def": format!("{d:?}"),
                "verdict": format!("{:?}", view.verdicts.get(&d.id)),
            })).collect::<Vec<_>>(),
            "tables": tables,
            "local_state": self.local(),
            "desired": desired,
            "actual": actual,
            "stats": self.db.stats().await?,
        });
        Ok(serde_json::to_string_pretty(&dump).expect("json values serialize"))
    }
}

fn decode_any(table: &str, key: &str, v: &[u8]) -> serde_json::Value {
    use crate::records::*;
    let dbg = |x: Option<String>| {
        x.map_or_else(
            || json!({ "undecodable_bytes": v.len() }),
            serde_json::Value::String,
        )
    };
    match table {
        NODES => dbg(decode::<NodeRecord>(table, key, v).map(|r| format!("{r:?}"))),
        NETWORKS => dbg(decode::<NetworkDef>(table, key, v).map(|r| format!("{r:?}"))),
        IPAM => dbg(decode::<BlockClaim>(table, key, v).map(|r| format!("{r:?}"))),
        PEERS => dbg(decode::<PeerRecord>(table, key, v).map(|r| format!("{r:?}"))),
        ENDPOINTS => dbg(decode::<EndpointRecord>(table, key, v).map(|r| format!("{r:?}"))),
        _ => json!({ "bytes": v.len() }),
    }
}

/// Resolve `HOST:PORT` seeds (a failure names the seed).
pub async fn resolve_seeds(seeds: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for s in seeds {
        let addrs = tokio::net::lookup_host(s.as_str())
            .await
            .map_err(|e| format!("{s}: {e}"))?;
        out.extend(addrs);
    }
    Ok(out)
}

/// Join through `seeds`, retrying with backoff (each failure logged) until a member is up.
/// Returns once joined. Bounded only by the agent's life: it never gives up silently.
pub async fn join_loop(agent: Arc<Agent>, seeds: Vec<String>) {
    /// Counts the loop as running until it returns or is aborted (dropped).
    struct Running(Arc<Agent>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0
                .join
                .loops
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    agent
        .join
        .loops
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _running = Running(agent.clone());
    let mut pause = JOIN_BACKOFF.0;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = async {
            let addrs = resolve_seeds(&seeds).await?;
            agent.db.join(addrs).await.map_err(|e| e.to_string())?;
            let deadline = tokio::time::Instant::now() + JOIN_WAIT;
            while tokio::time::Instant::now() < deadline {
                let up = agent
                    .db
                    .stats()
                    .await
                    .map_err(|e| e.to_string())?
                    .members_up;
                if up > 0 {
                    return Ok(up);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(format!("no seed answered within {JOIN_WAIT:?}"))
        }
        .await;
        match result {
            Ok(up) => {
                tracing::info!(seeds = ?seeds, members_up = up, attempt, "joined the cluster");
                agent.set_join_state(String::new());
                agent.dirty.notify_one();
                return;
            }
            Err(e) => {
                tracing::warn!(seeds = ?seeds, attempt, error = %e, retry_in = ?pause, "join failed; retrying");
                agent.set_join_state(format!(
                    "joining {}: attempt {attempt} failed: {e}",
                    seeds.join(",")
                ));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(JOIN_BACKOFF.1);
            }
        }
    }
}

/// The Join API call: check the seeds and start a join loop in the background.
pub async fn start_join(agent: &Arc<Agent>, seeds: Vec<String>) -> Result<()> {
    if seeds.is_empty() {
        return Err(FieldError::new("seeds", "required (at least one HOST:PORT)").into());
    }
    for s in &seeds {
        let ok = s
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(FieldError::new("seeds", format!("{s} is not HOST:PORT")).into());
        }
    }
    resolve_seeds(&seeds)
        .await
        .map_err(|e| AgentError::from(FieldError::new("seeds", e)))?;
    agent.set_join_state(format!("joining {}", seeds.join(",")));
    agent.run_join_loop(seeds);
    Ok(())
}

impl Agent {
    /// Start a join loop for `seeds`, replacing (aborting) the one already running, if any:
    /// repeated Join calls never pile up loops.
    pub fn run_join_loop(self: &Arc<Self>, seeds: Vec<String>) {
        let task = tokio::spawn(join_loop(self.clone(), seeds));
        let previous = self
            .join
            .task
            .lock()
            .expect("not poisoned")
            .replace(task.abort_handle());
        if let Some(p) = previous {
            p.abort();
        }
    }

    /// Join loops running now: at most one.
    pub fn join_loops_running(&self) -> usize {
        self.join.loops.load(std::sync::atomic::Ordering::SeqCst)
    }
}
