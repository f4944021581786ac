//! The node's one table of dropped datagrams, per reason, and of sends the kernel refused.
//!
//! Every datagram the node reads is either taken by the ring or counted here exactly once,
//! by [`NodeDrops::count`]: the reasons the runtime decides before the ring sees a datagram
//! (stranger's address, authentication, replay, size) and the reasons the ring returns from
//! `handle_packet` (decoding, staleness, duplicates, ...). The node never decodes a header
//! itself. None of them stops a node. The table is reported as it is, one field per reason,
//! in the `drops` object of the control protocol's `stats` reply.

use ringlab_ring::DropReason;
use serde::{Deserialize, Serialize};

/// Why a datagram was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// From an address not in the node list (another cluster, or a stranger), or
    /// authenticated as a node other than the one at its source address.
    Foreign,
    /// No authentication trailer, or a MAC that does not verify.
    Unauthenticated,
    /// Authenticated, but sealed for another node.
    NotForMe,
    /// Authenticated, but sealed for an earlier incarnation of this node, or by an earlier
    /// incarnation of its transmitter.
    OldIncarnation,
    /// Authenticated, but seen before.
    Replayed,
    /// Authenticated, but its replay marks could not be written to stable storage, so it
    /// was not acted on (see `ringlab_ring::auth`).
    MarksUnsaved,
    /// The ring refused it (larger than netmtu, undecodable, stale, a duplicate, ...).
    Ring(DropReason),
}

/// Datagrams dropped, per reason, and sends the kernel refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDrops {
    /// See [`Dropped::Foreign`].
    pub foreign: u64,
    /// See [`Dropped::Unauthenticated`].
    pub unauthenticated: u64,
    /// See [`Dropped::NotForMe`].
    pub not_for_me: u64,
    /// See [`Dropped::OldIncarnation`].
    pub old_incarnation: u64,
    /// See [`Dropped::Replayed`].
    pub replayed: u64,
    /// See [`Dropped::MarksUnsaved`].
    pub marks_unsaved: u64,
    /// What the ring refused, one field per [`DropReason`] (`oversized` also counts
    /// datagrams too large to be authenticated).
    #[serde(flatten)]
    pub ring: ringlab_ring::Drops,
    /// Sends the kernel refused (buffer full).
    pub send_would_block: u64,
    /// Other send errors.
    pub send_errors: u64,
}

impl NodeDrops {
    /// Counts one datagram dropped for `why`.
    pub fn count(&mut self, why: Dropped) {
        match why {
            Dropped::Foreign => self.foreign += 1,
            Dropped::Unauthenticated => self.unauthenticated += 1,
            Dropped::NotForMe => self.not_for_me += 1,
            Dropped::OldIncarnation => self.old_incarnation += 1,
            Dropped::Replayed => self.replayed += 1,
            Dropped::MarksUnsaved => self.marks_unsaved += 1,
            Dropped::Ring(r) => self.ring.count(r),
        }
    }
}
