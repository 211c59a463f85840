//! `--lb auto|nftables|ipvs`: which [`LoadBalancer`] the agent uses, and why.

use std::sync::Arc;

use super::ipvs_backend::{IpvsBalancer, ipvs_available};
use super::{LoadBalancer, NftLoadBalancer};
use crate::config::LbChoice;

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
                "chosen with --lb ipvs".to_string(),
            ))
        }
        // nftables works on every kernel with nf_tables and is what the whole suite runs on;
        // IPVS (tested in the kernel-VM suite) is used when asked for. Auto says whether this
        // kernel has it.
        LbChoice::Auto => {
            let ipvs = match ipvs_available() {
                Ok(()) => "this kernel has IPVS, used only with --lb ipvs".to_string(),
                Err(why) => format!("no IPVS on this kernel ({why})"),
            };
            Ok((nft()?, format!("auto: nftables; {ipvs}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_nftables_and_says_whether_the_kernel_has_ipvs() {
        // Needs `nft` and `nsenter` installed (the test suite installs them).
        let Ok((lb, note)) = choose(LbChoice::Auto) else {
            println!("skipped: nft or nsenter missing");
            return;
        };
        assert_eq!(lb.kind(), super::super::LbKind::Nftables);
        assert!(note.starts_with("auto: nftables; "), "{note}");
        if ipvs_available().is_err() {
            assert!(note.contains("no IPVS on this kernel"), "{note}");
            assert!(
                choose(LbChoice::Ipvs).is_err(),
                "--lb ipvs must refuse here"
            );
        }
    }
}
