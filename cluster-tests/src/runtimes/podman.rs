//! One podman "host": podman 4.3 rootful with `network_backend = "cni"`, run under
//! `nsenter --net=<host>` with its own containers.conf and storage (both chosen through
//! `CONTAINERS_CONF` and `CONTAINERS_STORAGE_CONF`, which podman also hands to the cleanup
//! process that calls CNI DEL), its own CNI configuration directory and plugin path, file
//! locks and temporary directory. Storage driver `vfs` (nothing to unmount).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::Result;

use super::process::{self, in_netns, ok_within, output_within};

/// Longest a podman command may take.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// One podman host.
#[derive(Debug)]
pub struct Podman {
    pub netns: PathBuf,
    pub dir: PathBuf,
    pub cni_dir: PathBuf,
}

impl Podman {
    /// Write host `index`'s configuration under `dir`: the CNI plugins are looked up in
    /// `plugin_dir`, then `/usr/lib/cni`; `conflists` are (file name, content) pairs for
    /// the network configuration directory.
    pub fn setup(
        netns: &Path,
        dir: &Path,
        index: usize,
        plugin_dir: &Path,
        conflists: &[(&str, String)],
    ) -> Result<Podman> {
        let cni_dir = dir.join("cni");
        for d in ["root", "runroot", "tmp", "volumes"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        std::fs::create_dir_all(&cni_dir)?;
        let d = dir.display();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                r#"[containers]
log_driver = "k8s-file"
# Raising rlimits needs CAP_SYS_RESOURCE, which this sandbox lacks.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}", "/usr/lib/cni"]
network_config_dir = "{d}/cni"
default_network = "podman"
default_subnet = "10.88.{sub}.0/24"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
static_dir = "{d}/root/libpod"
volume_path = "{d}/volumes"
lock_type = "file"
# crun 1.8 refuses the hybrid cgroup layout; runc works.
runtime = "runc"
"#,
                plugins = plugin_dir.display(),
                sub = 100 + index,
            ),
        )?;
        std::fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/runroot\"\n"
            ),
        )?;
        for (name, content) in conflists {
            std::fs::write(cni_dir.join(name), content)?;
        }
        Ok(Podman {
            netns: netns.to_path_buf(),
            dir: dir.to_path_buf(),
            cni_dir,
        })
    }

    /// `podman <args>` as this host.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = in_netns(&self.netns, "podman", args);
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"));
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<Output> {
        output_within(self.cmd(args), PODMAN_TIMEOUT)
    }

    /// Must exit 0; its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        Ok(ok_within(self.cmd(args), PODMAN_TIMEOUT)?
            .trim()
            .to_string())
    }

    /// Import the busybox root filesystem as `localhost/swarmnet/busybox:latest`.
    pub fn import(&self, rootfs_tar: &Path) -> Result<()> {
        let tar = rootfs_tar.display().to_string();
        self.ok(&[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            &tar,
            &format!("localhost/{}", super::image::NAME),
        ])?;
        Ok(())
    }

    /// The image reference to run.
    pub fn image(&self) -> String {
        format!("localhost/{}", super::image::NAME)
    }

    /// Remove every container (CNI DEL for each).
    pub fn remove_all(&self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.remove_all();
        process::unmount_under(&self.dir);
        process::remove_empty_dirs(&["/var/lib/cni/results", "/var/lib/cni"]);
    }
}
