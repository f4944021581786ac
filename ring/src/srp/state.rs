//! The membership state (TOCS95 §6.2): one enum whose variants own the data that exists only
//! in them, so no state-dependent `Option` is ever unwrapped.
//!
//! | state | owns |
//! |---|---|
//! | GATHER | the round: processors heard of, processors given up on, who agreed |
//! | COMMIT | the round it came from, and the proposed ring |
//! | RECOVERY | the round, the new ring's ordering, the old-ring frames to re-send, the install progress, the token counters |
//! | OPERATIONAL | the token counters and the token held on an idle ring |
//! | LEFT | nothing: the node has left gracefully |
//!
//! The round survives COMMIT and RECOVERY because a fallback to GATHER on a token loss keeps
//! its fail set; the token counters move from RECOVERY to OPERATIONAL at the install.

use super::ordering::{Frame, Ordering};
use super::PassedToken;
use crate::event::MembState;
use crate::wire::{NodeId, RingId};
use std::collections::{BTreeSet, VecDeque};

/// A node's membership state.
#[derive(Debug)]
pub(super) enum State {
    /// Exchanging joins to agree on a membership.
    Gather(Gather),
    /// Circulating the commit token of a proposed ring.
    Commit(Commit),
    /// Exchanging old-ring messages on the new ring.
    Recovery(Box<Recovery>),
    /// Ordering messages on the installed ring.
    Operational(Operational),
    /// Left the ring after a graceful leave.
    Left,
}

impl State {
    /// Returns the state's name as records and status show it.
    pub(super) fn kind(&self) -> MembState {
        match self {
            Self::Gather(_) => MembState::Gather,
            Self::Commit(_) => MembState::Commit,
            Self::Recovery(_) => MembState::Recovery,
            Self::Operational(_) => MembState::Operational,
            Self::Left => MembState::Left,
        }
    }
}

/// One membership round: the processors heard of and those given up on.
#[derive(Debug, Default)]
pub(super) struct Round {
    /// Processors heard of (this node included).
    pub(super) proc_set: BTreeSet<NodeId>,
    /// Processors given up on this round.
    pub(super) fail_set: BTreeSet<NodeId>,
}

impl Round {
    /// Returns the round of a node that has heard of nobody else.
    pub(super) fn alone(me: NodeId) -> Self {
        Self {
            proc_set: BTreeSet::from([me]),
            fail_set: BTreeSet::new(),
        }
    }

    /// Returns the members the round proposes: heard of and not given up on, ascending.
    pub(super) fn members(&self) -> Vec<NodeId> {
        self.proc_set.difference(&self.fail_set).copied().collect()
    }
}

/// GATHER's data.
#[derive(Debug)]
pub(super) struct Gather {
    /// The round.
    pub(super) round: Round,
    /// Processors whose joins match this node's sets (this node included).
    pub(super) consensus: BTreeSet<NodeId>,
    /// When this node entered GATHER: announcements of deafness older than this are not
    /// acted on in this gathering (`reach.rs`).
    pub(super) since: u64,
}

impl Gather {
    /// Returns GATHER, entered at `now`, with `round` and nobody agreeing yet.
    pub(super) fn new(round: Round, now: u64) -> Self {
        Self {
            round,
            consensus: BTreeSet::new(),
            since: now,
        }
    }
}

/// COMMIT's data.
#[derive(Debug)]
pub(super) struct Commit {
    /// The round that proposed the ring (kept for a fallback).
    pub(super) round: Round,
    /// The proposed ring.
    pub(super) ring_id: RingId,
    /// Its members, ascending.
    pub(super) members: Vec<NodeId>,
}

/// How far RECOVERY is from installing the new ring (the `retrans_flg` rule of the module
/// docs).
#[derive(Debug, Default)]
pub(super) struct InstallProgress {
    /// This node set `retrans_flg` and still has old-ring frames to re-send.
    pub(super) my_set_retrans: bool,
    /// The token's seq at this node's last visit.
    pub(super) last_seq: Option<u64>,
    /// Successive visits with the flag clear and the seq unchanged.
    pub(super) quiet_rotations: u32,
    /// The new ring's last recovery seq, once two quiet rotations fixed it.
    pub(super) install_seq: Option<u64>,
    /// Successive visits with the token's aru at or above `install_seq`.
    pub(super) aru_rotations: u32,
}

/// RECOVERY's data.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// The round that formed the new ring (kept for a fallback).
    pub(super) round: Round,
    /// The new ring: its id, members and ordering.
    pub(super) next: Ordering,
    /// The transitional members: those that come from this node's old ring.
    pub(super) trans: Vec<NodeId>,
    /// The highest seq any transitional member delivered on the old ring.
    pub(super) high_ring_delivered: u64,
    /// Old-ring frames this node re-sends, encapsulated, on the new ring.
    pub(super) old_frames: VecDeque<(u64, Frame)>,
    /// Progress towards the install.
    pub(super) progress: InstallProgress,
    /// The representative has turned the commit token into the first token.
    pub(super) initial_token_sent: bool,
    /// Flow control and hold counters of the token's visits.
    pub(super) counters: TokenCounters,
}

/// Counters carried from one token visit to the next, from RECOVERY into OPERATIONAL.
#[derive(Debug, Default)]
pub(super) struct TokenCounters {
    /// Frames this node sent (new and retransmitted) on its last visit: its share of fcc.
    pub(super) my_last_fcc: u32,
    /// This node's backlog on its last visit: its share of the token's backlog.
    pub(super) my_pbl: u32,
    /// Visits in a row that found the token's seq unchanged.
    pub(super) seqno_unchanged: u32,
    /// The token's seq at the last visit.
    pub(super) last_token_seq_value: u64,
    /// A token-hold cancel was sent since the seq last moved.
    pub(super) hold_cancel_sent: bool,
    /// Visits in a row that found the aru held at `fr_aru` by `fr_addr`.
    pub(super) fr_count: u32,
    /// The aru of the last visit.
    pub(super) fr_aru: u64,
    /// Who held it down at the last visit.
    pub(super) fr_addr: NodeId,
}

/// OPERATIONAL's data.
#[derive(Debug)]
pub(super) struct Operational {
    /// Flow control, hold and failure-to-receive counters of the token's visits.
    pub(super) counters: TokenCounters,
    /// The token the representative holds on an idle ring, until `hold` or new traffic.
    pub(super) held: Option<PassedToken>,
}
