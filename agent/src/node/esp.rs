//! Encrypted networks on this node's side: whether it may attach to one (IPsec ESP in its
//! kernel and a dataplane key ring). The IPsec state itself is the reconciler's
//! ([`crate::reconciler::esp`]).

use super::Agent;

impl Agent {
    /// Whether an endpoint may attach to an encrypted network here: ESP in the kernel and a
    /// dataplane key ring. `Err` says which is missing, for the caller.
    pub fn esp_ready(&self, network: &str) -> std::result::Result<(), String> {
        if let Err(why) = self.reconciler.dataplane.esp() {
            return Err(format!(
                "network {network} is encrypted and this node cannot do IPsec ESP ({why}); \
                 its traffic is never sent in clear, so it cannot attach here"
            ));
        }
        if self.esp_ring().is_none() {
            return Err(format!(
                "network {network} is encrypted and this node has no dataplane keys yet: the \
                 orchestrator sets them with Cluster.SetKeys (swarmnet cluster keys set \
                 --dataplane TAG:HEX)"
            ));
        }
        Ok(())
    }

    /// Encrypted networks this node has a sandbox for.
    pub fn encrypted_networks_here(&self) -> usize {
        self.local()
            .networks
            .values()
            .filter(|d| d.encrypted)
            .count()
    }
}
