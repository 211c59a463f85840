//! The gRPC API: service implementations (thin: convert, call [`crate::node::Agent`],
//! convert back) and the listeners (unix socket, TCP with mutual TLS).

pub mod convert;
mod server;
mod services;

pub use server::{Listeners, serve, server_tls};
pub use services::Api;

/// Check that the TLS files can be read and parsed, before anything starts.
pub fn serve_check_tls(files: &crate::config::TlsFiles) -> Result<(), String> {
    let cfg = server_tls(files)?;
    tonic::transport::Server::builder()
        .tls_config(cfg)
        .map(|_| ())
        .map_err(|e| format!("api tls: {e}"))
}
