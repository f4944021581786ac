//! The load generator: at most one running load per node, submitting messages to the ring at
//! a fixed rate or keeping its send queue topped up (maximum load). A load with `service`
//! drives that service's own workload instead (its random operations, from
//! `ringlab_sync::Plugin::workload_op`, queued through the sync layer): the same rate,
//! count and duration, with the queue of waiting operations kept within a window at
//! maximum load and within the node's `max_fill_bytes` at a fixed rate.
//!
//! Guarantees: a load never submits while the node says it waits (off the ring, or while a
//! sync runs), and its timer waits too; a load at a fixed rate that falls behind (the queue
//! refused a message) drops its backlog instead of bursting later; one turn submits at most
//! 4096 messages; a load stops by itself after `count` messages or `duration_ms`; every
//! argument is checked against its bound ([`LoadSpec::check`]) and the timing arithmetic
//! saturates, so no argument wraps a deadline around.

use crate::control::BadArgument;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ringlab_records::Body;
use ringlab_ring::{Guarantee, Ring, SubmitError};
use ringlab_sync::{ServiceApp, Workload};
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
    /// Drive this service's workload (a name of the registry, which the node must run)
    /// instead of plain messages; `size`, `sizes` and `safe` then do not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// With `service`: about how many bytes of state its workload keeps (65536 unless
    /// given; 1 byte to 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<usize>,
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
            service: None,
            state_bytes: None,
        }
    }
}

/// Most messages per second a load may ask for (0 means as many as the ring takes).
pub const MAX_RATE: u64 = 10_000_000;
/// Most messages a load may ask for.
pub const MAX_COUNT: u64 = 1_000_000_000_000;
/// Longest a load may run: 7 days, in ms.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most sizes a mixed-size load may cycle through.
pub const MAX_SIZES: usize = 1024;
/// Most state a service load's workload may be sized to: 1 GiB.
pub const MAX_STATE_BYTES: usize = 1 << 30;

impl LoadSpec {
    /// Checks every argument against its bound: `size` and each of `sizes` 1 byte to 1 MiB,
    /// at most [`MAX_SIZES`] sizes, `rate` at most [`MAX_RATE`], `count` 1 to [`MAX_COUNT`],
    /// `duration_ms` 1 to [`MAX_DURATION_MS`]; returns the first argument out of bounds.
    pub fn check(&self) -> Result<(), BadArgument> {
        let bad = |arg: &'static str, value: String, bound: &str| {
            Err(BadArgument {
                cmd: "load",
                arg,
                value,
                bound: bound.to_string(),
            })
        };
        let size_ok = |n: usize| (1..=ringlab_ring::pack::MESSAGE_MAX).contains(&n);
        let sizes = "1 to 1048576 bytes (1 MiB, the largest message)";
        if !size_ok(self.size) {
            return bad("size", self.size.to_string(), sizes);
        }
        if self.sizes.len() > MAX_SIZES {
            return bad(
                "sizes",
                format!("<{} sizes>", self.sizes.len()),
                "at most 1024 sizes",
            );
        }
        if let Some(n) = self.sizes.iter().find(|&&n| !size_ok(n)) {
            return bad("sizes", n.to_string(), &format!("each {sizes}"));
        }
        if self.rate > MAX_RATE {
            return bad(
                "rate",
                self.rate.to_string(),
                "0 (as many as the ring takes) to 10000000 messages per second",
            );
        }
        if let Some(c) = self.count.filter(|c| !(1..=MAX_COUNT).contains(c)) {
            return bad("count", c.to_string(), "1 to 1000000000000 messages");
        }
        if let Some(d) = self
            .duration_ms
            .filter(|d| !(1..=MAX_DURATION_MS).contains(d))
        {
            return bad("duration_ms", d.to_string(), "1 to 604800000 ms (7 days)");
        }
        if let Some(name) = &self.service {
            if ringlab_sync::registry::find(name).is_err() {
                return bad(
                    "service",
                    name.chars().take(64).collect(),
                    &format!(
                        "a service of the registry ({})",
                        ringlab_sync::registry::names().join(", ")
                    ),
                );
            }
        }
        if let Some(b) = self
            .state_bytes
            .filter(|b| !(1..=MAX_STATE_BYTES).contains(b))
        {
            return bad(
                "state_bytes",
                b.to_string(),
                "1 to 1073741824 bytes (1 GiB)",
            );
        }
        Ok(())
    }

    /// Returns when a load started at `started` ends by its duration (monotonic ns), if it
    /// has one; saturating, so no duration wraps around into the past.
    fn ends_at(&self, started: u64) -> Option<u64> {
        self.duration_ms
            .map(|d| started.saturating_add(d.saturating_mul(1_000_000)))
    }
}

/// A running load.
struct Load {
    spec: LoadSpec,
    started: u64,
    sent: u64,
    refused: u64,
    /// Draws a service load's operations (seeded by the start time).
    rng: ChaCha8Rng,
}

impl Load {
    /// Returns how many messages (or operations) a paced load should have offered by `now`.
    fn due_by_rate(&self, now: u64) -> u64 {
        u64::try_from(
            u128::from(now.saturating_sub(self.started)) * u128::from(self.spec.rate)
                / 1_000_000_000,
        )
        .unwrap_or(u64::MAX)
    }
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
            rng: ChaCha8Rng::seed_from_u64(now),
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
            return l.spec.ends_at(l.started);
        }
        if l.spec.rate == 0 {
            // Maximum load: come back soon to top the queue up.
            return Some(now.saturating_add(200_000));
        }
        let next = (u128::from(l.sent) + 1) * 1_000_000_000 / u128::from(l.spec.rate);
        Some(
            l.started
                .saturating_add(u64::try_from(next).unwrap_or(u64::MAX)),
        )
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
        if self.end_if_done(now) || waits {
            return;
        }
        let Some(l) = self.load.as_mut().filter(|l| l.spec.service.is_none()) else {
            return;
        };
        let due = if l.spec.rate == 0 {
            // Maximum load: keep one window of frames queued. That saturates the ring (a visit
            // sends at most max_messages) without measuring an overfull queue as latency.
            let (frames, _) = ring.queue_depth();
            if frames >= window {
                return;
            }
            u64::MAX
        } else {
            l.due_by_rate(now)
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

    /// Ends a load that is done by its count or its duration; returns whether none runs.
    fn end_if_done(&mut self, now: u64) -> bool {
        let Some(l) = self.load.as_ref() else {
            return true;
        };
        let done_by_time = l.spec.ends_at(l.started).is_some_and(|end| now >= end);
        let done_by_count = l.spec.count.is_some_and(|c| l.sent >= c);
        if done_by_time || done_by_count {
            self.load = None;
        }
        self.load.is_none()
    }

    /// Ends a load that is done, then (unless `waits`) queues what is due of a service
    /// load's operations on `app` (which submits them as the ring takes them). At maximum
    /// load at most `window` operations wait; at a fixed rate, an operation that would take
    /// the waiting ones past `max_fill_bytes` is refused and the backlog dropped.
    pub(crate) fn run_service(
        &mut self,
        now: u64,
        waits: bool,
        app: &mut ServiceApp,
        window: usize,
        max_fill_bytes: u64,
    ) {
        if self.end_if_done(now) || waits {
            return;
        }
        let Some(l) = self.load.as_mut() else { return };
        let Some(entry) = l
            .spec
            .service
            .as_deref()
            .and_then(|n| ringlab_sync::registry::find(n).ok())
        else {
            return;
        };
        let due = if l.spec.rate == 0 {
            if app.queued_ops() >= window {
                return;
            }
            u64::MAX
        } else {
            l.due_by_rate(now)
        };
        let w = Workload {
            state_bytes: l
                .spec
                .state_bytes
                .unwrap_or(Workload::default().state_bytes),
        };
        let mut n = 0;
        while l.sent < due
            && l.spec.count.is_none_or(|c| l.sent < c)
            && n < PER_TURN
            && (l.spec.rate != 0 || app.queued_ops() < window)
        {
            let op = entry.workload_op(&mut l.rng, &w);
            if app.queued_bytes() as u64 + op.len() as u64 > max_fill_bytes {
                l.refused += 1;
                self.refused_total += 1;
                if l.spec.rate != 0 {
                    // Behind schedule: drop the backlog rather than burst later.
                    l.sent = due;
                }
                break;
            }
            app.queue_op(entry.id, &op);
            l.sent += 1;
            n += 1;
            self.sent_total += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(spec: LoadSpec) -> String {
        spec.check().unwrap_err().to_string()
    }

    #[test]
    fn each_argument_past_its_bound_is_refused_by_name() {
        let d = LoadSpec::default;
        assert!(d().check().is_ok());
        let at_bounds = LoadSpec {
            rate: MAX_RATE,
            size: ringlab_ring::pack::MESSAGE_MAX,
            sizes: vec![1; MAX_SIZES],
            count: Some(MAX_COUNT),
            duration_ms: Some(MAX_DURATION_MS),
            safe: true,
            service: Some("checkpoint".into()),
            state_bytes: Some(MAX_STATE_BYTES),
        };
        assert!(at_bounds.check().is_ok());
        let e = refused(LoadSpec {
            duration_ms: Some(u64::MAX),
            ..d()
        });
        assert!(
            e.starts_with("load: duration_ms=18446744073709551615 refused"),
            "{e}"
        );
        for (spec, name) in [
            (LoadSpec { size: 0, ..d() }, "size=0"),
            (
                LoadSpec {
                    size: (1 << 20) + 1,
                    ..d()
                },
                "size=1048577",
            ),
            (
                LoadSpec {
                    sizes: vec![1, 0],
                    ..d()
                },
                "sizes=0",
            ),
            (
                LoadSpec {
                    sizes: vec![1; MAX_SIZES + 1],
                    ..d()
                },
                "sizes=<1025 sizes>",
            ),
            (
                LoadSpec {
                    rate: MAX_RATE + 1,
                    ..d()
                },
                "rate=10000001",
            ),
            (
                LoadSpec {
                    count: Some(0),
                    ..d()
                },
                "count=0",
            ),
            (
                LoadSpec {
                    duration_ms: Some(0),
                    ..d()
                },
                "duration_ms=0",
            ),
        ] {
            let e = refused(spec);
            assert!(e.contains(name), "{name}: {e}");
        }
    }

    /// A duration too long to add to the clock saturates: the load runs, it does not end at
    /// once (nor overflow).
    #[test]
    fn a_huge_duration_does_not_wrap_into_the_past() {
        let mut ring = Ring::new(1, 1, ringlab_ring::Config::default(), 0, 0).unwrap();
        let mut g = LoadGen::default();
        let started = 5_000_000_000;
        g.start(
            LoadSpec {
                rate: u64::MAX,
                duration_ms: Some(u64::MAX),
                ..LoadSpec::default()
            },
            started,
        );
        assert_eq!(g.deadline(started, true), Some(u64::MAX));
        g.run(started + 1_000_000, true, &mut ring, 8, &mut Vec::new());
        assert!(g.is_running());
        assert!(g.deadline(started + 1_000_000, false).is_some());
    }

    #[test]
    fn a_service_load_queues_the_services_own_operations() {
        let services = ringlab_sync::registry::parse_list("checkpoint").unwrap();
        let mut app = ServiceApp::new(1, &services);
        let mut g = LoadGen::default();
        let spec = LoadSpec {
            rate: 1000,
            count: Some(5),
            service: Some("checkpoint".into()),
            state_bytes: Some(12_800),
            ..LoadSpec::default()
        };
        assert!(spec.check().is_ok());
        g.start(spec.clone(), 0);
        // Waiting: nothing queued; then what is due, up to the count.
        g.run_service(50_000_000, true, &mut app, 8, 1 << 20);
        assert_eq!(app.queued_ops(), 0);
        g.run_service(50_000_000, false, &mut app, 8, 1 << 20);
        assert_eq!(app.queued_ops(), 5);
        assert_eq!(g.totals(), (5, 0));
        g.run_service(60_000_000, false, &mut app, 8, 1 << 20);
        assert!(!g.is_running(), "done by its count");
        // Past max_fill_bytes: refused, nothing more queued.
        g.start(spec, 0);
        g.run_service(50_000_000, false, &mut app, 8, 1);
        assert_eq!(app.queued_ops(), 5);
        assert_eq!(g.totals(), (5, 1));
    }
}
