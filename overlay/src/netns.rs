//! Network namespaces: named ones (`ip netns add/del` semantics, without shelling out) and
//! switching the calling thread between namespaces.
//!
//! `setns(2)` and `unshare(2)` act on the calling thread only, so these functions are meant
//! for the executor's dedicated thread, which always returns to its home namespace.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::names::NETNS_RUN_DIR;
use crate::{Error, Names};

/// The calling thread's current network namespace.
pub(crate) const THREAD_SELF_NS: &str = "/proc/thread-self/ns/net";

/// Whether `path` is a live namespace (an nsfs file, i.e. a bind mount of one).
pub(crate) fn is_nsfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Opens a namespace file (a handle that keeps the namespace alive while open).
pub(crate) fn open(path: &Path) -> Result<File, Error> {
    File::open(path).map_err(|e| Error::io("open namespace", path.display().to_string(), e))
}

/// Moves the calling thread into the network namespace `ns`.
pub(crate) fn enter(ns: impl AsFd, what: &Path) -> Result<(), Error> {
    setns(ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::nix("enter namespace", what.display().to_string(), e))
}

/// Named namespaces of `names`' prefix: `(vni, name, path, mounted)`, sorted by VNI.
pub(crate) fn list(names: &Names) -> Result<Vec<(u32, String, PathBuf, bool)>, Error> {
    let dir = match fs::read_dir(NETNS_RUN_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list namespaces in", NETNS_RUN_DIR, e)),
    };
    let mut out = Vec::new();
    for entry in dir {
        let entry = entry.map_err(|e| Error::io("list namespaces in", NETNS_RUN_DIR, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(vni) = names.parse_sandbox(&name) else {
            continue;
        };
        let path = entry.path();
        let mounted = is_nsfs(&path);
        out.push((vni, name, path, mounted));
    }
    out.sort();
    Ok(out)
}

/// Makes sure [`NETNS_RUN_DIR`] exists and is a shared mount point, exactly as
/// `ip netns add` does (so namespace mounts propagate to mount namespaces created later,
/// e.g. by `ip netns exec`).
pub(crate) fn ensure_run_dir() -> Result<(), Error> {
    fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| Error::io("create", NETNS_RUN_DIR, e))?;
    let make_shared = || {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match make_shared() {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then retry.
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| Error::nix("bind-mount", NETNS_RUN_DIR, e))?;
            make_shared().map_err(|e| Error::nix("make shared", NETNS_RUN_DIR, e))
        }
        Err(e) => Err(Error::nix("make shared", NETNS_RUN_DIR, e)),
    }
}

/// Creates the named namespace at `path` and leaves the calling thread **inside it**.
///
/// Contract: the caller must return the thread to its home namespace afterwards, whatever
/// the result (on error the thread may or may not have switched). On error nothing is left
/// at `path`. A leftover file at `path` that is not a namespace mount is reused.
pub(crate) fn create_and_enter(path: &Path) -> Result<(), Error> {
    let shown = || path.display().to_string();
    ensure_run_dir()?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !is_nsfs(path) => {}
        Err(e) => return Err(Error::io("create namespace file", shown(), e)),
    }
    let result = unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::nix("unshare network namespace for", shown(), e))
        .and_then(|()| {
            mount(
                Some(THREAD_SELF_NS),
                path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| Error::nix("bind-mount namespace onto", shown(), e))
        });
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Unmounts and removes the named namespace at `path` (`ip netns del`). Succeeds when it is
/// already gone. The namespace itself lives on until its last user (process, socket, open
/// file) lets go.
pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => {
            return Err(Error::nix(
                "unmount namespace",
                path.display().to_string(),
                e,
            ));
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            "remove namespace file",
            path.display().to_string(),
            e,
        )),
    }
}

/// Writes `1` to `net/ipv6/conf/{all,default}/disable_ipv6` of the calling thread's current
/// network namespace (procfs resolves `/proc/sys/net` per thread). Missing IPv6 is fine.
pub(crate) fn disable_ipv6_here() -> Result<(), Error> {
    for which in ["all", "default"] {
        let p = format!("/proc/sys/net/ipv6/conf/{which}/disable_ipv6");
        match fs::write(&p, "1") {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("write sysctl", p, e)),
        }
    }
    Ok(())
}
