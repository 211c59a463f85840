//! `--lb auto|nftables|ipvs`: which [`LoadBalancer`] the agent uses, and why.

use std::sync::Arc;

use super::LoadBalancer;
use crate::config::LbChoice;

/// The balancer for `choice`, with a note for status (why it was chosen, caveats); `Err`
/// names what is missing when the explicit choice cannot work on this machine.
pub fn choose(choice: LbChoice) -> Result<(Arc<dyn LoadBalancer>, String), String> {
    Err(format!(
        "--lb {}: no load balancer is built into this agent yet",
        choice.as_str()
    ))
}
