//! Running a closure inside another network namespace.
//!
//! `setns(2)` moves only the calling thread, and a netlink socket stays bound to the
//! namespace it was created in, so the closure runs on a short-lived thread that enters the
//! namespace, and whatever it creates (sockets, `/proc/sys/net` files opened) keeps that
//! namespace after the thread ends.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use crate::Error;

/// Runs `f` on a new thread that first enters the network namespace at `path` (a file such
/// as `/var/run/netns/c1` or `/proc/<pid>/ns/net`), and returns its result. The calling
/// thread's namespace is never changed. Needs `CAP_SYS_ADMIN`.
pub fn run_in_netns<F, R>(path: &Path, f: F) -> Result<R, Error>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let err = |source: io::Error| Error::Netns {
        path: path.display().to_string(),
        source,
    };
    let ns = File::open(path).map_err(err)?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || -> Result<R, io::Error> {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result.map_err(err),
            Err(_) => Err(err(io::Error::other("namespace worker thread panicked"))),
        }
    })
}
