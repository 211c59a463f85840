//! One dockerd "host": dockerd 20.10 in the host's network namespace and in a private
//! (slave) mount namespace where `/etc/docker` is this host's directory, so that its plugin
//! discovery (`/etc/docker/plugins/swarmnet.spec`) names this host's agent. Everything else
//! it keeps (data root, exec root with its own containerd, pid file, API socket) is under the
//! host's directory; its mounts die with its mount namespace. No iptables, no userland
//! proxy, storage driver `vfs`. The client is Debian's `/usr/bin/docker` (20.10).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::process::{self, Daemon, ok_within, output_within};

const DOCKER_TIMEOUT: Duration = Duration::from_secs(120);
/// Debian's docker CLI (another one in /usr/local/bin may shadow it).
pub const CLI: &str = "/usr/bin/docker";

/// One dockerd host.
#[derive(Debug)]
pub struct Dockerd {
    pub netns: PathBuf,
    pub dir: PathBuf,
    pub index: usize,
    daemon: Option<Daemon>,
}

impl Dockerd {
    /// The API socket of host `index`'s dockerd under `dir` (known before it starts, for the
    /// agent's `--docker-api`).
    pub fn socket_in(dir: &Path) -> PathBuf {
        dir.join("docker.sock")
    }

    /// Prepare host `index` under `dir` with the plugin `swarmnet` at `plugin_socket`, and
    /// start dockerd.
    pub fn start(netns: &Path, dir: &Path, index: usize, plugin_socket: &Path) -> Result<Dockerd> {
        let etc = dir.join("etc");
        std::fs::create_dir_all(etc.join("plugins"))?;
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::create_dir_all(dir.join("exec"))?;
        std::fs::write(
            etc.join("plugins/swarmnet.spec"),
            format!("unix://{}\n", plugin_socket.display()),
        )?;
        if !dir.join("daemon.json").exists() {
            std::fs::write(dir.join("daemon.json"), "{}\n")?;
        }
        let mut d = Dockerd {
            netns: netns.to_path_buf(),
            dir: dir.to_path_buf(),
            index,
            daemon: None,
        };
        d.start_daemon()?;
        Ok(d)
    }

    /// Start dockerd (again) and wait (bounded) until its API answers.
    pub fn start_daemon(&mut self) -> Result<()> {
        let d = &self.dir;
        let arg = |p: &str| d.join(p).display().to_string();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.netns.display()))
            .args(["--", "unshare", "-m", "--propagation", "slave", "sh", "-c"])
            .arg("mount --bind \"$1\" /etc/docker && shift && exec dockerd \"$@\"")
            .arg("sh")
            .arg(arg("etc"))
            .args(["--data-root", &arg("data")])
            .args(["--exec-root", &arg("exec")])
            .args(["--pidfile", &arg("docker.pid")])
            .args(["-H", &format!("unix://{}", arg("docker.sock"))])
            .args(["--config-file", &arg("daemon.json")])
            .args(["--storage-driver", "vfs"])
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--userland-proxy=false",
            ])
            .stdin(std::process::Stdio::null());
        // A dockerd killed earlier may have left its managed containerd's pid file behind.
        let _ = std::fs::remove_file(d.join("exec/containerd/containerd.pid"));
        self.daemon = Some(Daemon::spawn(
            &format!("dockerd h{}", self.index),
            cmd,
            &d.join("dockerd.log"),
        )?);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.run(&["version"]).is_ok_and(|o| o.status.success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "dockerd h{} did not answer within 60 s; log:\n{}",
                    self.index,
                    self.log()
                );
            }
            if let Some(daemon) = self.daemon.as_mut()
                && !daemon.running()
            {
                bail!("dockerd h{} exited; log:\n{}", self.index, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM (Docker tears its endpoints down through the plugin), then wait.
    pub fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.stop(Duration::from_secs(30));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// `docker -H <socket> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(CLI);
        c.arg("-H")
            .arg(format!("unix://{}", Self::socket_in(&self.dir).display()))
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Result<Output> {
        output_within(self.cmd(args), DOCKER_TIMEOUT)
    }

    pub fn ok(&self, args: &[&str]) -> Result<String> {
        Ok(ok_within(self.cmd(args), DOCKER_TIMEOUT)?
            .trim()
            .to_string())
    }

    /// Import the busybox root filesystem as `swarmnet/busybox:latest`.
    pub fn import(&self, rootfs_tar: &Path) -> Result<()> {
        let tar = rootfs_tar.display().to_string();
        self.ok(&[
            "import",
            "-c",
            r#"CMD ["/bin/sh"]"#,
            &tar,
            super::image::NAME,
        ])?;
        Ok(())
    }

    /// Remove every container and every network but the built-in ones.
    pub fn remove_all(&self) {
        if let Ok(ids) = self.ok(&["ps", "-aq"]) {
            for id in ids.lines() {
                let _ = self.run(&["rm", "-f", id]);
            }
        }
        if let Ok(nets) = self.ok(&["network", "ls", "--filter", "driver=swarmnet", "-q"]) {
            for n in nets.lines() {
                let _ = self.run(&["network", "rm", n]);
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            self.remove_all();
        }
        self.stop_daemon();
        process::unmount_under(&self.dir);
        // dockerd creates its legacy plugin socket directory machine-wide.
        process::remove_empty_dirs(&["/run/docker/plugins", "/run/docker"]);
    }
}
