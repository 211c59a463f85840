//! Helpers of the process-level tests: start real `swarmnet agent` processes on loopback
//! (without kernel work), talk to them, stop them.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use agent::client::{ClientTls, connect};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

pub const BIN: &str = env!("CARGO_BIN_EXE_swarmnet");

/// A free port on `ip` for both UDP and TCP (best effort: bound, then released).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    for _ in 0..50 {
        let t = TcpListener::bind((ip, 0)).unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// One agent process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct AgentProc {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub gossip: SocketAddr,
    pub log: PathBuf,
}

impl AgentProc {
    /// Start `swarmnet agent --dataplane none` on `ip` with a unix socket in a temp dir and
    /// `extra` flags; wait (bounded) until the socket answers.
    pub async fn start(ip: Ipv4Addr, extra: &[String]) -> AgentProc {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, ip, None, extra).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        ip: Ipv4Addr,
        port: Option<u16>,
        extra: &[String],
    ) -> AgentProc {
        let port = port.unwrap_or_else(|| free_port(ip));
        let socket = dir.path().join("api.sock");
        let log = dir.path().join("agent.log");
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--state-dir".into(),
            dir.path().join("state").display().to_string(),
            "--listen-addr".into(),
            ip.to_string(),
            "--gossip-port".into(),
            port.to_string(),
            "--api-listen".into(),
            format!("unix://{}", socket.display()),
            "--dataplane".into(),
            "none".into(),
            "--settle-ms".into(),
            "300".into(),
            "--log-level".into(),
            "info".into(),
        ];
        args.extend(extra.iter().cloned());
        let child = Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn swarmnet agent");
        let p = AgentProc {
            child: Some(child),
            dir,
            socket,
            gossip: SocketAddr::new(ip.into(), port),
            log,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.socket.exists() && self.channel().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("agent did not come up; log:\n{}", self.log_text());
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub async fn channel(&self) -> Result<Channel, agent::client::ClientError> {
        connect(&self.url(), &ClientTls::default()).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("agent did not stop on SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` and reap.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Run the CLI against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--api")
            .arg(self.url())
            .args(args)
            .output()
            .expect("run swarmnet")
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Poll `f` every 100 ms until it returns `Some`, at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
