//! IPsec ESP for encrypted overlay networks.
//!
//! Networks created with `encrypted` carry their VXLAN traffic in ESP transport mode between
//! every pair of nodes that share one (`rfc4106(gcm(aes))`, 128-bit ICV, 64-bit extended
//! sequence numbers). This module has the same shape as the VXLAN dataplane:
//!
//! * [`KeyRing`]: up to three keys from the orchestrator, each with a Lamport tag; the
//!   primary (used to send) is the second-newest.
//! * [`spi`] and [`sa_key`]: both ends derive the SPI and the key material of each SA from
//!   (key, tag, source node id, destination node id) with a documented, versioned byte
//!   layout ([`LAYOUT_VERSION`]); no negotiation.
//! * [`plan_esp`]: pure planner, [`EspDesired`] versus [`EspActual`] giving [`EspOp`]s,
//!   ordered so that a key rotation or a peer change never drops a packet.
//! * [`EspExecutor`]: applies ops over xfrm netlink and `nft` in the host namespace on a
//!   dedicated thread, reads back what it owns (its reqid, its table) and adopts it; its
//!   [`EspSession`] keeps the two ends of every SA in step across peer changes and
//!   restarts (lingering former peers, resetting replay state of restarted senders).
//! * The guard ([`render_guard`]): an nftables table dropping clear-text VXLAN of the
//!   encrypted networks' VNIs in output and input, so nothing leaks when keys, policies or
//!   SAs are missing (fail closed).
//! * [`probe`]: can this kernel create ESP SAs, and does nft accept the guard?
//! * [`encrypted_mtu`]: the MTU of an encrypted network.
//!
//! # Use (agent)
//!
//! ```no_run
//! # fn f() -> Result<(), overlay::Error> {
//! use overlay::esp::{self, EspDesired, EspExecutor, EspKey, EspNode, GuardRule, KeyRing};
//! let support = esp::probe();
//! if let Some(why) = support.reason() {
//!     eprintln!("encrypted networks unavailable: {why}"); // refuse to attach, publish it
//! }
//! let exec = EspExecutor::new(esp::DEFAULT_REQID)?;
//! let ring = KeyRing::new([EspKey { tag: 7, key: vec![0x11; 16] }])?;
//! let desired = EspDesired {
//!     local: EspNode { id: 1, addr: "192.168.77.1".parse().unwrap() },
//!     ring: Some(ring),
//!     peers: vec![EspNode { id: 2, addr: "192.168.77.2".parse().unwrap() }],
//!     receive_only: vec![],
//!     vxlan_ports: vec![4789],
//!     guard: vec![GuardRule { port: 4789, vni: 4097 }],
//!     idle: vec![],
//!     generations: Default::default(),
//!     renew_inbound: vec![],
//!     keep_unlisted: false,
//! };
//! let report = exec.reconcile_blocking(&desired)?; // on every change and periodically
//! for f in &report.failed {
//!     eprintln!("{}: {}", f.op, f.error);
//! }
//! # Ok(()) }
//! ```

mod derive;
mod executor;
mod guard;
mod keys;
mod mtu;
mod op;
mod plan;
mod probe;
mod session;
mod spec;
pub mod xfrm;

pub use derive::{
    LAYOUT_VERSION, RESERVED_SPI_MAX, RFC4106_SALT_LEN, SA_CONTEXT_LEN, SaKey, sa_context, sa_key,
    spi,
};
pub use executor::{EspExecutor, EspOpFailure, EspReport};
pub use guard::{
    GUARD_TABLE, apply_guard_script, nft_path, parse_guard, read_guard, render_guard,
    render_guard_delete,
};
pub use keys::{EspKey, KEY_LENGTHS, KeyRing, MAX_KEYS, RingDiff};
pub use mtu::{ESP_FIXED_OVERHEAD, ESP_MAX_OVERHEAD, encrypted_mtu};
pub use op::EspOp;
pub use plan::{DesiredXfrm, SpiConflict, desired_xfrm, plan_esp, spi_conflicts};
pub use probe::{EspSupport, probe, probe_esp, probe_guard};
pub use session::{DEFAULT_LINGER, EspSession};
pub use spec::{
    AEAD_NAME, DEFAULT_REQID, EspActual, EspDesired, EspNode, GuardCounter, GuardHook, GuardRule,
    GuardState, ICV_BITS, PolicySpec, PolicyState, REPLAY_WINDOW, SaDir, SaSpec, SaState,
    Selector4, TemplateState,
};
