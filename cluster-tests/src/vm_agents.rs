//! Real `swarmnet` agents in kernel-VM guests, one agent per guest (each guest is one host
//! with its own kernel), driven from the host through a [`LiveNetwork`]: the agents join each
//! other over the guests' network, containers are network namespaces inside a guest attached
//! through that guest's CLI. The tier-5 counterpart of `lab::testbed::AgentCluster`.
//!
//! Every guest runs the same `swarmnet` binary (at its host path), with its state in
//! `/var/lib/swarmnet`, its API on the default socket and its log in
//! `/var/log/swarmnet.log`; guest `i` is node `<guest name>` at
//! [`guest_addr`](crate::vm::guest_addr)`(i)`; guest 0 joins guest 1, the others guest 0.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::vm::{Guest, LiveNetwork};

/// Gossip port of every agent.
pub const GOSSIP_PORT: u16 = 7946;
/// How long an agent has to answer its API after a start.
const API_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// A container (network namespace) in a guest, attached through that guest's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestContainer {
    /// The guest (host) it lives in.
    pub guest: usize,
    /// Its namespace name (`/var/run/netns/<name>`), also the endpoint name.
    pub name: String,
    /// Endpoint id.
    pub id: String,
    pub ip: Ipv4Addr,
    pub mtu: u32,
}

/// A network as `network create` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNetwork {
    pub id: String,
    pub name: String,
    pub vni: u32,
}

/// One agent per guest of a [`LiveNetwork`]. See the module docs.
#[derive(Debug)]
pub struct GuestAgents {
    pub net: LiveNetwork,
    bin: String,
    agent_args: Vec<String>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

impl GuestAgents {
    /// The guests to boot (with [`crate::vm::start_network`]): [`Guest::served`] plus the
    /// `swarmnet` binary.
    pub fn guests(names: &[&str], swarmnet: &Path, exec_server: &Path) -> Vec<Guest> {
        names
            .iter()
            .map(|n| Guest::served(n, exec_server).with_binary(swarmnet))
            .collect()
    }

    /// Starts an agent in every guest of `net` at once (with `agent_args` added to each) and
    /// waits until every agent sees every other one up.
    pub fn start(net: LiveNetwork, swarmnet: &Path, agent_args: &[&str]) -> Result<GuestAgents> {
        let bin = std::path::absolute(swarmnet)
            .unwrap_or_else(|_| swarmnet.to_path_buf())
            .display()
            .to_string();
        let g = GuestAgents {
            net,
            bin,
            agent_args: agent_args.iter().map(|s| s.to_string()).collect(),
        };
        g.each(|i| g.start_agent(i))?;
        g.wait_members(Duration::from_secs(60))?;
        Ok(g)
    }

    /// Number of guests (hosts).
    pub fn len(&self) -> usize {
        self.net.len()
    }

    pub fn is_empty(&self) -> bool {
        self.net.is_empty()
    }

    /// The `swarmnet` binary's path in every guest.
    pub fn bin(&self) -> &str {
        &self.bin
    }

    /// Runs `sh` in guest `i`; must exit 0; returns stdout.
    pub fn sh(&self, i: usize, sh: &str) -> Result<String> {
        self.net.sh(i, sh)
    }

    fn agent_cmdline(&self, i: usize, extra: &[&str]) -> String {
        let seed = if i == 0 { 1 } else { 0 };
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--node-name".into(),
            self.net.name(i).into(),
            "--listen-addr".into(),
            self.net.addr(i).to_string(),
            "--gossip-port".into(),
            GOSSIP_PORT.to_string(),
        ];
        if seed < self.len() {
            args.extend([
                "--join".into(),
                format!("{}:{GOSSIP_PORT}", self.net.addr(seed)),
            ]);
        }
        args.extend(self.agent_args.iter().cloned());
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut s = quote(&self.bin);
        for a in &args {
            s.push(' ');
            s.push_str(&quote(a));
        }
        s
    }

    /// Starts (or restarts) guest `i`'s agent in the background and waits until its API
    /// answers. Refused while it runs.
    pub fn start_agent(&self, i: usize) -> Result<()> {
        self.start_agent_with(i, &[])
    }

    /// [`GuestAgents::start_agent`] with more agent flags for this start.
    pub fn start_agent_with(&self, i: usize, extra: &[&str]) -> Result<()> {
        ensure!(!self.agent_running(i)?, "the agent of guest {i} still runs");
        self.sh(
            i,
            &format!(
                "mkdir -p /var/log; echo '---- start' >> /var/log/swarmnet.log; \
                 setsid {} >> /var/log/swarmnet.log 2>&1 < /dev/null & echo $! > /run/swarmnet.pid",
                self.agent_cmdline(i, extra)
            ),
        )?;
        let t0 = Instant::now();
        loop {
            if self.cli_ok(i, &["cluster", "status"]).is_ok() {
                return Ok(());
            }
            if !self.agent_running(i)? {
                bail!(
                    "the agent of guest {i} exited at start; log:\n{}",
                    self.agent_log(i)
                );
            }
            if t0.elapsed() > API_TIMEOUT {
                bail!(
                    "the agent of guest {i} did not answer within {API_TIMEOUT:?}; log:\n{}",
                    self.agent_log(i)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether guest `i`'s agent process is alive.
    pub fn agent_running(&self, i: usize) -> Result<bool> {
        let o = self.net.exec(
            i,
            "[ -f /run/swarmnet.pid ] && kill -0 $(cat /run/swarmnet.pid) 2>/dev/null",
        )?;
        Ok(o.success())
    }

    /// `kill -9` of guest `i`'s agent; waits until it is gone.
    pub fn kill_agent(&self, i: usize) -> Result<()> {
        self.sh(
            i,
            "p=$(cat /run/swarmnet.pid); kill -9 $p; n=0; \
             while kill -0 $p 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; \
             ! kill -0 $p 2>/dev/null",
        )?;
        Ok(())
    }

    /// Guest `i`'s agent log (every life).
    pub fn agent_log(&self, i: usize) -> String {
        self.net
            .exec(i, "cat /var/log/swarmnet.log")
            .map(|o| o.stdout)
            .unwrap_or_else(|e| format!("(cannot read the log: {e:#})"))
    }

    /// `swarmnet <args>` in guest `i` (its local agent).
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<crate::vm::ExecOutput> {
        let mut s = quote(&self.bin);
        for a in args {
            s.push(' ');
            s.push_str(&quote(a));
        }
        self.net.exec(i, &s)
    }

    /// [`GuestAgents::cli`] that must succeed; returns stdout.
    pub fn cli_ok(&self, i: usize, args: &[&str]) -> Result<String> {
        let o = self.cli(i, args)?;
        ensure!(
            o.success(),
            "swarmnet {} on guest {i} failed ({:?}): {}",
            args.join(" "),
            o.code,
            o.stderr.trim()
        );
        Ok(o.stdout)
    }

    /// [`GuestAgents::cli_ok`] with `--json`, parsed.
    pub fn cli_json(&self, i: usize, args: &[&str]) -> Result<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.cli_ok(i, &full)?;
        serde_json::from_str(&out)
            .with_context(|| format!("swarmnet {} printed no JSON: {out}", args.join(" ")))
    }

    /// Guest `i`'s node id as a number (the input of SPI derivation).
    pub fn node_id(&self, i: usize) -> Result<u64> {
        let v = self.cli_json(i, &["cluster", "status"])?;
        let id = str_field(&v, "node_id");
        u64::from_str_radix(id.trim_start_matches("0x"), 16)
            .with_context(|| format!("cluster status: node_id {id:?} is not hex"))
    }

    /// Waits until every agent sees every other one up (all guests asked at once).
    pub fn wait_members(&self, timeout: Duration) -> Result<()> {
        let names: Vec<String> = (0..self.len())
            .map(|i| self.net.name(i).to_string())
            .collect();
        self.each(|i| {
            self.wait_until(timeout, &format!("guest {i} sees every agent up"), || {
                let v = self.cli_json(i, &["cluster", "members"])?;
                let up: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m.get("up").and_then(Value::as_bool) == Some(true))
                    .map(|m| str_field(m, "name"))
                    .collect();
                Ok(names.iter().all(|n| up.contains(n)))
            })
        })
        .map(|_| ())
    }

    /// Runs `f` for every guest at once (a thread each); the first error wins.
    pub fn each<T: Send>(&self, f: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.len())
                .map(|i| {
                    let f = &f;
                    s.spawn(move || f(i))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| anyhow::anyhow!("a guest's thread panicked"))?
                })
                .collect()
        })
    }

    /// Polls `f` every 250 ms until it returns true, at most `timeout`.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let t0 = Instant::now();
        let mut last_err = None;
        loop {
            match f() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_err = Some(e),
            }
            if t0.elapsed() > timeout {
                match last_err {
                    Some(e) => bail!("{what}: not within {timeout:?} (last error: {e:#})"),
                    None => bail!("{what}: not within {timeout:?}"),
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// `network create <name> <extra>` on guest `i`; waits until every agent lists it (all
    /// asked at once).
    pub fn create_network(&self, i: usize, name: &str, extra: &[&str]) -> Result<GuestNetwork> {
        let mut args = vec!["network", "create", name];
        args.extend_from_slice(extra);
        let v = self.cli_json(i, &args)?;
        let n = GuestNetwork {
            id: str_field(&v, "id"),
            name: str_field(&v, "name"),
            vni: v
                .get("vni")
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
                .with_context(|| format!("network create: no vni in {v}"))?,
        };
        self.each(|j| {
            self.wait_until(
                Duration::from_secs(30),
                &format!("guest {j} lists network {name}"),
                || {
                    Ok(self
                        .cli_ok(j, &["network", "ls"])?
                        .contains(&n.id[..12.min(n.id.len())]))
                },
            )
        })?;
        Ok(n)
    }

    /// Creates namespace `name` in guest `i` (if missing) and attaches it to `network`.
    pub fn attach(&self, i: usize, network: &str, name: &str) -> Result<GuestContainer> {
        self.sh(
            i,
            &format!(
                "[ -e /var/run/netns/{n} ] || ip netns add {n}; ip -n {n} link set lo up",
                n = quote(name)
            ),
        )?;
        let path = format!("/var/run/netns/{name}");
        let v = self.cli_json(
            i,
            &[
                "endpoint", "attach", network, "--netns", &path, "--name", name,
            ],
        )?;
        Ok(GuestContainer {
            guest: i,
            name: name.into(),
            id: str_field(&v, "id"),
            ip: str_field(&v, "ip")
                .split('/')
                .next()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("endpoint attach: no IPv4 address in {v}"))?,
            mtu: v
                .get("mtu")
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
                .unwrap_or(0),
        })
    }

    /// `endpoint detach` of `c` through its guest's agent.
    pub fn detach(&self, c: &GuestContainer) -> Result<()> {
        self.cli_ok(c.guest, &["endpoint", "detach", &c.name])?;
        Ok(())
    }

    /// Runs `sh` inside container `c`'s namespace.
    pub fn in_container(&self, c: &GuestContainer, sh: &str) -> Result<crate::vm::ExecOutput> {
        self.net.exec(
            c.guest,
            &format!("ip netns exec {} sh -c {}", quote(&c.name), quote(sh)),
        )
    }

    /// `count` pings (0.2 s apart, 2 s wait) from `c` to `to`: all answered?
    pub fn ping(&self, c: &GuestContainer, to: Ipv4Addr, count: u32) -> Result<bool> {
        Ok(self
            .in_container(c, &format!("ping -n -q -c {count} -i 0.2 -W 2 {to}"))?
            .success())
    }

    /// Waits until `c` gets an answer from `to`.
    pub fn wait_ping(&self, c: &GuestContainer, to: Ipv4Addr, timeout: Duration) -> Result<()> {
        self.wait_until(timeout, &format!("{} pings {to}", c.name), || {
            self.ping(c, to, 1)
        })
    }

    /// Stops the guests; returns their runs (see [`LiveNetwork::finish`]).
    pub fn finish(self) -> Vec<crate::vm::Run> {
        self.net.finish()
    }
}

/// The path of the `vm-exec` server next to the running executable (bench binaries), or
/// `None`.
pub fn exec_server_beside_me() -> Option<PathBuf> {
    let p = std::env::current_exe().ok()?.with_file_name("vm-exec");
    p.is_file().then_some(p)
}
