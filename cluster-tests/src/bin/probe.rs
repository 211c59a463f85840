//! `probe`: the test traffic of the service tests and benchmarks, run inside container
//! namespaces (std only, no runtime).
//!
//! * `probe serve --name N --tcp P... --udp P...`: [`lab::whoami::serve`] (what
//!   `swarmnet debug whoami` runs): HTTP/1.0 answers `N <client ip>\n`, `HOLD\n` connections
//!   answer every line, UDP answers every datagram. Exits after `--max-secs` (default 600).
//! * `probe http ADDR PORT --count C [--parallel P]`: C short connections (HTTP GET), JSON
//!   summary on stdout: answers by server name, client addresses the servers saw, failures,
//!   elapsed time.
//! * `probe hold ADDR PORT --secs S --interval-ms I`: one long connection; one line on
//!   stdout per reply (`<ms since start> <reply>`) or error, for at most S seconds.
//! * `probe idle ADDR PORT --idle-ms I`: one connection answered once, then idle for I ms
//!   until the server speaks first (`PUSH`); JSON `{"first": .., "after_idle": .., "error":
//!   ..}` (the connection survived the idle period iff `after_idle` is set).
//! * `probe udp ADDR PORT --count C [--fresh] [--sport P]`: C datagrams from one socket (one
//!   conntrack flow; `--sport` fixes its port so that runs share the flow) or from a fresh
//!   socket each (`--fresh`), JSON summary like `http`.
//!
//! Every loop is bounded in count and time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(name = "probe", about = "Test traffic for swarmnet service tests")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Serve {
        #[arg(long)]
        name: String,
        #[arg(long)]
        tcp: Vec<u16>,
        #[arg(long)]
        udp: Vec<u16>,
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
    Http {
        addr: Ipv4Addr,
        port: u16,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    Hold {
        addr: Ipv4Addr,
        port: u16,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    Idle {
        addr: Ipv4Addr,
        port: u16,
        #[arg(long, default_value_t = 10_000)]
        idle_ms: u64,
    },
    Udp {
        addr: Ipv4Addr,
        port: u16,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long)]
        fresh: bool,
        /// Source port of the (single) socket: the same flow across runs.
        #[arg(long, default_value_t = 0)]
        sport: u16,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
    },
}

/// What a batch of requests found.
#[derive(Debug, Default, Serialize)]
struct Summary {
    ok: usize,
    failed: usize,
    /// Answers per server name.
    by_name: BTreeMap<String, usize>,
    /// Client addresses the servers reported.
    peers: BTreeMap<String, usize>,
    errors: BTreeMap<String, usize>,
    elapsed_ms: f64,
}

impl Summary {
    fn add(&mut self, r: Result<String>) {
        match r {
            Ok(body) => {
                let mut it = body.split_whitespace();
                let (name, peer) = (it.next().unwrap_or("?"), it.next().unwrap_or("?"));
                self.ok += 1;
                *self.by_name.entry(name.to_string()).or_default() += 1;
                *self.peers.entry(peer.to_string()).or_default() += 1;
            }
            Err(e) => {
                self.failed += 1;
                *self.errors.entry(format!("{e:#}")).or_default() += 1;
            }
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Serve {
            name,
            tcp,
            udp,
            max_secs,
        } => Ok(lab::whoami::serve(
            &name,
            &tcp,
            &udp,
            Duration::from_secs(max_secs),
        )?),
        Cmd::Http {
            addr,
            port,
            count,
            parallel,
            timeout_ms,
        } => {
            let s = http_batch(
                SocketAddr::from((addr, port)),
                count,
                parallel.max(1),
                Duration::from_millis(timeout_ms),
            );
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }
        Cmd::Hold {
            addr,
            port,
            secs,
            interval_ms,
        } => hold(
            SocketAddr::from((addr, port)),
            Duration::from_secs(secs),
            Duration::from_millis(interval_ms),
        ),
        Cmd::Idle {
            addr,
            port,
            idle_ms,
        } => {
            let v = idle(
                SocketAddr::from((addr, port)),
                Duration::from_millis(idle_ms),
            );
            println!("{v}");
            Ok(())
        }
        Cmd::Udp {
            addr,
            port,
            count,
            fresh,
            sport,
            timeout_ms,
        } => {
            let s = udp_batch(
                SocketAddr::from((addr, port)),
                count,
                fresh,
                sport,
                Duration::from_millis(timeout_ms),
            )?;
            println!("{}", serde_json::to_string(&s)?);
            Ok(())
        }
    }
}

fn http_get(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let mut c = TcpStream::connect_timeout(&addr, timeout).context("connect")?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    c.write_all(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")?;
    let mut resp = String::new();
    c.take(65536).read_to_string(&mut resp).context("read")?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .context("no HTTP body")?;
    Ok(body)
}

fn http_batch(addr: SocketAddr, count: usize, parallel: usize, timeout: Duration) -> Summary {
    let start = Instant::now();
    let summary = Arc::new(Mutex::new(Summary::default()));
    let next = Arc::new(Mutex::new(0usize));
    let workers: Vec<_> = (0..parallel)
        .map(|_| {
            let (summary, next) = (summary.clone(), next.clone());
            std::thread::spawn(move || {
                loop {
                    {
                        let mut n = next.lock().expect("not poisoned");
                        if *n >= count {
                            return;
                        }
                        *n += 1;
                    }
                    let r = http_get(addr, timeout);
                    summary.lock().expect("not poisoned").add(r);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let mut s = std::mem::take(&mut *summary.lock().expect("not poisoned"));
    s.elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    s
}

fn hold(addr: SocketAddr, secs: Duration, interval: Duration) -> Result<()> {
    let start = Instant::now();
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).context("connect")?;
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut r = BufReader::new(c.try_clone()?);
    c.write_all(b"HOLD\n")?;
    let mut out = std::io::stdout();
    while start.elapsed() < secs {
        let mut line = String::new();
        let ms = start.elapsed().as_millis();
        match r.read_line(&mut line) {
            Ok(0) => {
                writeln!(out, "{ms} closed")?;
                break;
            }
            Ok(_) => write!(out, "{ms} {line}")?,
            Err(e) => {
                writeln!(out, "{ms} error {e}")?;
                break;
            }
        }
        out.flush()?;
        std::thread::sleep(interval);
        if let Err(e) = c.write_all(b"PING\n") {
            writeln!(out, "{} error {e}", start.elapsed().as_millis())?;
            break;
        }
    }
    Ok(())
}

/// One connection: an answer, then `idle` without traffic until the server's push.
fn idle(addr: SocketAddr, idle: Duration) -> serde_json::Value {
    let mut first = None;
    let r = (|| -> Result<String> {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).context("connect")?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut r = BufReader::new(c.try_clone()?);
        c.write_all(b"HOLD\n")?;
        let mut line = String::new();
        r.read_line(&mut line).context("first answer")?;
        first = Some(line.trim().to_string());
        c.write_all(format!("PUSH {}\n", idle.as_millis()).as_bytes())?;
        c.set_read_timeout(Some(idle + Duration::from_secs(5)))?;
        let mut after = String::new();
        let n = r
            .read_line(&mut after)
            .context("answer after the idle period")?;
        anyhow::ensure!(n > 0, "closed during the idle period");
        Ok(after.trim().to_string())
    })();
    match r {
        Ok(after) => serde_json::json!({ "first": first, "after_idle": after }),
        Err(e) => serde_json::json!({ "first": first, "error": format!("{e:#}") }),
    }
}

fn udp_batch(
    addr: SocketAddr,
    count: usize,
    fresh: bool,
    sport: u16,
    timeout: Duration,
) -> Result<Summary> {
    let start = Instant::now();
    let mut s = Summary::default();
    let mut sock: Option<UdpSocket> = None;
    for _ in 0..count {
        if fresh || sock.is_none() {
            let u = UdpSocket::bind(("0.0.0.0", if fresh { 0 } else { sport }))?;
            u.set_read_timeout(Some(timeout))?;
            sock = Some(u);
        }
        let u = sock.as_ref().expect("set above");
        let r = (|| -> Result<String> {
            u.send_to(b"hello\n", addr)?;
            let mut buf = [0u8; 1500];
            let (n, _) = u.recv_from(&mut buf).context("no answer")?;
            Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
        })();
        s.add(r);
    }
    s.elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(s)
}
