//! The control protocol's server side, shared with ringlab nodes.
//!
//! `ringlab_net`'s server (`net/src/control/server.rs`) is crate-private there, and net/ is
//! not to be changed for this crate; so the very same file is compiled into this crate
//! (`#[path]`), with the three names it uses from its crate (`super::proto`,
//! `crate::clock`, `crate::stable`) pointing at `ringlab_net`'s. Connections, bounds, the
//! 0600 socket and the JSON lines are therefore exactly a ringlab node's. Making the server
//! public in `ringlab_net` would remove this.

pub(crate) use ringlab_net::control::proto;

#[path = "../../net/src/control/server.rs"]
#[allow(dead_code, clippy::all)]
pub(crate) mod server;
