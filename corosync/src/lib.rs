//! corosync as a ringlab implementation: `ringlab corosync-node --config FILE` takes the
//! very config a ringlab node takes ([`ringlab_net::NodeConfig`]), runs corosync (3.1.7,
//! Debian's) as its child, talks to it through CPG, and serves the same control protocol
//! and writes the same event records as a ringlab node, so that the harness and the
//! experiments run unchanged on it.
//!
//! - [`conf`]: corosync.conf from the node config, and the list of knobs it cannot carry;
//! - [`cpg`]: a safe wrapper over corosync's CPG client library, loaded at run time;
//! - [`log`]: corosync's log lines as ringlab membership state changes;
//! - [`node`]: the process: corosync's start and stop, the loop, the control requests, the
//!   records.
//!
//! # Why CPG is loaded at run time
//!
//! `libcpg.so.4` is opened with `libloading` when the node starts, not linked. The
//! `rust-corosync` crate links cpg, cfg, cmap, quorum and votequorum at build time: every
//! build of the workspace, and the README's test command, would then need five `-dev`
//! packages, and the one `ringlab` binary could not start on a machine without corosync,
//! not even for `ringlab sim`. Loading at run time keeps both, and a machine without
//! corosync gets a clear error ([`cpg::CpgError::Missing`]): "corosync's CPG library
//! (libcpg.so.4) is not installed: apt-get install corosync libcpg4".
//!
//! # The run loop
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = ringlab_net::NodeConfig::load("node-1.toml".as_ref())?;
//! let node = ringlab_corosync::node::CorosyncNode::start(cfg, &Default::default())?;
//! let why = node.run()?; // "quit" or "left"; corosync is stopped on every path
//! # let _ = why; Ok(()) }
//! ```
//!
//! `unsafe` is confined to [`cpg`] (the FFI) and [`node`] (`pre_exec` for
//! `PR_SET_PDEATHSIG`, `kill` of the child's PID).
#![warn(missing_docs)]
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod conf;
mod control;

pub mod cpg;
pub mod log;
pub mod node;

pub use conf::{render, Rendered, Unmapped};
pub use node::{CorosyncNode, NodeError, Options};
