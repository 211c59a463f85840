//! One containerd "host": containerd 1.6 in the host's network namespace with its own root,
//! state and sockets (CRI disabled, so it never touches `/etc/cni` or `/opt/cni`), a
//! containerd namespace of its own (`h<i>`: shims key their sockets and runc state by
//! namespace and container id, machine-wide), and `ctr`. `ctr run --cni` does CNI in the ctr
//! process and reads only `/etc/cni/net.d` and `/opt/cni/bin`, so it runs in a private mount
//! view where those (and libcni's cache `/var/lib/cni`) are this host's directories.
//! Snapshotter `native` (nothing to unmount).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::process::{self, Daemon, in_netns, ok_within, output_within};

const CTR_TIMEOUT: Duration = Duration::from_secs(120);

/// One containerd host.
#[derive(Debug)]
pub struct Containerd {
    pub netns: PathBuf,
    pub dir: PathBuf,
    /// The containerd namespace (`h<i>`).
    pub ns: String,
    /// This host's `/etc/cni/net.d`, `/opt/cni/bin` and `/var/lib/cni` for `ctr --cni`.
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub cni_state: PathBuf,
    daemon: Daemon,
}

impl Containerd {
    /// Start host `index`'s containerd under `dir`; wait (bounded) until it answers.
    /// `plugins` are (name, path) of the CNI plugins `ctr --cni` may run.
    pub fn start(
        netns: &Path,
        dir: &Path,
        index: usize,
        plugins: &[(&str, &Path)],
        conflists: &[(&str, String)],
    ) -> Result<Containerd> {
        let conf_dir = dir.join("net.d");
        let bin_dir = dir.join("cni-bin");
        let cni_state = dir.join("cni-state");
        for d in [&conf_dir, &bin_dir, &cni_state] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::create_dir_all(dir.join("root"))?;
        std::fs::create_dir_all(dir.join("state"))?;
        for (name, path) in plugins {
            let _ = std::fs::remove_file(bin_dir.join(name));
            std::os::unix::fs::symlink(path, bin_dir.join(name))?;
        }
        for (name, content) in conflists {
            std::fs::write(conf_dir.join(name), content)?;
        }
        let d = dir.display();
        std::fs::write(
            dir.join("config.toml"),
            format!(
                r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
"#
            ),
        )?;
        let cfg = dir.join("config.toml").display().to_string();
        let daemon = Daemon::spawn(
            &format!("containerd h{index}"),
            in_netns(netns, "containerd", &["-c", &cfg]),
            &dir.join("containerd.log"),
        )?;
        let c = Containerd {
            netns: netns.to_path_buf(),
            dir: dir.to_path_buf(),
            ns: format!("h{index}"),
            conf_dir,
            bin_dir,
            cni_state,
            daemon,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.run(&["version"]).is_ok_and(|o| o.status.success()) {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!(
                    "containerd h{index} did not answer within 30 s; log:\n{}",
                    c.daemon.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn socket(&self) -> String {
        self.dir.join("containerd.sock").display().to_string()
    }

    /// `ctr -a <socket> -n <ns> <args>` in the host's network namespace.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let sock = self.socket();
        let mut all = vec!["-a", &sock, "-n", &self.ns];
        all.extend_from_slice(args);
        in_netns(&self.netns, "ctr", &all)
    }

    pub fn run(&self, args: &[&str]) -> Result<Output> {
        output_within(self.cmd(args), CTR_TIMEOUT)
    }

    pub fn ok(&self, args: &[&str]) -> Result<String> {
        Ok(ok_within(self.cmd(args), CTR_TIMEOUT)?.trim().to_string())
    }

    /// `ctr ... <args>` in a private mount view where `/etc/cni/net.d`, `/opt/cni/bin` and
    /// `/var/lib/cni` are this host's (for `run --cni`).
    pub fn cni_cmd(&self, args: &[&str]) -> Command {
        self.cni_cmd_in(&self.conf_dir, args)
    }

    /// [`Containerd::cni_cmd`] with another directory as `/etc/cni/net.d` (ctr uses the
    /// first configuration list there).
    pub fn cni_cmd_in(&self, conf_dir: &Path, args: &[&str]) -> Command {
        let script = "mount -t tmpfs -o size=1m swarmnet-etc-cni /etc/cni && mkdir -p /etc/cni/net.d && \
                      mount --bind \"$1\" /etc/cni/net.d && \
                      mount -t tmpfs -o size=1m swarmnet-opt /opt && mkdir -p /opt/cni/bin && \
                      mount --bind \"$2\" /opt/cni/bin && \
                      mkdir -p /var/lib/cni && mount --bind \"$3\" /var/lib/cni && \
                      shift 3 && exec ctr \"$@\"";
        let sock = self.socket();
        let (conf, bin, state) = (
            conf_dir.display().to_string(),
            self.bin_dir.display().to_string(),
            self.cni_state.display().to_string(),
        );
        let mut all: Vec<&str> = vec![
            "-m",
            "--propagation",
            "slave",
            "sh",
            "-c",
            script,
            "sh",
            &conf,
            &bin,
            &state,
            "-a",
            &sock,
            "-n",
            &self.ns,
        ];
        all.extend_from_slice(args);
        in_netns(&self.netns, "unshare", &all)
    }

    pub fn cni_run(&self, args: &[&str]) -> Result<Output> {
        output_within(self.cni_cmd(args), CTR_TIMEOUT)
    }

    /// Import the busybox OCI archive (`docker.io/swarmnet/busybox:latest`).
    pub fn import(&self, oci_tar: &Path) -> Result<()> {
        let tar = oci_tar.display().to_string();
        self.ok(&["images", "import", "--snapshotter", "native", &tar])?;
        Ok(())
    }

    /// The image reference to run.
    pub fn image(&self) -> String {
        format!("docker.io/{}", super::image::NAME)
    }

    /// Kill and remove container `id` (its task first). No CNI DEL: `ctr` never sends one
    /// for a detached container.
    pub fn remove(&self, id: &str) {
        let _ = self.run(&["tasks", "kill", "-s", "KILL", id]);
        for _ in 0..50 {
            let o = self.run(&["tasks", "delete", id]);
            if o.is_ok_and(|o| o.status.success()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.run(&["tasks", "delete", "-f", id]);
        let _ = self.run(&["containers", "delete", id]);
    }

    /// Every container id.
    pub fn containers(&self) -> Vec<String> {
        self.ok(&["containers", "list", "-q"])
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in self.containers() {
            self.remove(&id);
        }
        self.daemon.stop(Duration::from_secs(15));
        process::unmount_under(&self.dir);
        let runc = format!("/run/containerd/runc/{}", self.ns);
        process::remove_empty_dirs(&[
            &runc,
            "/run/containerd/runc",
            "/run/containerd/fifo",
            "/run/containerd/s",
            "/run/containerd",
        ]);
    }
}
