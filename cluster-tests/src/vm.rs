//! Tier-5 harness: tests that need kernel features the CI kernel lacks (IPVS, ESP) run in
//! qemu guests booted from Debian's stock kernel (docs/ARCHITECTURE.md, "Testing tiers").
//!
//! **Kit.** [`kit`] runs `scripts/vm/prepare.sh` once per process: it downloads the kernel
//! package and a few others with `apt-get download` (nothing is installed into the host's
//! `/boot` or `/lib/modules`), extracts the raw `vmlinux`, and builds a base initramfs
//! (busybox-static, dash, bash, the netfilter/IPVS/xfrm/bridge/crypto modules with their
//! dependency closure, `ip`, `ipvsadm`, `nft`, `nsenter`, `getent`, `curl`, `ping`,
//! `conntrack`, `tcpdump`, `iperf3`, `install` with their libraries, and the guest init
//! `scripts/vm/init`). The kit is cached under `$SWARMNET_VM_CACHE`, else
//! `<target>/vm-cache/`, keyed by the package versions and the recipe, so a new kernel
//! package rebuilds it and an unchanged one costs nothing.
//!
//! **Run.** A [`Guest`] is a script (run as `/test/run.sh` by `/bin/sh`, dash) plus files
//! copied into the guest; ELF files are stripped of debug info and their shared libraries
//! come along (guest and host share Debian's glibc). The files go into an uncompressed
//! overlay archive appended to the base initramfs (the kernel unpacks concatenated archives
//! in order), so the base is never rebuilt per test. The guest boots with `-no-reboot` and
//! `panic=-1`, so a panic ends qemu at once. [`Outcome`] tells apart the script's exit
//! status, a timeout (qemu killed), a kernel panic, a guest that stopped without the exit
//! marker, and a harness that cannot run here at all (qemu or the kernel package cannot be
//! obtained). Accelerator: KVM only where it really works (`vmx`/`svm` in `/proc/cpuinfo`,
//! `/dev/kvm` usable, and not `kvm_pvm`, under which a stock kernel crawls); else TCG with
//! `-cpu max` (which emulates AES-NI for ESP). `SWARMNET_VM_ACCEL=tcg|kvm` overrides.
//!
//! **Network.** [`run_network`] boots several guests, each its own kernel, on one virtual
//! Ethernet: the test creates a network namespace holding a bridge and one tap per guest,
//! and starts each qemu inside it (`-netdev tap` + `virtio-net-pci`). Why taps in a
//! namespace: the frames exist only in that namespace (nothing reaches the host's real
//! network, unlike qemu's `socket,mcast=` which sends real multicast from the host's
//! stack), any number of guests share the bridge (qemu's point-to-point `socket`/`stream`
//! netdevs need a hub), and deleting the namespace removes everything. Needs root. Guest `i`
//! is `<name>` at `10.99.0.<i + 1>/24` on `eth0`, and every guest's `/etc/hosts` names all;
//! the bridge itself has [`HOST_ADDR`] (`10.99.0.254`).
//!
//! **Live.** [`start_network`] boots guests made with [`Guest::served`] and returns while
//! they run: the host test then drives them with [`LiveNetwork::exec`] (shell commands over
//! TCP to a small server in each guest) and captures on the bridge, and finally stops them
//! (see [`LiveNetwork`]).
//!
//! **Logs.** Every guest's serial console is kept, with host timestamps, in
//! `<target>/vm-logs/<run>/<guest>.log` (the last 40 runs are kept); [`Run::expect_exit`]
//! prints the path and the log's tail on failure.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};

mod live;

pub use live::{EXEC_PORT, EXEC_TIMEOUT, ExecOutput, LiveNetwork, start_network};

/// Exit status of `prepare.sh` meaning "qemu or the kernel package cannot be obtained".
const PREPARE_UNAVAILABLE: i32 = 3;
/// Runs of serial logs kept under `<target>/vm-logs/`.
const KEEP_LOG_RUNS: usize = 40;
/// The guests' network: `10.99.0.0/24`.
pub const NET_PREFIX: [u8; 3] = [10, 99, 0];
/// The address of the host side (bridge `br0` in the guests' namespace) on that network.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 254);
/// Modules a test binary's guest script loads before running it (autoloading would do
/// most of it, but an explicit load fails loudly when a module is missing).
pub const TEST_MODULES: &[&str] = &[
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "nf_conntrack",
    "nf_conntrack_netlink",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_ct",
    "nft_numgen",
    "nft_reject_inet",
    "veth",
    "bridge",
    "vxlan",
    "dummy",
    "xfrm_user",
    "esp4",
];

/// The prepared kernel and base initramfs.
#[derive(Debug, Clone)]
pub struct Kit {
    pub dir: PathBuf,
    pub vmlinux: PathBuf,
    pub base: PathBuf,
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    /// Package versions and module count the kit was built from.
    pub manifest: String,
    /// How long [`kit`] took in this process (building the kit, or finding it cached).
    pub prepare_time: Duration,
}

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest script exited with this status (the `VMTEST-EXIT=` marker).
    Exited(i32),
    /// The guest did not finish within its timeout; qemu was killed.
    TimedOut,
    /// The guest kernel panicked (its console said `Kernel panic`).
    KernelPanic,
    /// qemu stopped without the exit marker and without a panic message (a crash, a
    /// triple fault, init dying); the exit status of qemu.
    NoExitMarker(Option<i32>),
    /// The harness cannot run here: qemu or the kernel package cannot be obtained, or
    /// (for [`run_network`]) no root for the guests' network namespace. Tests print
    /// `skipped: <reason>`.
    Unavailable(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(rc) => write!(f, "guest script exited with {rc}"),
            Outcome::TimedOut => write!(f, "timed out"),
            Outcome::KernelPanic => write!(f, "guest kernel panic"),
            Outcome::NoExitMarker(rc) => write!(f, "qemu exited ({rc:?}) without the exit marker"),
            Outcome::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// What a guest runs.
#[derive(Debug, Clone)]
pub struct Guest {
    /// Hostname, and the log's file name.
    pub name: String,
    /// `/test/run.sh`, run by dash with `/test` as working directory.
    pub script: String,
    /// Host file -> absolute path in the guest.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// Literal contents -> absolute path in the guest.
    pub contents: Vec<(String, PathBuf)>,
    pub mem_mb: u32,
    pub cpus: u32,
    pub timeout: Duration,
    /// A host directory mounted read-write at `/host` (virtio-9p).
    pub share: Option<PathBuf>,
}

impl Guest {
    /// A guest with 1 GiB, 2 vCPUs and a 120 s timeout.
    pub fn new(name: &str, script: &str) -> Guest {
        Guest {
            name: name.into(),
            script: script.into(),
            files: Vec::new(),
            contents: Vec::new(),
            mem_mb: 1024,
            cpus: 2,
            timeout: Duration::from_secs(120),
            share: None,
        }
    }

    /// A guest that loads [`TEST_MODULES`], then runs `binary` (at its host path) with
    /// `args` and `SWARMNET_IN_VM=1` (tests then treat a missing kernel feature as a
    /// failure, not a skip), `RUST_BACKTRACE=1` and `env`.
    pub fn test_binary(name: &str, binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Guest {
        let binary = &std::path::absolute(binary).unwrap_or_else(|_| binary.to_path_buf());
        let mut s = String::from("for m in");
        for m in TEST_MODULES {
            s.push(' ');
            s.push_str(m);
        }
        s.push_str("; do modprobe $m || echo \"VMTEST: module $m missing\"; done\n");
        s.push_str("export SWARMNET_IN_VM=1 RUST_BACKTRACE=1\n");
        for (k, v) in env {
            s.push_str(&format!("export {k}={}\n", shell_quote(v)));
        }
        s.push_str(&format!(
            "exec {}",
            shell_quote(&binary.display().to_string())
        ));
        for a in args {
            s.push(' ');
            s.push_str(&shell_quote(a));
        }
        s.push('\n');
        Guest::new(name, &s).with_binary(binary)
    }

    /// Copies `host` into the guest at `guest` (absolute).
    pub fn with_file(mut self, host: impl Into<PathBuf>, guest: impl Into<PathBuf>) -> Guest {
        self.files.push((host.into(), guest.into()));
        self
    }

    /// Copies the executable `host` to the same absolute path in the guest (so paths
    /// compiled into test binaries, such as `CARGO_BIN_EXE_*`, work there too).
    pub fn with_binary(self, host: &Path) -> Guest {
        let abs = std::path::absolute(host).unwrap_or_else(|_| host.to_path_buf());
        self.with_file(abs.clone(), abs)
    }

    /// Writes `text` to `guest` (absolute) in the guest.
    pub fn with_contents(mut self, text: &str, guest: impl Into<PathBuf>) -> Guest {
        self.contents.push((text.into(), guest.into()));
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Guest {
        self.timeout = timeout;
        self
    }

    pub fn with_mem_mb(mut self, mb: u32) -> Guest {
        self.mem_mb = mb;
        self
    }

    pub fn with_cpus(mut self, cpus: u32) -> Guest {
        self.cpus = cpus;
        self
    }

    /// Shares `dir` read-write at `/host` in the guest.
    pub fn with_share(mut self, dir: &Path) -> Guest {
        self.share = Some(dir.to_path_buf());
        self
    }
}

/// The result of one guest run.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub outcome: Outcome,
    /// The serial console log (host timestamps).
    pub log: PathBuf,
    /// The console text (without timestamps).
    pub console: String,
    /// qemu start to exit.
    pub wall: Duration,
    /// qemu start to the guest init's `VMTEST-BOOTED` line.
    pub boot: Option<Duration>,
    /// The accelerator used: `tcg` or `kvm`.
    pub accel: &'static str,
}

impl Run {
    /// Panics (with the log path and its tail) unless the guest script exited with `rc`.
    pub fn expect_exit(&self, rc: i32) {
        if self.outcome != Outcome::Exited(rc) {
            panic!(
                "guest {}: {} (want exit {rc}); serial log {}:\n{}",
                self.name,
                self.outcome,
                self.log.display(),
                tail(&self.console, 60)
            );
        }
    }

    /// [`Run::expect_exit`] with 0.
    pub fn expect_success(&self) {
        self.expect_exit(0)
    }

    /// One line of figures for the test output.
    pub fn summary(&self) -> String {
        format!(
            "guest {}: {} in {:.1?} (boot {:.1?}, {}), log {}",
            self.name,
            self.outcome,
            self.wall,
            self.boot.unwrap_or_default(),
            self.accel,
            self.log.display()
        )
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The cargo target directory of this test process: `<target>` of the running
/// `<target>/<profile>/deps/<test>`, else an absolute `$CARGO_TARGET_DIR`, else
/// `<repo>/target`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    if let Some(deps) = exe.parent()
        && deps.file_name().is_some_and(|n| n == "deps")
        && let Some(target) = deps.parent().and_then(Path::parent)
    {
        return target.to_path_buf();
    }
    // A binary of this package (vm-run): `<target>/<profile>/<bin>`.
    if let Some(profile) = exe.parent()
        && profile.join("deps").is_dir()
        && let Some(target) = profile.parent()
    {
        return target.to_path_buf();
    }
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => d,
        _ => repo_root().join("target"),
    }
}

fn repo_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// Where kits are cached: `$SWARMNET_VM_CACHE`, else `<target>/vm-cache`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("SWARMNET_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("vm-cache"))
}

/// The kit, prepared once per process: `Err(reason)` when qemu or the kernel package
/// cannot be obtained. Any other preparation failure panics (it is a bug to fix).
pub fn kit() -> Result<&'static Kit, String> {
    static KIT: OnceLock<Result<Kit, String>> = OnceLock::new();
    KIT.get_or_init(prepare).as_ref().map_err(Clone::clone)
}

/// [`kit`], or `None` after printing `skipped: <reason>`.
pub fn kit_or_skip() -> Option<&'static Kit> {
    match kit() {
        Ok(k) => Some(k),
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

fn prepare() -> Result<Kit, String> {
    let t0 = Instant::now();
    let script = repo_root().join("scripts/vm/prepare.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(cache_dir())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => {}
        Some(PREPARE_UNAVAILABLE) => {
            let why = stderr.lines().last().unwrap_or("unavailable");
            return Err(why.trim_start_matches("unavailable: ").to_string());
        }
        _ => panic!(
            "{} failed ({}):\n{stderr}{stdout}",
            script.display(),
            out.status
        ),
    }
    let dir = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("kit="))
        .next_back()
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("prepare.sh printed no kit=: {stdout}"));
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    Ok(Kit {
        vmlinux: dir.join("vmlinux"),
        base: dir.join("base.cpio.gz"),
        kernel_release: read("kernel-release").trim().to_string(),
        manifest: read("manifest"),
        dir,
        prepare_time: t0.elapsed(),
    })
}

/// The accelerator guests run with here: `kvm` or `tcg` (see the module docs).
pub fn accelerator_name() -> &'static str {
    accelerator().1
}

/// `-accel ...` and `-cpu ...`, and the accelerator's name.
fn accelerator() -> (Vec<&'static str>, &'static str) {
    let choice = std::env::var("SWARMNET_VM_ACCEL").unwrap_or_default();
    let kvm = match choice.as_str() {
        "kvm" => true,
        "tcg" => false,
        _ => kvm_usable(),
    };
    if kvm {
        (vec!["-accel", "kvm", "-cpu", "host"], "kvm")
    } else {
        (vec!["-accel", "tcg", "-cpu", "max"], "tcg")
    }
}

/// Hardware virtualisation that a stock kernel boots on: `/dev/kvm` usable, `vmx` or `svm`
/// in the CPU flags, and not PVM (`kvm_pvm`, no hardware virtualisation: there the kernel
/// had not left early memory setup after a minute, while TCG boots it in 3 s).
fn kvm_usable() -> bool {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = flags
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    hw && !Path::new("/sys/module/kvm_pvm").exists()
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
}

static NEXT_RUN: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for one run's logs and scratch files.
fn run_dir(label: &str) -> Result<(PathBuf, PathBuf)> {
    let logs = target_dir().join("vm-logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    prune_logs(&logs);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let id = format!(
        "{ts}-{}-{}-{label}",
        std::process::id(),
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    );
    let log_dir = logs.join(&id);
    let scratch = target_dir().join("vm-tmp").join(&id);
    std::fs::create_dir_all(&log_dir)?;
    std::fs::create_dir_all(&scratch)?;
    Ok((log_dir, scratch))
}

fn prune_logs(logs: &Path) {
    let Ok(rd) = std::fs::read_dir(logs) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(KEEP_LOG_RUNS);
    for d in &dirs[..excess] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Boots one guest without a network card and runs its script.
pub fn run(guest: &Guest) -> Run {
    match run_inner(std::slice::from_ref(guest), false) {
        Ok(mut runs) => runs.remove(0),
        Err(e) => panic!("vm harness: {e:#}"),
    }
}

/// Boots `guests` at once on one virtual network (see the module docs) and waits for all.
/// Every guest gets `10.99.0.<i + 1>/24`; [`guest_addr`] gives it.
pub fn run_network(guests: &[Guest]) -> Vec<Run> {
    match run_inner(guests, true) {
        Ok(runs) => runs,
        Err(e) => panic!("vm harness: {e:#}"),
    }
}

/// The address guest `i` of [`run_network`] has.
pub fn guest_addr(i: usize) -> Ipv4Addr {
    let [a, b, c] = NET_PREFIX;
    Ipv4Addr::new(a, b, c, 1 + i as u8)
}

fn unavailable(guests: &[Guest], why: String) -> Vec<Run> {
    guests
        .iter()
        .map(|g| Run {
            name: g.name.clone(),
            outcome: Outcome::Unavailable(why.clone()),
            log: PathBuf::new(),
            console: String::new(),
            wall: Duration::ZERO,
            boot: None,
            accel: "none",
        })
        .collect()
}

fn run_inner(guests: &[Guest], network: bool) -> Result<Vec<Run>> {
    Ok(match boot(guests, network)? {
        Ok(booted) => booted.finish(),
        Err(why) => unavailable(guests, why),
    })
}

/// Guests started by [`boot`]: their consoles, their network and scratch directory.
struct Booted {
    consoles: Vec<Console>,
    net: Option<GuestNet>,
    scratch: PathBuf,
}

impl Booted {
    /// Waits for every guest to stop (each within its timeout), then removes the network.
    fn finish(self) -> Vec<Run> {
        let runs = self.consoles.into_iter().map(Console::finish).collect();
        drop(self.net);
        let _ = std::fs::remove_dir_all(&self.scratch);
        runs
    }
}

/// Starts `guests` (on one network when `network`) and returns at once; `Ok(Err(reason))`
/// when the harness cannot run here.
fn boot(guests: &[Guest], network: bool) -> Result<std::result::Result<Booted, String>> {
    ensure!(!guests.is_empty(), "no guests");
    ensure!(guests.len() <= 200, "at most 200 guests");
    let kit = match kit() {
        Ok(k) => k,
        Err(why) => return Ok(Err(why)),
    };
    if network && !nix::unistd::geteuid().is_root() {
        return Ok(Err("the guests' network namespace needs root".into()));
    }
    let label = guests[0]
        .name
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let (log_dir, scratch) = run_dir(&label)?;
    let net = if network {
        Some(GuestNet::new(guests.len())?)
    } else {
        None
    };
    let hosts: String = guests
        .iter()
        .enumerate()
        .map(|(i, g)| format!("{} {}\n", guest_addr(i), g.name))
        .collect();
    let mut running = Vec::new();
    for (i, g) in guests.iter().enumerate() {
        let dir = scratch.join(format!("g{i}"));
        let mut g = g.clone();
        if network {
            g = g.with_contents(&format!("127.0.0.1 localhost\n{hosts}"), "/etc/hosts");
        }
        let initrd = build_initrd(kit, &g, &dir)?;
        let mut append = format!(
            "console=ttyS0 quiet panic=-1 vmtest.name={}",
            g.name
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
        );
        let mut args: Vec<String> = Vec::new();
        let (accel, accel_name) = accelerator();
        args.extend(accel.iter().map(|s| s.to_string()));
        args.extend(
            [
                "-m",
                &g.mem_mb.to_string(),
                "-smp",
                &g.cpus.to_string(),
                "-display",
                "none",
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-no-reboot",
                "-kernel",
            ]
            .map(String::from),
        );
        args.push(kit.vmlinux.display().to_string());
        args.push("-initrd".into());
        args.push(initrd.display().to_string());
        match &net {
            Some(_) => {
                args.extend([
                    "-netdev".into(),
                    format!(
                        "tap,id=n0,ifname={},script=no,downscript=no",
                        GuestNet::tap(i)
                    ),
                    "-device".into(),
                    format!("virtio-net-pci,netdev=n0,mac=52:54:00:63:00:{:02x}", i + 1),
                ]);
                append.push_str(&format!(" vmtest.ip={}/24", guest_addr(i)));
            }
            None => args.extend(["-nic".into(), "none".into()]),
        }
        if let Some(share) = &g.share {
            args.extend([
                "-virtfs".into(),
                format!(
                    "local,path={},mount_tag=host0,security_model=none,id=host0",
                    share.display()
                ),
            ]);
            append.push_str(" vmtest.9p=1");
        }
        args.push("-append".into());
        args.push(append);
        let mut cmd = match &net {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &n.netns, "qemu-system-x86_64"]);
                c
            }
            None => Command::new("qemu-system-x86_64"),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let log = log_dir.join(format!("{}.log", g.name));
        let t0 = Instant::now();
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("cannot start qemu-system-x86_64: {e}"))),
        };
        running.push(Console::start(g, child, log, t0, accel_name)?);
    }
    Ok(Ok(Booted {
        consoles: running,
        net,
        scratch,
    }))
}

/// Writes the overlay archive (script, files, their libraries) and returns
/// `base.cpio.gz + overlay.cpio`.
fn build_initrd(kit: &Kit, g: &Guest, dir: &Path) -> Result<PathBuf> {
    let root = dir.join("root");
    let test = root.join("test");
    std::fs::create_dir_all(&test)?;
    std::fs::write(test.join("run.sh"), &g.script)?;
    let libs = root.join("lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libs)?;
    for (text, at) in &g.contents {
        let dst = under(&root, at)?;
        std::fs::create_dir_all(dst.parent().expect("absolute path has a parent"))?;
        std::fs::write(&dst, text)?;
    }
    for (host, at) in &g.files {
        let dst = under(&root, at)?;
        std::fs::create_dir_all(dst.parent().expect("absolute path has a parent"))?;
        if is_elf(host) {
            let st = Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(&dst)
                .arg(host)
                .status()
                .context("strip (binutils)")?;
            ensure!(st.success(), "strip {} failed", host.display());
            for lib in shared_libs(host)? {
                let name = lib.file_name().expect("library file name");
                std::fs::copy(&lib, libs.join(name))
                    .with_context(|| format!("copying {}", lib.display()))?;
            }
        } else {
            std::fs::copy(host, &dst).with_context(|| format!("copying {}", host.display()))?;
        }
        let mode = std::fs::metadata(host)?.permissions().mode();
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
    }
    let overlay = dir.join("overlay.cpio");
    let cpio = Command::new("sh")
        .arg("-c")
        .arg("find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0")
        .current_dir(&root)
        .stdout(std::fs::File::create(&overlay)?)
        .status()
        .context("cpio")?;
    ensure!(cpio.success(), "cpio of the overlay failed");
    let initrd = dir.join("initrd");
    let mut out = std::fs::File::create(&initrd)?;
    let base_len = std::io::copy(&mut std::fs::File::open(&kit.base)?, &mut out)?;
    // The kernel reads an uncompressed archive only at a 4-byte aligned offset; it skips
    // the zero padding between archives.
    let pad = (4 - base_len % 4) % 4;
    out.write_all(&[0u8; 4][..pad as usize])?;
    std::io::copy(&mut std::fs::File::open(&overlay)?, &mut out)?;
    out.flush()?;
    std::fs::remove_dir_all(&root)?;
    std::fs::remove_file(&overlay)?;
    Ok(initrd)
}

fn under(root: &Path, at: &Path) -> Result<PathBuf> {
    ensure!(
        at.is_absolute(),
        "guest path {} must be absolute",
        at.display()
    );
    Ok(root.join(at.strip_prefix("/").expect("absolute")))
}

fn is_elf(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The shared libraries `ldd` resolves for `elf` (none for a static binary).
fn shared_libs(elf: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(elf).output().context("ldd")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("=> ").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

/// A running qemu whose serial console is being logged.
struct Console {
    name: String,
    child: Child,
    log: PathBuf,
    t0: Instant,
    timeout: Duration,
    accel: &'static str,
    text: Arc<Mutex<String>>,
    booted: Arc<Mutex<Option<Duration>>>,
    /// [`Console::kill`] ended it.
    killed: bool,
    reader: std::thread::JoinHandle<()>,
    stderr: std::thread::JoinHandle<String>,
}

impl Console {
    fn start(
        g: Guest,
        mut child: Child,
        log: PathBuf,
        t0: Instant,
        accel: &'static str,
    ) -> Result<Console> {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no qemu stdout"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no qemu stderr"))?;
        let text = Arc::new(Mutex::new(String::new()));
        let booted = Arc::new(Mutex::new(None));
        let mut file = std::fs::File::create(&log)
            .with_context(|| format!("creating serial log {}", log.display()))?;
        let echo = std::env::var_os("SWARMNET_VM_ECHO").is_some();
        let (t, b, name) = (text.clone(), booted.clone(), g.name.clone());
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match r.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim_end_matches(['\r', '\n']);
                let at = t0.elapsed();
                if line.starts_with("VMTEST-BOOTED") {
                    *b.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
                }
                let _ = writeln!(file, "[{:8.3}] {line}", at.as_secs_f64());
                if echo {
                    eprintln!("[{name} {:7.3}] {line}", at.as_secs_f64());
                }
                let mut all = t.lock().unwrap_or_else(|e| e.into_inner());
                all.push_str(line);
                all.push('\n');
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        Ok(Console {
            name: g.name,
            child,
            log,
            t0,
            timeout: g.timeout,
            accel,
            text,
            booted,
            killed: false,
            reader,
            stderr,
        })
    }

    /// The console text so far.
    fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Kills qemu now (the guest is lost); [`Console::finish`] then reports it as timed out
    /// unless it had already stopped.
    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.killed = true;
        }
    }

    fn finish(mut self) -> Run {
        let deadline = self.t0 + self.timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(_)) if self.killed => break None,
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break None,
            }
        };
        let wall = self.t0.elapsed();
        let _ = self.reader.join();
        let qemu_err = self.stderr.join().unwrap_or_default();
        let mut console = self.text.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !qemu_err.trim().is_empty() {
            console.push_str(&format!("[qemu stderr] {}\n", qemu_err.trim()));
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.log) {
                let _ = writeln!(f, "[qemu stderr] {}", qemu_err.trim());
            }
        }
        let marker = console
            .lines()
            .filter_map(|l| l.split("VMTEST-EXIT=").nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse::<i32>().ok())
            .next_back();
        let outcome = match (status, marker) {
            (None, _) => Outcome::TimedOut,
            (Some(_), _) if console.contains("Kernel panic - not syncing") => Outcome::KernelPanic,
            (Some(_), Some(rc)) => Outcome::Exited(rc),
            (Some(s), None) => Outcome::NoExitMarker(s.code()),
        };
        let boot = *self.booted.lock().unwrap_or_else(|e| e.into_inner());
        Run {
            name: self.name,
            outcome,
            log: self.log,
            console,
            wall,
            boot,
            accel: self.accel,
        }
    }
}

/// The guests' Ethernet: a namespace `swnvm-<pid>-<n>` with bridge `br0` and taps
/// `tap<i>`. Dropping it deletes the namespace (the qemus have exited by then).
struct GuestNet {
    netns: String,
}

impl GuestNet {
    fn new(guests: usize) -> Result<GuestNet> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let netns = format!(
            "swnvm-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &netns])?;
        let net = GuestNet { netns };
        let ns = net.netns.as_str();
        ip(&["-n", ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", ns, "link", "set", "br0", "up"])?;
        // The host's own address on the guests' network (a `LiveNetwork` talks to the
        // guests from here; tests may capture on br0 or send to guests from it).
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{HOST_ADDR}/24"),
            "dev",
            "br0",
        ])?;
        for i in 0..guests {
            let tap = Self::tap(i);
            ip(&["-n", ns, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
            ip(&["-n", ns, "link", "set", &tap, "master", "br0", "up"])?;
        }
        Ok(net)
    }

    fn tap(i: usize) -> String {
        format!("tap{i}")
    }
}

impl Drop for GuestNet {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.netns]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("ip")?;
    if !o.status.success() {
        bail!("ip {args:?}: {}", String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(())
}

/// The executable of test target `test` of `package` (`"lib"` for its unit tests). All
/// test executables come from one `cargo test --workspace --no-run --message-format=json`
/// per process, with the same target directory: the same build as `cargo test` /
/// `cargo nextest run --workspace` (building one package alone could unify features
/// differently and rebuild), so under the test runner it builds nothing.
pub fn test_binary(package: &str, test: &str) -> Result<PathBuf> {
    static ALL: OnceLock<Result<TestBinaries, String>> = OnceLock::new();
    let all = ALL
        .get_or_init(|| workspace_test_binaries().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))?;
    let key = (package.to_string(), test.to_string());
    all.get(&key).cloned().ok_or_else(|| {
        anyhow!(
            "no test executable {package}/{test} in cargo's output: {:?}",
            all.keys().collect::<Vec<_>>()
        )
    })
}

/// `(package, target)` -> executable of every test target of the workspace (`lib` for unit
/// tests).
type TestBinaries = BTreeMap<(String, String), PathBuf>;

fn workspace_test_binaries() -> Result<TestBinaries> {
    let mut cmd = crate::harness::cargo();
    let out = cmd
        .current_dir(repo_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .args([
            "test",
            "-q",
            "--workspace",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run")?;
    ensure!(
        out.status.success(),
        "cargo test --workspace --no-run failed"
    );
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || !v["profile"]["test"].as_bool().unwrap_or(false) {
            continue;
        }
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        // package_id: "path+file:///.../agent#0.1.0" (or "...#name@0.1.0").
        let id = v["package_id"].as_str().unwrap_or_default();
        let tail = id.rsplit(['/', '#']).nth(1).unwrap_or_default();
        let package = v["manifest_path"]
            .as_str()
            .and_then(|m| Path::new(m).parent()?.file_name()?.to_str())
            .unwrap_or(tail)
            .to_string();
        let kinds: Vec<&str> = v["target"]["kind"]
            .as_array()
            .map(|k| k.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let target = if kinds.contains(&"lib") {
            "lib".to_string()
        } else {
            v["target"]["name"].as_str().unwrap_or_default().to_string()
        };
        found.insert((package, target), PathBuf::from(exe));
    }
    Ok(found)
}
