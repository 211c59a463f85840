//! A generic-netlink client for the kernel's IPVS: message codec and a request API in
//! rtnetlink's style (builders build messages, only `execute()` touches the socket).
//!
//! Not written yet: it arrives with service load balancing (issue "Services").
