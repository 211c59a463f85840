//! Network-namespace test lab (being written).
