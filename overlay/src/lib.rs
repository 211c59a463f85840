//! The VXLAN dataplane: a pure planner (desired networks and peers versus what the kernel has,
//! giving a list of operations) and a netlink executor that applies them with replace semantics
//! inside each network sandbox namespace; IPsec (xfrm) for encrypted networks.
//!
//! Not written yet: it arrives with the agent (issue "The agent and the overlay").
