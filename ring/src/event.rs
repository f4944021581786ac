//! What the ring hands upward (events) and downward (transmits).

use crate::pack::MsgId;
use crate::wire::{NodeId, RingId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// To every node of the cluster (multicast, or one datagram per node for unicast).
    Multicast,
    /// To one node.
    Node(NodeId),
}

/// A packet the runtime must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub dest: Dest,
    /// The encoded packet.
    pub payload: Bytes,
}

/// The membership states (TOCS95 §6.2), plus the states before start and after leaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembState {
    /// Before the first state: only ever a `from`.
    Start,
    /// Ordering messages on an installed ring.
    Operational,
    /// Exchanging joins to agree on a membership.
    Gather,
    /// Circulating the commit token.
    Commit,
    /// Exchanging old-ring messages on the new ring.
    Recovery,
    /// Left the ring after a graceful leave.
    Left,
}

/// Why the membership state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The node started.
    Startup,
    /// The token did not arrive within `token` in OPERATIONAL.
    TokenLoss,
    /// The commit token did not come round in COMMIT.
    CommitTokenLoss,
    /// The token did not come round in RECOVERY.
    RecoveryTokenLoss,
    /// A join that could not be ignored.
    Join,
    /// An mcast from another ring.
    ForeignMessage,
    /// A merge-detect from another ring.
    MergeDetect,
    /// Consensus timed out; silent processors were added to the fail set.
    ConsensusTimeout,
    /// A member held the aru back for `fail_recv_const` rotations.
    FailToRecv,
    /// A member announced a graceful leave.
    Leave,
    /// This node reached consensus as the lowest member and sent the commit token.
    Consensus,
    /// The commit token arrived.
    CommitToken,
    /// The commit token completed its first rotation.
    CommitComplete,
    /// Recovery finished and the new ring was installed.
    Installed,
    /// This node left gracefully.
    Shutdown,
}

/// Transitional or regular configuration (extended virtual synchrony).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    /// The members that came together from the old ring.
    Transitional,
    /// The new ring's membership.
    Regular,
}

/// A configuration change delivered to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigChange {
    /// Transitional or regular.
    pub kind: ConfigKind,
    /// The new ring's id (for both kinds).
    pub ring_id: RingId,
    /// Members, ascending.
    pub members: Vec<NodeId>,
    /// Members of the previous configuration not in this one.
    pub left: Vec<NodeId>,
    /// Members of this configuration not in the transitional one before it.
    pub joined: Vec<NodeId>,
}

/// An application message delivered in total order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The message id.
    pub id: MsgId,
    /// The ring it was ordered on.
    pub ring_id: RingId,
    /// Its frame's seq on that ring (the last frame's, for a fragmented message).
    pub seq: u64,
    /// Delivered as safe (true) or agreed.
    pub safe: bool,
    /// The sender's submit time.
    pub sent_t_ns: u64,
    /// The message.
    pub data: Bytes,
}

/// Something the application should know, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The membership state changed.
    State {
        /// Previous state.
        from: MembState,
        /// New state.
        to: MembState,
        /// Why.
        reason: Reason,
    },
    /// A transitional or regular configuration.
    Config(ConfigChange),
    /// A message in total order.
    Deliver(Delivery),
}
