//! The real family lookup on the running kernel: how `--lb auto` decides.
//!
//! Resolving a generic-netlink family needs no privilege and creates nothing, so this runs
//! everywhere. The expectation comes from an independent witness: `/proc/net/ip_vs` exists
//! exactly when the `ip_vs` module is loaded (checked after the lookup, which may autoload it).

use std::path::Path;

#[test]
fn the_family_lookup_says_not_supported_exactly_when_the_kernel_has_no_ipvs() {
    let result = ipvs::probe();
    let present = Path::new("/proc/net/ip_vs").exists();
    match (&result, present) {
        (Ok(()), true) => {
            let handle = ipvs::Handle::new().expect("second lookup");
            assert!(handle.family_id() > 0x10, "dynamic family id");
            println!("IPVS present: family id {}", handle.family_id());
        }
        (Err(ipvs::Error::NotSupported), false) => {
            println!(
                "IPVS absent: lookup reported NotSupported ({})",
                ipvs::Error::NotSupported
            );
        }
        (other, present) => {
            panic!("family lookup returned {other:?} while /proc/net/ip_vs exists = {present}")
        }
    }
}

#[test]
fn a_handle_created_in_another_namespace_reports_the_same_availability() {
    // The calling thread's own namespace, entered through its file: exercises the
    // setns thread without needing a namespace of our own (root needed for setns).
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: setns needs root");
        return;
    }
    let direct = ipvs::probe().map_err(|e| e.to_string());
    let via_netns = ipvs::Handle::in_netns("/proc/self/ns/net")
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(direct, via_netns);
}

#[test]
fn the_family_lookup_finds_the_controller_itself_on_any_kernel() {
    // Proves the lookup's encoding and reply parsing against the running kernel: `nlctrl`
    // exists everywhere, with the fixed id GENL_ID_CTRL.
    assert_eq!(ipvs::lookup_family("nlctrl").expect("nlctrl lookup"), 0x10);
    assert!(matches!(
        ipvs::lookup_family("NoSuchFamily"),
        Err(ipvs::Error::NotSupported)
    ));
}
