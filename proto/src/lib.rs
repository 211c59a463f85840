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

/// The encoded `FileDescriptorSet` of `swarmnet.proto` (with its comments), for the gRPC
/// server reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/swarmnet_descriptor.bin"));

/// Fully qualified names of the services in [`pb`], as reflection and health checks name
/// them.
pub const SERVICE_NAMES: [&str; 6] = [
    "swarmnet.v1.Cluster",
    "swarmnet.v1.Networks",
    "swarmnet.v1.Endpoints",
    "swarmnet.v1.Services",
    "swarmnet.v1.Watch",
    "swarmnet.v1.Debug",
];
