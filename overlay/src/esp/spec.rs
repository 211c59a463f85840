//! Desired and actual state of the ESP dataplane of one node.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;
use serde::Serialize;

use super::{KeyRing, SaKey};
use crate::Error;

/// `reqid` of every SA and policy template swarmnet creates ("SWN1"): what the executor
/// reads back as its own. Other IPsec users of the host (strongSwan, libreswan) use small
/// reqids and are never touched.
pub const DEFAULT_REQID: u32 = 0x5357_4e31;

/// The AEAD of every SA (RFC 4106 AES-GCM; key material = AES key ‖ 4-byte salt).
pub const AEAD_NAME: &str = "rfc4106(gcm(aes))";

/// ICV (GCM tag) length of every SA, in bits.
pub const ICV_BITS: u32 = 128;

/// Anti-replay window of inbound SAs, in packets. SAs use extended (64-bit) sequence
/// numbers, so a busy pair never runs out of sequence numbers between rotations.
pub const REPLAY_WINDOW: u32 = 128;

/// A node as the ESP dataplane sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EspNode {
    /// The node's stable id (`NodeId`'s `u64`): input of SPI and key derivation.
    pub id: u64,
    /// Its data-path (underlay) address: the outer source/destination of VXLAN and ESP.
    pub addr: Ipv4Addr,
}

/// One (VXLAN port, VNI) whose clear-text VXLAN must never leave or enter the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GuardRule {
    /// UDP destination port of the network's VXLAN device.
    pub port: u16,
    /// The encrypted network's VNI.
    pub vni: u32,
}

/// What this node's ESP dataplane should contain. Objects with the executor's reqid (and the
/// guard table) that are not described here are removed by a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspDesired {
    /// This node.
    pub local: EspNode,
    /// The IPsec key ring; `None` (no keys yet) means no SAs and no policies: traffic to
    /// peers is then not encrypted, and the guard drops it for encrypted networks.
    pub ring: Option<KeyRing>,
    /// Nodes sharing at least one encrypted network with this node: inbound SAs for every
    /// key, an outbound SA for the primary, and an outbound policy per VXLAN port.
    pub peers: Vec<EspNode>,
    /// Further nodes to accept encrypted traffic from (inbound SAs only), e.g. every node
    /// announcing ESP support: a peer that learns of a shared network before this node does
    /// then already gets its packets through. Nodes also in `peers` are ignored here.
    pub receive_only: Vec<EspNode>,
    /// VXLAN ports of the encrypted networks (usually one); each outbound policy selects UDP
    /// to one of them. Every VXLAN packet between this node and a peer on these ports is
    /// encrypted, including packets of unencrypted networks sharing the port.
    pub vxlan_ports: Vec<u16>,
    /// The encrypted networks with (or about to get) a sandbox on this node. Needs no ring.
    pub guard: Vec<GuardRule>,
    /// Nodes whose SAs stay without a policy: inbound for every key and outbound for the
    /// primary, as for a peer, but no traffic is sent through them. A peer that stopped
    /// sharing an encrypted network a moment ago is kept so (see
    /// [`EspSession`](super::EspSession)): if it shares one again soon, both ends go on with
    /// the same SAs, whose sequence numbers continue, so neither end's anti-replay state is
    /// left ahead of the other's sender. Nodes also in `peers` are ignored here.
    pub idle: Vec<EspNode>,
    /// Each node's generation (its restart counter as gossip knows it, by node id; nodes
    /// absent are unknown). [`EspSession`](super::EspSession) renews the replay state of the
    /// inbound SAs of a node whose generation changed.
    pub generations: BTreeMap<u64, u64>,
    /// Nodes whose existing inbound SAs get their anti-replay state reset by this reconcile
    /// ([`EspOp::ResetReplay`](super::EspOp::ResetReplay)): their sender may have restarted
    /// its sequence numbers (it restarted, or it was not a peer for a while and made its
    /// outbound SA anew), which the old window would reject. A one-shot request: planning
    /// again with it gives the resets again. Usually filled by
    /// [`EspSession::prepare`](super::EspSession::prepare).
    pub renew_inbound: Vec<u64>,
    /// Keep every SA and policy of ours that is not desired instead of deleting it. The
    /// agent sets it right after a restart, until gossip has delivered the tables: what it
    /// made before is adopted, never torn down and made again (which would reset sequence
    /// numbers on one end only).
    pub keep_unlisted: bool,
}

impl EspDesired {
    /// Checks the parts that come from this node: the local node, ports and guard rules.
    /// Peers are gossip input and are never rejected (see [`plan_esp`](super::plan_esp)).
    pub fn validate(&self) -> Result<(), Error> {
        if !unicast(self.local.addr) {
            return Err(Error::Invalid {
                object: "ESP local node".into(),
                reason: format!("address {} is not a unicast address", self.local.addr),
            });
        }
        for p in &self.vxlan_ports {
            if *p == 0 {
                return Err(Error::Invalid {
                    object: "ESP vxlan_ports".into(),
                    reason: "port 0".into(),
                });
            }
        }
        for g in &self.guard {
            if g.port == 0 || g.vni == 0 || g.vni > 0x00ff_ffff {
                return Err(Error::Invalid {
                    object: format!("ESP guard rule port {} vni {}", g.port, g.vni),
                    reason: "port must be 1..=65535 and vni 1..=16777215".into(),
                });
            }
        }
        Ok(())
    }
}

pub(crate) fn unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// Direction of an SA relative to this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaDir {
    /// Peer -> this node.
    In,
    /// This node -> peer.
    Out,
}

/// One SA the planner wants: ESP, transport mode, [`AEAD_NAME`] with [`ICV_BITS`], ESN with
/// [`REPLAY_WINDOW`], the executor's reqid, no selector (the policy chooses the SA).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SaSpec {
    /// Direction.
    pub dir: SaDir,
    /// The other node's id.
    pub peer: u64,
    /// Tag of the ring key it derives from.
    pub tag: u64,
    /// Outer source.
    pub src: Ipv4Addr,
    /// Outer destination.
    pub dst: Ipv4Addr,
    /// SPI ([`spi`](super::spi)`(tag, src node, dst node)`).
    pub spi: u32,
    /// reqid.
    pub reqid: u32,
    /// Key material ([`sa_key`](super::sa_key)); never serialized.
    #[serde(skip)]
    pub key: SaKey,
}

/// One outbound policy: UDP from `src` to `dst` port `port` goes through ESP (transport,
/// reqid) with exactly the SA `spi`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicySpec {
    /// The peer's id.
    pub peer: u64,
    /// This node's address (selector source /32, template source).
    pub src: Ipv4Addr,
    /// The peer's address (selector destination /32, template destination).
    pub dst: Ipv4Addr,
    /// VXLAN UDP destination port.
    pub port: u16,
    /// SPI of the outbound SA under the primary key.
    pub spi: u32,
    /// reqid.
    pub reqid: u32,
}

/// An SA as read from the kernel (only those with the executor's reqid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SaState {
    /// Outer source.
    pub src: Ipv4Addr,
    /// Outer destination.
    pub dst: Ipv4Addr,
    /// SPI.
    pub spi: u32,
    /// reqid.
    pub reqid: u32,
    /// `XFRM_MODE_*` (0 = transport).
    pub mode: u8,
    /// AEAD name, if the SA has one.
    pub aead: Option<String>,
    /// ICV length in bits.
    pub icv_bits: u32,
    /// Key material; never serialized.
    #[serde(skip)]
    pub key: SaKey,
    /// `XFRM_STATE_ESN` is set.
    pub esn: bool,
    /// Replay window (ESN window when `esn`).
    pub replay_window: u32,
    /// Whether the selector is empty (family 0, no addresses), as the executor creates it.
    pub selector_empty: bool,
    /// Packets processed so far.
    pub packets: u64,
    /// Bytes processed so far.
    pub bytes: u64,
    /// Packets dropped by the anti-replay check.
    pub replay_drops: u32,
    /// Packets that failed authentication (wrong key, corruption, forgery).
    pub integrity_failed: u32,
}

impl SaState {
    /// Whether this kernel SA is exactly `want`.
    pub fn matches(&self, want: &SaSpec) -> bool {
        self.src == want.src
            && self.dst == want.dst
            && self.spi == want.spi
            && self.reqid == want.reqid
            && self.mode == super::xfrm::XFRM_MODE_TRANSPORT
            && self.aead.as_deref() == Some(AEAD_NAME)
            && self.icv_bits == ICV_BITS
            && self.key == want.key
            && self.esn
            && self.replay_window == REPLAY_WINDOW
            && self.selector_empty
    }
}

/// An IPv4 xfrm selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Selector4 {
    /// Source prefix.
    pub src: Ipv4Network,
    /// Destination prefix.
    pub dst: Ipv4Network,
    /// IP protocol (17 = UDP; 0 = any).
    pub proto: u8,
    /// Destination port and mask.
    pub dport: (u16, u16),
    /// Source port and mask.
    pub sport: (u16, u16),
}

impl Selector4 {
    /// The selector of an outbound policy: `src/32 -> dst/32 udp dport port`.
    pub fn udp_to(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Selector4 {
        Selector4 {
            src: Ipv4Network::from(src),
            dst: Ipv4Network::from(dst),
            proto: 17,
            dport: (port, 0xffff),
            sport: (0, 0),
        }
    }
}

/// One template of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TemplateState {
    /// Outer source.
    pub src: Ipv4Addr,
    /// Outer destination.
    pub dst: Ipv4Addr,
    /// IP protocol of the transform (50 = ESP).
    pub proto: u8,
    /// SPI (0 = any SA with the reqid).
    pub spi: u32,
    /// reqid.
    pub reqid: u32,
    /// `XFRM_MODE_*`.
    pub mode: u8,
}

/// A policy as read from the kernel (only IPv4 policies with a template of the executor's
/// reqid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyState {
    /// `XFRM_POLICY_IN` (0), `OUT` (1) or `FWD` (2).
    pub dir: u8,
    /// Selector.
    pub selector: Selector4,
    /// Mark and mask (0/0 for ours).
    pub mark: (u32, u32),
    /// Interface id (0 for ours).
    pub if_id: u32,
    /// `XFRM_POLICY_ALLOW` (0) or `BLOCK` (1).
    pub action: u8,
    /// Priority.
    pub priority: u32,
    /// Templates.
    pub templates: Vec<TemplateState>,
}

impl PolicyState {
    /// Whether this kernel policy is exactly `want`.
    pub fn matches(&self, want: &PolicySpec) -> bool {
        self.dir == super::xfrm::XFRM_POLICY_OUT
            && self.selector == Selector4::udp_to(want.src, want.dst, want.port)
            && self.mark == (0, 0)
            && self.if_id == 0
            && self.action == super::xfrm::XFRM_POLICY_ALLOW
            && self.priority == super::xfrm::POLICY_PRIORITY
            && self.templates
                == [TemplateState {
                    src: want.src,
                    dst: want.dst,
                    proto: super::xfrm::IPPROTO_ESP,
                    spi: want.spi,
                    reqid: want.reqid,
                    mode: super::xfrm::XFRM_MODE_TRANSPORT,
                }]
    }
}

/// Which hook a guard rule sits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardHook {
    /// Locally generated packets (`output`): dropped unless routed through an xfrm bundle.
    Output,
    /// Packets for this host (`input`): dropped unless they were decrypted by xfrm.
    Input,
}

/// One guard rule as read back, with its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GuardCounter {
    /// Hook.
    pub hook: GuardHook,
    /// The rule.
    pub rule: GuardRule,
    /// Clear-text packets dropped so far.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The guard table as read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuardState {
    /// Rules recognised in the table, in table order.
    pub rules: Vec<GuardCounter>,
    /// `false` when the table holds anything else (unknown chains, rules or settings): the
    /// planner then replaces it whole.
    pub well_formed: bool,
}

/// What the kernel has, filtered to what the executor owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EspActual {
    /// The reqid the state was read with (SAs and policy templates carrying it are ours).
    pub reqid: u32,
    /// Our SAs.
    pub sas: Vec<SaState>,
    /// Our policies.
    pub policies: Vec<PolicyState>,
    /// The guard table, `None` when absent.
    pub guard: Option<GuardState>,
}

impl EspActual {
    /// Nothing of ours in the kernel.
    pub fn empty(reqid: u32) -> EspActual {
        EspActual {
            reqid,
            sas: Vec::new(),
            policies: Vec::new(),
            guard: None,
        }
    }
}
