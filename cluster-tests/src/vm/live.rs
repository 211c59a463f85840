//! Guests that stay up while the host drives them: [`start_network`] boots guests made with
//! [`Guest::served`] on one virtual network (like [`run_network`](super::run_network)) and
//! returns once every guest answers; [`LiveNetwork::exec`] then runs shell commands in any
//! of them, concurrently, over TCP from the host's address on the guests' bridge
//! ([`HOST_ADDR`](super::HOST_ADDR)) to the `vm-exec` server in the guest ([`EXEC_PORT`]).
//! So one test can start real agents in several guest kernels, attach containers, capture on
//! the bridge and kill processes, step by step, with assertions on the host.
//!
//! [`LiveNetwork::finish`] stops the guests (their scripts exit 0) and returns their
//! [`Run`]s; dropping a network that was not finished kills its guests. Either way the
//! guests' namespace is deleted.

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

use super::{Booted, Guest, Run, TEST_MODULES, boot, guest_addr, shell_quote, tail};

/// TCP port of the `vm-exec` server in every served guest.
pub const EXEC_PORT: u16 = 7700;
/// How long [`start_network`] waits for every guest to answer.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default timeout of [`LiveNetwork::exec`].
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(60);

impl Guest {
    /// A guest for [`start_network`]: loads [`TEST_MODULES`] (and the CPU's AES-NI and
    /// CLMUL crypto drivers when the kernel has them) and serves commands with
    /// `exec_server` (the `vm-exec` binary, `CARGO_BIN_EXE_vm-exec` in a test) until the host
    /// finishes it. 512 MiB, 1 vCPU and a 600 s timeout (a backstop: the host finishes it).
    pub fn served(name: &str, exec_server: &Path) -> Guest {
        let server = std::path::absolute(exec_server).unwrap_or_else(|_| exec_server.to_path_buf());
        let mut s = String::from("for m in");
        for m in TEST_MODULES {
            s.push(' ');
            s.push_str(m);
        }
        s.push_str("; do modprobe $m || echo \"VMTEST: module $m missing\"; done\n");
        // What a real host's udev loads for its CPU (the kernel's built-in generic AES would
        // otherwise serve ESP, far slower than AES-NI).
        s.push_str("for m in aesni_intel ghash_clmulni_intel; do modprobe $m 2>/dev/null; done\n");
        s.push_str(&format!(
            "exec {} serve --port {EXEC_PORT}\n",
            shell_quote(&server.display().to_string())
        ));
        Guest::new(name, &s)
            .with_binary(&server)
            .with_cpus(1)
            .with_mem_mb(512)
            .with_timeout(Duration::from_secs(600))
    }
}

/// What one [`LiveNetwork::exec`] did.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit status; `None` when the command died by a signal or timed out.
    pub code: Option<i32>,
    /// It ran past its timeout (its process group was killed).
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran in the guest.
    pub elapsed: Duration,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Guests booted by [`start_network`], each serving commands. See the module docs.
pub struct LiveNetwork {
    booted: Option<Booted>,
    names: Vec<String>,
    netns: String,
}

impl std::fmt::Debug for LiveNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveNetwork")
            .field("guests", &self.names)
            .field("netns", &self.netns)
            .finish()
    }
}

/// Boots `guests` (made with [`Guest::served`]) on one network and waits until every one
/// answers. `Err(reason)` when the harness cannot run here (no qemu, no kernel package, not
/// root): the caller prints `skipped: <reason>`. Panics when a guest does not come up (with
/// its console's tail): that is a failure to look at.
pub fn start_network(guests: &[Guest]) -> std::result::Result<LiveNetwork, String> {
    let booted = match boot(guests, true) {
        Ok(Ok(b)) => b,
        Ok(Err(why)) => return Err(why),
        Err(e) => panic!("vm harness: {e:#}"),
    };
    let netns = booted
        .net
        .as_ref()
        .map(|n| n.netns.clone())
        .expect("a network was asked for");
    let net = LiveNetwork {
        booted: Some(booted),
        names: guests.iter().map(|g| g.name.clone()).collect(),
        netns,
    };
    let t0 = Instant::now();
    for i in 0..guests.len() {
        loop {
            match net.exec_timeout(i, "true", Duration::from_secs(10)) {
                Ok(o) if o.success() => break,
                _ if t0.elapsed() > BOOT_TIMEOUT || net.stopped(i) => panic!(
                    "guest {} did not answer on port {EXEC_PORT} within {:.0?}; console:\n{}",
                    net.names[i],
                    t0.elapsed(),
                    tail(&net.console(i), 40)
                ),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
    Ok(net)
}

/// Connects to `addr` from inside the network namespace `netns` (a socket keeps the
/// namespace it was created in; the thread that entered it ends here).
fn connect_in(netns: &str, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let path = PathBuf::from("/var/run/netns").join(netns);
    std::thread::scope(|s| {
        s.spawn(|| -> Result<TcpStream> {
            let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            setns(&f, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering {}", path.display()))?;
            Ok(TcpStream::connect_timeout(&addr, timeout)?)
        })
        .join()
        .map_err(|_| anyhow!("the connecting thread panicked"))?
    })
}

impl LiveNetwork {
    /// Number of guests.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Guest `i`'s name (its hostname, resolvable in every guest).
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Guest `i`'s address on the guests' network.
    pub fn addr(&self, i: usize) -> std::net::Ipv4Addr {
        guest_addr(i)
    }

    /// The host-side namespace holding bridge `br0` and a tap per guest (capture there).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    fn booted(&self) -> &Booted {
        self.booted.as_ref().expect("not finished")
    }

    /// Guest `i`'s console so far.
    pub fn console(&self, i: usize) -> String {
        self.booted().consoles[i].text()
    }

    /// Where guest `i`'s console is logged.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.booted().consoles[i].log
    }

    /// Whether guest `i` stopped (its console has the exit marker or a panic).
    fn stopped(&self, i: usize) -> bool {
        let c = self.console(i);
        c.contains("VMTEST-EXIT=") || c.contains("Kernel panic")
    }

    /// Runs `sh` (a `/bin/sh` script) in guest `i` with [`EXEC_TIMEOUT`].
    pub fn exec(&self, i: usize, sh: &str) -> Result<ExecOutput> {
        self.exec_timeout(i, sh, EXEC_TIMEOUT)
    }

    /// Runs `sh` in guest `i`; killed (with everything it started in its process group)
    /// after `timeout`. `Err` only when the guest cannot be reached or answers nonsense.
    pub fn exec_timeout(&self, i: usize, sh: &str, timeout: Duration) -> Result<ExecOutput> {
        let addr = SocketAddr::V4(SocketAddrV4::new(guest_addr(i), EXEC_PORT));
        let what = || format!("exec on guest {}", self.names[i]);
        let mut stream =
            connect_in(&self.netns, addr, Duration::from_secs(5)).with_context(what)?;
        // The guest kills the command at `timeout`; its answer may take a little longer.
        stream.set_read_timeout(Some(timeout + Duration::from_secs(30)))?;
        let req = json!({"sh": sh, "timeout_ms": timeout.as_millis() as u64});
        stream
            .write_all(format!("{req}\n").as_bytes())
            .with_context(what)?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .with_context(what)?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: not JSON: {line:?}", what()))?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            bail!("{}: {e}", what());
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(ExecOutput {
            code: v
                .get("code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok()),
            timed_out: v.get("timed_out").and_then(Value::as_bool).unwrap_or(false),
            stdout: text("stdout"),
            stderr: text("stderr"),
            elapsed: Duration::from_millis(v.get("ms").and_then(Value::as_u64).unwrap_or(0)),
        })
    }

    /// [`LiveNetwork::exec`] that must exit 0; returns its stdout.
    pub fn sh(&self, i: usize, sh: &str) -> Result<String> {
        self.sh_timeout(i, sh, EXEC_TIMEOUT)
    }

    /// [`LiveNetwork::exec_timeout`] that must exit 0; returns its stdout.
    pub fn sh_timeout(&self, i: usize, sh: &str, timeout: Duration) -> Result<String> {
        let o = self.exec_timeout(i, sh, timeout)?;
        if !o.success() {
            bail!(
                "guest {}: `{sh}` {}: {}{}",
                self.names[i],
                if o.timed_out {
                    format!("timed out after {timeout:?}")
                } else {
                    format!("exited with {:?}", o.code)
                },
                o.stderr.trim(),
                if o.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("\nstdout: {}", o.stdout.trim())
                }
            );
        }
        Ok(o.stdout)
    }

    /// Stops every guest (its script exits 0, it powers off) and returns the runs; the
    /// guests' namespace is deleted.
    pub fn finish(mut self) -> Vec<Run> {
        for i in 0..self.len() {
            let addr = SocketAddr::V4(SocketAddrV4::new(guest_addr(i), EXEC_PORT));
            if let Ok(mut s) = connect_in(&self.netns, addr, Duration::from_secs(5)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = s.write_all(b"{\"exit\": 0}\n");
                let _ = BufReader::new(&s).read_line(&mut String::new());
            }
        }
        let booted = self.booted.take().expect("not finished");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut consoles = booted.consoles;
        // A guest that does not power off soon after its script ended is killed.
        for c in &mut consoles {
            while matches!(c.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            c.kill();
        }
        Booted {
            consoles,
            net: booted.net,
            scratch: booted.scratch,
        }
        .finish()
    }
}

impl Drop for LiveNetwork {
    fn drop(&mut self) {
        if let Some(mut b) = self.booted.take() {
            for c in &mut b.consoles {
                c.kill();
            }
            b.finish();
        }
    }
}
