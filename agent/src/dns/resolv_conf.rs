//! Containers' `resolv.conf`, and the host's nameservers.
//!
//! [`render_resolv_conf`] is pure; [`write_resolv_conf`] writes a container's file
//! atomically (a temporary file in the same directory, fsync, rename), so a reader sees the
//! old file or the new one, never a partial one; [`remove_resolv_conf`] deletes it (and any
//! temporary file a crash left) when the container detaches. Contract for callers: write
//! the file before the container's runtime bind-mounts it; a rename replaces the inode, so
//! a bind mount made earlier keeps showing the old content until the runtime mounts again.

use std::fs;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use super::DnsError;

/// The resolver address inside every container.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// `nameserver` limit of glibc (`MAXNS`).
const MAXNS: usize = 3;

/// What the host's resolv.conf says that matters to us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostResolvConf {
    /// `nameserver` lines, in order (port 53).
    pub nameservers: Vec<IpAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
    /// `options` words, in order.
    pub options: Vec<String>,
}

/// Parses resolv.conf text leniently (unknown lines and bad addresses are skipped, as glibc
/// does; a `domain` line is a one-domain `search`, and the last of the two wins).
pub fn parse_resolv_conf(text: &str) -> HostResolvConf {
    let mut out = HostResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A scope id (`fe80::1%eth0`) is not supported: skipped.
                if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                    out.nameservers.push(ip);
                }
            }
            Some("search") | Some("domain") => {
                out.search = words.map(str::to_string).collect();
            }
            Some("options") => out.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    out
}

/// Upstreams from the host's resolv.conf text: its first three nameservers on port 53.
///
/// Loopback nameservers (`127.0.0.53` of systemd-resolved, a local dnsmasq) are **kept**:
/// forwarding happens from the agent's own network namespace, where they are reachable and
/// are the host's real resolver; dropping them would leave such hosts with no upstream. They
/// can never point back at us: our listeners exist only in container namespaces, and
/// [`Resolver::sync`](super::Resolver::sync) refuses to serve the agent's own namespace.
pub fn host_upstreams(text: &str) -> Vec<SocketAddr> {
    parse_resolv_conf(text)
        .nameservers
        .into_iter()
        .take(MAXNS)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// A container's resolv.conf: `nameserver 127.0.0.11`; the host's search domains, then
/// `extra_search` (duplicates dropped); the host's options except `ndots`, then
/// `ndots:<ndots>`.
pub fn render_resolv_conf(host: &HostResolvConf, extra_search: &[String], ndots: u8) -> String {
    let mut s = String::from("# Written by swarmnet: the embedded resolver of this container.\n");
    s.push_str(&format!("nameserver {RESOLVER_IP}\n"));
    let mut search: Vec<&str> = Vec::new();
    for d in host.search.iter().chain(extra_search) {
        if !d.is_empty() && !search.contains(&d.as_str()) {
            search.push(d);
        }
    }
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    let mut options: Vec<String> = host
        .options
        .iter()
        .filter(|o| !o.starts_with("ndots:"))
        .cloned()
        .collect();
    options.push(format!("ndots:{ndots}"));
    s.push_str(&format!("options {}\n", options.join(" ")));
    s
}

fn tmp_prefix(path: &Path) -> String {
    format!(
        ".{}.swarmnet-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    )
}

/// Writes `content` to `path` atomically (see the module docs). The parent directory must
/// exist. Mode 0644.
pub fn write_resolv_conf(path: &Path, content: &str) -> Result<(), DnsError> {
    let io_err = |what: &'static str, e: io::Error| DnsError::Io {
        what,
        path: path.display().to_string(),
        source: e,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!("{}.{}", tmp_prefix(path), std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp).map_err(|e| io_err("create", e))?;
        f.write_all(content.as_bytes())
            .map_err(|e| io_err("write", e))?;
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| io_err("chmod", e))?;
        f.sync_all().map_err(|e| io_err("fsync", e))?;
        fs::rename(&tmp, path).map_err(|e| io_err("rename onto", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a container's resolv.conf and any temporary file of ours beside it. Succeeds when
/// nothing is there.
pub fn remove_resolv_conf(path: &Path) -> Result<(), DnsError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(DnsError::Io {
                what: "remove",
                path: path.display().to_string(),
                source: e,
            });
        }
    }
    if let Some(dir) = path.parent()
        && let Ok(rd) = fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let prefix = tmp_prefix(path);
        for entry in rd.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    Ok(())
}
