//! A tiny network for the ring's unit tests: nodes exchange datagrams directly, in order,
//! with no loss unless a test drops or crafts packets itself.

use super::Ring;
use crate::event::{ConfigKind, Dest, Event, MembState};
use crate::wire::{self, Message, NodeId, Packet};
use crate::{Config, Guarantee, PacketOutcome};
use bytes::Bytes;
use std::collections::VecDeque;

/// A datagram in flight.
pub(super) struct InFlight {
    pub(super) from: NodeId,
    pub(super) to: NodeId,
    pub(super) data: Bytes,
}

/// Returns true for a datagram the network loses.
pub(super) type Loss = Box<dyn FnMut(&InFlight) -> bool>;

/// A message as (sender, counter).
pub(super) type Msg = (NodeId, u64);

/// A configuration as (kind, members).
pub(super) type Conf = (ConfigKind, Vec<NodeId>);

/// Nodes 1..=n and the datagrams between them.
pub(super) struct Net {
    pub(super) now: u64,
    pub(super) rings: Vec<Ring>,
    pub(super) wire: VecDeque<InFlight>,
    /// Every event of every node, in order, with the node's id.
    pub(super) events: Vec<(NodeId, Event)>,
    /// Nodes that neither send nor receive.
    pub(super) down: Vec<NodeId>,
    /// Returns true for a datagram to lose.
    pub(super) lose: Option<Loss>,
}

impl Net {
    /// Returns a network of `n` fresh nodes.
    pub(super) fn new(n: u32, cfg: Config) -> Self {
        Self {
            now: 0,
            rings: (1..=n)
                .map(|id| Ring::new(id, 1, cfg.clone(), 0, 0).expect("valid config"))
                .collect(),
            wire: VecDeque::new(),
            events: Vec::new(),
            down: Vec::new(),
            lose: None,
        }
    }

    /// Returns node `id`.
    pub(super) fn ring(&mut self, id: NodeId) -> &mut Ring {
        &mut self.rings[id as usize - 1]
    }

    /// Moves what every node wants sent onto the wire, and its events into `events`.
    pub(super) fn collect(&mut self) {
        let n = self.rings.len() as NodeId;
        for r in self.rings.iter_mut() {
            let from = r.id();
            while let Some(t) = r.poll_transmit() {
                if self.down.contains(&from) {
                    continue;
                }
                match t.dest {
                    Dest::Multicast => {
                        for to in (1..=n).filter(|&to| to != from) {
                            self.wire.push_back(InFlight {
                                from,
                                to,
                                data: t.payload.clone(),
                            });
                        }
                    }
                    Dest::Node(to) if to <= n => self.wire.push_back(InFlight {
                        from,
                        to,
                        data: t.payload,
                    }),
                    Dest::Node(_) => {}
                }
            }
            while let Some(e) = r.poll_event() {
                self.events.push((from, e));
            }
        }
    }

    /// Delivers one datagram (or, with none in flight, fires the earliest timer); returns
    /// false when nothing is left to do before `until`.
    pub(super) fn step(&mut self, until: u64) -> bool {
        self.collect();
        if let Some(p) = self.wire.pop_front() {
            self.now += 10_000;
            let lost = self.lose.as_mut().is_some_and(|f| f(&p));
            if !self.down.contains(&p.to) && !lost {
                let now = self.now;
                // A drop here is the ring's own business; tests look at the outcome directly.
                let _ = self.ring(p.to).handle_packet(now, Some(p.from), p.data);
            }
            return true;
        }
        let next = self
            .rings
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.down.contains(&(*i as NodeId + 1)))
            .filter_map(|(_, r)| r.poll_timeout())
            .min();
        match next {
            Some(t) if t <= until => {
                self.now = self.now.max(t);
                let now = self.now;
                for (i, r) in self.rings.iter_mut().enumerate() {
                    if !self.down.contains(&(i as NodeId + 1)) {
                        r.handle_timeout(now);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Delivers every datagram in flight (and what they cause), firing no timer.
    pub(super) fn drain_wire(&mut self) {
        self.collect();
        while !self.wire.is_empty() {
            self.step(self.now);
            self.collect();
        }
    }

    /// Runs until `until` (ns) or until nothing is left to do.
    pub(super) fn run_until(&mut self, until: u64) {
        while self.now < until && self.step(until) {}
        self.collect();
    }

    /// Runs until every live node is OPERATIONAL on one ring of every live node.
    pub(super) fn form(&mut self) {
        let deadline = self.now + 5_000_000_000;
        let up: Vec<NodeId> = (1..=self.rings.len() as NodeId)
            .filter(|i| !self.down.contains(i))
            .collect();
        while self.now < deadline {
            if self.step(deadline) {
                let first = self.ring(up[0]).ring_id();
                let formed = up.iter().all(|&i| {
                    let r = &self.rings[i as usize - 1];
                    r.state() == MembState::Operational
                        && r.ring_id() == first
                        && r.members() == up.as_slice()
                });
                if formed {
                    self.collect();
                    return;
                }
            } else {
                break;
            }
        }
        panic!("no ring of {up:?} formed");
    }

    /// Submits a message of `len` bytes at node `id`.
    pub(super) fn submit(&mut self, id: NodeId, len: usize, g: Guarantee) {
        let now = self.now;
        self.ring(id)
            .submit(now, &vec![id as u8; len], g)
            .expect("room in the queue");
    }

    /// Returns node `id`'s events, in order.
    pub(super) fn events_of(&self, id: NodeId) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|(n, _)| *n == id)
            .map(|(_, e)| e)
            .collect()
    }

    /// Hands node `to` a packet from `from` now, past the wire; returns what it did.
    pub(super) fn hand(
        &mut self,
        to: NodeId,
        from: NodeId,
        ring_id: crate::RingId,
        message: Message,
    ) -> PacketOutcome {
        let now = self.now;
        self.ring(to)
            .handle_packet(now, Some(from), encode(from, ring_id, message))
    }

    /// Returns the messages node `id` delivered, as (sender, counter).
    pub(super) fn delivered(&self, id: NodeId) -> Vec<Msg> {
        self.events_of(id)
            .into_iter()
            .filter_map(|e| match e {
                Event::Deliver(d) => Some((d.id.node, d.id.counter)),
                _ => None,
            })
            .collect()
    }

    /// Returns node `id`'s configuration events, as (kind, members).
    pub(super) fn configs(&self, id: NodeId) -> Vec<Conf> {
        self.events_of(id)
            .into_iter()
            .filter_map(|e| match e {
                Event::Config(c) => Some((c.kind, c.members.clone())),
                _ => None,
            })
            .collect()
    }

    /// Runs the network until a token is on its way to `to` (bounded: 10,000 steps of at
    /// most 10 ms) and takes it off the wire, decoded.
    pub(super) fn take_token(&mut self, to: NodeId) -> Packet {
        for _ in 0..10_000 {
            self.collect();
            let on_its_way = self
                .wire
                .iter()
                .any(|p| p.to == to && kind(&p.data) == Some(wire::MessageType::Token));
            if on_its_way {
                return self.take_in_flight(to, wire::MessageType::Token).remove(0);
            }
            assert!(self.step(self.now + 10 * 1_000_000), "the ring stalled");
        }
        panic!("no token reached node {to}");
    }

    /// Removes and returns, decoded, the datagrams in flight to `to` of one type.
    pub(super) fn take_in_flight(&mut self, to: NodeId, kind: wire::MessageType) -> Vec<Packet> {
        self.collect();
        let mut taken = Vec::new();
        self.wire.retain(|p| {
            let Ok(pk) = wire::decode(&p.data) else {
                return true;
            };
            if p.to == to && pk.message.kind() == kind {
                taken.push(pk);
                false
            } else {
                true
            }
        });
        taken
    }
}

/// Encodes a packet.
pub(super) fn encode(sender: NodeId, ring_id: crate::RingId, message: Message) -> Bytes {
    Bytes::from(wire::encode(&Packet {
        sender,
        ring_id,
        message,
    }))
}

/// Returns the proc and fail sets of a node in GATHER.
pub(super) fn round(r: &Ring) -> (Vec<NodeId>, Vec<NodeId>) {
    match &r.state {
        super::state::State::Gather(g) => (
            g.round.proc_set.iter().copied().collect(),
            g.round.fail_set.iter().copied().collect(),
        ),
        other => panic!("not in GATHER but {:?}", other.kind()),
    }
}

/// Returns the message type of an encoded packet.
pub(super) fn kind(data: &[u8]) -> Option<wire::MessageType> {
    wire::decode_header(data).ok().map(|(k, _, _)| k)
}
