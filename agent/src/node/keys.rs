//! SetKeys: validate a new ring against what the kernel can use, apply the gossip ring to
//! networkdb step by step, keep the dataplane ring for the ESP reconcile, save both.

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

    /// Cluster.SetKeys.
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
        self.dirty.notify_one();
        Ok(KeysInfo {
            gossip: keys::info(&next.gossip, Some(&before.gossip)),
            dataplane: keys::info(&next.dataplane, Some(&before.dataplane)),
        })
    }
}
