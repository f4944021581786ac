//! The ring's counters (drops are not here: [`handle_packet`](super::Ring::handle_packet)
//! returns them, see [`Drops`](super::Drops)).

use serde::{Deserialize, Serialize};

/// Counters a node keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Frames whose packed items did not decode.
    pub frame_errors: u64,
    /// Tokens accepted.
    pub tokens_received: u64,
    /// Token retransmissions sent.
    pub token_retransmits: u64,
    /// New frames multicast.
    pub frames_sent: u64,
    /// Frames re-multicast on request.
    pub frames_retransmitted: u64,
    /// Seqs this node put on the token's retransmit list.
    pub retransmit_requests: u64,
    /// Application messages delivered.
    pub delivered: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
    /// Times GATHER was entered from another state.
    pub gathers: u64,
    /// Regular configurations installed.
    pub installs: u64,
}
