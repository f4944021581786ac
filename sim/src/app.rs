//! What rides on a simulated node's ring: an optional application layer that sees the ring's
//! events and submits through it. The checkpoint app runs the sync engine with the checkpoint
//! service and a random workload, so partitions make the replicas diverge and syncs must bring
//! them back together.

use bytes::Bytes;
use rand::Rng;
use ringlab_ring::record::Body;
use ringlab_ring::{Event, Guarantee, NodeId, Ring, SubmitError};
use ringlab_sync::checkpoint::SECTION_MAX;
use ringlab_sync::{CheckpointService, Op, SyncEngine, SyncEvent, CHECKPOINT_SERVICE};
use std::any::Any;
use std::collections::VecDeque;

/// An application layer on a simulated node.
pub trait App: Send {
    /// Sees one ring event; appends the records it wants written.
    fn on_event(&mut self, ev: &Event, records: &mut Vec<Body>);
    /// Submits what it has to the ring; appends `send` and other records.
    fn pump(&mut self, now: u64, ring: &mut Ring, records: &mut Vec<Body>);
    /// Returns itself, to downcast.
    fn as_any(&self) -> &dyn Any;
    /// Returns itself, to downcast.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The sync engine with the checkpoint service, plus a queue of checkpoint operations.
pub struct CheckpointApp {
    /// The engine (owning the service).
    pub engine: SyncEngine,
    pending: VecDeque<Bytes>,
    ops: VecDeque<Bytes>,
    /// Operations refused because sync was running (the application retries later).
    pub held_while_syncing: u64,
}

impl CheckpointApp {
    /// Creates the app of node `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            engine: SyncEngine::new(me, vec![Box::new(CheckpointService::new(me))]),
            pending: VecDeque::new(),
            ops: VecDeque::new(),
            held_while_syncing: 0,
        }
    }

    /// Returns the checkpoint service.
    pub fn checkpoints(&self) -> &CheckpointService {
        self.engine
            .service(CHECKPOINT_SERVICE)
            .and_then(|s| (s as &dyn Any).downcast_ref::<CheckpointService>())
            .expect("the checkpoint service is registered")
    }

    /// Queues a checkpoint operation; while sync runs it waits (sync traffic goes first).
    pub fn queue_op(&mut self, op: &Op) {
        self.ops
            .push_back(SyncEngine::op_message(CHECKPOINT_SERVICE, &op.encode()));
    }

    /// Returns a random operation on a small set of names, with sections of `section` bytes.
    pub fn random_op(rng: &mut impl Rng, section: usize) -> Op {
        let name = format!("ckpt-{}", rng.gen_range(0..8)).into_bytes();
        let sec = format!("s{}", rng.gen_range(0..16)).into_bytes();
        match rng.gen_range(0..100) {
            0..=19 => Op::Create(name),
            20..=39 => Op::Open(name),
            40..=54 => Op::Close(name),
            55..=89 => {
                let fill: u8 = rng.gen();
                Op::Write(
                    name,
                    sec,
                    Bytes::from(vec![fill; section.clamp(1, SECTION_MAX)]),
                )
            }
            90..=94 => Op::Delete(name, sec),
            _ => Op::Unlink(name),
        }
    }
}

fn sync_record(e: SyncEvent) -> Body {
    let (phase, ring, service, bytes, detail) = match e {
        SyncEvent::Start { ring } => ("start", ring, None, 0, None),
        SyncEvent::ServiceDone {
            ring,
            service,
            bytes,
        } => ("service_done", ring, Some(service), bytes, None),
        SyncEvent::Conflict {
            ring,
            service,
            detail,
        } => ("conflict", ring, Some(service), 0, Some(detail)),
        SyncEvent::Done { ring, bytes } => ("done", ring, None, bytes, None),
        SyncEvent::Abort { ring, service } => ("abort", ring, service, 0, None),
    };
    Body::Sync {
        phase: phase.into(),
        ring,
        service,
        bytes,
        detail,
    }
}

fn submit_all(q: &mut VecDeque<Bytes>, now: u64, ring: &mut Ring, records: &mut Vec<Body>) -> bool {
    while let Some(m) = q.front() {
        match ring.submit(now, m, Guarantee::Agreed) {
            Ok(id) => {
                records.push(Body::Send {
                    id,
                    len: m.len(),
                    safe: false,
                });
                q.pop_front();
            }
            Err(SubmitError::QueueFull { .. }) => return false,
            Err(_) => {
                q.pop_front();
            }
        }
    }
    true
}

impl App for CheckpointApp {
    fn on_event(&mut self, ev: &Event, records: &mut Vec<Body>) {
        self.engine.handle_event(ev);
        while let Some(e) = self.engine.poll_event() {
            records.push(sync_record(e));
        }
    }

    fn pump(&mut self, now: u64, ring: &mut Ring, records: &mut Vec<Body>) {
        for _ in 0..64 {
            while let Some(m) = self.engine.poll_submit() {
                self.pending.push_back(m);
            }
            if !submit_all(&mut self.pending, now, ring, records) {
                return;
            }
            if !self.engine.is_syncing() {
                break;
            }
            let room = ring
                .config()
                .send_queue_bytes
                .saturating_sub(ring.queue_depth().1 + 64 * 1024);
            self.engine.poll(room);
            while let Some(e) = self.engine.poll_event() {
                records.push(sync_record(e));
            }
            if self.engine.poll_submit_is_empty() {
                break;
            }
        }
        if self.engine.is_syncing() {
            self.held_while_syncing += self.ops.len() as u64;
        } else {
            submit_all(&mut self.ops, now, ring, records);
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
