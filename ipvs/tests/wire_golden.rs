//! Golden byte fixtures for every message the crate emits and parses.
//!
//! The fixtures under `tests/fixtures/` were derived by hand from the uapi layout (see its
//! README); they are *not* produced by this crate. Each emitted message must encode to
//! exactly its fixture and parse back to the same value; each kernel reply must parse to
//! the value written next to it here.
//!
//! `UPDATE_FIXTURES=1` does not rewrite a fixture: it writes `<name>.actual.hex` beside it
//! for review, and the comparison still fails. A wrong encoding can therefore never pass
//! by regeneration; a deliberate change means editing the hand-derived fixture.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipvs::message::{FamilyReply, Frame, Received, family_request, parse_frames};
use ipvs::reply::{dest_of, service_of};
use ipvs::{
    DestConns, Destination, Family, ForwardMethod, Info, IpvsMessage, Protocol, Request, Service,
    ServiceFlags, ServiceKey, Stats,
};

const FAMILY: u16 = 0x25;
const SEQ: u32 = 1;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn hex_lines(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|c| {
            c.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
                + "\n"
        })
        .collect()
}

fn load(name: &str) -> Vec<u8> {
    let path = fixture_path(&format!("{name}.hex"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "fixture {name}: odd hex digits"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Asserts `produced` equals fixture `name`; with UPDATE_FIXTURES=1 also writes
/// `<name>.actual.hex` for review (never the fixture itself).
fn assert_emits(name: &str, produced: &[u8]) {
    if std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| !v.is_empty() && v != "0") {
        let path = fixture_path(&format!("{name}.actual.hex"));
        std::fs::write(&path, hex_lines(produced)).expect("write .actual.hex");
        eprintln!(
            "wrote {} for review; the fixture is unchanged",
            path.display()
        );
    }
    let expected = load(name);
    assert_eq!(
        hex_lines(produced),
        hex_lines(&expected),
        "encoding differs from hand-derived fixture {name}"
    );
}

fn only_message<T: std::fmt::Debug + Clone>(frames: &[Received<T>]) -> T {
    match frames {
        [
            Received {
                frame: Frame::Message(m),
                ..
            },
        ] => m.clone(),
        other => panic!("want one message, got {other:?}"),
    }
}

/// Encodes `request` against its fixture and parses the fixture back to the same message.
fn check_request(name: &str, request: &Request) {
    assert_emits(name, &request.to_bytes(FAMILY, SEQ));
    let frames = parse_frames::<IpvsMessage>(&load(name)).expect("fixture parses");
    assert_eq!(frames[0].seq, SEQ);
    assert_eq!(only_message(&frames), request.message);
}

fn fwmark_key() -> ServiceKey {
    ServiceKey::fwmark(0x100)
}

fn tcp_key() -> ServiceKey {
    ServiceKey::Addr {
        protocol: Protocol::Tcp,
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        port: 80,
    }
}

fn backend() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 5))
}

// ---------------------------------------------------------------------------------------------
// Emitted
// ---------------------------------------------------------------------------------------------

#[test]
fn the_family_lookup_request_matches_its_fixture() {
    assert_emits("req_family_lookup", &family_request("IPVS", SEQ));
}

#[test]
fn a_new_fwmark_service_request_matches_its_fixture() {
    let svc = Service::new(fwmark_key());
    check_request(
        "req_new_service_fwmark",
        &Request::new_service(&svc).unwrap(),
    );
}

#[test]
fn a_set_service_request_for_a_tcp_service_matches_its_fixture() {
    let svc = Service {
        scheduler: "wrr".into(),
        flags: ServiceFlags {
            flags: ipvs::constants::IP_VS_SVC_F_PERSISTENT,
            mask: u32::MAX,
        },
        timeout: 300,
        netmask: u32::from_ne_bytes([255, 255, 255, 255]),
        ..Service::new(tcp_key())
    };
    check_request("req_set_service_tcp", &Request::set_service(&svc).unwrap());
}

#[test]
fn del_and_get_service_requests_carry_only_the_key() {
    check_request(
        "req_del_service_fwmark",
        &Request::del_service(&fwmark_key()),
    );
    check_request(
        "req_get_service_fwmark",
        &Request::get_service(&fwmark_key()),
    );
}

#[test]
fn list_requests_are_dumps_matching_their_fixtures() {
    check_request("req_list_services", &Request::list_services());
    check_request("req_list_dests", &Request::list_dests(&fwmark_key()));
}

#[test]
fn destination_requests_match_their_fixtures() {
    let dest = Destination::masquerade(backend(), 0);
    check_request(
        "req_new_dest_masq",
        &Request::new_dest(&fwmark_key(), &dest),
    );
    let drained = Destination {
        weight: 0,
        ..Destination::masquerade(backend(), 8080)
    };
    check_request(
        "req_set_dest_drain",
        &Request::set_dest(&fwmark_key(), &drained),
    );
    check_request(
        "req_del_dest",
        &Request::del_dest(&fwmark_key(), &backend(), 0),
    );
}

#[test]
fn flush_and_get_info_requests_match_their_fixtures() {
    check_request("req_flush", &Request::flush());
    check_request("req_get_info", &Request::get_info());
}

#[test]
fn reply_only_counters_are_never_sent() {
    let with_stats = Service {
        stats: Some(Stats {
            conns: 9,
            ..Stats::default()
        }),
        ..Service::new(fwmark_key())
    };
    check_request(
        "req_new_service_fwmark",
        &Request::new_service(&with_stats).unwrap(),
    );
    let busy = Destination {
        conns: Some(DestConns {
            active: 4,
            ..DestConns::default()
        }),
        ..Destination::masquerade(backend(), 0)
    };
    check_request(
        "req_new_dest_masq",
        &Request::new_dest(&fwmark_key(), &busy),
    );
}

// ---------------------------------------------------------------------------------------------
// Parsed
// ---------------------------------------------------------------------------------------------

#[test]
fn the_family_reply_yields_the_family_id() {
    let frames = parse_frames::<FamilyReply>(&load("reply_family")).unwrap();
    assert_eq!(
        only_message(&frames),
        FamilyReply {
            family_id: Some(0x25)
        }
    );
}

#[test]
fn enoent_to_the_family_lookup_is_an_error_frame_with_errno_2() {
    let frames = parse_frames::<FamilyReply>(&load("reply_family_enoent")).unwrap();
    assert_eq!(
        frames,
        vec![Received {
            seq: 1,
            frame: Frame::Error(2)
        }]
    );
}

#[test]
fn acks_and_errors_parse_with_their_sequence_numbers() {
    let ack = parse_frames::<IpvsMessage>(&load("reply_ack")).unwrap();
    assert_eq!(
        ack,
        vec![Received {
            seq: 1,
            frame: Frame::Ack
        }]
    );
    let err = parse_frames::<IpvsMessage>(&load("reply_error_esrch")).unwrap();
    assert_eq!(
        err,
        vec![Received {
            seq: 1,
            frame: Frame::Error(3)
        }]
    );
}

#[test]
fn a_service_reply_with_both_stats_sets_parses_to_the_service() {
    let frames = parse_frames::<IpvsMessage>(&load("reply_service_fwmark")).unwrap();
    let svc = service_of(&only_message(&frames)).unwrap();
    assert_eq!(
        svc,
        Service {
            flags: ServiceFlags {
                flags: ipvs::constants::IP_VS_SVC_F_HASHED,
                mask: u32::MAX
            },
            stats: Some(Stats {
                conns: 3,
                in_pkts: 30,
                out_pkts: 25,
                in_bytes: 2000,
                out_bytes: 15000,
                ..Stats::default()
            }),
            ..Service::new(fwmark_key())
        }
    );
}

#[test]
fn a_service_dump_datagram_yields_the_service_then_done() {
    let frames = parse_frames::<IpvsMessage>(&load("reply_services_dump")).unwrap();
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f.seq == 2));
    assert_eq!(frames[1].frame, Frame::Done);
    let Frame::Message(msg) = &frames[0].frame else {
        panic!("first frame: {:?}", frames[0].frame)
    };
    assert_eq!(
        service_of(msg).unwrap(),
        Service {
            key: tcp_key(),
            scheduler: "wrr".into(),
            pe_name: None,
            flags: ServiceFlags {
                flags: 3,
                mask: u32::MAX
            },
            timeout: 300,
            netmask: u32::MAX,
            stats: Some(Stats::default()),
        }
    );
}

#[test]
fn a_destination_dump_datagram_yields_the_destination_then_done() {
    let frames = parse_frames::<IpvsMessage>(&load("reply_dests_dump")).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].frame, Frame::Done);
    let Frame::Message(msg) = &frames[0].frame else {
        panic!("first frame: {:?}", frames[0].frame)
    };
    assert_eq!(
        dest_of(msg, Family::Inet).unwrap(),
        Destination {
            addr: backend(),
            port: 0,
            fwd_method: ForwardMethod::Masquerade,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            conns: Some(DestConns {
                active: 2,
                inactive: 1,
                persistent: 0
            }),
            stats: Some(Stats::default()),
        }
    );
}

#[test]
fn the_info_reply_parses_to_version_and_table_size() {
    let frames = parse_frames::<IpvsMessage>(&load("reply_info")).unwrap();
    let info = Info::from_message(&only_message(&frames)).unwrap();
    assert_eq!(
        info,
        Info {
            version: 0x0001_0201,
            conn_tab_size: 4096
        }
    );
    assert_eq!(info.version_triple(), (1, 2, 1));
}
