//! The node's drop and send-failure counters, per reason.
//!
//! A datagram dropped before the ring saw it, and a send the kernel refused, each bump exactly
//! one counter here; none of them stops a node. The counters are reported as they are (field
//! names included) in the `drops` object of the control protocol's `stats` reply.

use serde::{Deserialize, Serialize};

/// Datagrams dropped before the ring saw them, per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drops {
    /// Larger than netmtu plus the authentication trailer.
    pub oversized: u64,
    /// From an address not in the node list (another cluster, or a stranger).
    pub foreign: u64,
    /// Not ringlab at all (bad magic).
    pub bad_magic: u64,
    /// A wire version this build does not speak.
    pub wrong_version: u64,
    /// A header that does not decode.
    pub malformed: u64,
    /// No authentication trailer, or a MAC that does not verify.
    pub unauthenticated: u64,
    /// Authenticated, but seen before.
    pub replayed: u64,
    /// Sends the kernel refused (buffer full).
    pub send_would_block: u64,
    /// Other send errors.
    pub send_errors: u64,
}
