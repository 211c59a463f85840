//! Embedded DNS: a resolver at 127.0.0.11 in every container namespace (issue 5).
