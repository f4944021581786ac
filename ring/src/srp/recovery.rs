//! RECOVERY and the install step: extended virtual synchrony (TOCS95 §7).
//!
//! In RECOVERY the members of the new ring re-send, encapsulated in new-ring frames, every
//! old-ring frame above the lowest aru of their old ring's transitional members, so that
//! the members who come from one old ring end up holding the same old-ring messages. The
//! install then delivers, in order: what the old ring can still deliver; the transitional
//! configuration (the members that come from this node's old ring); what the transitional
//! configuration allows (past gaps, only frames of transitional members, whose causality
//! holds); then the regular configuration, and OPERATIONAL begins.

use super::ordering::{Frame, Ordering};
use super::state::{Operational, Recovery, State};
use super::timer::Timer;
use super::Ring;
use crate::event::{ConfigChange, ConfigKind, Event, Reason};
use crate::wire::{self, CommitToken, Encapsulated, MembEntry, Message, NodeId, Packet, RingId};
use bytes::Bytes;
use std::collections::VecDeque;

impl Ring {
    /// Enters RECOVERY from COMMIT once the commit token has completed its first rotation:
    /// finds the transitional members and the old-ring frames this node must re-send.
    pub(super) fn recovery_enter(&mut self, ring_id: RingId, ct: &CommitToken) {
        let State::Commit(c) = &mut self.state else {
            return;
        };
        let round = std::mem::take(&mut c.round);
        let trans: Vec<(NodeId, MembEntry)> = ct
            .members
            .iter()
            .zip(&ct.entries)
            .filter(|(_, e)| e.old_ring == self.cur.ring_id)
            .map(|(m, e)| (*m, *e))
            .collect();
        let low_ring_aru = trans
            .iter()
            .map(|(_, e)| e.aru)
            .min()
            .unwrap_or(self.cur.my_aru);
        let high_ring_delivered = trans
            .iter()
            .map(|(_, e)| e.high_delivered)
            .max()
            .unwrap_or(0);
        let old_frames: VecDeque<(u64, Frame)> = self
            .cur
            .store
            .range(low_ring_aru + 1..)
            .filter(|(_, f)| !f.encapsulated)
            .map(|(s, f)| (*s, f.clone()))
            .collect();
        tracing::debug!(node = self.id, %ring_id, low_ring_aru, resend = old_frames.len(), "recovery");
        self.set_state(
            State::Recovery(Box::new(Recovery {
                round,
                next: Ordering::new(ring_id, ct.members.clone()),
                trans: trans.iter().map(|(m, _)| *m).collect(),
                high_ring_delivered,
                old_frames,
                ..Recovery::default()
            })),
            Reason::CommitComplete,
        );
    }

    /// Stores an old-ring frame received encapsulated during RECOVERY.
    pub(super) fn recover_old_frame(&mut self, e: Encapsulated, payload: Bytes) {
        if e.ring_id != self.cur.ring_id {
            return;
        }
        let wire = Bytes::from(wire::encode(&Packet {
            sender: e.origin,
            ring_id: e.ring_id,
            message: Message::Mcast(wire::Mcast {
                seq: e.seq,
                safe: e.safe,
                encapsulated: None,
                payload: payload.clone(),
            }),
        }));
        // Already held, or delivered: the copy changes nothing.
        let _ = self.cur.insert(
            e.seq,
            Frame {
                sender: e.origin,
                safe: e.safe,
                encapsulated: false,
                payload,
                wire,
            },
        );
    }

    /// Installs the new ring: the EVS delivery steps, then OPERATIONAL.
    pub(super) fn install(&mut self, now: u64) {
        let State::Recovery(r) = &mut self.state else {
            return;
        };
        // The state stays RECOVERY (its body taken) until the regular configuration is
        // delivered: the state change comes after the configurations, as the records expect.
        let rec = std::mem::take(&mut **r);
        let old_ring = self.cur.ring_id;
        tracing::debug!(node = self.id, new = %rec.next.ring_id, old = %old_ring, "install");
        // 1. What the old ring can still deliver: agreed frames up to the first gap, and safe
        //    ones some transitional member already delivered as safe (so all old members had them).
        let old_safe = self.cur.safe_upto.max(rec.high_ring_delivered);
        loop {
            let s = self.cur.high_delivered + 1;
            let Some(f) = self.cur.store.get(&s) else {
                break;
            };
            if f.safe && s > old_safe {
                break;
            }
            let f = f.clone();
            self.deliver_frame(old_ring, s, &f);
            self.cur.high_delivered = s;
        }
        // 2. The transitional configuration.
        let left: Vec<NodeId> = self
            .cur
            .members
            .iter()
            .filter(|m| !rec.trans.contains(m))
            .copied()
            .collect();
        self.out.events.push_back(Event::Config(ConfigChange {
            kind: ConfigKind::Transitional,
            ring_id: rec.next.ring_id,
            members: rec.trans.clone(),
            left,
            joined: Vec::new(),
        }));
        // 3. What the transitional configuration allows: in order, past gaps only from its members.
        let mut expected = self.cur.high_delivered + 1;
        let mut gap = false;
        let rest: Vec<(u64, Frame)> = self
            .cur
            .store
            .range(expected..)
            .map(|(s, f)| (*s, f.clone()))
            .collect();
        for (s, f) in rest {
            if s != expected {
                gap = true;
            }
            expected = s + 1;
            if gap && !rec.trans.contains(&f.sender) {
                continue;
            }
            self.deliver_frame(old_ring, s, &f);
        }
        // Fragments never span rings: partial messages are dropped here and their senders
        // restart them whole on the new ring (see `SendQueue::restart_cut_message`).
        self.reassembly.clear();
        self.queue.restart_cut_message();
        // 4. The regular configuration.
        let next = rec.next;
        self.out.events.push_back(Event::Config(ConfigChange {
            kind: ConfigKind::Regular,
            ring_id: next.ring_id,
            members: next.members.clone(),
            left: self
                .cur
                .members
                .iter()
                .filter(|m| !next.members.contains(m))
                .copied()
                .collect(),
            joined: next
                .members
                .iter()
                .filter(|m| !rec.trans.contains(m))
                .copied()
                .collect(),
        }));
        self.stats.installs += 1;
        self.cur = next;
        self.set_state(
            State::Operational(Operational {
                counters: rec.counters,
                held: None,
            }),
            Reason::Installed,
        );
        // Every member runs the merge timer: the representative announces the ring on it,
        // and any member probes those that said they cannot hear it (`reach.rs`).
        self.timers.arm(Timer::MergeDetect, now + self.t.merge);
        self.deliver_ready();
        // Processors that asked to join, or were heard again after a silence, while this
        // node was forming the ring: merge with them now rather than at their next join.
        self.merge_pending(now);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{kind, Conf, Msg, Net};
    use crate::event::{ConfigKind, Event};
    use crate::wire::{MessageType, NodeId};
    use crate::{Config, Guarantee};

    const MS: u64 = 1_000_000;

    /// Returns node `id`'s messages delivered before its last transitional configuration,
    /// and its last two configurations.
    fn before_last_transition(net: &Net, id: NodeId) -> (Vec<Msg>, Vec<Conf>) {
        let evs = net.events_of(id);
        let t = evs
            .iter()
            .rposition(|e| matches!(e, Event::Config(c) if c.kind == ConfigKind::Transitional))
            .expect("a transitional configuration");
        let delivered = evs[..t]
            .iter()
            .filter_map(|e| match e {
                Event::Deliver(d) => Some((d.id.node, d.id.counter)),
                _ => None,
            })
            .collect();
        let configs = net.configs(id);
        (delivered, configs[configs.len() - 2..].to_vec())
    }

    /// Runs until a token is on its way to `to` and hands it over: node `to` takes its visit.
    fn visit(net: &mut Net, to: NodeId) {
        let tok = net.take_token(to);
        let outcome = net.hand(to, tok.sender, tok.ring_id, tok.message);
        assert_eq!(outcome, crate::PacketOutcome::Accepted);
    }

    /// Returns node `id`'s events from its last transitional configuration to the regular
    /// one after it: (messages delivered in between, the two configurations).
    fn between_configurations(net: &Net, id: NodeId) -> (Vec<Msg>, Vec<Conf>) {
        let evs = net.events_of(id);
        let t = evs
            .iter()
            .rposition(|e| matches!(e, Event::Config(c) if c.kind == ConfigKind::Transitional))
            .expect("a transitional configuration");
        let delivered = evs[t..]
            .iter()
            .take_while(|e| !matches!(e, Event::Config(c) if c.kind == ConfigKind::Regular))
            .filter_map(|e| match e {
                Event::Deliver(d) => Some((d.id.node, d.id.counter)),
                _ => None,
            })
            .collect();
        let configs = net.configs(id);
        (delivered, configs[configs.len() - 2..].to_vec())
    }

    #[test]
    fn install_delivers_the_old_ring_then_the_transitional_then_the_regular_configuration() {
        let mut net = Net::new(3, Config::default());
        net.form();
        // Two agreed and two safe messages go out; node 3 fails before the token has come
        // round twice, so the safe ones are not yet safe on the old ring.
        net.submit(1, 100, Guarantee::Agreed);
        net.submit(1, 100, Guarantee::Safe);
        net.submit(1, 100, Guarantee::Agreed);
        net.submit(1, 100, Guarantee::Safe);
        visit(&mut net, 1);
        net.down.push(3);
        net.drain_wire();
        for id in [1, 2] {
            assert_eq!(
                net.delivered(id),
                vec![(1, 1)],
                "node {id}: the first agreed one only"
            );
        }
        net.form();
        for id in [1, 2] {
            let (between, configs) = between_configurations(&net, id);
            assert_eq!(
                configs,
                vec![
                    (ConfigKind::Transitional, vec![1, 2]),
                    (ConfigKind::Regular, vec![1, 2])
                ],
                "node {id}"
            );
            // Not safe on the old ring: delivered in the transitional configuration, in order.
            assert_eq!(between, vec![(1, 2), (1, 3), (1, 4)], "node {id}");
        }
        let left = net.events.iter().rev().find_map(|(n, e)| match e {
            Event::Config(c) if *n == 1 && c.kind == ConfigKind::Transitional => {
                Some(c.left.clone())
            }
            _ => None,
        });
        assert_eq!(left, Some(vec![3]));
    }

    #[test]
    fn recovery_re_sends_the_old_ring_frames_a_transitional_member_missed() {
        let mut net = Net::new(3, Config::default());
        net.form();
        // Node 2 will miss every frame node 1 sends; node 3 crashes before anyone can ask.
        net.lose = Some(Box::new(|p| {
            p.from == 1 && p.to == 2 && kind(&p.data) == Some(MessageType::Mcast)
        }));
        for _ in 0..3 {
            net.submit(1, 100, Guarantee::Agreed);
        }
        // Let node 1 take the token and send the frames.
        loop {
            net.collect();
            let to_1 = net
                .wire
                .iter()
                .any(|p| p.to == 1 && kind(&p.data) == Some(MessageType::Token));
            if to_1 {
                break;
            }
            assert!(net.step(net.now + 10 * MS));
        }
        let tok = net.take_in_flight(1, MessageType::Token).remove(0);
        let outcome = net.hand(1, 3, tok.ring_id, tok.message);
        assert_eq!(outcome, crate::PacketOutcome::Accepted);
        net.down.push(3);
        net.drain_wire();
        assert!(net.delivered(2).is_empty(), "node 2 has none of them yet");
        net.lose = None;
        net.form();
        let (d1, _) = before_last_transition(&net, 1);
        let (d2, c2) = before_last_transition(&net, 2);
        assert_eq!(d1.len(), 3);
        assert_eq!(
            d2, d1,
            "transitional members deliver the same old-ring messages"
        );
        assert_eq!(c2[0], (ConfigKind::Transitional, vec![1, 2]));
    }
}
