//! The pure query path: client bytes + zone + the client's networks -> a reply, a request to
//! forward, or nothing. No I/O, no clock; randomness (answer shuffling) is an input.
//!
//! Contract of [`handle_query`], for any input bytes:
//! * it never panics;
//! * a reply it returns parses with hickory, is a response (QR set) with the client's id,
//!   and fits the transport's limit ([`Limits`]);
//! * it returns nothing ([`Handled::Drop`]) only for input that is not a query at all
//!   (shorter than a header, or a response: answering responses could make two resolvers
//!   loop).
//!
//! Which queries are answered locally (only the first question is looked at; a query with
//! another count is FORMERR):
//! * class other than IN: REFUSED; opcode other than QUERY: NOTIMP; EDNS version > 0:
//!   BADVERS;
//! * an internal name ([`Zone::lookup`]): A -> its addresses, shuffled, TTL from the config
//!   (NOERROR, authoritative); any other type (AAAA, MX, TXT, ...) -> NOERROR without records
//!   (internal names are IPv4-only), never forwarded;
//! * PTR of an address the zone knows -> its name; PTR of an address in one of the
//!   client's network subnets that the zone does not know -> NXDOMAIN (those reverse names
//!   are ours; forwarding them only leaks internal addresses and waits on upstreams);
//! * everything else -> [`Handled::Forward`].
//!
//! EDNS: a reply carries an OPT record exactly when the query had one (advertising
//! `max_udp_payload`). Over UDP the reply limit is the client's advertised size (at least
//! 512, at most `max_udp_payload`), 512 without EDNS; a reply over the limit keeps as many
//! answer records as fit and sets TC, so the client retries over TCP, where the limit is
//! 65535.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::Rng;
use rand::seq::SliceRandom;

use super::zone::{Lookup, Zone, key_of_name};

/// Smallest UDP payload every client accepts (RFC 1035).
pub const MIN_UDP_PAYLOAD: u16 = 512;
/// Largest DNS message over TCP.
pub const MAX_TCP_MESSAGE: usize = 65535;

/// The transport a query came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Parameters of the pure path (from [`DnsConfig`](super::DnsConfig)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// TTL of internal answers, seconds.
    pub ttl: u32,
    /// Largest UDP reply, and the size advertised in our OPT record.
    pub max_udp_payload: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ttl: 5,
            max_udp_payload: 4096,
        }
    }
}

/// How a query ended, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Internal name with records.
    Answered,
    /// Internal name, no records of that type (e.g. AAAA): empty NOERROR.
    NoData,
    /// Authoritative NXDOMAIN (reverse names in our subnets).
    NxDomain,
    /// Answered by an upstream.
    Forwarded,
    /// Every upstream failed, none is configured, or too many forwards were in flight.
    ServFail,
    Refused,
    FormErr,
    NotImp,
    /// Not a query; nothing sent.
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::NoData => "nodata",
            Outcome::NxDomain => "nxdomain",
            Outcome::Forwarded => "forwarded",
            Outcome::ServFail => "servfail",
            Outcome::Refused => "refused",
            Outcome::FormErr => "formerr",
            Outcome::NotImp => "notimp",
            Outcome::Dropped => "dropped",
        }
    }
}

/// A query that must go to the upstreams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardRequest {
    /// The client's query, as parsed.
    pub query: Message,
    /// Largest reply the client accepts on its transport.
    pub reply_limit: usize,
}

/// What to do with a client's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Send these bytes back.
    Reply {
        bytes: Vec<u8>,
        outcome: Outcome,
        qtype: Option<RecordType>,
    },
    /// Forward (then answer with [`forwarded_reply`] or [`servfail`]).
    Forward(ForwardRequest),
    /// Send nothing.
    Drop,
}

/// The whole pure path: parse `bytes`, decide, encode. See the module docs.
pub fn handle_query(
    bytes: &[u8],
    zone: &Zone,
    networks: &[String],
    transport: Transport,
    limits: Limits,
    rng: &mut (impl Rng + ?Sized),
) -> Handled {
    let query = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(_) => return formerr_from_header(bytes),
    };
    if query.message_type != MessageType::Query {
        return Handled::Drop;
    }
    let reply_limit = reply_limit(&query, transport, limits);
    let qtype = query.queries.first().map(|q| q.query_type());
    let (reply, outcome) = match decide(&query, zone, networks, limits, rng) {
        Decision::Reply(m, o) => (m, o),
        Decision::Forward => {
            return Handled::Forward(ForwardRequest { query, reply_limit });
        }
    };
    match encode_within(&reply, reply_limit) {
        Some(bytes) => Handled::Reply {
            bytes,
            outcome,
            qtype,
        },
        None => Handled::Drop,
    }
}

/// Largest reply for `query` on `transport`.
pub fn reply_limit(query: &Message, transport: Transport, limits: Limits) -> usize {
    match transport {
        Transport::Tcp => MAX_TCP_MESSAGE,
        Transport::Udp => match &query.edns {
            Some(e) => e
                .max_payload()
                .clamp(MIN_UDP_PAYLOAD, limits.max_udp_payload.max(MIN_UDP_PAYLOAD))
                as usize,
            None => MIN_UDP_PAYLOAD as usize,
        },
    }
}

enum Decision {
    Reply(Message, Outcome),
    Forward,
}

fn decide(
    query: &Message,
    zone: &Zone,
    networks: &[String],
    limits: Limits,
    rng: &mut (impl Rng + ?Sized),
) -> Decision {
    let reply = |code: ResponseCode, outcome: Outcome| {
        let mut m = response_to(query, limits);
        m.metadata.response_code = code;
        Decision::Reply(m, outcome)
    };
    if query.op_code != OpCode::Query {
        return reply(ResponseCode::NotImp, Outcome::NotImp);
    }
    if let Some(e) = &query.edns
        && e.version() > 0
    {
        return reply(ResponseCode::BADVERS, Outcome::FormErr);
    }
    if query.queries.len() != 1 {
        return reply(ResponseCode::FormErr, Outcome::FormErr);
    }
    let q = &query.queries[0];
    if q.query_class() != DNSClass::IN {
        return reply(ResponseCode::Refused, Outcome::Refused);
    }
    let name = q.name();
    if q.query_type() == RecordType::PTR {
        let Some(ip) = arpa_v4(name) else {
            return Decision::Forward;
        };
        if let Some(target) = zone.reverse(networks, ip) {
            let mut m = response_to(query, limits);
            m.metadata.authoritative = true;
            m.add_answer(Record::from_rdata(
                name.clone(),
                limits.ttl,
                RData::PTR(PTR(target.clone())),
            ));
            return Decision::Reply(m, Outcome::Answered);
        }
        if zone.owns_address(networks, ip) {
            let mut m = response_to(query, limits);
            m.metadata.authoritative = true;
            m.metadata.response_code = ResponseCode::NXDomain;
            return Decision::Reply(m, Outcome::NxDomain);
        }
        return Decision::Forward;
    }
    let ips = match zone.lookup(networks, &key_of_name(name)) {
        Lookup::Found(ips) => ips,
        Lookup::Missing => return Decision::Forward,
    };
    let mut m = response_to(query, limits);
    m.metadata.authoritative = true;
    if q.query_type() != RecordType::A || ips.is_empty() {
        return Decision::Reply(m, Outcome::NoData);
    }
    let mut ips = ips.to_vec();
    ips.shuffle(rng);
    m.answers = ips
        .into_iter()
        .map(|ip| Record::from_rdata(name.clone(), limits.ttl, RData::A(A(ip))))
        .collect();
    Decision::Reply(m, Outcome::Answered)
}

/// The IPv4 address of an `in-addr.arpa` name with exactly four octets.
fn arpa_v4(name: &hickory_proto::rr::Name) -> Option<Ipv4Addr> {
    if name.num_labels() != 6 {
        return None;
    }
    match name.parse_arpa_name().ok()? {
        ipnet::IpNet::V4(n) if n.prefix_len() == 32 => Some(n.addr()),
        _ => None,
    }
}

/// An empty response to `query`: same id, opcode, question and RD; RA set (we recurse
/// through the upstreams); OPT when the query had one.
pub fn response_to(query: &Message, limits: Limits) -> Message {
    let mut m = Message::response(query.id, query.op_code);
    m.metadata.recursion_desired = query.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = query.checking_disabled;
    m.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(limits.max_udp_payload.max(MIN_UDP_PAYLOAD));
        e.set_version(0);
        m.edns = Some(e);
    }
    m
}

/// SERVFAIL for `query` (every upstream failed, none configured, or over the forward bound).
pub fn servfail(req: &ForwardRequest, limits: Limits) -> Option<Vec<u8>> {
    let mut m = response_to(&req.query, limits);
    m.metadata.response_code = ResponseCode::ServFail;
    encode_within(&m, req.reply_limit)
}

/// The client's reply from an upstream's answer: the client's id, and trimmed to the
/// client's limit (TC set) when over it. `None` if it cannot be encoded.
pub fn forwarded_reply(req: &ForwardRequest, mut upstream: Message) -> Option<Vec<u8>> {
    upstream.metadata.id = req.query.id;
    encode_within(&upstream, req.reply_limit)
}

/// Encodes `m`; when longer than `limit`, drops trailing answer records (then authority and
/// additional records) until it fits and sets TC. `None` when even the header and question
/// do not fit (or the message cannot be encoded).
pub fn encode_within(m: &Message, limit: usize) -> Option<Vec<u8>> {
    let full = m.to_vec().ok()?;
    if full.len() <= limit {
        return Some(full);
    }
    let mut t = m.clone();
    t.metadata.truncation = true;
    t.authorities.clear();
    t.additionals.clear();
    t.signature = None;
    let answers = std::mem::take(&mut t.answers);
    // Largest prefix of the answers that fits: binary search over the count.
    let (mut lo, mut hi) = (0usize, answers.len());
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        t.answers = answers[..mid].to_vec();
        match t.to_vec() {
            Ok(b) if b.len() <= limit => {
                best = Some(b);
                lo = mid + 1;
            }
            _ => {
                if mid == 0 {
                    break;
                }
                hi = mid - 1;
            }
        }
    }
    if best.is_none() {
        // Even without answers too big (a huge question cannot be: it came in within the
        // same limit; a large OPT of ours can). Try without OPT as a last resort.
        t.answers.clear();
        t.edns = None;
        best = t.to_vec().ok().filter(|b| b.len() <= limit);
    }
    best
}

/// FORMERR for bytes that do not parse as a message but carry a query header.
fn formerr_from_header(bytes: &[u8]) -> Handled {
    let mut decoder = BinDecoder::new(bytes);
    let Ok(header) = hickory_proto::op::Header::read(&mut decoder) else {
        return Handled::Drop;
    };
    if header.metadata.message_type != MessageType::Query {
        return Handled::Drop;
    }
    let mut m = Message::error_msg(
        header.metadata.id,
        header.metadata.op_code,
        ResponseCode::FormErr,
    );
    m.metadata.recursion_desired = header.metadata.recursion_desired;
    match m.to_vec() {
        Ok(bytes) => Handled::Reply {
            bytes,
            outcome: Outcome::FormErr,
            qtype: None,
        },
        Err(_) => Handled::Drop,
    }
}
