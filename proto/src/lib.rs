//! The swarmnet gRPC API: `.proto` definitions (`proto/swarmnet.proto`) and the code tonic
//! generates from them ([`pb`]). Nothing else lives here: the agent converts between these
//! messages and its own types (`agent::api::convert`), and other clients (the CNI and Docker
//! plugins, scripts) use the messages as they are.
//!
//! Code generation runs in `build.rs` with protox (a pure-Rust protobuf compiler), so a fresh
//! machine needs no `protoc`.

/// Generated messages, clients (`*_client`) and servers (`*_server`) of `swarmnet.v1`.
/// Every message also derives `serde::Serialize` (for the CLI's `--json`).
#[allow(missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("swarmnet.v1");
}
