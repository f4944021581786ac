//! What rides on a simulated node's ring: an optional application layer that sees the ring's
//! events and submits through it. [`CheckpointApp`] (from the sync crate) runs the sync engine
//! with the checkpoint service; [`random_op`] is the random workload that makes partitions
//! diverge.

use bytes::Bytes;
use rand::Rng;
use ringlab_records::Body;
use ringlab_ring::{Event, Ring};
use ringlab_sync::checkpoint::SECTION_MAX;
use ringlab_sync::Op;
use std::any::Any;

pub use ringlab_sync::app::CheckpointApp;

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

impl App for CheckpointApp {
    fn on_event(&mut self, ev: &Event, records: &mut Vec<Body>) {
        Self::on_event(self, ev, records)
    }

    fn pump(&mut self, now: u64, ring: &mut Ring, records: &mut Vec<Body>) {
        Self::pump(self, now, ring, records)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Returns a random checkpoint operation on a small set of names (eight checkpoints of up to
/// sixteen sections), with sections of `section` bytes.
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
