//! Real container runtimes in the lab's host namespaces: podman 4.3 with the CNI backend,
//! containerd 1.6 with `ctr run --cni`, and dockerd 20.10 with swarmnet's network and IPAM
//! plugin, each instance confined to one host (its network namespace, and its own state,
//! image store and sockets under a temporary directory), so that several "hosts" run side by
//! side on one machine.
//!
//! | file | concept |
//! | --- | --- |
//! | [`image`] | a busybox-static root filesystem as a plain tarball and an OCI archive |
//! | [`process`] | commands in a host namespace with a time bound; daemons stopped on drop; mount sweeps |
//! | [`podman`] | one podman "host": containers.conf, storage, CNI configuration |
//! | [`containerd`] | one containerd "host" and `ctr` (with `--cni` in a private mount view) |
//! | [`docker`] | one dockerd "host" with its own plugin discovery directory |
//!
//! Machine facts that shape this (Debian 12, cgroup v1 hybrid, no CAP_SYS_RESOURCE):
//! runtimes run under `nsenter --net` (never `ip netns exec`, which remounts `/sys` and hides
//! the cgroup hierarchies); podman uses runc (crun 1.8 refuses the hybrid layout) and
//! ulimits below the hard limits; storage drivers that mount nothing (`vfs`, `native`) so
//! that teardown has no overlay mounts to chase; every daemon is a child of the test, so it
//! is reaped.
//!
//! Root-fs paths the runtimes use anyway (removed or emptied on teardown only when this
//! module created them): `/run/netns/netns-*` (podman's, removed by podman),
//! `/var/lib/cni` (libcni's cache), `/run/containerd/{s,runc,fifo}` (shims), `/run/runc`.

pub mod containerd;
pub mod docker;
pub mod image;
pub mod podman;
pub mod process;

use std::path::PathBuf;

/// Why the runtime tests cannot run here, if they cannot: not root, or a program missing
/// (scripts/install-deps.sh installs them).
pub fn skip_reason(programs: &[&str]) -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root".into());
    }
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| process::find(p).is_none())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (scripts/install-deps.sh installs the container runtimes)",
            missing.join(", ")
        )
    })
}

/// A fresh directory for one test's runtimes, under the system temp dir.
pub fn work_dir(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "swarmnet-rt-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}
