//! Kernel tests of the embedded resolver: a real [`Resolver`] serving a container network
//! namespace, queried from inside it with `dig` and glibc's `getent`.
//!
//! Each test creates its own namespaces (prefix `dnt-<pid>-`): a "host" namespace that the
//! test thread (and so the tokio runtime's threads) enters, where the upstream stub server
//! runs on `127.0.0.1` and from where the resolver forwards; and container namespaces.
//! Everything is removed on drop, also on panic. Named `serial_*` (nextest runs them one at
//! a time); each checks first that it can run and otherwise prints `skipped: <reason>`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::dns::{
    DnsConfig, DnsMetrics, Resolver, Zone, parse_resolv_conf, remove_resolv_conf,
    render_resolv_conf, write_resolv_conf,
};
use agent::records::{EndpointRecord, NetworkDef, ServiceDef, ServiceMode};
use lab::stub_dns::Stub;
use networkdb::NodeId;
use nix::sched::{CloneFlags, setns};

const PREFIX: &str = "dnt-";

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn has(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
}

/// Why this machine cannot run the test, if it cannot.
fn preflight(tools: &[&str]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    for t in tools {
        if !has(t) {
            return Some(format!(
                "{t} is not installed (scripts/install-deps.sh installs it)"
            ));
        }
    }
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let ns = format!(
        "{PREFIX}{}-pf{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    if !run(&["ip", "netns", "add", &ns]).status.success() {
        return Some("cannot create network namespaces".into());
    }
    let nat = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "add", "table", "ip", "probe"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let _ = run(&["ip", "netns", "del", &ns]);
    if !nat {
        return Some("nftables does not work in a new namespace".into());
    }
    None
}

/// Namespaces and files of one test; removed on drop.
struct Env {
    host: String,
    containers: Vec<String>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Env {
    fn new(tag: &str) -> Env {
        let host = format!("{PREFIX}{}-{tag}-h", std::process::id());
        let env = Env {
            host: host.clone(),
            containers: Vec::new(),
            files: Vec::new(),
            dirs: Vec::new(),
        };
        assert!(run(&["ip", "netns", "add", &host]).status.success());
        assert!(
            run(&["ip", "-n", &host, "link", "set", "lo", "up"])
                .status
                .success()
        );
        env
    }

    fn add_container(&mut self, name: &str) -> (String, PathBuf) {
        let ns = format!("{}-{name}", self.host.trim_end_matches("-h"));
        assert!(run(&["ip", "netns", "add", &ns]).status.success());
        self.containers.push(ns.clone());
        assert!(
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])
                .status
                .success()
        );
        let path = PathBuf::from(format!("/var/run/netns/{ns}"));
        (ns, path)
    }

    /// Moves the calling thread into the host namespace (threads it spawns afterwards,
    /// such as a tokio runtime's, start there too).
    fn enter_host(&self) {
        let f = std::fs::File::open(format!("/var/run/netns/{}", self.host)).unwrap();
        setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = remove_resolv_conf(f);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
        for ns in self.containers.iter().chain([&self.host]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `cmd` inside namespace `ns`.
fn in_ns(ns: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend_from_slice(cmd);
    run(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `dig` inside `ns` against the resolver; one try, bounded wait.
fn dig(ns: &str, extra: &[&str]) -> String {
    let mut cmd = vec![
        "dig",
        "@127.0.0.11",
        "+time=3",
        "+tries=1",
        "+noall",
        "+answer",
        "+comments",
    ];
    cmd.extend_from_slice(extra);
    let o = in_ns(ns, &cmd);
    stdout(&o) + &String::from_utf8_lossy(&o.stderr)
}

/// The sorted data column of dig's answer lines.
fn answers(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .collect();
    v.sort();
    v
}

fn status(out: &str) -> Option<String> {
    let i = out.find("status: ")?;
    Some(
        out[i + 8..]
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
    )
}

fn tables() -> (
    Vec<NetworkDef>,
    Vec<(String, EndpointRecord)>,
    Vec<ServiceDef>,
) {
    let net = NetworkDef {
        id: "n-blue".into(),
        name: "blue".into(),
        vni: 4100,
        subnet_addr: "10.1.0.0".parse().unwrap(),
        subnet_prefix: 24,
        gateway: "10.1.0.1".parse().unwrap(),
        mtu: 0,
        encrypted: false,
        creator: NodeId(1),
        created: 1,
        revision: 0,
        note: String::new(),
    };
    let ep = |name: &str, ip: &str, svc: Option<&str>, disabled: bool| EndpointRecord {
        name: name.into(),
        aliases: if name == "db" {
            vec!["database".into()]
        } else {
            vec![]
        },
        ip: ip.parse().unwrap(),
        prefix: 24,
        mac: [2, 0, 0, 0, 0, 1],
        network: "n-blue".into(),
        node: NodeId(1),
        disabled,
        service: svc.map(str::to_string),
    };
    let eps = vec![
        ("e1".into(), ep("web.1", "10.1.0.11", Some("s-web"), false)),
        ("e2".into(), ep("web.2", "10.1.0.12", Some("s-web"), false)),
        ("e3".into(), ep("web.3", "10.1.0.13", Some("s-web"), true)),
        ("e4".into(), ep("db", "10.1.0.20", None, false)),
    ];
    let svc = ServiceDef {
        id: "s-web".into(),
        name: "web".into(),
        aliases: vec![],
        mode: ServiceMode::Vip,
        ports: vec![],
        networks: vec!["n-blue".into()],
        vips: [("n-blue".to_string(), "10.1.0.100".parse().unwrap())].into(),
        creator: NodeId(1),
        created: 1,
        published: Vec::new(),
    };
    (vec![net], eps, vec![svc])
}

/// Binds UDP and TCP on `addr` inside namespace `path` from a throw-away thread; returns
/// the sockets (they keep that namespace for life) or the errors.
fn bind_in(
    path: &Path,
    addr: SocketAddr,
) -> (std::io::Result<UdpSocket>, std::io::Result<TcpListener>) {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
        (UdpSocket::bind(addr), TcpListener::bind(addr))
    })
    .join()
    .unwrap()
}

#[test]
fn serial_a_direct_bind_of_127_0_0_11_53_blocks_a_wildcard_port_53_server() {
    if let Some(why) = preflight(&["ip", "nft"]) {
        println!("skipped: {why}");
        return;
    }
    let mut env = Env::new("bind");
    let (_, path) = env.add_container("c1");
    let (udp, tcp) = bind_in(&path, "127.0.0.11:53".parse().unwrap());
    let (_udp, _tcp) = (udp.unwrap(), tcp.unwrap());
    let (wu, wt) = bind_in(&path, "0.0.0.0:53".parse().unwrap());
    let (wu, wt) = (wu.unwrap_err(), wt.unwrap_err());
    println!("wildcard :53 after a 127.0.0.11:53 bind: udp {wu}, tcp {wt}");
    assert_eq!(wu.kind(), std::io::ErrorKind::AddrInUse);
    assert_eq!(wt.kind(), std::io::ErrorKind::AddrInUse);
}

#[test]
fn serial_a_container_resolves_internal_names_forwards_the_rest_and_loses_the_resolver_on_removal()
{
    if let Some(why) = preflight(&["ip", "nft", "dig", "getent"]) {
        println!("skipped: {why}");
        return;
    }
    let mut env = Env::new("main");
    let (c1, c1_path) = env.add_container("c1");
    env.enter_host();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The upstream: a stub on the host namespace's loopback, UDP and TCP on one port.
        let up_udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up_udp.local_addr().unwrap();
        let up_tcp = tokio::net::TcpListener::bind(up_addr).await.unwrap();
        let big: Vec<Ipv4Addr> = (1..=100).map(|i| Ipv4Addr::new(198, 51, 100, i)).collect();
        let stub = Stub::new([
            ("external.test", vec![Ipv4Addr::new(192, 0, 2, 1)]),
            ("big.test", big),
        ]);
        let stub_udp = tokio::spawn(stub.clone().serve_udp(up_udp));
        let stub_tcp = tokio::spawn(stub.clone().serve_tcp(up_tcp));

        let metrics = DnsMetrics::default();
        let config = DnsConfig {
            upstreams: vec![up_addr],
            forward_timeout: Duration::from_millis(1500),
            ..DnsConfig::default()
        };
        let resolver = Resolver::new(config, metrics.clone());
        let (n, e, s) = tables();
        resolver.set_zone(Arc::new(Zone::build(&n, &e, &s)));
        let containers: BTreeMap<PathBuf, Vec<String>> =
            [(c1_path.clone(), vec!["n-blue".to_string()])].into();
        let report = resolver.sync(&containers).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.started, vec![c1_path.clone()]);
        // Idempotent.
        let again = resolver.sync(&containers).await;
        assert!(again.started.is_empty() && again.errors.is_empty());
        let ports = resolver.ports(&c1_path).await.unwrap();
        println!("resolver ports in {c1}: {ports:?}");
        let table = stdout(&in_ns(&c1, &["nft", "list", "table", "ip", "swarmnet_dns"]));
        assert!(table.contains("dnat to 127.0.0.11"), "{table}");

        let c = c1.clone();
        let blocking = move |f: fn(&str) -> String| {
            let c = c.clone();
            async move { tokio::task::spawn_blocking(move || f(&c)).await.unwrap() }
        };
        // A, the service VIP, the network-qualified name, aliases, tasks.
        let out = blocking(|c| dig(c, &["web"])).await;
        assert_eq!(answers(&out), vec!["10.1.0.100"], "{out}");
        assert!(out.contains("status: NOERROR"));
        let out = blocking(|c| dig(c, &["DataBase.Blue."])).await;
        assert_eq!(answers(&out), vec!["10.1.0.20"], "{out}");
        let out = blocking(|c| dig(c, &["tasks.web"])).await;
        assert_eq!(answers(&out), vec!["10.1.0.11", "10.1.0.12"], "{out}");
        // AAAA of an internal name: empty NOERROR (not forwarded: the stub never sees it).
        let before = stub.udp_queries.load(Ordering::Relaxed);
        let out = blocking(|c| dig(c, &["web", "AAAA"])).await;
        assert_eq!(status(&out).as_deref(), Some("NOERROR"), "{out}");
        assert!(answers(&out).is_empty(), "{out}");
        assert_eq!(stub.udp_queries.load(Ordering::Relaxed), before);
        // PTR of an endpoint and of the VIP.
        let out = blocking(|c| dig(c, &["-x", "10.1.0.20"])).await;
        assert_eq!(answers(&out), vec!["db.blue."], "{out}");
        let out = blocking(|c| dig(c, &["-x", "10.1.0.100"])).await;
        assert_eq!(answers(&out), vec!["web.blue."], "{out}");
        // TCP.
        let out = blocking(|c| dig(c, &["+tcp", "tasks.web"])).await;
        assert_eq!(answers(&out), vec!["10.1.0.11", "10.1.0.12"], "{out}");
        // Forwarded over UDP and over TCP.
        let out = blocking(|c| dig(c, &["external.test"])).await;
        assert_eq!(answers(&out), vec!["192.0.2.1"], "{out}");
        let tcp_before = stub.tcp_queries.load(Ordering::Relaxed);
        let out = blocking(|c| dig(c, &["+tcp", "external.test"])).await;
        assert_eq!(answers(&out), vec!["192.0.2.1"], "{out}");
        assert_eq!(stub.tcp_queries.load(Ordering::Relaxed), tcp_before + 1);
        let out = blocking(|c| dig(c, &["nosuch.test"])).await;
        assert_eq!(status(&out).as_deref(), Some("NXDOMAIN"), "{out}");
        // A large upstream answer: the stub truncates over UDP, the resolver retries over
        // TCP, truncates to the client's 1232 bytes, dig retries over TCP and gets all 100.
        let tcp_before = stub.tcp_queries.load(Ordering::Relaxed);
        let out = blocking(|c| dig(c, &["big.test"])).await;
        assert_eq!(answers(&out).len(), 100, "{out}");
        assert!(stub.tcp_queries.load(Ordering::Relaxed) >= tcp_before + 2);

        // glibc through the resolv.conf our function writes (ip netns exec bind-mounts it).
        let dir = PathBuf::from(format!("/etc/netns/{c1}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("resolv.conf");
        let host = parse_resolv_conf("search example.invalid\noptions ndots:3 timeout:1\n");
        write_resolv_conf(&conf, &render_resolv_conf(&host, &[], 0)).unwrap();
        let c = c1.clone();
        let (db, web, missing) = tokio::task::spawn_blocking(move || {
            (
                in_ns(&c, &["getent", "hosts", "db"]),
                in_ns(&c, &["getent", "hosts", "web.blue"]),
                in_ns(&c, &["getent", "hosts", "nosuch.test"]),
            )
        })
        .await
        .unwrap();
        remove_resolv_conf(&conf).unwrap();
        let _ = std::fs::remove_dir(&dir);
        assert!(!conf.exists());
        assert!(stdout(&db).starts_with("10.1.0.20"), "{db:?}");
        assert!(stdout(&web).starts_with("10.1.0.100"), "{web:?}");
        assert_eq!(missing.status.code(), Some(2), "{missing:?}");

        // The container's own server binds 0.0.0.0:53 alongside the resolver, which keeps
        // answering 127.0.0.11:53.
        let (own_udp, own_tcp) = bind_in(&c1_path, "0.0.0.0:53".parse().unwrap());
        let (_own_udp, _own_tcp) = (own_udp.unwrap(), own_tcp.unwrap());
        let out = blocking(|c| dig(c, &["db"])).await;
        assert_eq!(answers(&out), vec!["10.1.0.20"], "{out}");
        let out = blocking(|c| dig(c, &["+tcp", "db"])).await;
        assert_eq!(answers(&out), vec!["10.1.0.20"], "{out}");

        // Upstream gone (port closed): SERVFAIL, quickly.
        stub_udp.abort();
        stub_tcp.abort();
        let _ = stub_udp.await;
        let _ = stub_tcp.await;
        let t = Instant::now();
        let out = blocking(|c| dig(c, &["external.test"])).await;
        println!(
            "SERVFAIL with the upstream port closed after {:?}",
            t.elapsed()
        );
        assert_eq!(status(&out).as_deref(), Some("SERVFAIL"), "{out}");
        // Upstream black-holed (bound, never answers): SERVFAIL after the timeout.
        let hole = tokio::net::UdpSocket::bind(up_addr).await.unwrap();
        let t = Instant::now();
        let out = blocking(|c| dig(c, &["external.test"])).await;
        println!(
            "SERVFAIL with a silent upstream after {:?} (timeout 1.5 s)",
            t.elapsed()
        );
        assert_eq!(status(&out).as_deref(), Some("SERVFAIL"), "{out}");
        drop(hole);

        let rendered = {
            let mut r = prometheus_client::registry::Registry::default();
            metrics.register(&mut r);
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, &r).unwrap();
            s
        };
        assert!(rendered.contains("outcome=\"forwarded\""), "{rendered}");
        assert!(rendered.contains("outcome=\"servfail\""), "{rendered}");
        assert!(rendered.contains("reason=\"timeout\""), "{rendered}");

        // Removed from sync: no answer, no nft table.
        let report = resolver.sync(&BTreeMap::new()).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.stopped, vec![c1_path.clone()]);
        let c = c1.clone();
        let (list, out) = tokio::task::spawn_blocking(move || {
            (
                in_ns(&c, &["nft", "list", "table", "ip", "swarmnet_dns"]),
                dig(&c, &["+time=1", "db"]),
            )
        })
        .await
        .unwrap();
        assert!(!list.status.success(), "the table is still there");
        assert!(answers(&out).is_empty() && status(&out).is_none(), "{out}");
        assert!(resolver.shutdown().await.is_empty());
    });
}

#[test]
fn serial_sync_reports_a_bad_namespace_and_still_serves_the_others() {
    if let Some(why) = preflight(&["ip", "nft", "dig"]) {
        println!("skipped: {why}");
        return;
    }
    let mut env = Env::new("multi");
    let (c1, c1_path) = env.add_container("c1");
    let (c2, c2_path) = env.add_container("c2");
    env.enter_host();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resolver = Resolver::new(
            DnsConfig {
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                ..DnsConfig::default()
            },
            DnsMetrics::default(),
        );
        let (n, e, s) = tables();
        resolver.set_zone(Arc::new(Zone::build(&n, &e, &s)));
        let missing = PathBuf::from("/var/run/netns/dnt-no-such-namespace");
        let own = PathBuf::from("/proc/thread-self/ns/net");
        let mut containers: BTreeMap<PathBuf, Vec<String>> = [
            (c1_path.clone(), vec!["n-blue".to_string()]),
            (c2_path.clone(), vec![]),
            (missing.clone(), vec!["n-blue".to_string()]),
        ]
        .into();
        let report = resolver.sync(&containers).await;
        assert_eq!(report.started.len(), 2, "{report:?}");
        assert_eq!(report.errors.len(), 1, "{report:?}");
        assert_eq!(report.errors[0].0, missing);
        // c2 is on no network yet: db is not an internal name there (forwarded to a closed
        // port: SERVFAIL). After an update of its networks, it is.
        let c = c2.clone();
        let out = tokio::task::spawn_blocking(move || dig(&c, &["db"]))
            .await
            .unwrap();
        assert_eq!(status(&out).as_deref(), Some("SERVFAIL"), "{out}");
        containers.insert(c2_path.clone(), vec!["n-blue".into()]);
        containers.remove(&missing);
        let report = resolver.sync(&containers).await;
        assert_eq!(report.updated, vec![c2_path.clone()]);
        let (c, d) = (c1.clone(), c2.clone());
        let (o1, o2) = tokio::task::spawn_blocking(move || (dig(&c, &["db"]), dig(&d, &["db"])))
            .await
            .unwrap();
        assert_eq!(answers(&o1), vec!["10.1.0.20"], "{o1}");
        assert_eq!(answers(&o2), vec!["10.1.0.20"], "{o2}");
        // A DNAT table deleted by hand is put back by the periodic repair.
        let (repaired, errors) = resolver.repair().await;
        assert!(
            repaired.is_empty() && errors.is_empty(),
            "{repaired:?} {errors:?}"
        );
        let del = in_ns(&c1, &["nft", "delete", "table", "ip", "swarmnet_dns"]);
        assert!(del.status.success());
        let (repaired, errors) = resolver.repair().await;
        assert_eq!(repaired, vec![c1_path.clone()], "{errors:?}");
        let c = c1.clone();
        let o1 = tokio::task::spawn_blocking(move || dig(&c, &["db"]))
            .await
            .unwrap();
        assert_eq!(answers(&o1), vec!["10.1.0.20"], "after the repair: {o1}");
        // The agent's own namespace is refused.
        containers.insert(own.clone(), vec![]);
        let report = resolver.sync(&containers).await;
        assert_eq!(report.errors.len(), 1, "{report:?}");
        assert!(
            report.errors[0].1.to_string().contains("own namespace"),
            "{report:?}"
        );
        assert!(resolver.shutdown().await.is_empty());
        for c in [&c1, &c2] {
            let l = in_ns(c, &["nft", "list", "table", "ip", "swarmnet_dns"]);
            assert!(!l.status.success(), "table left in {c}");
        }
    });
}

/// A TCP connection to `127.0.0.11:53` made from inside namespace `path` (through the DNAT).
fn tcp_in(path: &Path) -> std::net::TcpStream {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        setns(&f, CloneFlags::CLONE_NEWNET).unwrap();
        let s = std::net::TcpStream::connect("127.0.0.11:53").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    })
    .join()
    .unwrap()
}

/// Sends one length-prefixed query for `name` (A) and reads the reply; `None` when the
/// connection is closed.
fn tcp_query(
    s: &mut std::net::TcpStream,
    name: &str,
    id: u16,
) -> Option<hickory_proto::op::Message> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    use std::io::{Read, Write};
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let b = m.to_vec().unwrap();
    let mut framed = (b.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&b);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Message::from_vec(&buf).ok()
}

#[test]
fn serial_tcp_serves_several_queries_per_connection_closes_idle_and_excess_ones_and_forwards_are_bounded()
 {
    if let Some(why) = preflight(&["ip", "nft", "dig"]) {
        println!("skipped: {why}");
        return;
    }
    let mut env = Env::new("tcp");
    let (c1, c1_path) = env.add_container("c1");
    env.enter_host();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let metrics = DnsMetrics::default();
        let resolver = Resolver::new(
            DnsConfig {
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                tcp_idle_timeout: Duration::from_millis(800),
                max_tcp_connections: 2,
                max_concurrent_forwards: 0,
                ..DnsConfig::default()
            },
            metrics.clone(),
        );
        let (n, e, s) = tables();
        resolver.set_zone(Arc::new(Zone::build(&n, &e, &s)));
        let containers: BTreeMap<PathBuf, Vec<String>> =
            [(c1_path.clone(), vec!["n-blue".to_string()])].into();
        assert!(resolver.sync(&containers).await.errors.is_empty());
        let path = c1_path.clone();
        let (a, b, third, idle_closed) = tokio::task::spawn_blocking(move || {
            let mut a = tcp_in(&path);
            let r1 = tcp_query(&mut a, "db", 1).map(|m| (m.id, m.answers.len()));
            let r2 = tcp_query(&mut a, "tasks.web", 2).map(|m| (m.id, m.answers.len()));
            let mut b = tcp_in(&path);
            let rb = tcp_query(&mut b, "web", 3).map(|m| m.answers.len());
            // A third connection while two are open: closed at once.
            let mut c = tcp_in(&path);
            let third = tcp_query(&mut c, "web", 4);
            // After the idle timeout, `a` is closed by the resolver.
            std::thread::sleep(Duration::from_millis(1500));
            let idle = tcp_query(&mut a, "db", 5);
            ((r1, r2), rb, third.is_none(), idle.is_none())
        })
        .await
        .unwrap();
        assert_eq!(a, (Some((1, 1)), Some((2, 2))));
        assert_eq!(b, Some(1));
        assert!(third, "a third connection was served");
        assert!(idle_closed, "an idle connection stayed open");
        assert_eq!(metrics.tcp_rejected.get(), 1);
        // No forward slot at all: SERVFAIL at once, counted.
        let c = c1.clone();
        let out = tokio::task::spawn_blocking(move || dig(&c, &["external.test"]))
            .await
            .unwrap();
        assert_eq!(status(&out).as_deref(), Some("SERVFAIL"), "{out}");
        assert_eq!(metrics.forwards_rejected.get(), 1);
        assert!(resolver.shutdown().await.is_empty());
    });
}
