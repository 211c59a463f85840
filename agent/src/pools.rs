//! VNI and subnet allocation for new networks: pure logic, no I/O.
//!
//! Both pick the *first* free value of their pool (so that subnets read 10.128.0.0/24,
//! 10.128.1.0/24, ...). Two agents creating networks at the same moment will therefore often
//! pick the same values; [`crate::conflict`] resolves that deterministically.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnetwork::Ipv4Network;

/// Default pool subnets are cut from.
pub const DEFAULT_SUBNET_POOL: &str = "10.128.0.0/9";
/// Default prefix length of an allocated subnet.
pub const DEFAULT_SUBNET_PREFIX: u8 = 24;
/// Default VNI pool (below 4096 is left to hand-made networks and VLAN-like numbering).
pub const DEFAULT_VNI_POOL: RangeInclusive<u32> = 4096..=16_777_215;

/// Where new networks' VNIs and subnets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pools {
    pub subnet_pool: Ipv4Network,
    pub subnet_prefix: u8,
    pub vni: RangeInclusive<u32>,
}

impl Default for Pools {
    fn default() -> Self {
        Pools {
            subnet_pool: DEFAULT_SUBNET_POOL.parse().expect("valid"),
            subnet_prefix: DEFAULT_SUBNET_PREFIX,
            vni: DEFAULT_VNI_POOL,
        }
    }
}

impl Pools {
    /// The lowest VNI of the pool not in `taken`.
    pub fn vni(&self, taken: &BTreeSet<u32>) -> Option<u32> {
        self.vni.clone().find(|v| !taken.contains(v))
    }

    /// The lowest subnet of the pool that overlaps none of `taken` (other networks) and none
    /// of `host_routes` (the host's own routes; default routes are ignored).
    pub fn subnet(
        &self,
        taken: &[Ipv4Network],
        host_routes: &[Ipv4Network],
    ) -> Option<Ipv4Network> {
        let prefix = self.subnet_prefix.max(self.subnet_pool.prefix());
        let count = 1u64 << (prefix - self.subnet_pool.prefix());
        let size = 1u64 << (32 - prefix);
        let base = u64::from(u32::from(self.subnet_pool.network()));
        let avoid: Vec<Ipv4Network> = taken
            .iter()
            .chain(host_routes.iter().filter(|r| r.prefix() > 0))
            .copied()
            .collect();
        // Skip over a whole overlapping range at once so that a /9 pool with a /10 route
        // does not scan 16k candidates one by one.
        let mut i = 0u64;
        while i < count {
            let cand = Ipv4Network::new(Ipv4Addr::from((base + i * size) as u32), prefix)
                .expect("valid prefix");
            match avoid.iter().find(|a| overlaps(**a, cand)) {
                None => return Some(cand),
                Some(a) => {
                    let end = u64::from(u32::from(a.broadcast())).max(base + i * size);
                    let next = (end + 1 - base).div_ceil(size);
                    i = next.max(i + 1);
                }
            }
        }
        None
    }
}

/// Whether two IPv4 networks share any address.
pub fn overlaps(a: Ipv4Network, b: Ipv4Network) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// The first host address of a subnet: the default gateway.
pub fn first_host(subnet: Ipv4Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Network {
        s.parse().unwrap()
    }

    #[test]
    fn the_first_free_subnet_and_vni_are_chosen() {
        let p = Pools::default();
        assert_eq!(p.subnet(&[], &[]), Some(net("10.128.0.0/24")));
        assert_eq!(
            p.subnet(&[net("10.128.0.0/24"), net("10.128.2.0/24")], &[]),
            Some(net("10.128.1.0/24"))
        );
        assert_eq!(p.vni(&BTreeSet::new()), Some(4096));
        assert_eq!(p.vni(&BTreeSet::from([4096, 4097])), Some(4098));
    }

    #[test]
    fn host_routes_are_avoided_but_the_default_route_is_not_a_conflict() {
        let p = Pools::default();
        let routes = [net("0.0.0.0/0"), net("10.128.0.0/16"), net("10.129.0.5/32")];
        assert_eq!(p.subnet(&[], &routes), Some(net("10.129.1.0/24")));
        // A big route in the middle is skipped in one step.
        let routes = [net("10.128.0.0/10")];
        assert_eq!(p.subnet(&[], &routes), Some(net("10.192.0.0/24")));
    }

    #[test]
    fn a_full_pool_yields_nothing() {
        let p = Pools {
            subnet_pool: net("10.0.0.0/23"),
            subnet_prefix: 24,
            vni: 10..=11,
        };
        assert_eq!(
            p.subnet(&[net("10.0.0.0/24")], &[net("10.0.1.128/25")]),
            None
        );
        assert_eq!(p.vni(&BTreeSet::from([10, 11])), None);
    }

    #[test]
    fn overlap_is_symmetric() {
        assert!(overlaps(net("10.0.0.0/8"), net("10.1.0.0/16")));
        assert!(overlaps(net("10.1.0.0/16"), net("10.0.0.0/8")));
        assert!(!overlaps(net("10.1.0.0/16"), net("10.2.0.0/16")));
    }
}
