//! The `swarmnet` agent: daemon, CLI client, IPAM, reconcilers and API server (later: DNS
//! resolver and load balancer).
//!
//! | module | concept |
//! | --- | --- |
//! | [`cli`], [`config`] | command line and validated configuration |
//! | [`daemon`] | `swarmnet agent`: start, run, stop |
//! | [`node`] | the running agent and its operations |
//! | [`reconciler`] | watch tables, repair, reconcile the dataplane |
//! | [`ipam`], [`pools`], [`conflict`] | pure allocation and conflict rules |
//! | [`records`], [`state`], [`keys`] | table values, local state and key rings on disk |
//! | [`dataplane`], [`host`] | the kernel behind a trait; host facts |
//! | [`api`], [`client`], [`commands`], [`output`] | gRPC server, client, CLI output |
//! | [`metrics`] | Prometheus metrics and `/healthz` |
//! | [`mesh`] | published ports: the routing mesh on the nodes' own addresses |
//! | [`watch`] | the `Watch` API: the view as revisioned, resumable changes |
//! | [`docker`] | the Docker network and IPAM plugin (legacy plugin protocol) |

pub mod api;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod conflict;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod docker;
pub mod error;
pub mod host;
pub mod ipam;
pub mod keys;
pub mod lb;
pub mod mesh;
pub mod metrics;
pub mod nft;
pub mod node;
pub mod output;
pub mod pools;
pub mod reconciler;
pub mod records;
pub mod spec;
pub mod state;
pub mod sys;
pub mod tables;
pub mod watch;
