//! `swarmnet-cni`: a CNI plugin (spec 1.0.0: ADD, DEL, CHECK, VERSION) that is a thin client
//! of the local swarmnet agent, as Cilium's and Weave's plugins are of theirs. Everything
//! about the attachment (address, veth, overlay, DNS names) happens in the agent; the plugin
//! translates the runtime's request into one API call and the answer into a CNI result.
//!
//! | file | concept |
//! | --- | --- |
//! | [`conf`] | the network configuration, `CNI_*` variables and `CNI_ARGS`: what to ask the agent |
//! | [`result`] | the CNI result (and chaining: `prevResult` passed through with ours appended) |
//! | [`error`] | [`CniError`]: the spec's error JSON with its codes |
//! | [`agent`] | the connection to the agent (unix socket) and the calls |
//! | [`check`] | CHECK inside the container's namespace |
//! | [`install`] | `swarmnet-cni install`: the binary where runtimes look, an example conflist |
//! | [`plugin`] | the commands |
//!
//! Identity: an attachment is `cni/<network name>/<container id>/<ifname>` (the agent's
//! `client_id`), so ADD is idempotent, DEL works without the namespace and after an agent
//! restart, and a repeated DEL succeeds.

pub mod agent;
pub mod check;
pub mod conf;
pub mod error;
pub mod install;
pub mod plugin;
pub mod result;

pub use error::CniError;

/// CNI versions this plugin accepts in a configuration (results are written in the
/// configuration's version).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// The agent socket used when the configuration names none.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/swarmnet/api.sock";
