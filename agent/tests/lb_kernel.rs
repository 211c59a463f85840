//! Kernel tests of the load balancers: the nftables one ([`agent::lb::NftLoadBalancer`]) and
//! the IPVS one ([`agent::lb::ipvs_backend::IpvsBalancer`]), through the same traffic cases
//! (the `both!` pairs; the IPVS tests are named `serial_ipvs_*`).
//!
//! Each test builds its own namespaces, named `lbt-<pid>-<tag>-*`: a bridge namespace and a
//! client plus three backend namespaces on 10.77.0.0/24 (client .2, backends .11-.13), joined
//! by veths; VIPs are .100 and .101 and live nowhere. The backends run tiny TCP and UDP
//! servers written here (threads that enter the backend namespace before creating their
//! sockets) that answer `<backend> <peer address>` and echo lines. Client traffic runs on
//! threads that entered the client namespace. Every loop is bounded in count and time;
//! timings are never asserted. Named `serial_*` (nextest runs them one at a time); each
//! checks that it can run (root, nft, nsenter, ping, namespaces, an nft nat table, and IPVS
//! for the IPVS ones) and otherwise prints "skipped: <reason>". The CI kernel has no IPVS:
//! `cluster-tests/tests/vm_ipvs.rs` runs the `serial_ipvs_*` tests inside a kernel VM, where
//! a missing IPVS is a failure. Everything is removed on drop, also on panic.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent::lb::ipvs_backend::{IpvsBalancer, ipvs_available};
use agent::lb::nft_plan::TABLE;
use agent::lb::{Backend, LbSpec, LoadBalancer, NftLoadBalancer, VipService, conntrack};
use agent::records::{Protocol, ServicePort};
use nix::sched::{CloneFlags, setns};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);
const IO_TIMEOUT: Duration = Duration::from_secs(3);

fn backend_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 11 + i as u8)
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn has_tool(tool: &str) -> bool {
    lab::find_tool(tool).is_some()
}

/// Why this machine cannot run the tests, if it cannot.
fn preflight() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for tool in ["ip", "nft", "nsenter", "ping"] {
        if !has_tool(tool) {
            return Some(format!("{tool} is not installed"));
        }
    }
    let ns = format!("lbt-{}-pf", std::process::id());
    if !run(&["ip", "netns", "add", &ns]).status.success() {
        return Some("cannot create network namespaces".into());
    }
    let nat = run(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "nft",
        "add table ip t; add chain ip t c { type nat hook output priority -100; }; add rule ip t c dnat ip to numgen inc mod 1 map { 0 : 10.0.0.1 }",
    ]);
    let _ = run(&["ip", "netns", "del", &ns]);
    if !nat.status.success() {
        return Some(format!(
            "nftables nat with numgen is not available: {}",
            String::from_utf8_lossy(&nat.stderr).trim()
        ));
    }
    None
}

/// The namespaces of one test: `<prefix>-br` (bridge), `-c` (client), `-b0..b2`.
struct Topo {
    prefix: String,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl Topo {
    fn new(tag: &str) -> Topo {
        let t = Topo {
            prefix: format!("lbt-{}-{tag}", std::process::id()),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        };
        let br = t.name("br");
        ok(&["ip", "netns", "add", &br]);
        ok(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]);
        ok(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        let mut hosts = vec![("c".to_string(), CLIENT)];
        hosts.extend((0..3).map(|i| (format!("b{i}"), backend_ip(i))));
        for (short, addr) in hosts {
            let ns = t.name(&short);
            ok(&["ip", "netns", "add", &ns]);
            ok(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            let port = format!("v-{short}");
            ok(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &br,
            ]);
            ok(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"]);
            ok(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ok(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        }
        t
    }

    fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn path(&self, short: &str) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name(short)))
    }

    fn client(&self) -> PathBuf {
        self.path("c")
    }

    /// Starts, in every backend namespace, TCP servers on `tcp` ports and UDP servers on
    /// `udp` ports. Each answers `b<i> <peer address>`; TCP then echoes lines as
    /// `b<i> <line>`.
    fn serve(&mut self, tcp: &[u16], udp: &[u16]) {
        for i in 0..3 {
            for &port in tcp {
                let (ns, stop) = (self.path(&format!("b{i}")), self.stop.clone());
                let ready = std::sync::mpsc::channel();
                self.servers.push(std::thread::spawn(move || {
                    enter(&ns);
                    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    ready.0.send(()).unwrap();
                    tcp_server(l, format!("b{i}"), stop);
                }));
                ready.1.recv_timeout(IO_TIMEOUT).expect("tcp server up");
            }
            for &port in udp {
                let (ns, stop) = (self.path(&format!("b{i}")), self.stop.clone());
                let ready = std::sync::mpsc::channel();
                self.servers.push(std::thread::spawn(move || {
                    enter(&ns);
                    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    ready.0.send(()).unwrap();
                    let mut buf = [0u8; 512];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((_, peer)) = s.recv_from(&mut buf) {
                            let _ = s.send_to(format!("b{i} {}\n", peer.ip()).as_bytes(), peer);
                        }
                    }
                }));
                ready.1.recv_timeout(IO_TIMEOUT).expect("udp server up");
            }
        }
    }

    fn table_exists(&self) -> bool {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name("c"),
            "nft",
            "list",
            "table",
            "ip",
            TABLE,
        ])
        .status
        .success()
    }

    fn nft(&self, cmd: &str) {
        ok(&["ip", "netns", "exec", &self.name("c"), "nft", cmd]);
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.servers.drain(..) {
            let _ = h.join();
        }
        let dash = format!("{}-", self.prefix);
        if let Ok(rd) = std::fs::read_dir("/var/run/netns") {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&dash) {
                    let _ = run(&["ip", "netns", "del", &n]);
                }
            }
        }
    }
}

fn enter(ns: &Path) {
    let f = File::open(ns).unwrap();
    setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
}

fn tcp_server(l: TcpListener, name: String, stop: Arc<AtomicBool>) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, peer)) => {
                let (name, stop) = (name.clone(), stop.clone());
                conns.push(std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                    let mut w = s.try_clone().unwrap();
                    if w.write_all(format!("{name} {}\n", peer.ip()).as_bytes())
                        .is_err()
                    {
                        return;
                    }
                    let mut r = BufReader::new(s);
                    let mut line = String::new();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match r.read_line(&mut line) {
                            Ok(0) => return,
                            Ok(_) => {
                                if w.write_all(format!("{name} {line}").as_bytes()).is_err() {
                                    return;
                                }
                                line.clear();
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    ErrorKind::WouldBlock | ErrorKind::TimedOut
                                ) => {}
                            Err(_) => return,
                        }
                    }
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
        conns.retain(|h: &JoinHandle<()>| !h.is_finished());
    }
    for h in conns {
        let _ = h.join();
    }
}

/// Runs `f` on a thread inside the namespace at `ns`.
fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .expect("client thread")
}

/// Connects to `addr`, returns the greeting line (`b<i> <client address>`) and the stream.
fn connect(addr: SocketAddr) -> std::io::Result<(String, BufReader<TcpStream>)> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok((line.trim().to_string(), r))
}

/// `n` connections to `addr`: greeting counts by backend name, and the client addresses
/// the backends saw.
fn spread(client: &Path, addr: SocketAddr, n: usize) -> (BTreeMap<String, usize>, Vec<String>) {
    in_ns(client, move || {
        let mut counts = BTreeMap::new();
        let mut seen = Vec::new();
        for _ in 0..n {
            let (greeting, _) = connect(addr).expect("connect through the VIP");
            let mut parts = greeting.split_whitespace();
            *counts
                .entry(parts.next().unwrap_or("").to_string())
                .or_insert(0) += 1;
            seen.push(parts.next().unwrap_or("").to_string());
        }
        (counts, seen)
    })
}

fn port(protocol: Protocol, port: u16, target: u16) -> ServicePort {
    ServicePort {
        protocol,
        port,
        target,
    }
}

fn service(id: &str, vip: Ipv4Addr, ports: Vec<ServicePort>, enabled: [bool; 3]) -> VipService {
    VipService {
        id: id.into(),
        vip,
        ports,
        backends: (0..3)
            .map(|i| Backend {
                ip: backend_ip(i),
                enabled: enabled[i],
            })
            .collect(),
    }
}

fn web(enabled: [bool; 3]) -> VipService {
    service(
        "webservice0123456789abcdef",
        VIP,
        vec![port(Protocol::Tcp, 80, 8080), port(Protocol::Udp, 53, 5353)],
        enabled,
    )
}

/// The balancer under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Nft,
    Ipvs,
}

/// The balancer of `kind`, or `None` after printing "skipped: <reason>". Inside the kernel
/// VM (`SWARMNET_IN_VM`) a kernel without IPVS is a failure, not a skip.
fn balancer(kind: Kind) -> Option<Box<dyn LoadBalancer>> {
    if let Some(reason) = preflight() {
        println!("skipped: {reason}");
        return None;
    }
    match kind {
        Kind::Nft => Some(Box::new(NftLoadBalancer::new())),
        Kind::Ipvs => match ipvs_available() {
            Ok(()) => Some(Box::new(IpvsBalancer::new())),
            Err(why) => {
                assert!(
                    std::env::var_os("SWARMNET_IN_VM").is_none(),
                    "inside the kernel VM: {why}"
                );
                println!("skipped: IPVS not available on this kernel ({why})");
                None
            }
        },
    }
}

/// One test per balancer for a case `fn(Kind, &dyn LoadBalancer)`: the nftables one runs
/// wherever nf_tables does; the IPVS one needs IPVS (the kernel VM runs it,
/// `cluster-tests/tests/vm_ipvs.rs`).
macro_rules! both {
    ($nft:ident, $ipvs:ident, $case:ident) => {
        #[test]
        fn $nft() {
            if let Some(lb) = balancer(Kind::Nft) {
                $case(Kind::Nft, &*lb);
            }
        }

        #[test]
        fn $ipvs() {
            if let Some(lb) = balancer(Kind::Ipvs) {
                $case(Kind::Ipvs, &*lb);
            }
        }
    };
}

macro_rules! preflight_or_skip {
    () => {
        if let Some(reason) = preflight() {
            println!("skipped: {reason}");
            return;
        }
    };
}

both!(
    serial_tcp_connections_to_a_vip_spread_over_three_backends_that_see_the_client_address,
    serial_ipvs_tcp_connections_to_a_vip_spread_over_three_backends_that_see_the_client_address,
    case_spread
);

fn case_spread(_kind: Kind, lb: &dyn LoadBalancer) {
    let mut t = Topo::new("spread");
    t.serve(&[8080], &[]);
    let spec = LbSpec {
        services: vec![web([true; 3])],
    };
    let r = lb.program(&t.client(), &spec).unwrap();
    assert!(r.changes > 0);
    assert_eq!(
        lb.program(&t.client(), &spec).unwrap().changes,
        0,
        "second program"
    );
    // Port translation: clients use :80, backends listen only on :8080.
    let (counts, seen) = spread(&t.client(), SocketAddr::from((VIP, 80)), 200);
    println!("200 connections: {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 200);
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (b, n) in &counts {
        assert!(*n >= 40, "backend {b} got {n} of 200 (< 20%): {counts:?}");
    }
    assert!(
        seen.iter().all(|s| s == &CLIENT.to_string()),
        "backends must see the client's own address: {:?}",
        seen.iter()
            .filter(|s| *s != &CLIENT.to_string())
            .take(3)
            .collect::<Vec<_>>()
    );
}

both!(
    serial_a_drained_backend_keeps_its_open_connection_while_new_ones_avoid_it,
    serial_ipvs_a_drained_backend_keeps_its_open_connection_while_new_ones_avoid_it,
    case_drain
);

fn case_drain(_kind: Kind, lb: &dyn LoadBalancer) {
    let mut t = Topo::new("drain");
    t.serve(&[8080], &[]);
    let client = t.client();
    lb.program(
        &client,
        &LbSpec {
            services: vec![web([true; 3])],
        },
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (name_tx, name_rx) = std::sync::mpsc::channel::<String>();
    // A long-lived connection, held on its own client thread.
    let held = {
        let client = client.clone();
        std::thread::spawn(move || {
            in_ns(&client, move || {
                let (greeting, mut r) = connect(SocketAddr::from((VIP, 80))).unwrap();
                let name = greeting.split_whitespace().next().unwrap().to_string();
                name_tx.send(name.clone()).unwrap();
                rx.recv_timeout(Duration::from_secs(30)).unwrap();
                // After the drain: the same connection still works, to the same backend.
                let mut echoes = Vec::new();
                for i in 0..3 {
                    r.get_mut()
                        .write_all(format!("ping{i}\n").as_bytes())
                        .unwrap();
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    echoes.push(line.trim().to_string());
                }
                (name, echoes)
            })
        })
    };
    let drained = name_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let i: usize = drained.trim_start_matches('b').parse().unwrap();
    let mut enabled = [true; 3];
    enabled[i] = false;
    let r = lb
        .program(
            &client,
            &LbSpec {
                services: vec![web(enabled)],
            },
        )
        .unwrap();
    assert!(r.changes > 0);
    assert_eq!(r.conntrack_flushed, 0, "draining must not flush conntrack");
    let (counts, _) = spread(&client, SocketAddr::from((VIP, 80)), 30);
    println!("after draining {drained}: {counts:?}");
    assert!(
        !counts.contains_key(&drained),
        "new connections reached drained {drained}: {counts:?}"
    );
    assert_eq!(counts.values().sum::<usize>(), 30);
    tx.send(()).unwrap();
    let (name, echoes) = held.join().unwrap();
    assert_eq!(
        echoes,
        vec![
            format!("{name} ping0"),
            format!("{name} ping1"),
            format!("{name} ping2")
        ]
    );
}

both!(
    serial_removing_a_backend_flushes_its_conntrack_entries_so_a_udp_flow_rebalances,
    serial_ipvs_removing_a_backend_makes_a_udp_flow_rebalance,
    case_udp_removal
);

fn case_udp_removal(kind: Kind, lb: &dyn LoadBalancer) {
    let mut t = Topo::new("udp");
    t.serve(&[], &[5353]);
    let client = t.client();
    lb.program(
        &client,
        &LbSpec {
            services: vec![web([true; 3])],
        },
    )
    .unwrap();
    // One UDP socket = one conntrack "connection" (same 5-tuple every time).
    let sock = in_ns(&client, || {
        let s = UdpSocket::bind((CLIENT, 0)).unwrap();
        s.connect((VIP, 53)).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    });
    let ask = |s: &UdpSocket| -> String {
        s.send(b"who\n").unwrap();
        let mut buf = [0u8; 256];
        let n = s.recv(&mut buf).expect("a UDP answer through the VIP");
        String::from_utf8_lossy(&buf[..n]).trim().to_string()
    };
    let first = ask(&sock);
    let name = first.split_whitespace().next().unwrap().to_string();
    assert_eq!(first, format!("{name} {CLIENT}"));
    for _ in 0..3 {
        assert_eq!(ask(&sock), first, "a UDP flow sticks to its backend");
    }
    let i: usize = name.trim_start_matches('b').parse().unwrap();
    // Draining keeps the flow.
    let mut enabled = [true; 3];
    enabled[i] = false;
    let r = lb
        .program(
            &client,
            &LbSpec {
                services: vec![web(enabled)],
            },
        )
        .unwrap();
    assert_eq!(r.conntrack_flushed, 0);
    assert_eq!(ask(&sock), first, "a draining backend keeps its flows");
    let to_vip = |ct: &[conntrack::CtEntry]| {
        ct.iter()
            .filter(|e| e.orig_dst == VIP && e.proto == 17)
            .map(|e| e.reply_src)
            .collect::<Vec<_>>()
    };
    // The nftables balancer's flow state is conntrack's DNAT binding; IPVS keeps its own
    // connection table (conntrack sees the translated flow to the backend, not the VIP).
    if kind == Kind::Nft {
        assert_eq!(
            to_vip(&conntrack::dump(&client).unwrap()),
            vec![backend_ip(i)]
        );
    }
    // Removal ends the flow's binding (nftables: conntrack flush; IPVS: the destination is
    // deleted and expire_nodest_conn expires its connection entry); the same socket now
    // reaches another backend, with its very next datagram.
    let mut spec = LbSpec {
        services: vec![web(enabled)],
    };
    spec.services[0].backends.remove(i);
    let r = lb.program(&client, &spec).unwrap();
    if kind == Kind::Nft {
        assert!(r.conntrack_flushed >= 1, "{r:?}");
        assert!(to_vip(&conntrack::dump(&client).unwrap()).is_empty());
    }
    let after = ask(&sock);
    println!("UDP flow: {first} -> {after}");
    assert_ne!(after.split_whitespace().next().unwrap(), name);
    assert!(after.ends_with(&CLIENT.to_string()));
    // Nothing removed: no dump, nothing flushed.
    assert_eq!(lb.program(&client, &spec).unwrap().conntrack_flushed, 0);
}

both!(
    serial_a_vip_whose_backends_are_all_drained_refuses_at_once,
    serial_ipvs_a_vip_whose_backends_are_all_drained_refuses_at_once,
    case_all_drained
);

fn case_all_drained(_kind: Kind, lb: &dyn LoadBalancer) {
    let mut t = Topo::new("refuse");
    t.serve(&[8080], &[5353]);
    let client = t.client();
    lb.program(
        &client,
        &LbSpec {
            services: vec![web([false; 3])],
        },
    )
    .unwrap();
    let (tcp, udp, other_port) = in_ns(&client, || {
        let tcp = TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), IO_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.kind());
        let s = UdpSocket::bind((CLIENT, 0)).unwrap();
        s.connect((VIP, 53)).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut buf = [0u8; 64];
        // The reject happens in the sender's own output path: the datagram is dropped there,
        // so send() itself fails (EPERM), or a later call sees the port-unreachable.
        let udp = s
            .send(b"who\n")
            .and_then(|_| s.recv(&mut buf))
            .map(|_| ())
            .map_err(|e| e.kind());
        let other = TcpStream::connect_timeout(&SocketAddr::from((VIP, 22)), IO_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.kind());
        (tcp, udp, other)
    });
    assert_eq!(
        tcp,
        Err(ErrorKind::ConnectionRefused),
        "TCP to an all-drained VIP"
    );
    assert!(
        matches!(
            udp,
            Err(ErrorKind::ConnectionRefused | ErrorKind::PermissionDenied)
        ),
        "UDP to an all-drained VIP fails at once, not by timeout: {udp:?}"
    );
    assert_eq!(
        other_port,
        Err(ErrorKind::ConnectionRefused),
        "a port the service does not publish"
    );
    // Enabling one backend opens the VIP again.
    let r = lb
        .program(
            &client,
            &LbSpec {
                services: vec![web([false, true, false])],
            },
        )
        .unwrap();
    assert!(r.changes > 0);
    let (counts, _) = spread(&client, SocketAddr::from((VIP, 80)), 5);
    assert_eq!(counts, BTreeMap::from([("b1".to_string(), 5)]));
}

both!(
    serial_ping_to_a_vip_reaches_a_backend_and_a_portless_vip_passes_any_port,
    serial_ipvs_ping_to_a_vip_is_answered_and_a_portless_vip_passes_any_port,
    case_ping
);

fn case_ping(_kind: Kind, lb: &dyn LoadBalancer) {
    let mut t = Topo::new("ping");
    t.serve(&[7000], &[]);
    let client = t.client();
    let spec = LbSpec {
        services: vec![web([true; 3]), service("db", VIP2, vec![], [true; 3])],
    };
    lb.program(&client, &spec).unwrap();
    for vip in [VIP, VIP2] {
        let o = run(&[
            "ip",
            "netns",
            "exec",
            &t.name("c"),
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            &vip.to_string(),
        ]);
        println!("{}", String::from_utf8_lossy(&o.stdout));
        assert!(
            o.status.success(),
            "ping {vip}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    // No ports: TCP keeps its port (backends listen on 7000 only).
    let (counts, _) = spread(&client, SocketAddr::from((VIP2, 7000)), 9);
    assert_eq!(counts.values().sum::<usize>(), 9);
    assert_eq!(counts.len(), 3, "{counts:?}");
    // All drained: ping is refused (port unreachable), not left hanging.
    lb.program(
        &client,
        &LbSpec {
            services: vec![service("db", VIP2, vec![], [false; 3])],
        },
    )
    .unwrap();
    let o = run(&[
        "ip",
        "netns",
        "exec",
        &t.name("c"),
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        &VIP2.to_string(),
    ]);
    assert!(!o.status.success());
}

#[test]
fn serial_hand_edits_are_repaired_and_an_empty_spec_removes_the_table() {
    preflight_or_skip!();
    let lb = NftLoadBalancer::new();
    let t = Topo::new("repair");
    let client = t.client();
    let spec = LbSpec {
        services: vec![
            web([true; 3]),
            service("db", VIP2, vec![], [true, false, true]),
        ],
    };
    assert!(lb.program(&client, &spec).unwrap().changes > 0);
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    // Someone deletes a dispatch element and adds a rule to a service chain.
    t.nft("delete element ip swarmnet_lb vip_ports { 10.77.0.100 . tcp . 80 }");
    let chain = agent::lb::nft_plan::chain_name("db", VIP2, "all");
    t.nft(&format!("add rule ip swarmnet_lb {chain} counter"));
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 2);
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    // A broken skeleton (a base chain gone) is rebuilt whole.
    t.nft("delete chain ip swarmnet_lb filter_out");
    assert!(lb.program(&client, &spec).unwrap().changes > 0);
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    // A jump into one of our chains from elsewhere makes the incremental script fail
    // (the chain cannot be deleted); the balancer then rebuilds the table.
    let smaller = LbSpec {
        services: vec![web([true; 3])],
    };
    t.nft(&format!("add rule ip swarmnet_lb {chain} counter"));
    t.nft(&format!(
        "add chain ip swarmnet_lb extra; add rule ip swarmnet_lb extra jump {chain}"
    ));
    assert!(lb.program(&client, &smaller).unwrap().changes > 0);
    assert_eq!(lb.program(&client, &smaller).unwrap().changes, 0);
    // Empty spec: the table goes; again: nothing to do.
    let r = lb.program(&client, &LbSpec::default()).unwrap();
    assert_eq!(r.changes, 1);
    assert!(!t.table_exists());
    assert_eq!(lb.program(&client, &LbSpec::default()).unwrap().changes, 0);
}

#[test]
fn serial_ipvs_hand_edits_are_repaired_and_an_empty_spec_removes_everything_it_made() {
    let Some(lb) = balancer(Kind::Ipvs) else {
        return;
    };
    let mut t = Topo::new("irepair");
    t.serve(&[8080], &[]);
    let client = t.client();
    let spec = LbSpec {
        services: vec![
            web([true; 3]),
            service("db", VIP2, vec![], [true, false, true]),
        ],
    };
    assert!(lb.program(&client, &spec).unwrap().changes > 0);
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    let h = ipvs::Handle::in_netns(&client).unwrap();
    let mut services = h.service().list().execute().unwrap();
    services.sort_by_key(|s| s.key);
    assert_eq!(
        services.len(),
        3,
        "tcp/80, udp/53 of the VIP and the portless VIP2"
    );
    // Someone deletes a destination, un-drains one, deletes a whole service, adds a rule to
    // the mark chain and deletes the refuse chain.
    let (a, b) = (services[0].key, services[1].key);
    let dests = h.destination().list(a).execute().unwrap();
    h.destination()
        .del(a, dests[0].addr, dests[0].port)
        .execute()
        .unwrap();
    h.service().del(b).execute().unwrap();
    t.nft("add rule ip swarmnet_ipvs mark_out counter");
    t.nft("delete chain ip swarmnet_ipvs filter_out");
    assert!(lb.program(&client, &spec).unwrap().changes >= 4);
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    let (counts, _) = spread(&client, SocketAddr::from((VIP, 80)), 9);
    assert_eq!(counts.len(), 3, "{counts:?}");
    // A drained destination whose weight was raised by hand is drained again.
    let c = services
        .iter()
        .find(|s| {
            h.destination()
                .list(s.key)
                .execute()
                .unwrap()
                .iter()
                .any(|d| d.weight == 0)
        })
        .expect("VIP2's service has a drained destination")
        .key;
    let drained = h
        .destination()
        .list(c)
        .execute()
        .unwrap()
        .into_iter()
        .find(|d| d.weight == 0)
        .unwrap();
    h.destination()
        .set(
            c,
            ipvs::Destination {
                weight: 5,
                ..drained.clone()
            },
        )
        .execute()
        .unwrap();
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 1);
    // A service outside the balancer's mark range is not its business.
    let foreign = ipvs::ServiceKey::fwmark(7);
    h.service()
        .add(ipvs::Service::new(foreign))
        .execute()
        .unwrap();
    // Empty spec: every service of the balancer and its table go; again: nothing to do.
    assert!(lb.program(&client, &LbSpec::default()).unwrap().changes > 0);
    let left: Vec<_> = h
        .service()
        .list()
        .execute()
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(left, vec![foreign]);
    let table = run(&[
        "ip",
        "netns",
        "exec",
        &t.name("c"),
        "nft",
        "list",
        "table",
        "ip",
        "swarmnet_ipvs",
    ]);
    assert!(!table.status.success(), "the table is gone");
    assert_eq!(lb.program(&client, &LbSpec::default()).unwrap().changes, 0);
}

both!(
    serial_a_changed_port_or_service_id_applies_in_one_step_and_then_settles,
    serial_ipvs_a_changed_port_or_service_id_applies_and_then_settles,
    case_change
);

fn case_change(kind: Kind, lb: &dyn LoadBalancer) {
    let mut t = Topo::new("change");
    t.serve(&[8080, 9090], &[]);
    let client = t.client();
    let mut spec = LbSpec {
        services: vec![web([true; 3])],
    };
    lb.program(&client, &spec).unwrap();
    // Published port 80 -> 81 (same target): element and chain swapped in one transaction.
    spec.services[0].ports[0] = port(Protocol::Tcp, 81, 8080);
    assert!(lb.program(&client, &spec).unwrap().changes > 0);
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    let (counts, _) = spread(&client, SocketAddr::from((VIP, 81)), 6);
    assert_eq!(counts.values().sum::<usize>(), 6);
    let old = in_ns(&client, || {
        TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), IO_TIMEOUT).map_err(|e| e.kind())
    });
    assert_eq!(old.err(), Some(ErrorKind::ConnectionRefused));
    // Target 8080 -> 9090: nftables refills only that chain; IPVS replaces the entry's
    // destinations.
    spec.services[0].ports[0] = port(Protocol::Tcp, 81, 9090);
    let changes = lb.program(&client, &spec).unwrap().changes;
    match kind {
        Kind::Nft => assert_eq!(changes, 1),
        Kind::Ipvs => assert!(changes > 0),
    }
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    // Another service takes over the VIP: nftables replaces every verdict, nothing refused
    // between; IPVS keys its entries by VIP and port, so nothing changes at all.
    spec.services[0].id = "another".into();
    let changes = lb.program(&client, &spec).unwrap().changes;
    match kind {
        Kind::Nft => assert!(changes > 0),
        Kind::Ipvs => assert_eq!(changes, 0),
    }
    assert_eq!(lb.program(&client, &spec).unwrap().changes, 0);
    let (counts, _) = spread(&client, SocketAddr::from((VIP, 81)), 6);
    assert_eq!(counts.values().sum::<usize>(), 6);
}

both!(
    serial_a_missing_namespace_is_a_clear_error,
    serial_ipvs_a_missing_namespace_is_a_clear_error,
    case_missing_ns
);

fn case_missing_ns(_kind: Kind, lb: &dyn LoadBalancer) {
    let err = lb
        .program(
            Path::new("/var/run/netns/lbt-does-not-exist"),
            &LbSpec::default(),
        )
        .unwrap_err();
    assert!(matches!(err, agent::lb::LbError::Netns { .. }), "{err}");
}

/// Run explicitly: `cargo test -p agent --test lb_kernel -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: 1,000 services x 10 backends"]
fn serial_bench_program_1000_services_with_10_backends() {
    preflight_or_skip!();
    let t = Topo::new("bench");
    let r = agent::lb::nft::bench_program(&t.client(), 1000, 10).unwrap();
    println!("{r:?}");
}
