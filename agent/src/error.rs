//! The agent's error type, mapped onto gRPC status codes at the API boundary.

use tonic::Status;

use crate::spec::FieldError;

/// Errors of agent operations. Every message names the object (and the field, for invalid
/// arguments) it is about.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    #[error("networkdb: {0}")]
    Db(#[from] networkdb::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl From<AgentError> for Status {
    fn from(e: AgentError) -> Status {
        let msg = e.to_string();
        match e {
            AgentError::Invalid(_) => Status::invalid_argument(msg),
            AgentError::NotFound(_) => Status::not_found(msg),
            AgentError::AlreadyExists(_) => Status::already_exists(msg),
            AgentError::FailedPrecondition(_) => Status::failed_precondition(msg),
            AgentError::ResourceExhausted(_) => Status::resource_exhausted(msg),
            AgentError::Unavailable(_) => Status::unavailable(msg),
            AgentError::Unimplemented(_) => Status::unimplemented(msg),
            AgentError::Db(networkdb::Error::Stopped) => Status::unavailable(msg),
            AgentError::Internal(_) | AgentError::Db(_) | AgentError::State(_) => {
                Status::internal(msg)
            }
        }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
