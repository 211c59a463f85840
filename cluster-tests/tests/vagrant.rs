//! The files that run swarmnet outside this repository's harnesses cannot rot:
//!
//! 1. `vagrant/provision.sh` (everything but its `systemctl` calls, `SWARMNET_NO_SYSTEMD=1`)
//!    and `vagrant/demo.sh`, unchanged, against three kernel-VM guests named like the
//!    Vagrantfile's VMs: provisioned with the inputs the Vagrantfile gives, the agent started
//!    from the installed unit's `ExecStart=`, provisioned a second time (nothing changes, the
//!    agent keeps running), then the demo from the host with `SWARMNET_DEMO_EXEC` reaching
//!    the guests through `vm-exec call`; its outcomes are checked in its output and in the
//!    guests.
//! 2. `dist/systemd/swarmnet.service` passes `systemd-analyze verify` and sets nothing that
//!    gives the agent its own mount namespace; the Vagrantfile passes `vagrant validate` (or
//!    `ruby -c` where vagrant is not installed; the test prints which); the shell scripts pass
//!    `sh -n`/`bash -n` and, where installed, shellcheck.
//! 3. README.md's "Run it on your hosts" steps, extracted from the README, on three fresh
//!    guests (a `systemctl` stand-in starts the unit's `ExecStart=`: the guests have no
//!    systemd) form a cluster: `swarmnet cluster members` shows all three up.
//!
//! The binary is the workspace's `swarmnet` (`$SWARMNET_BIN` to use another: with
//! `SWARMNET_BIN=$PWD/target/static/swarmnet` the tests run what `scripts/build-static.sh`
//! made, the file Vagrant copies into its VMs).
//!
//! Guests have no systemd and no package manager: what systemd would do is done from the
//! unit file, and `SWARMNET_NO_APT=1` makes provision.sh fail rather than install.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_tests::vm::{self, Guest, LiveNetwork};
use serde_json::Value;

/// Where the Vagrantfile's file provisioners put the binary and the unit (and where the
/// guests get them here).
const UPLOAD: &str = "/tmp/swarmnet-provision";
/// The VMs of the Vagrantfile.
const NODES: [&str; 3] = ["node1", "node2", "node3"];
const UNIT_PATH: &str = "/etc/systemd/system/swarmnet.service";

/// `systemctl` for guests without systemd, for the calls provision.sh skips and the README
/// makes: `start`/`enable --now` run the installed unit's `ExecStart=` in the background
/// (log `/var/log/swarmnet.log`, pid `/run/swarmnet.pid`); `daemon-reload` and `enable` do
/// nothing; anything else fails loudly.
const SYSTEMCTL_STANDIN: &str = r#"#!/bin/sh
# systemctl stand-in of cluster-tests/tests/vagrant.rs (the guests have no systemd).
unit=/etc/systemd/system/swarmnet.service
start() {
  if [ -f /run/swarmnet.pid ] && kill -0 "$(cat /run/swarmnet.pid)" 2>/dev/null; then return 0; fi
  cmd=$(sed -n 's/^ExecStart=//p' "$unit")
  [ -n "$cmd" ] || { echo "systemctl stand-in: no ExecStart= in $unit" >&2; exit 1; }
  mkdir -p /var/log
  echo "---- start: $cmd" >> /var/log/swarmnet.log
  setsid sh -c "exec $cmd" >> /var/log/swarmnet.log 2>&1 < /dev/null &
  echo $! > /run/swarmnet.pid
}
case "$*" in
  daemon-reload | "enable swarmnet" | "enable swarmnet.service") ;;
  "start swarmnet" | "start swarmnet.service" | "enable --now swarmnet" | "enable --now swarmnet.service") start ;;
  *) echo "systemctl stand-in: unsupported: systemctl $*" >&2; exit 1 ;;
esac
"#;

fn root() -> PathBuf {
    let r = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    r.canonicalize().unwrap_or(r)
}

fn exec_server() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vm-exec"))
}

/// A scratch directory under the target directory (removed by the caller).
fn scratch(label: &str) -> PathBuf {
    let d = vm::target_dir()
        .join("vagrant-tmp")
        .join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Served guests named like the Vagrantfile's VMs, with `/usr/local/bin` (on the command
/// path), `/etc/systemd/system` and `/var/log` as on a Debian host, and the `systemctl`
/// stand-in at `/usr/local/sbin/systemctl` (its mode is set by the guest's script).
fn guests(extra: impl Fn(Guest) -> Guest) -> Vec<Guest> {
    NODES
        .iter()
        .map(|n| {
            let mut g = Guest::served(n, &exec_server())
                .with_contents(SYSTEMCTL_STANDIN, "/usr/local/sbin/systemctl");
            // The folders every Debian host has (the guests' initramfs has few).
            g.script = format!(
                "export PATH=/usr/local/sbin:/usr/local/bin:$PATH\n\
                 mkdir -p /usr/local/bin /etc/systemd/system /var/log /var/lib\n\
                 chmod 755 /usr/local/sbin/systemctl\n{}",
                g.script
            );
            extra(g)
        })
        .collect()
}

/// A gossip key made the way the docs say (`swarmnet cluster keys generate`).
fn generate_key(swarmnet: &Path) -> String {
    let out = Command::new(swarmnet)
        .args(["cluster", "keys", "generate"])
        .output()
        .expect("swarmnet cluster keys generate");
    assert!(out.status.success(), "keys generate: {out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(key.len(), 32, "a 16-byte key in hex: {key:?}");
    key
}

/// Runs `f` for every guest at once; panics with the first error.
fn each<T: Send>(n: usize, f: impl Fn(usize) -> anyhow::Result<T> + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let f = &f;
                s.spawn(move || f(i))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .expect("thread")
                    .unwrap_or_else(|e| panic!("{e:#}"))
            })
            .collect()
    })
}

/// Waits until guest `i`'s agent lists every node of [`NODES`] up (at most `timeout`).
fn wait_members(net: &LiveNetwork, i: usize, timeout: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let o = net.exec(i, "swarmnet --json cluster members")?;
        if o.success() {
            let v: Value = serde_json::from_str(&o.stdout).unwrap_or(Value::Null);
            let up: Vec<&str> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m.get("up").and_then(Value::as_bool) == Some(true))
                .filter_map(|m| m.get("name").and_then(Value::as_str))
                .collect();
            if NODES.iter().all(|n| up.contains(n)) {
                return Ok(());
            }
        }
        if t0.elapsed() > timeout {
            let log = net
                .exec(i, "tail -n 40 /var/log/swarmnet.log")
                .map(|o| o.stdout)
                .unwrap_or_default();
            anyhow::bail!(
                "{}: not every node up within {timeout:?}: {} {}\nagent log:\n{log}",
                net.name(i),
                o.stdout.trim(),
                o.stderr.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The agent's pid in guest `i`, when it runs.
fn agent_pid(net: &LiveNetwork, i: usize) -> Option<String> {
    net.exec(
        i,
        "p=$(cat /run/swarmnet.pid 2>/dev/null) && kill -0 \"$p\" 2>/dev/null && echo \"$p\"",
    )
    .ok()
    .filter(|o| o.success())
    .map(|o| o.stdout.trim().to_string())
}

/// provision.sh in guest `i` with the inputs the Vagrantfile gives VM `i`, without its
/// systemctl calls; returns its output.
fn provision(net: &LiveNetwork, i: usize, key: &str) -> anyhow::Result<String> {
    let seeds: Vec<String> = (0..NODES.len())
        .filter(|&j| j != i)
        .map(|j| net.addr(j).to_string())
        .collect();
    let env = [
        ("SWARMNET_NODE_NAME", NODES[i].to_string()),
        ("SWARMNET_ADVERTISE_ADDR", net.addr(i).to_string()),
        ("SWARMNET_SEEDS", seeds.join(" ")),
        ("SWARMNET_GOSSIP_KEY", key.to_string()),
        ("SWARMNET_BINARY", format!("{UPLOAD}/swarmnet")),
        ("SWARMNET_UNIT", format!("{UPLOAD}/swarmnet.service")),
        ("SWARMNET_NO_SYSTEMD", "1".into()),
        ("SWARMNET_NO_APT", "1".into()),
    ];
    let mut sh = String::new();
    for (k, v) in &env {
        sh.push_str(&format!("{k}={} ", quote(v)));
    }
    sh.push_str(&format!("sh {UPLOAD}/provision.sh 2>&1"));
    let o = net.exec_timeout(i, &sh, Duration::from_secs(120))?;
    anyhow::ensure!(
        o.success(),
        "provision.sh on {} exited {:?}:\n{}{}",
        NODES[i],
        o.code,
        o.stdout,
        o.stderr
    );
    Ok(o.stdout)
}

/// The modification times of what provision.sh installs, in guest `i`.
fn installed_mtimes(net: &LiveNetwork, i: usize) -> String {
    net.sh(
        i,
        &format!("stat -c '%n %Y %a' /usr/local/bin/swarmnet /etc/swarmnet/agent.toml {UNIT_PATH}"),
    )
    .expect("stat")
}

#[test]
fn serial_vm_provision_sh_and_demo_sh_run_unchanged_on_three_guests() {
    let t0 = Instant::now();
    if vm::kit_or_skip().is_none() {
        return;
    }
    let swarmnet = cluster_tests::harness::swarmnet();
    let r = root();
    let guests = guests(|g| {
        g.with_file(&swarmnet, format!("{UPLOAD}/swarmnet"))
            .with_file(
                r.join("vagrant/provision.sh"),
                format!("{UPLOAD}/provision.sh"),
            )
            .with_file(
                r.join("dist/systemd/swarmnet.service"),
                format!("{UPLOAD}/swarmnet.service"),
            )
    });
    let net = match vm::start_network(&guests) {
        Ok(n) => n,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    println!(
        "3 guests up in {:.1?} ({})",
        t0.elapsed(),
        vm::accelerator_name()
    );
    let key = generate_key(&swarmnet);

    // First run: everything is new; the systemctl calls are skipped (and printed).
    let first = each(3, |i| provision(&net, i, &key));
    for (i, out) in first.iter().enumerate() {
        println!("--- provision.sh on {} (first run)\n{out}", NODES[i]);
        assert!(
            out.lines().last() == Some("provision: done (changed: binary, config, unit)"),
            "{}: {out}",
            NODES[i]
        );
        for call in [
            "daemon-reload",
            "enable swarmnet.service",
            "restart swarmnet.service",
        ] {
            assert!(
                out.contains(&format!("skipped: systemctl {call}")),
                "{}: no skipped `systemctl {call}` in\n{out}",
                NODES[i]
            );
        }
    }
    let conf = net
        .sh(
            0,
            "cat /etc/swarmnet/agent.toml; stat -c %a /etc/swarmnet/agent.toml",
        )
        .expect("config");
    println!(
        "--- /etc/swarmnet/agent.toml on node1\n{}",
        conf.replace(&key, "<key>")
    );
    assert!(
        conf.trim_end().ends_with("600"),
        "the config holds the key: mode 0600"
    );
    // What systemd would do: start the unit's ExecStart=.
    each(3, |i| net.sh(i, "systemctl start swarmnet"));
    each(3, |i| wait_members(&net, i, Duration::from_secs(90)));
    println!("agents joined through their seeds at {:.1?}", t0.elapsed());
    let before: Vec<(String, Option<String>)> = (0..3)
        .map(|i| (installed_mtimes(&net, i), agent_pid(&net, i)))
        .collect();

    // Second run with the same inputs: nothing changes, the agent is left alone.
    let second = each(3, |i| provision(&net, i, &key));
    for (i, out) in second.iter().enumerate() {
        assert_eq!(
            out.lines().last(),
            Some("provision: done (changed: nothing)"),
            "{}: {out}",
            NODES[i]
        );
        assert!(
            !out.contains("restart"),
            "{}: restarted on no change: {out}",
            NODES[i]
        );
        assert_eq!(
            (installed_mtimes(&net, i), agent_pid(&net, i)),
            before[i],
            "{}: provisioning twice rewrote a file or replaced the agent",
            NODES[i]
        );
        assert!(before[i].1.is_some(), "{}: the agent runs", NODES[i]);
    }
    println!("provisioning twice changed nothing ({:.1?})", t0.elapsed());

    // The demo, run on the host as after `vagrant up`, reaching the guests with vm-exec.
    let tmp = scratch("demo");
    let exec = tmp.join("exec-in-guest");
    let mut wrapper = String::from(
        "#!/bin/sh\n# SWARMNET_DEMO_EXEC: runs stdin as root in guest $1.\ncase $1 in\n",
    );
    for (i, n) in NODES.iter().enumerate() {
        wrapper.push_str(&format!("  {n}) addr={} ;;\n", net.addr(i)));
    }
    wrapper.push_str(&format!(
        "  *) echo \"unknown VM $1\" >&2; exit 2 ;;\nesac\nexec {} call \"$addr\" --timeout 300\n",
        quote(&exec_server().display().to_string())
    ));
    std::fs::write(&exec, wrapper).expect("wrapper");
    std::fs::set_permissions(&exec, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("wrapper mode");
    let d0 = Instant::now();
    let demo = Command::new("timeout")
        .args(["900", "ip", "netns", "exec", net.netns(), "bash"])
        .arg(r.join("vagrant/demo.sh"))
        .env("SWARMNET_DEMO_EXEC", &exec)
        .stdin(Stdio::null())
        .output()
        .expect("demo.sh");
    let _ = std::fs::remove_dir_all(&tmp);
    let out = String::from_utf8_lossy(&demo.stdout).to_string();
    let err = String::from_utf8_lossy(&demo.stderr).to_string();
    println!("--- vagrant/demo.sh ({:.1?})\n{out}", d0.elapsed());
    if !err.trim().is_empty() {
        println!("--- demo.sh stderr\n{err}");
    }
    let logs: String = (0..3)
        .map(|i| {
            let l = net
                .exec(i, "tail -n 30 /var/log/swarmnet.log")
                .map(|o| o.stdout)
                .unwrap_or_default();
            format!("--- agent log {}\n{l}", NODES[i])
        })
        .collect();
    assert!(
        demo.status.success(),
        "demo.sh failed: {:?}\n{logs}",
        demo.status
    );
    check_demo_output(&out);

    // Cleanup, checked in the guests themselves: no namespace, network or service of the
    // demo is left, and the agents still run.
    for i in 0..3 {
        let left = net
            .sh(
                i,
                "ip netns list | grep -E '^(web[0-9]|client)( |$)' || true; \
                 swarmnet network ls | awk 'NR > 1 && $1 == \"demo\"'; \
                 swarmnet service ls | awk 'NR > 1 && $1 == \"web\"'; \
                 ls /run/swarmnet-demo 2>/dev/null || true",
            )
            .expect("check");
        assert!(
            left.trim().is_empty(),
            "{} after the demo: {left}",
            NODES[i]
        );
        assert_eq!(
            agent_pid(&net, i),
            before[i].1,
            "{}: the agent still runs",
            NODES[i]
        );
    }
    for run in net.finish() {
        println!("{}", run.summary());
    }
    println!("provision + demo test: {:.1?}", t0.elapsed());
}

/// The demo's section between `[from/7]` and the next step.
fn section(out: &str, step: u32) -> &str {
    let start = out
        .find(&format!("[{step}/7]"))
        .unwrap_or_else(|| panic!("no step {step} in the demo's output"));
    let rest = &out[start..];
    let end = rest
        .find(&format!("[{}/7]", step + 1))
        .unwrap_or(rest.len());
    &rest[..end]
}

fn ipv4s(line: &str) -> Vec<std::net::Ipv4Addr> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Pings, names, balancing, drain and cleanup in the demo's output.
fn check_demo_output(out: &str) {
    // Pings: three round the ring, and the VIP; every one answered.
    let pings = section(out, 4);
    assert_eq!(
        pings
            .matches("3 packets transmitted, 3 packets received, 0% packet loss")
            .count()
            + pings
                .matches("3 packets transmitted, 3 received, 0% packet loss")
                .count(),
        4,
        "four pings of 3, all answered:\n{pings}"
    );
    // Names: web3, web3.demo and web (the VIP) one address each; tasks.web three.
    let names = section(out, 5);
    let answers: Vec<Vec<std::net::Ipv4Addr>> = names
        .lines()
        .filter(|l| l.starts_with("        ") && !l.trim().is_empty())
        .map(ipv4s)
        .collect();
    let counts: Vec<usize> = answers.iter().map(Vec::len).collect();
    assert_eq!(
        counts,
        [1, 1, 1, 3],
        "answers of web3, web3.demo, web, tasks.web:\n{names}"
    );
    assert_eq!(answers[0], answers[1], "web3 and web3.demo: {names}");
    let vip = section(out, 2)
        .lines()
        .find_map(|l| l.trim().strip_prefix("VIP:"))
        .and_then(|v| ipv4s(v).first().copied())
        .expect("service create prints the VIP");
    assert_eq!(answers[2], [vip], "web resolves to the VIP");
    assert!(
        answers[3].contains(&answers[0][0]),
        "tasks.web holds web3's address"
    );
    // Balancing, then drain: every backend before, web2 never after.
    let lb = section(out, 6);
    let (before, after) = lb
        .split_once("swarmnet endpoint disable web2")
        .expect("the drain in step 6");
    let client = section(out, 3)
        .lines()
        .skip_while(|l| !l.contains("--name client"))
        .find_map(|l| l.trim().strip_prefix("IP:"))
        .and_then(|v| ipv4s(v).first().copied())
        .expect("the client's attach prints its IP");
    let answered = |text: &str, who: &str| {
        text.lines()
            .filter(|l| l.trim_start().starts_with(&format!("{who} on ")))
            .count()
    };
    for web in ["web1", "web2", "web3"] {
        assert!(
            answered(before, web) > 0,
            "{web} answered through the VIP:\n{before}"
        );
    }
    for l in before.lines().filter(|l| l.contains(" to client ")) {
        assert!(
            ipv4s(l).contains(&client),
            "the backend sees the client's own address {client}: {l}"
        );
    }
    let after_round = after.split("service inspect").next().unwrap_or(after);
    assert_eq!(
        answered(after_round, "web2"),
        0,
        "web2 drained:\n{after_round}"
    );
    assert!(
        answered(after_round, "web1") > 0 && answered(after_round, "web3") > 0,
        "web1 and web3 keep answering:\n{after_round}"
    );
    assert!(after.contains("web2 left the rotation"));
    // Cleanup.
    let end = section(out, 7);
    assert!(end.contains("nothing of the demo is left"), "{end}");
    assert!(out.contains("demo finished in"), "{out}");
}

/// Lines of the unit that would give the agent its own mount namespace (or hide paths).
const MOUNT_NAMESPACE_OPTIONS: &[&str] = &[
    "PrivateMounts",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectSystem",
    "ProtectHome",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "ReadOnlyPaths",
    "ReadWritePaths",
    "InaccessiblePaths",
    "TemporaryFileSystem",
    "BindPaths",
    "BindReadOnlyPaths",
    "RootDirectory",
    "RootImage",
    "MountFlags",
    "DynamicUser",
    "NetworkNamespacePath",
    "PrivateNetwork",
];

fn run_tool(cmd: &mut Command) -> (bool, String) {
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, format!("cannot run {cmd:?}: {e}")),
    }
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn serial_vm_the_systemd_unit_and_the_vagrantfile_pass_their_validators() {
    let r = root();
    let unit_file = r.join("dist/systemd/swarmnet.service");
    let unit = std::fs::read_to_string(&unit_file).expect("the unit");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| settings.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!(get("Restart"), Some("on-failure"), "restart on failure");
    assert_eq!(
        get("ExecStart"),
        Some("/usr/local/bin/swarmnet agent --config /etc/swarmnet/agent.toml"),
        "the paths provision.sh and the README install to"
    );
    assert_eq!(
        get("KillSignal"),
        Some("SIGTERM"),
        "the agent stops cleanly on SIGTERM"
    );
    for k in MOUNT_NAMESPACE_OPTIONS {
        assert!(
            get(k).is_none(),
            "{k}= would give the agent its own mount namespace"
        );
    }
    let provision = std::fs::read_to_string(r.join("vagrant/provision.sh")).expect("provision.sh");
    assert!(
        provision.contains("CONF_DST=$CONF_DIR/agent.toml")
            && provision.contains("CONF_DIR=/etc/swarmnet")
    );
    assert!(provision.contains("BIN_DST=/usr/local/bin/swarmnet"));

    // systemd-analyze verify, in a root of its own: the unit, an executable at ExecStart=
    // and systemd's own units (it checks both); any warning fails too.
    if which("systemd-analyze") {
        let tmp = scratch("unit");
        let sysdir = ["/usr/lib/systemd/system", "/lib/systemd/system"]
            .into_iter()
            .find(|d| Path::new(d).join("sysinit.target").exists())
            .expect("systemd's units next to systemd-analyze");
        std::fs::create_dir_all(tmp.join("usr/local/bin")).expect("root");
        std::fs::create_dir_all(tmp.join("etc/systemd/system")).expect("root");
        std::fs::create_dir_all(tmp.join("usr/lib/systemd")).expect("root");
        std::fs::copy(
            cluster_tests::harness::swarmnet(),
            tmp.join("usr/local/bin/swarmnet"),
        )
        .expect("binary");
        std::fs::copy(&unit_file, tmp.join("etc/systemd/system/swarmnet.service")).expect("unit");
        let (ok, out) = run_tool(
            Command::new("cp")
                .arg("-r")
                .arg(sysdir)
                .arg(tmp.join("usr/lib/systemd/system")),
        );
        assert!(ok, "{out}");
        let (ok, out) = run_tool(
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(format!("--root={}", tmp.display()))
                .arg("swarmnet.service"),
        );
        let version = run_tool(Command::new("systemd-analyze").arg("--version")).1;
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");
        println!(
            "unit: systemd-analyze verify passed ({})",
            version.lines().next().unwrap_or("?")
        );
    } else {
        println!(
            "skipped: systemd-analyze verify: systemd-analyze is not installed (scripts/install-deps.sh installs systemd)"
        );
    }

    // The Vagrantfile: vagrant validate where vagrant is installed, else a Ruby syntax check.
    let vagrant_dir = r.join("vagrant");
    if which("vagrant") {
        let tmp = scratch("vagrant");
        let (ok, out) = run_tool(
            Command::new("vagrant")
                .arg("validate")
                .current_dir(&vagrant_dir)
                // The file provisioner wants the binary to exist; a clean clone has no static
                // build, so validate against the workspace's binary.
                .env("SWARMNET_BINARY", cluster_tests::harness::swarmnet())
                .env("VAGRANT_DOTFILE_PATH", tmp.join("dot"))
                .env("VAGRANT_HOME", tmp.join("home"))
                .env("VAGRANT_CHECKPOINT_DISABLE", "1"),
        );
        let version = run_tool(
            Command::new("vagrant")
                .arg("--version")
                .env("VAGRANT_HOME", tmp.join("home"))
                .env("VAGRANT_CHECKPOINT_DISABLE", "1"),
        )
        .1;
        let key = std::fs::read_to_string(tmp.join("dot/swarmnet-gossip.key")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            ok && out.contains("validated successfully"),
            "vagrant validate: {out}"
        );
        assert_eq!(
            key.trim().len(),
            32,
            "the Vagrantfile keeps a 16-byte gossip key in its dot dir"
        );
        println!("Vagrantfile: vagrant validate passed ({})", version.trim());
    } else if which("ruby") {
        let (ok, out) = run_tool(
            Command::new("ruby")
                .arg("-c")
                .arg(vagrant_dir.join("Vagrantfile")),
        );
        assert!(ok, "ruby -c Vagrantfile: {out}");
        println!("Vagrantfile: ruby -c passed (vagrant is not installed)");
    } else {
        println!("skipped: Vagrantfile: neither vagrant nor ruby is installed");
    }

    // The scripts: syntax with the shell each runs under, and shellcheck where installed.
    let scripts = [
        ("sh", "vagrant/provision.sh"),
        ("bash", "vagrant/demo.sh"),
        ("bash", "scripts/build-static.sh"),
    ];
    for (shell, s) in scripts {
        let (ok, out) = run_tool(Command::new(shell).arg("-n").arg(r.join(s)));
        assert!(ok, "{shell} -n {s}: {out}");
    }
    if which("shellcheck") {
        let (ok, out) = run_tool(
            Command::new("shellcheck")
                .current_dir(&r)
                .args(["-S", "warning"])
                .args(scripts.map(|(_, s)| s)),
        );
        assert!(ok, "shellcheck: {out}");
        println!("scripts: sh/bash -n and shellcheck -S warning passed");
    } else {
        println!("scripts: sh/bash -n passed; skipped: shellcheck is not installed");
    }
}

/// The fenced block after `<!-- marker -->` in README.md's "Run it on your hosts".
fn readme_block(readme: &str, marker: &str) -> String {
    let section = readme
        .split("\n## Run it on your hosts")
        .nth(1)
        .expect("README.md has a \"Run it on your hosts\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let tag = format!("<!-- {marker} -->");
    let after = section
        .split(&tag)
        .nth(1)
        .unwrap_or_else(|| panic!("no {tag} in \"Run it on your hosts\""));
    let body = after
        .split("```sh\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no ```sh block after {tag}"));
    body.split("\n```").next().expect("block end").to_string() + "\n"
}

#[test]
fn serial_vm_the_readme_steps_form_a_cluster_of_three_fresh_guests() {
    let t0 = Instant::now();
    if vm::kit_or_skip().is_none() {
        return;
    }
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let keygen = readme_block(&readme, "test: key");
    let settings = readme_block(&readme, "test: host-settings");
    let steps = readme_block(&readme, "test: host-steps");
    let check = readme_block(&readme, "test: check");
    assert_eq!(keygen.trim(), "swarmnet cluster keys generate");
    let names: Vec<&str> = settings
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    assert_eq!(
        names,
        ["NODE_NAME", "NODE_ADDR", "SEEDS", "GOSSIP_KEY"],
        "the per-host settings the test gives"
    );
    let swarmnet = cluster_tests::harness::swarmnet();
    let r = root();
    // "Copy the binary and the unit to every host": the guest's folder /root/swarmnet.
    let guests = guests(|g| {
        g.with_file(&swarmnet, "/root/swarmnet/swarmnet").with_file(
            r.join("dist/systemd/swarmnet.service"),
            "/root/swarmnet/swarmnet.service",
        )
    });
    let net = match vm::start_network(&guests) {
        Ok(n) => n,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let key = generate_key(&swarmnet);
    println!("--- README steps run on each guest (settings of node1)");
    each(3, |i| {
        let seeds: Vec<String> = (0..3)
            .filter(|&j| j != i)
            .map(|j| format!("\"{}:7946\"", net.addr(j)))
            .collect();
        let script = format!(
            "set -e\ncd /root/swarmnet\nNODE_NAME={}\nNODE_ADDR={}\nSEEDS={}\nGOSSIP_KEY={}\n{steps}",
            NODES[i],
            net.addr(i),
            quote(&seeds.join(", ")),
            key
        );
        if i == 0 {
            println!("{}", script.replace(&key, "<key>"));
        }
        net.sh_timeout(i, &script, Duration::from_secs(120))
    });
    each(3, |i| wait_members(&net, i, Duration::from_secs(90)));
    let members = net.sh(1, &check).expect("the README's check");
    println!(
        "--- {}on node2:\n{members}",
        check.trim_end().to_string() + " "
    );
    for n in NODES {
        assert!(
            members
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n)
                    && l.split_whitespace().any(|w| w == "up")),
            "{n} up in:\n{members}"
        );
    }
    let mode = net
        .sh(0, "stat -c %a /etc/swarmnet/agent.toml")
        .expect("stat");
    assert_eq!(mode.trim(), "600", "the config holds the key");
    for run in net.finish() {
        println!("{}", run.summary());
    }
    println!("README steps test: {:.1?}", t0.elapsed());
}
