//! tokio runtime (being written).
