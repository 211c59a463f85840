//! The swarmnet gRPC API: `.proto` definitions, the code tonic generates from them, and
//! conversions between the wire types and the agent's domain types. Nothing else lives here.
//!
//! Not written yet: it arrives with the agent (issue "The agent and the overlay").
