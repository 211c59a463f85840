//! A packet capture with `tcpdump` on an interface of a network namespace (the kernel-VM
//! guests' bridge, say), written to a pcap file, then counted with filters. The observer
//! on the wire that the tests' claims about what leaves a host ("only ESP") rest on.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running capture; [`Capture::stop`] ends it. Dropping it kills tcpdump and removes the
/// file.
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    pcap: PathBuf,
    log: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i <dev> -w <pcap>` inside namespace `netns` (a name under
    /// `/var/run/netns`), headers only (`-s 96`), and waits until it listens.
    pub fn start(netns: &str, dev: &str, pcap: &Path) -> Result<Capture> {
        lab::ensure_tools(&["tcpdump"])?;
        let log = pcap.with_extension("log");
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "tcpdump", "-Z", "root", "-s", "96"])
            .args(["-U", "-n", "-i", dev, "-w"])
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting tcpdump")?;
        let mut c = Capture {
            child: Some(child),
            pcap: pcap.to_path_buf(),
            log,
        };
        let t0 = Instant::now();
        loop {
            let text = std::fs::read_to_string(&c.log).unwrap_or_default();
            if text.contains("listening on") {
                return Ok(c);
            }
            if let Some(ch) = c.child.as_mut()
                && let Ok(Some(status)) = ch.try_wait()
            {
                bail!("tcpdump exited ({status}): {text}");
            }
            ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "tcpdump did not start listening within 10 s: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the capture (SIGINT, so that tcpdump flushes) and returns the pcap's path.
    pub fn stop(&mut self) -> Result<&Path> {
        if let Some(mut ch) = self.child.take() {
            let pid = Pid::from_raw(i32::try_from(ch.id()).unwrap_or(0));
            // `ip netns exec` execs tcpdump: the pid is tcpdump's.
            let _ = kill(pid, Signal::SIGINT);
            let t0 = Instant::now();
            while matches!(ch.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = ch.kill();
            let _ = ch.wait();
        }
        Ok(&self.pcap)
    }

    /// Packets of the stopped capture that match the tcpdump `filter`.
    pub fn count(&self, filter: &str) -> Result<usize> {
        ensure!(self.child.is_none(), "stop the capture first");
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.pcap)
            .arg(filter)
            .stdin(Stdio::null())
            .output()
            .context("tcpdump -r")?;
        ensure!(
            out.status.success(),
            "tcpdump -r {} '{filter}': {}",
            self.pcap.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).lines().count())
    }

    /// The first `n` packets matching `filter`, as tcpdump prints them.
    pub fn show(&self, filter: &str, n: usize) -> Result<String> {
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.pcap)
            .args(["-c", &n.to_string()])
            .arg(filter)
            .stdin(Stdio::null())
            .output()
            .context("tcpdump -r")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut ch) = self.child.take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
        let _ = std::fs::remove_file(&self.pcap);
        let _ = std::fs::remove_file(&self.log);
    }
}
