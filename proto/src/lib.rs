//! The swarmnet gRPC API: `.proto` definitions (`proto/swarmnet.proto`), the code tonic
//! generates from them ([`pb`]), and conversions between the wire types and the agent's
//! domain types ([`convert`]). Nothing else lives here.
//!
//! Code generation runs in `build.rs` with protox (a pure-Rust protobuf compiler), so a fresh
//! machine needs no `protoc`.

pub mod convert;

/// Generated messages, clients (`*_client`) and servers (`*_server`) of `swarmnet.v1`.
/// Every message also derives `serde::Serialize` (for the CLI's `--json`).
#[allow(missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("swarmnet.v1");
}

pub use convert::{
    AttachSpec, FieldError, NetworkRequest, PortSpec, ServiceModeArg, ServiceRequest,
};
