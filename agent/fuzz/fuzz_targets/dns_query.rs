//! Any bytes into the resolver's pure query path: no panic, and a reply (if any) parses with
//! hickory, is a response with the query's id, and fits the transport's limit. The first
//! byte chooses the case: even -> a client query (UDP or TCP by bit 1), odd -> an upstream's
//! answer handed back to a client (`forwarded_reply`).

#![no_main]

use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[allow(dead_code)]
#[path = "../../src/records.rs"]
mod records;

#[allow(dead_code)]
#[path = "dns_pure.rs"]
mod dns;

use dns::query::{ForwardRequest, Handled, Limits, Transport, forwarded_reply, handle_query};
use dns::zone::Zone;
use records::{EndpointRecord, NetworkDef, ServiceDef, ServiceMode};

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let net = NetworkDef {
            id: "n".into(),
            name: "blue".into(),
            vni: 1,
            subnet_addr: "10.1.0.0".parse().unwrap(),
            subnet_prefix: 24,
            gateway: "10.1.0.1".parse().unwrap(),
            mtu: 0,
            encrypted: false,
            creator: networkdb::NodeId(1),
            created: 1,
            revision: 0,
            note: String::new(),
        };
        let eps: Vec<(String, EndpointRecord)> = (0..200u32)
            .map(|i| {
                (
                    format!("e{i}"),
                    EndpointRecord {
                        name: format!("web.{i}"),
                        aliases: vec![format!("a{i}")],
                        ip: std::net::Ipv4Addr::new(10, 1, 0, (i % 250) as u8 + 2),
                        prefix: 24,
                        mac: [2, 0, 0, 0, 0, 1],
                        network: "n".into(),
                        node: networkdb::NodeId(1),
                        disabled: i % 7 == 0,
                        service: Some("s".into()),
                    },
                )
            })
            .collect();
        let svc = ServiceDef {
            id: "s".into(),
            name: "web".into(),
            aliases: vec!["www".into()],
            mode: ServiceMode::Vip,
            ports: vec![],
            networks: vec!["n".into()],
            vips: [("n".to_string(), "10.1.0.1".parse().unwrap())].into(),
            creator: networkdb::NodeId(1),
            created: 1,
            published: Vec::new(),
        };
        Zone::build(&[net], &eps, &[svc])
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let networks = vec!["n".to_string()];
    let limits = Limits::default();
    if mode & 1 == 0 {
        let transport = if mode & 2 == 0 { Transport::Udp } else { Transport::Tcp };
        let mut rng = StdRng::seed_from_u64(u64::from(mode));
        match handle_query(rest, zone(), &networks, transport, limits, &mut rng) {
            Handled::Reply { bytes, .. } => {
                let m = Message::from_vec(&bytes).expect("our reply parses");
                assert_eq!(m.message_type, MessageType::Response);
                assert_eq!(&bytes[..2], &rest[..2], "the reply carries the query's id");
                let limit = match transport {
                    Transport::Udp => usize::from(limits.max_udp_payload),
                    Transport::Tcp => 65535,
                };
                assert!(bytes.len() <= limit);
            }
            Handled::Forward(req) => {
                // The SERVFAIL path for it works too.
                if let Some(b) = dns::query::servfail(&req, limits) {
                    assert!(b.len() <= req.reply_limit);
                    Message::from_vec(&b).expect("servfail parses");
                }
            }
            Handled::Drop => {}
        }
    } else if let Ok(upstream) = Message::from_vec(rest) {
        let mut q = Message::new(7, MessageType::Query, hickory_proto::op::OpCode::Query);
        q.queries = upstream.queries.clone();
        let req = ForwardRequest {
            query: q,
            reply_limit: 512,
        };
        if let Some(b) = forwarded_reply(&req, upstream) {
            assert!(b.len() <= 512);
            let m = Message::from_vec(&b).expect("a forwarded reply parses");
            assert_eq!(m.id, 7);
        }
    }
});
