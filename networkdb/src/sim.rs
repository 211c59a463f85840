//! Deterministic cluster simulator (being written).
