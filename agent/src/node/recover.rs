//! After a start: what this node owns is announced again, from its local state.

use super::Agent;
use crate::error::Result;

impl Agent {
    /// After a start: rejoin the networks of local endpoints and re-announce everything this
    /// node owns (node record, block claims, peers and endpoints records), so that a restart
    /// after `kill -9` restores the cluster's view; wake the reconciler, which adopts the
    /// kernel objects left in place.
    pub async fn recover(&self) -> Result<()> {
        let local = self.local();
        self.publish_node().await?;
        // Network and service definitions need nothing here: networkdb restored them from
        // the state dir with their original versions, so a delete or change made elsewhere
        // while this node was down wins when they meet.
        for (net_id, def) in &local.networks {
            self.db.join_network(net_id).await?;
            for (block, at) in local.claims.get(net_id).into_iter().flatten() {
                if let Ok(block) = block.parse() {
                    self.put_claim(net_id, block, *at).await?;
                }
            }
            for ep in local.endpoints.values().filter(|e| e.network == *net_id) {
                self.publish_endpoint(ep).await?;
            }
            if let Some(ing) = local.ingress.get(net_id) {
                self.publish_ingress(net_id, ing).await?;
            }
            tracing::info!(network = %def.name, id = %net_id, "re-announced local endpoints");
        }
        self.recover_services().await?;
        self.recover_pins().await?;
        if !local.endpoints.is_empty() {
            tracing::info!(
                endpoints = local.endpoints.len(),
                networks = local.networks.len(),
                "recovered local state"
            );
        }
        self.dirty.notify_one();
        Ok(())
    }
}
