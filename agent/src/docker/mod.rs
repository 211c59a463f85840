//! Docker's network and IPAM plugin, served by the agent (`--docker-plugin <socket>`):
//! `docker network create -d swarmnet --ipam-driver swarmnet -o swarmnet.network=app app` on
//! every host maps each host's Docker network (scope local, connectivity global) to one
//! swarmnet network; containers get addresses from this node's blocks (never colliding across
//! hosts) and a veth into the network's overlay.
//!
//! | file | concept |
//! | --- | --- |
//! | [`protocol`] | the plugin protocol's messages |
//! | [`plugin`] | the calls mapped onto the agent's operations |
//! | [`state`] | Docker's ids and the swarmnet objects they map to (`docker.json`) |
//! | [`names`] | container names and aliases from dockerd's API |
//! | [`server`] | HTTP/1.1 on the unix socket |
//!
//! DNS: Docker keeps its own resolver (127.0.0.11) in its containers; it answers this host's
//! container names itself and forwards everything else to the container's DNS servers. The
//! agent answers on each network's gateway address (in the network's sandbox, reached over
//! the container's interface): run containers with `--dns <gateway>` (or set `"dns":
//! ["<gateway>"]` in daemon.json) and names of containers on other hosts resolve through
//! Docker's resolver.
//!
//! Discovery: Docker finds the plugin by its socket in `/run/docker/plugins/swarmnet.sock`
//! (or a spec file `/etc/docker/plugins/swarmnet.spec` holding `unix://<socket>`). The agent
//! must be up within Docker's lookup back-off (about 15 s) when dockerd starts, or containers
//! on swarmnet networks fail to start.

pub mod names;
pub mod plugin;
pub mod protocol;
pub mod server;
pub mod state;

pub use plugin::Plugin;
