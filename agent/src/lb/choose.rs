//! `--lb auto|nftables|ipvs`: which [`LoadBalancer`] the agent uses, and why.

use std::sync::Arc;

use super::ipvs_backend::{IpvsBalancer, ipvs_available};
use super::{LoadBalancer, NftLoadBalancer};
use crate::config::LbChoice;

/// Said of the IPVS backend in status until it has run end to end on a kernel with IPVS
/// (the kernel-VM work): its planner and messages are tested, its kernel path is not.
pub const IPVS_UNTESTED: &str = "the ipvs backend is untested end to end (its CI kernel has no IPVS; golden messages derived from the uapi)";

/// The balancer for `choice`, with a note for status (why it was chosen, caveats); `Err`
/// names what is missing when the choice cannot work on this machine.
pub fn choose(choice: LbChoice) -> Result<(Arc<dyn LoadBalancer>, String), String> {
    let nft = || -> Result<Arc<dyn LoadBalancer>, String> {
        NftLoadBalancer::available().map_err(|e| format!("nftables balancer: {e}"))?;
        Ok(Arc::new(NftLoadBalancer::new()))
    };
    match choice {
        LbChoice::Nftables => Ok((nft()?, "chosen with --lb nftables".into())),
        LbChoice::Ipvs => {
            ipvs_available().map_err(|e| format!("--lb ipvs: {e}"))?;
            Ok((
                Arc::new(IpvsBalancer::new()),
                format!("chosen with --lb ipvs; {IPVS_UNTESTED}"),
            ))
        }
        // IPVS is chosen only explicitly until its backend has run end to end on a kernel
        // with IPVS; auto says whether this kernel has it.
        LbChoice::Auto => {
            let ipvs = match ipvs_available() {
                Ok(()) => "this kernel has IPVS, used only with --lb ipvs".to_string(),
                Err(why) => format!("no IPVS on this kernel ({why})"),
            };
            Ok((nft()?, format!("auto: nftables; {ipvs}; {IPVS_UNTESTED}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_nftables_and_says_why_and_that_ipvs_is_untested() {
        // Needs `nft` and `nsenter` installed (the test suite installs them).
        let Ok((lb, note)) = choose(LbChoice::Auto) else {
            println!("skipped: nft or nsenter missing");
            return;
        };
        assert_eq!(lb.kind(), super::super::LbKind::Nftables);
        assert!(note.starts_with("auto: nftables; "), "{note}");
        assert!(note.contains(IPVS_UNTESTED), "{note}");
        if ipvs_available().is_err() {
            assert!(note.contains("no IPVS on this kernel"), "{note}");
            assert!(
                choose(LbChoice::Ipvs).is_err(),
                "--lb ipvs must refuse here"
            );
        }
    }
}
