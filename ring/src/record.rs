//! Event records: the JSON-lines format every node writes, simulated or real, and that the
//! checker reads.
//!
//! Every record has `t_ns` (monotonic ns), `node`, `inc` (incarnation) and `ev`, the kind.
//! Kinds: `state`, `config`, `send`, `deliver` (defined by the ring), `sync` (the sync
//! engine), `crash` (written by a
//! simulator or runner when it kills a node; a killed process cannot write it itself), and
//! `fault` (a fault applied by a simulator or runner, with `node` 0).

use crate::event::{ConfigChange, ConfigKind, Delivery, Event, MembState, Reason};
use crate::pack::MsgId;
use crate::wire::{NodeId, RingId};
use serde::{Deserialize, Serialize};

/// One line of a node's event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Monotonic time, ns.
    pub t_ns: u64,
    /// Node id (0 for records of the harness).
    pub node: NodeId,
    /// Incarnation of the node.
    pub inc: u32,
    /// What happened.
    #[serde(flatten)]
    pub body: Body,
}

/// The kind-specific part of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Body {
    /// A membership state change.
    State {
        /// Previous state.
        from: MembState,
        /// New state.
        to: MembState,
        /// Why.
        reason: Reason,
    },
    /// A configuration delivered to the application.
    Config {
        /// Transitional or regular.
        kind: ConfigKind,
        /// The ring.
        ring: RingId,
        /// Members.
        members: Vec<NodeId>,
        /// Members of the previous configuration not in this one.
        left: Vec<NodeId>,
        /// Members not in the transitional configuration before it.
        joined: Vec<NodeId>,
    },
    /// The application submitted a message.
    Send {
        /// Its id.
        id: MsgId,
        /// Its length.
        len: usize,
        /// Safe or agreed.
        safe: bool,
    },
    /// A message delivered in total order.
    Deliver {
        /// Its id.
        id: MsgId,
        /// The ring that ordered it.
        ring: RingId,
        /// Its seq there.
        seq: u64,
        /// Its length.
        len: usize,
        /// Delivered as safe.
        safe: bool,
        /// Submit time at the sender.
        sent_t_ns: u64,
    },
    /// A step of the sync engine: phase `start`, `service_done`, `conflict`, `done` or `abort`.
    Sync {
        /// The phase.
        phase: String,
        /// The ring the sync is for.
        ring: RingId,
        /// The service, where the phase concerns one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<u16>,
        /// Sync bytes delivered (for `service_done` and `done`).
        #[serde(default)]
        bytes: u64,
        /// What a service decided (for `conflict`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The node's process was killed; its state is lost.
    Crash {},
    /// A fault applied by the harness.
    Fault {
        /// What was done: isolate, split, heal, crash, restart, pause, resume, ...
        action: String,
        /// The nodes it targeted.
        targets: Vec<NodeId>,
        /// For a split: the groups, each of which can reach only itself.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<Vec<NodeId>>,
    },
}

impl Body {
    /// Returns the record body for a ring event.
    pub fn from_event(e: &Event) -> Self {
        match e {
            Event::State { from, to, reason } => Self::State {
                from: *from,
                to: *to,
                reason: *reason,
            },
            Event::Config(ConfigChange {
                kind,
                ring_id,
                members,
                left,
                joined,
            }) => Self::Config {
                kind: *kind,
                ring: *ring_id,
                members: members.clone(),
                left: left.clone(),
                joined: joined.clone(),
            },
            Event::Deliver(Delivery {
                id,
                ring_id,
                seq,
                safe,
                sent_t_ns,
                data,
            }) => Self::Deliver {
                id: *id,
                ring: *ring_id,
                seq: *seq,
                len: data.len(),
                safe: *safe,
                sent_t_ns: *sent_t_ns,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_documented_shape() {
        let r = Record {
            t_ns: 5,
            node: 3,
            inc: 1,
            body: Body::Deliver {
                id: "3.1.42".parse().unwrap(),
                ring: RingId { rep: 1, seq: 8 },
                seq: 1234,
                len: 100,
                safe: false,
                sent_t_ns: 123,
            },
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"t_ns":5,"node":3,"inc":1,"ev":"deliver","id":"3.1.42","ring":{"rep":1,"seq":8},"seq":1234,"len":100,"safe":false,"sent_t_ns":123}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&s).unwrap(), r);
        let st = r#"{"t_ns":1,"node":2,"inc":0,"ev":"state","from":"operational","to":"gather","reason":"token_loss"}"#;
        let r: Record = serde_json::from_str(st).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), st);
        let c = r#"{"t_ns":1,"node":2,"inc":0,"ev":"config","kind":"transitional","ring":{"rep":1,"seq":8},"members":[1,2,3],"left":[4],"joined":[]}"#;
        let r: Record = serde_json::from_str(c).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), c);
    }
}
