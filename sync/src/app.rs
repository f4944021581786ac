//! The sync engine with the checkpoint service, driven over a [`Ring`]: what a node (real or
//! simulated) runs on top of its ring. It feeds ring events to the engine, submits the
//! engine's messages first, and holds the application's checkpoint operations while a sync
//! runs (sync traffic goes first), submitting them once it completes.

use crate::{CheckpointService, Op, SyncEngine, CHECKPOINT_SERVICE};
use bytes::Bytes;
use ringlab_records::Body;
use ringlab_ring::{Event, Guarantee, NodeId, Ring, SubmitError};
use std::any::Any;
use std::collections::VecDeque;

/// The sync engine with the checkpoint service, plus a queue of checkpoint operations.
pub struct CheckpointApp {
    /// The engine (owning the service).
    pub engine: SyncEngine,
    pending: VecDeque<Bytes>,
    ops: VecDeque<Bytes>,
    /// The bytes of `ops`.
    ops_bytes: usize,
}

impl CheckpointApp {
    /// Creates the app of node `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            engine: SyncEngine::new(me, vec![Box::new(CheckpointService::new(me))]),
            pending: VecDeque::new(),
            ops: VecDeque::new(),
            ops_bytes: 0,
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
        let m = SyncEngine::op_message(CHECKPOINT_SERVICE, &op.encode());
        self.ops_bytes += m.len();
        self.ops.push_back(m);
    }

    /// Returns the operations waiting to be submitted.
    pub fn queued_ops(&self) -> usize {
        self.ops.len()
    }

    /// Returns the bytes of the operations waiting to be submitted.
    pub fn queued_bytes(&self) -> usize {
        self.ops_bytes
    }

    /// Hands one ring event to the engine; appends the records it produces.
    pub fn on_event(&mut self, ev: &Event, records: &mut Vec<Body>) {
        self.engine.handle_event(ev);
        while let Some(e) = self.engine.poll_event() {
            records.push(e.to_record());
        }
    }

    /// Submits what waits, sync messages first, as far as the ring's queue takes them;
    /// appends `send` and `sync` records.
    pub fn pump(&mut self, now: u64, ring: &mut Ring, records: &mut Vec<Body>) {
        for _ in 0..64 {
            while let Some(m) = self.engine.poll_submit() {
                self.pending.push_back(m);
            }
            if !submit_all(&mut self.pending, now, ring, records, &mut 0) {
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
                records.push(e.to_record());
            }
            if self.engine.poll_submit_is_empty() {
                break;
            }
        }
        if !self.engine.is_syncing() {
            let mut taken = 0;
            submit_all(&mut self.ops, now, ring, records, &mut taken);
            self.ops_bytes -= taken;
        }
    }
}

/// Submits the messages of `q` in order until the ring's queue is full (returns false);
/// adds the bytes of the messages it took off `q` to `taken`.
fn submit_all(
    q: &mut VecDeque<Bytes>,
    now: u64,
    ring: &mut Ring,
    records: &mut Vec<Body>,
    taken: &mut usize,
) -> bool {
    while let Some(m) = q.front() {
        let len = m.len();
        match ring.submit(now, m, Guarantee::Agreed) {
            Ok(id) => {
                records.push(Body::Send {
                    id,
                    len,
                    safe: false,
                });
                q.pop_front();
                *taken += len;
            }
            Err(SubmitError::QueueFull { .. }) => return false,
            Err(e) => {
                // Never silently: the control socket refuses what cannot fit, so this is a bug.
                tracing::warn!(error = %e, len, "the ring refused a sync-layer message; dropped");
                q.pop_front();
                *taken += len;
            }
        }
    }
    true
}
