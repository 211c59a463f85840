//! Property tests: attribute sets round-trip through bytes, and no input makes the reply
//! parser panic (the fuzz-style part: arbitrary bytes, and fixtures with random mutations).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipvs::message::{FamilyReply, Frame, parse_frames};
use ipvs::reply::{dest_of, service_of};
use ipvs::{
    DestConns, Destination, Family, ForwardMethod, Info, IpvsAttr, IpvsMessage, Protocol, Request,
    Service, ServiceFlags, ServiceKey, Stats,
};
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z]{1,15}"
}

fn stats() -> impl Strategy<Value = Option<Stats>> {
    proptest::option::of(any::<[u64; 10]>().prop_map(|v| Stats {
        conns: v[0],
        in_pkts: v[1],
        out_pkts: v[2],
        in_bytes: v[3],
        out_bytes: v[4],
        cps: v[5],
        in_pps: v[6],
        out_pps: v[7],
        in_bps: v[8],
        out_bps: v[9],
    }))
}

fn key() -> impl Strategy<Value = ServiceKey> {
    prop_oneof![
        (any::<bool>(), 1u32..).prop_map(|(v6, mark)| ServiceKey::Fwmark {
            af: if v6 { Family::Inet6 } else { Family::Inet },
            mark
        }),
        (any::<u16>(), addr(), any::<u16>()).prop_map(|(p, addr, port)| ServiceKey::Addr {
            protocol: Protocol::from_raw(p),
            addr,
            port
        }),
    ]
}

fn service() -> impl Strategy<Value = Service> {
    (
        key(),
        name(),
        proptest::option::of(name()),
        any::<(u32, u32)>(),
        any::<u32>(),
        any::<u32>(),
        stats(),
    )
        .prop_map(
            |(key, scheduler, pe_name, (flags, mask), timeout, netmask, stats)| Service {
                key,
                scheduler,
                pe_name,
                flags: ServiceFlags { flags, mask },
                timeout,
                netmask,
                stats,
            },
        )
}

fn destination(family: Family) -> impl Strategy<Value = Destination> {
    let addr = match family {
        Family::Inet => any::<[u8; 4]>()
            .prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
            .boxed(),
        Family::Inet6 => any::<[u8; 16]>()
            .prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)))
            .boxed(),
    };
    (
        addr,
        any::<u16>(),
        0u32..5,
        any::<(u32, u32, u32)>(),
        proptest::option::of(any::<(u32, u32, u32)>()),
        stats(),
    )
        .prop_map(
            |(addr, port, fwd, (weight, u, l), conns, stats)| Destination {
                addr,
                port,
                fwd_method: ForwardMethod::from_raw(fwd).expect("0..5"),
                weight,
                upper_threshold: u,
                lower_threshold: l,
                conns: conns.map(|(active, inactive, persistent)| DestConns {
                    active,
                    inactive,
                    persistent,
                }),
                stats,
            },
        )
}

/// Encodes `msg` as a kernel reply and parses it back.
fn reparse(msg: &IpvsMessage) -> IpvsMessage {
    let bytes = ipvs::message::encode(msg, 0x25, 0, 7);
    let frames = parse_frames::<IpvsMessage>(&bytes).expect("parses");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].seq, 7);
    match &frames[0].frame {
        Frame::Message(m) => m.clone(),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #[test]
    fn every_service_round_trips_through_its_attribute_bytes(svc in service()) {
        let msg = IpvsMessage {
            cmd: ipvs::constants::IPVS_CMD_NEW_SERVICE,
            attrs: vec![IpvsAttr::Service(svc.to_attrs())],
        };
        let back = reparse(&msg);
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(service_of(&back).unwrap(), svc);
    }

    #[test]
    fn every_destination_round_trips_through_its_attribute_bytes(
        (family, dest) in prop_oneof![Just(Family::Inet), Just(Family::Inet6)]
            .prop_flat_map(|f| (Just(f), destination(f)))
    ) {
        let msg = IpvsMessage {
            cmd: ipvs::constants::IPVS_CMD_NEW_DEST,
            attrs: vec![IpvsAttr::Dest(dest.to_attrs())],
        };
        let back = reparse(&msg);
        prop_assert_eq!(&back, &msg);
        prop_assert_eq!(dest_of(&back, family).unwrap(), dest);
    }

    #[test]
    fn every_request_parses_back_to_its_message(svc in service(), dest in destination(Family::Inet)) {
        let svc = Service { stats: None, ..svc };
        let requests = [
            Request::new_service(&svc).unwrap(),
            Request::set_service(&svc).unwrap(),
            Request::del_service(&svc.key),
            Request::get_service(&svc.key),
            Request::new_dest(&svc.key, &dest),
            Request::set_dest(&svc.key, &dest),
            Request::del_dest(&svc.key, &dest.addr, dest.port),
            Request::list_dests(&svc.key),
        ];
        for r in requests {
            let frames = parse_frames::<IpvsMessage>(&r.to_bytes(0x25, 1)).unwrap();
            prop_assert_eq!(&frames[0].frame, &Frame::Message(r.message.clone()));
        }
    }

    #[test]
    fn info_round_trips(version in any::<u32>(), conn_tab_size in any::<u32>()) {
        let info = Info { version, conn_tab_size };
        prop_assert_eq!(Info::from_message(&reparse(&info.to_message())).unwrap(), info);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reply_parser(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        consume(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_panic_the_parser(
        cmd in 0u8..20,
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        // A well-formed nlmsghdr + genlmsghdr, so the fuzzing reaches the attribute parsers.
        let len = (16 + 4 + body.len()) as u32;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&len.to_ne_bytes());
        bytes.extend_from_slice(&0x25u16.to_ne_bytes());
        bytes.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[cmd, 1, 0, 0]);
        bytes.extend_from_slice(&body);
        consume(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic_the_parser(
        which in 0usize..FIXTURES.len(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = load(FIXTURES[which]);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let end = cut.index(bytes.len() + 1);
        consume(&bytes[..end]);
        consume(&bytes);
    }
}

/// Feeds `bytes` to every parsing entry point; only `Err`s are allowed, never a panic.
fn consume(bytes: &[u8]) {
    if let Ok(frames) = parse_frames::<IpvsMessage>(bytes) {
        for f in frames {
            if let Frame::Message(m) = f.frame {
                let _ = service_of(&m);
                let _ = dest_of(&m, Family::Inet);
                let _ = dest_of(&m, Family::Inet6);
                let _ = Info::from_message(&m);
            }
        }
    }
    let _ = parse_frames::<FamilyReply>(bytes);
}

const FIXTURES: [&str; 8] = [
    "reply_family",
    "reply_family_enoent",
    "reply_ack",
    "reply_error_esrch",
    "reply_service_fwmark",
    "reply_services_dump",
    "reply_dests_dump",
    "reply_info",
];

fn load(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(path).expect("fixture");
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    (0..digits.len() / 2)
        .map(|i| u8::from_str_radix(&digits[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
