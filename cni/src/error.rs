//! Errors as the CNI spec wants them: `{"cniVersion", "code", "msg", "details"}` on stdout
//! and a non-zero exit. Codes 1-11 are the spec's; 100 and up are this plugin's.

use serde::Serialize;

/// A CNI error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration.
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Container unknown or does not exist.
pub const UNKNOWN_CONTAINER: u32 = 3;
/// Invalid necessary environment variables.
pub const INVALID_ENV: u32 = 4;
/// I/O failure.
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content.
pub const DECODE_FAILURE: u32 = 6;
/// Invalid network config.
pub const INVALID_CONFIG: u32 = 7;
/// Try again later (the agent is not reachable or asks to retry).
pub const TRY_AGAIN_LATER: u32 = 11;
/// The agent refused the request (details: the gRPC status).
pub const AGENT_REFUSED: u32 = 100;
/// CHECK found the container's interface different from what the agent holds.
pub const CHECK_FAILED: u32 = 101;

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// From the agent's answer: retryable statuses become "try again later", invalid
    /// arguments and unknown networks "invalid network config", the rest "agent refused".
    pub fn from_status(what: &str, s: &tonic::Status) -> Self {
        use tonic::Code;
        let code = match s.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => TRY_AGAIN_LATER,
            Code::InvalidArgument | Code::NotFound => INVALID_CONFIG,
            _ => AGENT_REFUSED,
        };
        CniError::new(code, format!("{what}: {}", s.message()))
            .with_details(format!("agent status {:?}", s.code()))
    }

    /// The JSON the spec asks for.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            #[serde(flatten)]
            err: &'a CniError,
        }
        serde_json::to_string(&Out {
            cni_version,
            err: self,
        })
        .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"error\"}}", self.code))
    }
}
