//! The load generator: at most one running load per node, submitting messages to the ring at
//! a fixed rate or keeping its send queue topped up (maximum load).
//!
//! Guarantees: a load never submits while the node says it waits (off the ring, or while a
//! sync runs), and its timer waits too; a load at a fixed rate that falls behind (the queue
//! refused a message) drops its backlog instead of bursting later; one turn submits at most
//! 4096 messages; a load stops by itself after `count` messages or `duration_ms`.

use ringlab_records::Body;
use ringlab_ring::{Guarantee, Ring, SubmitError};
use serde::{Deserialize, Serialize};

/// Most messages one turn of the loop submits.
const PER_TURN: usize = 4096;

/// What load to run (the `load` control command).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct LoadSpec {
    /// Messages per second; 0 keeps the send queue full (maximum load).
    #[serde(default)]
    pub rate: u64,
    /// Message size in bytes.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Sizes to cycle through instead of `size` (mixed-size loads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<usize>,
    /// Safe (true) or agreed.
    #[serde(default)]
    pub safe: bool,
    /// Stop after this many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Stop after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

fn default_size() -> usize {
    1024
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            rate: 0,
            size: default_size(),
            sizes: Vec::new(),
            safe: false,
            count: None,
            duration_ms: None,
        }
    }
}

impl LoadSpec {
    /// Checks every message size is 1 byte to 1 MiB; returns the reason otherwise.
    pub fn check(&self) -> Result<(), &'static str> {
        let bad = |n: usize| n == 0 || n > ringlab_ring::pack::MESSAGE_MAX;
        if bad(self.size) || self.sizes.iter().any(|&n| bad(n)) {
            return Err("size must be 1 byte to 1 MiB");
        }
        Ok(())
    }
}

/// A running load.
struct Load {
    spec: LoadSpec,
    started: u64,
    sent: u64,
    refused: u64,
}

/// A node's load generator: the running load, if any, and totals over every load.
#[derive(Default)]
pub(crate) struct LoadGen {
    load: Option<Load>,
    sent_total: u64,
    refused_total: u64,
}

impl LoadGen {
    /// Starts `spec` at `now`, replacing the running load.
    pub(crate) fn start(&mut self, spec: LoadSpec, now: u64) {
        self.load = Some(Load {
            spec,
            started: now,
            sent: 0,
            refused: 0,
        });
    }

    /// Stops the running load; returns what it sent and what the queue refused (0, 0 when
    /// none ran).
    pub(crate) fn stop(&mut self) -> (u64, u64) {
        self.load.take().map_or((0, 0), |l| (l.sent, l.refused))
    }

    /// Returns whether a load runs.
    pub(crate) fn is_running(&self) -> bool {
        self.load.is_some()
    }

    /// Returns the messages every load submitted, and those the queue refused.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.sent_total, self.refused_total)
    }

    /// Returns when the load next wants to run (monotonic ns), if it runs; `waits` says the
    /// node holds the load back.
    pub(crate) fn deadline(&self, now: u64, waits: bool) -> Option<u64> {
        let l = self.load.as_ref()?;
        // While the load waits, so does its timer: a deadline already past would turn the
        // loop into a busy spin. The ring's own events wake the loop again, and run_load runs
        // on every turn.
        if waits {
            return l.spec.duration_ms.map(|d| l.started + d * 1_000_000);
        }
        if l.spec.rate == 0 {
            // Maximum load: come back soon to top the queue up.
            return Some(now + 200_000);
        }
        Some(l.started + (l.sent + 1) * 1_000_000_000 / l.spec.rate)
    }

    /// Ends a load that is done, then (unless `waits`) submits what is due to `ring` and
    /// pushes a `send` record body for each message it took onto `sent`. `window` is the
    /// ring's window size: a maximum load keeps that many frames queued.
    pub(crate) fn run(
        &mut self,
        now: u64,
        waits: bool,
        ring: &mut Ring,
        window: usize,
        sent: &mut Vec<Body>,
    ) {
        let Some(l) = self.load.as_mut() else { return };
        let done_by_time = l
            .spec
            .duration_ms
            .is_some_and(|d| now >= l.started + d * 1_000_000);
        let done_by_count = l.spec.count.is_some_and(|c| l.sent >= c);
        if done_by_time || done_by_count {
            self.load = None;
            return;
        }
        if waits {
            return;
        }
        let due = if l.spec.rate == 0 {
            // Maximum load: keep one window of frames queued. That saturates the ring (a visit
            // sends at most max_messages) without measuring an overfull queue as latency.
            let (frames, _) = ring.queue_depth();
            if frames >= window {
                return;
            }
            u64::MAX
        } else {
            (now.saturating_sub(l.started) as u128 * l.spec.rate as u128 / 1_000_000_000) as u64
        };
        let largest = l
            .spec
            .sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(l.spec.size)
            .max(1);
        let payload = vec![0xA5u8; largest];
        let g = if l.spec.safe {
            Guarantee::Safe
        } else {
            Guarantee::Agreed
        };
        let mut n = 0;
        while l.sent < due
            && l.spec.count.is_none_or(|c| l.sent < c)
            && n < PER_TURN
            && (l.spec.rate != 0 || ring.queue_depth().0 < window)
        {
            let len = match l.spec.sizes.as_slice() {
                [] => l.spec.size.max(1),
                sizes => sizes[(l.sent % sizes.len() as u64) as usize].max(1),
            };
            match ring.submit(now, &payload[..len], g) {
                Ok(id) => {
                    l.sent += 1;
                    n += 1;
                    self.sent_total += 1;
                    sent.push(Body::Send {
                        id,
                        len,
                        safe: l.spec.safe,
                    });
                }
                Err(SubmitError::QueueFull { .. }) => {
                    l.refused += 1;
                    self.refused_total += 1;
                    if l.spec.rate != 0 {
                        // Behind schedule: drop the backlog rather than burst later.
                        l.sent = due;
                    }
                    break;
                }
                Err(_) => break,
            }
        }
    }
}
