//! The control protocol: a node's Unix socket speaking JSON lines. A client writes one request
//! per line; the node answers every complete line with one reply line, in order.
//!
//! - [`proto`]: the typed requests ([`Request`], tagged by `cmd`) and one reply struct per
//!   command, shared by the node and every client;
//! - [`client`]: one call that sends a typed request and returns the typed reply or a typed
//!   error ([`call`]), and the raw exchange `ringlab ctl` prints;
//! - [`args`]: `ringlab ctl`'s `CMD key=value...` command line made into a [`Request`];
//!   `svc NAME ...` is any service's own command, built by the service itself
//!   (`ringlab_sync::Plugin::parse_args`) and carried out by it on the node
//!   (`ringlab_sync::Service::control`): nothing here knows a service;
//! - `server` (crate-private): accepting connections, reading lines, writing replies, with
//!   a bound on clients, on unread replies and on a line; binding the socket 0600.
//!
//! Guarantees: the JSON on the wire is the protocol's from before it was typed (field names,
//! nesting, the `ok` field of every reply, keys in sorted order), so old scripts keep
//! working; a reply that does not parse as the reply its request calls for is an error on
//! the client, never a default value.

pub mod args;
pub mod client;
pub mod proto;
pub mod server;

pub use client::{call, decode, exchange, CtlError};
pub use proto::{
    Ack, ActionStats, BadArgument, ControlStats, DeliveredStats, ErrorReply, KernelDrops,
    LatencyStats, LoadStats, MemoryKib, QueueStats, Reply, Request, SocketBuffers, StatsReply,
    StatusReply, StopLoadReply, SyncStats,
};
