//! The ringlab runtime: one process per node, one single-threaded mio event loop, socket2
//! UDP sockets, over either transport (multicast, or one unicast per member).
//!
//! - [`config`]: the node's TOML config, validated with errors naming the field;
//! - [`sockets`]: socket setup (buffers, multicast interface, TTL 1, loop) and sends;
//! - [`drops`]: the drop and send-failure counters, per reason;
//! - [`clock`]: the one clock (CLOCK_MONOTONIC) records and faults are stamped with;
//! - [`stable`]: stable storage (incarnation, ring seq and the authentication envelope's replay
//!   marks): a damaged file is an error, never a reset; written by a 0600 temporary file, fsync,
//!   rename and directory fsync;
//! - [`mirror`]: the real directories of the services that keep files (`kml`), and the
//!   walk that lists and digests a real directory as a service's tree does;
//! - [`load`]: the load generator (rate or maximum, sizes, count, duration);
//! - [`control`]: the control protocol (a Unix socket speaking JSON lines): typed requests
//!   and replies, the node's server side, the client call every tool uses;
//! - [`node`]: the event loop and the datagram path, event records, and what each control
//!   request does to the node;
//! - [`harness`]: clusters of node processes on one host, for `ringlab cluster`, the runner
//!   and the loopback tests;
//! - [`relay`]: the pnet (AF_PACKET) relay that impairs one link where netem is missing.
//!
//! The one `unsafe` block (a `setsockopt` that neither socket2 nor nix offers) is in `relay`.
//!
//! This crate is the only place that touches sockets and the clock; ring/, sync/ and sim/ stay
//! sans-IO (the workspace's `clippy.toml` forbids clock reads, sleeps, threads, sockets and
//! unseeded randomness there).
#![deny(unsafe_code)]
#![warn(missing_docs)]
// The runtime: sockets, the clock and threads are this crate's job (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod capture;
pub mod clock;
pub mod config;
pub mod control;
pub mod drops;
pub mod harness;
pub mod load;
pub mod mirror;
pub mod node;
pub mod relay;
pub mod sockets;
pub mod stable;

pub use clock::monotonic_ns;
pub use config::{NodeConfig, Peer, Transport};
pub use load::LoadSpec;
pub use node::Node;
