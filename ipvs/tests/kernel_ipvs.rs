//! The crate against a real kernel's IPVS: services by fwmark and by address, destinations
//! with weights, update, delete, list, flush, info and the kernel's refusals.
//!
//! The CI kernel has no IPVS: there every test prints "skipped: IPVS not available" and
//! passes. The kernel-VM test `cluster-tests/tests/vm_ipvs.rs` runs this binary inside a
//! guest booted from Debian's stock kernel with `SWARMNET_IN_VM=1`, where a missing IPVS is
//! a failure. Each test works in a network namespace of its own (`ipvst-<pid>-<tag>`),
//! removed on drop, also on panic.
//!
//! With `IPVS_CAPTURE_DIR=<dir>` the capture test also writes the kernel's raw replies as
//! `kernel_*.hex` fixtures into `<dir>` (see `tests/fixtures/README.md` for how they are
//! recaptured and committed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;

use ipvs::message::{FamilyReply, Frame, family_request, parse_frames};
use ipvs::reply::{dest_of, service_of};
use ipvs::{
    Destination, Family, ForwardMethod, Handle, IpvsMessage, Protocol, Request, Service,
    ServiceFlags, ServiceKey,
};

/// Why this test cannot run here (not root, no IPVS), or `None`. Inside the kernel VM a
/// missing IPVS is a failure, never a skip.
fn unavailable() -> Option<String> {
    let in_vm = std::env::var_os("SWARMNET_IN_VM").is_some();
    let why = if !nix::unistd::Uid::effective().is_root() {
        "needs root (network namespaces)".to_string()
    } else {
        match ipvs::probe() {
            Ok(()) => return None,
            Err(e) => format!("IPVS not available on this kernel ({e})"),
        }
    };
    assert!(!in_vm, "inside the kernel VM: {why}");
    Some(why)
}

macro_rules! ipvs_or_skip {
    () => {
        if let Some(why) = unavailable() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// A network namespace of this test; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("ipvst-{}-{tag}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {name}");
        // lo up: the kernel checks an IPv4 destination's address type against the
        // namespace's local table, which a fresh namespace only gets with an address
        // (without it NEW_DEST fails with EINVAL).
        let st = Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .expect("ip link set lo up");
        assert!(st.success(), "lo up in {name}");
        Netns { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    fn handle(&self) -> Handle {
        Handle::in_netns(self.path()).expect("IPVS handle in the test namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn tcp_key() -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: v4("10.0.0.2"),
        port: 80,
    }
}

fn weighted(addr: &str, port: u16, weight: u32) -> Destination {
    Destination {
        weight,
        ..Destination::masquerade(v4(addr), port)
    }
}

/// `(addr, port, weight, method)` of every destination of `key`, sorted.
fn dests(h: &Handle, key: ServiceKey) -> Vec<(IpAddr, u16, u32, ForwardMethod)> {
    let mut v: Vec<_> = h
        .destination()
        .list(key)
        .execute()
        .expect("GET_DEST dump")
        .into_iter()
        .map(|d| (d.addr, d.port, d.weight, d.fwd_method))
        .collect();
    v.sort();
    v
}

#[test]
fn serial_fwmark_and_address_services_are_created_read_back_and_listed() {
    ipvs_or_skip!();
    let ns = Netns::new("svc");
    let h = ns.handle();
    assert!(h.service().list().execute().unwrap().is_empty());
    let fw = ServiceKey::fwmark(0x10_0001);
    h.service().add(Service::new(fw)).execute().unwrap();
    let tcp = Service {
        scheduler: "wrr".into(),
        ..Service::new(tcp_key())
    };
    h.service().add(tcp.clone()).execute().unwrap();
    let udp6 = ServiceKey::Addr {
        protocol: Protocol::Udp,
        addr: IpAddr::V6("fd00::53".parse::<Ipv6Addr>().unwrap()),
        port: 53,
    };
    h.service()
        .add(Service {
            netmask: 128,
            ..Service::new(udp6)
        })
        .execute()
        .unwrap();

    let got = h.service().get(fw).execute().unwrap();
    assert_eq!(got.key, fw);
    assert_eq!(got.scheduler, "rr");
    assert_eq!(got.pe_name, None);
    assert_eq!(got.timeout, 0);
    assert_eq!(got.netmask, u32::MAX);
    // The kernel reports its own flags (HASHED) with a full mask.
    assert_eq!(
        got.flags,
        ServiceFlags {
            flags: ipvs::constants::IP_VS_SVC_F_HASHED,
            mask: u32::MAX
        }
    );
    assert_eq!(got.stats.map(|s| s.conns), Some(0));
    let got = h.service().get(tcp_key()).execute().unwrap();
    assert_eq!((got.key, got.scheduler.as_str()), (tcp_key(), "wrr"));
    let got = h.service().get(udp6).execute().unwrap();
    assert_eq!((got.key, got.netmask), (udp6, 128));

    let mut keys: Vec<ServiceKey> = h
        .service()
        .list()
        .execute()
        .unwrap()
        .into_iter()
        .map(|s| s.key)
        .collect();
    keys.sort();
    let mut want = vec![fw, tcp_key(), udp6];
    want.sort();
    assert_eq!(keys, want);
}

#[test]
fn serial_a_service_update_changes_scheduler_persistence_and_netmask() {
    ipvs_or_skip!();
    let ns = Netns::new("set");
    let h = ns.handle();
    h.service().add(Service::new(tcp_key())).execute().unwrap();
    let persistent = Service {
        scheduler: "sh".into(),
        flags: ServiceFlags {
            flags: ipvs::constants::IP_VS_SVC_F_PERSISTENT,
            mask: u32::MAX,
        },
        timeout: 300,
        netmask: u32::from_ne_bytes([255, 255, 255, 0]),
        ..Service::new(tcp_key())
    };
    h.service().set(persistent).execute().unwrap();
    let got = h.service().get(tcp_key()).execute().unwrap();
    assert_eq!(got.scheduler, "sh");
    assert_eq!(got.timeout, 300);
    assert_eq!(got.netmask, u32::from_ne_bytes([255, 255, 255, 0]));
    assert_eq!(
        got.flags.flags & ipvs::constants::IP_VS_SVC_F_PERSISTENT,
        ipvs::constants::IP_VS_SVC_F_PERSISTENT,
        "{:?}",
        got.flags
    );
}

#[test]
fn serial_destinations_keep_their_weights_ports_and_are_updated_and_deleted() {
    ipvs_or_skip!();
    let ns = Netns::new("dst");
    let h = ns.handle();
    let fw = ServiceKey::fwmark(0x10_0002);
    h.service().add(Service::new(fw)).execute().unwrap();
    h.destination()
        .add(fw, weighted("10.0.1.5", 0, 1))
        .execute()
        .unwrap();
    h.destination()
        .add(fw, weighted("10.0.1.6", 8080, 3))
        .execute()
        .unwrap();
    assert_eq!(
        dests(&h, fw),
        vec![
            (v4("10.0.1.5"), 0, 1, ForwardMethod::Masquerade),
            (v4("10.0.1.6"), 8080, 3, ForwardMethod::Masquerade)
        ]
    );
    // Drain: weight 0.
    h.destination()
        .set(fw, weighted("10.0.1.6", 8080, 0))
        .execute()
        .unwrap();
    assert_eq!(dests(&h, fw)[1].2, 0);
    // Connection counts come with every destination of a dump.
    let all = h.destination().list(fw).execute().unwrap();
    assert!(all.iter().all(|d| d.conns.is_some() && d.stats.is_some()));
    h.destination()
        .del(fw, v4("10.0.1.5"), 0)
        .execute()
        .unwrap();
    assert_eq!(
        dests(&h, fw),
        vec![(v4("10.0.1.6"), 8080, 0, ForwardMethod::Masquerade)]
    );
    // An address service: destination port translation.
    h.service().add(Service::new(tcp_key())).execute().unwrap();
    h.destination()
        .add(tcp_key(), weighted("10.0.1.7", 8080, 2))
        .execute()
        .unwrap();
    assert_eq!(
        dests(&h, tcp_key()),
        vec![(v4("10.0.1.7"), 8080, 2, ForwardMethod::Masquerade)]
    );
    // Deleting a service takes its destinations along; the dump of an absent service is
    // empty, not an error.
    h.service().del(fw).execute().unwrap();
    assert_eq!(h.destination().list(fw).execute().unwrap(), vec![]);
    assert!(h.service().get(fw).execute().unwrap_err().is_not_found());
}

#[test]
fn serial_the_kernels_refusals_map_to_exists_and_not_found() {
    ipvs_or_skip!();
    let ns = Netns::new("err");
    let h = ns.handle();
    let fw = ServiceKey::fwmark(0x10_0003);
    let missing = h.service().get(fw).execute().unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert!(h.service().del(fw).execute().unwrap_err().is_not_found());
    h.service().add(Service::new(fw)).execute().unwrap();
    let dup = h.service().add(Service::new(fw)).execute().unwrap_err();
    assert!(dup.is_exists(), "{dup}");
    h.destination()
        .add(fw, weighted("10.0.1.5", 0, 1))
        .execute()
        .unwrap();
    let dup = h
        .destination()
        .add(fw, weighted("10.0.1.5", 0, 1))
        .execute()
        .unwrap_err();
    assert!(dup.is_exists(), "{dup}");
    let gone = h
        .destination()
        .del(fw, v4("10.0.9.9"), 0)
        .execute()
        .unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    let gone = h
        .destination()
        .set(fw, weighted("10.0.9.9", 0, 1))
        .execute()
        .unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    let bad = h
        .service()
        .add(Service {
            scheduler: "nosuchsched".into(),
            ..Service::new(tcp_key())
        })
        .execute()
        .unwrap_err();
    assert!(
        bad.errno().is_some(),
        "an unknown scheduler is refused: {bad}"
    );
}

#[test]
fn serial_flush_empties_the_namespace_and_info_reports_the_version() {
    ipvs_or_skip!();
    let ns = Netns::new("flush");
    let h = ns.handle();
    let info = h.info().execute().unwrap();
    println!("IPVS info: {info:?} {:?}", info.version_triple());
    assert_eq!(info.version_triple().0, 1);
    assert!(info.conn_tab_size > 0);
    for mark in 1..=3 {
        h.service()
            .add(Service::new(ServiceKey::fwmark(mark)))
            .execute()
            .unwrap();
    }
    assert_eq!(h.service().list().execute().unwrap().len(), 3);
    h.flush().execute().unwrap();
    assert!(h.service().list().execute().unwrap().is_empty());
    // Namespaces are separate IPVS instances.
    let other = Netns::new("flush2");
    let h2 = other.handle();
    h.service()
        .add(Service::new(ServiceKey::fwmark(9)))
        .execute()
        .unwrap();
    assert!(h2.service().list().execute().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Raw replies: parsed here, and written as fixtures with IPVS_CAPTURE_DIR
// ---------------------------------------------------------------------------------------------

/// Port id the capture socket binds (so captured replies carry a fixed `nlmsg_pid`).
pub const CAPTURE_PORT_ID: u32 = 0x1234;

/// Sends `bytes` (sequence `seq`) on a fresh generic-netlink socket bound to
/// [`CAPTURE_PORT_ID`] in the namespace, and returns every datagram up to the one that
/// ends the answer (ack, error or `NLMSG_DONE`).
fn raw_exchange(ns: &Netns, bytes: Vec<u8>, seq: u32, dump: bool) -> Vec<Vec<u8>> {
    ipvs::netns::run_in_netns(&ns.path(), move || {
        use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};
        let mut s = Socket::new(NETLINK_GENERIC).unwrap();
        s.bind(&SocketAddr::new(CAPTURE_PORT_ID, 0)).unwrap();
        s.send_to(&bytes, &SocketAddr::new(0, 0), 0).unwrap();
        let mut out = Vec::new();
        for _ in 0..64 {
            let (d, _) = s.recv_from_full().unwrap();
            let frames = parse_frames::<IpvsMessage>(&d).unwrap();
            out.push(d);
            let end = frames.iter().any(|f| {
                f.seq == seq
                    && match f.frame {
                        Frame::Done | Frame::Error(_) => true,
                        Frame::Ack => !dump,
                        _ => false,
                    }
            });
            if end {
                return out;
            }
        }
        panic!("no end of the answer after 64 datagrams");
    })
    .unwrap()
}

fn hex_fixture(what: &str, family: u16, datagrams: &[Vec<u8>]) -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut s = format!(
        "# {what}\n# Captured from Linux {} by ipvs/tests/kernel_ipvs.rs (IPVS family id {family:#06x}, \
         socket port id {CAPTURE_PORT_ID:#x}); see README.md. One line of hex per 16 bytes.\n",
        release.trim()
    );
    for (i, d) in datagrams.iter().enumerate() {
        s.push_str(&format!("# datagram {} ({} bytes)\n", i + 1, d.len()));
        for c in d.chunks(16) {
            let line: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&line.join(" "));
            s.push('\n');
        }
    }
    s
}

fn messages(datagrams: &[Vec<u8>]) -> Vec<Frame<IpvsMessage>> {
    datagrams
        .iter()
        .flat_map(|d| parse_frames::<IpvsMessage>(d).unwrap())
        .map(|r| r.frame)
        .collect()
}

/// The scenario whose replies become `tests/fixtures/kernel_*.hex` (fixed values, no
/// traffic, so the bytes are the same on every run of the same kernel):
/// fwmark 0x100 (rr) with destinations 10.0.1.5:0 weight 1 and 10.0.1.6:8080 weight 0, and
/// TCP 10.0.0.2:80 (wrr).
#[test]
fn serial_the_kernels_raw_replies_parse_and_can_be_captured_as_fixtures() {
    ipvs_or_skip!();
    let ns = Netns::new("cap");
    let h = ns.handle();
    let family = h.family_id();
    let fw = ServiceKey::fwmark(0x100);
    let mut captured: Vec<(&str, String)> = Vec::new();
    let mut seq = 1;
    let mut ack = |name: &'static str, what: &str, req: Request| {
        let d = raw_exchange(&ns, req.to_bytes(family, seq), seq, false);
        seq += 1;
        let f = messages(&d);
        captured.push((name, hex_fixture(what, family, &d)));
        f
    };
    let f = ack(
        "kernel_ack_new_service",
        "The ack of IPVS_CMD_NEW_SERVICE fwmark 0x100 (rr).",
        Request::new_service(&Service::new(fw)).unwrap(),
    );
    assert_eq!(f, vec![Frame::Ack]);
    ack(
        "kernel_ack_new_service_tcp",
        "The ack of IPVS_CMD_NEW_SERVICE TCP 10.0.0.2:80 (wrr).",
        Request::new_service(&Service {
            scheduler: "wrr".into(),
            ..Service::new(tcp_key())
        })
        .unwrap(),
    );
    for d in [weighted("10.0.1.5", 0, 1), weighted("10.0.1.6", 8080, 0)] {
        h.destination().add(fw, d).execute().unwrap();
    }
    let f = ack(
        "kernel_error_eexist",
        "The error of a second IPVS_CMD_NEW_DEST 10.0.1.5:0 to fwmark 0x100: EEXIST (17).",
        Request::new_dest(&fw, &weighted("10.0.1.5", 0, 1)),
    );
    assert_eq!(f, vec![Frame::Error(nix::libc::EEXIST)]);
    let f = ack(
        "kernel_error_esrch",
        "The error of IPVS_CMD_DEL_SERVICE of the absent fwmark 0x200: ESRCH (3).",
        Request::del_service(&ServiceKey::fwmark(0x200)),
    );
    assert_eq!(f, vec![Frame::Error(nix::libc::ESRCH)]);
    let f = ack(
        "kernel_service_get",
        "The reply to IPVS_CMD_GET_SERVICE fwmark 0x100, then the ack.",
        Request::get_service(&fw),
    );
    let [Frame::Message(m), Frame::Ack] = f.as_slice() else {
        panic!("GET_SERVICE answer: {f:?}")
    };
    assert_eq!(service_of(m).unwrap().key, fw);
    let f = ack(
        "kernel_info",
        "The reply to IPVS_CMD_GET_INFO, then the ack.",
        Request::get_info(),
    );
    let [Frame::Message(m), Frame::Ack] = f.as_slice() else {
        panic!("GET_INFO answer: {f:?}")
    };
    assert_eq!(ipvs::Info::from_message(m).unwrap().version_triple().0, 1);

    let d = raw_exchange(&ns, Request::list_services().to_bytes(family, 20), 20, true);
    let f = messages(&d);
    captured.push((
        "kernel_services_dump",
        hex_fixture(
            "The IPVS_CMD_GET_SERVICE dump: fwmark 0x100 (rr) and TCP 10.0.0.2:80 (wrr), then NLMSG_DONE.",
            family,
            &d,
        ),
    ));
    let mut keys: Vec<ServiceKey> = f
        .iter()
        .filter_map(|x| match x {
            Frame::Message(m) => Some(service_of(m).unwrap().key),
            _ => None,
        })
        .collect();
    keys.sort();
    assert_eq!(keys, vec![fw, tcp_key()]);
    assert_eq!(f.last(), Some(&Frame::Done));

    let d = raw_exchange(&ns, Request::list_dests(&fw).to_bytes(family, 21), 21, true);
    let f = messages(&d);
    captured.push((
        "kernel_dests_dump",
        hex_fixture(
            "The IPVS_CMD_GET_DEST dump of fwmark 0x100: 10.0.1.5:0 weight 1 and 10.0.1.6:8080 weight 0, then NLMSG_DONE.",
            family,
            &d,
        ),
    ));
    let mut got: Vec<(IpAddr, u16, u32)> = f
        .iter()
        .filter_map(|x| match x {
            Frame::Message(m) => {
                let d = dest_of(m, Family::Inet).unwrap();
                Some((d.addr, d.port, d.weight))
            }
            _ => None,
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![(v4("10.0.1.5"), 0, 1), (v4("10.0.1.6"), 8080, 0)]);

    let d = raw_exchange(&ns, family_request("IPVS", 30), 30, false);
    let frames: Vec<_> = d
        .iter()
        .flat_map(|x| parse_frames::<FamilyReply>(x).unwrap())
        .map(|r| r.frame)
        .collect();
    assert_eq!(
        frames,
        vec![
            Frame::Message(FamilyReply {
                family_id: Some(family)
            }),
            Frame::Ack
        ]
    );
    captured.push((
        "kernel_family",
        hex_fixture(
            "The controller's reply to CTRL_CMD_GETFAMILY \"IPVS\", then the ack.",
            family,
            &d,
        ),
    ));

    if let Some(dir) = std::env::var_os("IPVS_CAPTURE_DIR") {
        let dir = PathBuf::from(dir);
        for (name, text) in &captured {
            std::fs::write(dir.join(format!("{name}.hex")), text).unwrap();
        }
        println!("wrote {} fixtures to {}", captured.len(), dir.display());
    }
}
