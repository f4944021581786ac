//! What became of a datagram handed to the ring: accepted, or dropped for a typed reason.
//!
//! [`Ring::handle_packet`](super::Ring::handle_packet) returns a [`PacketOutcome`]; the
//! caller counts drops in one [`Drops`] table (the node adds its own transport reasons beside
//! it; the simulator keeps one per node). Nothing is counted twice and the caller never
//! decodes a header to find out why.

use crate::wire::DecodeError;
use serde::{Deserialize, Serialize};

/// Why the ring refused a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Larger than `netmtu`: every member runs with the same netmtu, so it is not ours.
    Oversized,
    /// Not ringlab at all (bad magic).
    BadMagic,
    /// A wire version this build does not speak.
    WrongVersion,
    /// Ringlab's magic and version, but it does not decode.
    Malformed,
    /// The header's sender is not the node the transport saw sending it.
    SenderMismatch,
    /// This node's own datagram, looped back by the network.
    Echo,
    /// This node has left the ring.
    Stopped,
    /// A token of another ring.
    ForeignToken,
    /// A token already seen (token_seq not above the last one).
    DuplicateToken,
    /// A token (or commit token) whose next hop is another member: a token's `token_seq`
    /// grows by one at every hop from 0 at the representative, so it is meant for
    /// `members[token_seq mod n]`.
    MisdirectedToken,
    /// A packet of an older or abandoned ring, or one the current state does not take.
    Stale,
    /// An mcast frame already held or already delivered.
    DuplicateFrame,
    /// An mcast frame beyond the ordering window above the aru.
    OutOfWindow,
    /// A merge-detect, join or mcast of another ring that this node does not merge with:
    /// a pair of processors, one on each side, is known not to hear each other, so the
    /// merge would only break apart again (see `srp::reach`).
    Unmergeable,
}

impl From<&DecodeError> for DropReason {
    fn from(e: &DecodeError) -> Self {
        match e {
            DecodeError::BadMagic(_) => Self::BadMagic,
            DecodeError::UnsupportedVersion(_) => Self::WrongVersion,
            _ => Self::Malformed,
        }
    }
}

/// What became of one datagram.
#[must_use = "a dropped datagram is counted by the caller"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketOutcome {
    /// The protocol took it (it may have changed nothing).
    Accepted,
    /// The ring refused it.
    Dropped(DropReason),
}

/// Datagrams the ring refused, per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drops {
    /// See [`DropReason::Oversized`].
    pub oversized: u64,
    /// See [`DropReason::BadMagic`].
    pub bad_magic: u64,
    /// See [`DropReason::WrongVersion`].
    pub wrong_version: u64,
    /// See [`DropReason::Malformed`].
    pub malformed: u64,
    /// See [`DropReason::SenderMismatch`].
    pub sender_mismatch: u64,
    /// See [`DropReason::Echo`].
    pub echo: u64,
    /// See [`DropReason::Stopped`].
    pub stopped: u64,
    /// See [`DropReason::ForeignToken`].
    pub foreign_tokens: u64,
    /// See [`DropReason::DuplicateToken`].
    pub duplicate_tokens: u64,
    /// See [`DropReason::MisdirectedToken`].
    pub misdirected_tokens: u64,
    /// See [`DropReason::Stale`].
    pub stale_packets: u64,
    /// See [`DropReason::DuplicateFrame`].
    pub duplicate_frames: u64,
    /// See [`DropReason::OutOfWindow`].
    pub out_of_window: u64,
    /// See [`DropReason::Unmergeable`].
    #[serde(default)]
    pub unmergeable: u64,
}

impl Drops {
    /// Counts one datagram dropped for `reason`.
    pub fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Oversized => &mut self.oversized,
            DropReason::BadMagic => &mut self.bad_magic,
            DropReason::WrongVersion => &mut self.wrong_version,
            DropReason::Malformed => &mut self.malformed,
            DropReason::SenderMismatch => &mut self.sender_mismatch,
            DropReason::Echo => &mut self.echo,
            DropReason::Stopped => &mut self.stopped,
            DropReason::ForeignToken => &mut self.foreign_tokens,
            DropReason::DuplicateToken => &mut self.duplicate_tokens,
            DropReason::MisdirectedToken => &mut self.misdirected_tokens,
            DropReason::Stale => &mut self.stale_packets,
            DropReason::DuplicateFrame => &mut self.duplicate_frames,
            DropReason::OutOfWindow => &mut self.out_of_window,
            DropReason::Unmergeable => &mut self.unmergeable,
        };
        *c += 1;
    }

    /// Counts `outcome` if it is a drop.
    pub fn count_outcome(&mut self, outcome: PacketOutcome) {
        if let PacketOutcome::Dropped(r) = outcome {
            self.count(r);
        }
    }

    /// Returns datagrams that did not decode (bad magic, wrong version, malformed).
    pub fn undecodable(&self) -> u64 {
        self.bad_magic + self.wrong_version + self.malformed
    }
}
