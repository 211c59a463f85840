//! SetKeys: validate a new ring against what the kernel can use, apply the gossip ring to
//! networkdb step by step, save both, and apply the dataplane ring to the kernel before
//! returning (one IPsec reconcile), so that the caller may take the next rotation step on
//! any node as soon as every node has returned.

use super::Agent;
use super::views::KeysInfo;
use crate::error::{AgentError, Result};
use crate::keys::{self, GossipStep, KeysFile, Rings};
use crate::spec::FieldError;
use crate::spec::KeysRequest;

impl Agent {
    /// The rings in use.
    pub fn rings(&self) -> Rings {
        self.keys.rings.lock().expect("not poisoned").clone()
    }

    /// The dataplane ring as the ESP planner takes it (None: no keys set).
    pub fn esp_ring(&self) -> Option<overlay::esp::KeyRing> {
        let ring = self.rings().dataplane;
        if ring.is_empty() {
            return None;
        }
        overlay::esp::KeyRing::new(ring.into_iter().map(|k| overlay::esp::EspKey {
            tag: k.tag,
            key: k.key,
        }))
        .ok()
    }

    /// Cluster.SetKeys. Returns after the rings are saved, the gossip ring is in use and one
    /// IPsec reconcile with the dataplane ring has run (its failures are logged and retried).
    pub async fn set_keys(&self, req: KeysRequest) -> Result<KeysInfo> {
        let _guard = self.keys.lock.lock().await;
        if let Some(ring) = &req.dataplane {
            // The ESP layer's own checks (beyond the shape checked by the proto layer).
            overlay::esp::KeyRing::new(ring.iter().map(|k| overlay::esp::EspKey {
                tag: k.tag,
                key: k.key.clone(),
            }))
            .map_err(|e| FieldError::new("dataplane", e.to_string()))?;
        }
        let before = self.rings();
        let mut next = before.clone();
        if let Some(ring) = req.gossip {
            let current = self
                .keys
                .gossip_in_use
                .lock()
                .expect("not poisoned")
                .clone();
            for step in keys::gossip_steps(&current, &ring) {
                let r = match &step {
                    GossipStep::Add(k) => self.db.add_key(k.clone()).await,
                    GossipStep::SetPrimary(k) => self.db.set_primary_key(k.clone()).await,
                    GossipStep::Remove(k) => self.db.remove_key(k.clone()).await,
                };
                r.map_err(|e| AgentError::Internal(format!("gossip keyring: {e}")))?;
            }
            *self.keys.gossip_in_use.lock().expect("not poisoned") =
                ring.iter().map(|k| k.key.clone()).collect();
            next.gossip = ring;
        }
        if let Some(ring) = req.dataplane {
            next.dataplane = ring;
        }
        let file = KeysFile::in_dir(self.state_dir.path());
        let saved = next.clone();
        tokio::task::spawn_blocking(move || file.save(&saved))
            .await
            .map_err(|e| AgentError::Internal(format!("saving the keys: {e}")))??;
        *self.keys.rings.lock().expect("not poisoned") = next.clone();
        tracing::info!(
            gossip = ?next.gossip.iter().map(|k| k.tag).collect::<Vec<_>>(),
            dataplane = ?next.dataplane.iter().map(|k| k.tag).collect::<Vec<_>>(),
            "key rings set"
        );
        if next.dataplane != before.dataplane {
            // The next rotation step may be taken on another node as soon as this returns:
            // this node must receive with every key of the ring by then.
            match self.reconciler.reconcile_esp_now(self).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    "the dataplane ring is set but IPsec is not fully applied yet (retried)"
                ),
                Err(e) => tracing::warn!(error = %e, "applying the dataplane ring (retried)"),
            }
        }
        self.dirty.notify_one();
        Ok(KeysInfo {
            gossip: keys::info(&next.gossip, Some(&before.gossip)),
            dataplane: keys::info(&next.dataplane, Some(&before.dataplane)),
        })
    }
}
