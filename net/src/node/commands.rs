//! The node's side of the control protocol: what each [`Request`] does to the node, and the
//! typed reply it builds (the status and every counter of `stats` included).
//!
//! Guarantees: a request runs inside the node's loop, between two turns, so a reply is a
//! consistent snapshot; every argument is checked against its bound before anything is done
//! (a [`BadArgument`] naming the argument and the bound: load sizes, rate, count and
//! duration; a service's command is checked by the service itself, against its own bounds,
//! one ring message, and the node's `max_fill_bytes` for the operations waiting to be sent);
//! a refused request changes nothing and gets an [`ErrorReply`]-shaped
//! reply saying why. `quit` stops the load, has the services give up what they hold, and lets
//! the node drain, at most three token timeouts (plus the timeouts of the services' actions
//! meanwhile), before it exits; a `load` is refused meanwhile.
//!
//! [`ErrorReply`]: crate::control::ErrorReply

use super::{Node, QUIT_DRAIN_TOKENS};
use crate::clock::monotonic_ns;
use crate::control::{
    DeliveredStats, KernelDrops, LatencyStats, LoadStats, MemoryKib, QueueStats, Reply, Request,
    SocketBuffers, StatsReply, StatusReply, StopLoadReply, SyncStats,
};

impl Node {
    /// Carries out one control request; returns its reply.
    pub(super) fn handle(&mut self, req: Request) -> Reply {
        let now = monotonic_ns();
        match req {
            Request::Status => Reply::Status(self.status()),
            Request::Stats => Reply::Stats(Box::new(self.stats(now))),
            Request::Load(spec) => {
                if self.quit_by.is_some() {
                    return Reply::error("load: refused, the node is quitting");
                }
                if let Err(e) = spec.check() {
                    return Reply::error(e.to_string());
                }
                if let Some(name) = &spec.service {
                    let runs = self.app.as_ref().is_some_and(|a| a.service(name).is_some());
                    if !runs {
                        return Reply::error(format!(
                            "load: service={name} refused: this node does not run it (services)"
                        ));
                    }
                }
                self.load.start(spec, now);
                Reply::ack()
            }
            Request::StopLoad => {
                let (sent, refused) = self.load.stop();
                Reply::StopLoad(StopLoadReply {
                    ok: true,
                    sent,
                    refused,
                })
            }
            Request::Leave => {
                self.ring.leave(now);
                self.drain();
                self.exit = Some("left");
                Reply::ack()
            }
            Request::Quit => {
                // Stop the load, then let the loop drain: it exits once the send queue is
                // empty and the node's own messages are delivered to it, or after a few
                // token timeouts with a `stop` record (`Node::quit_when_drained`).
                // With services, they first give up what they hold (the resources service
                // stops its groups and multicasts its refusals); the exit also waits for
                // them to be idle, each action extending the bound by its own timeout
                // (`Node::take_actions`).
                self.load.stop();
                let bound = QUIT_DRAIN_TOKENS
                    .saturating_mul(self.cfg.totem.token)
                    .saturating_mul(1_000_000);
                if self.quit_by.is_none() {
                    self.quit_by = Some(now.saturating_add(bound));
                    if let Some(app) = self.app.as_mut() {
                        self.quit_drain_ns = Some(bound);
                        let mut bodies = Vec::new();
                        app.quit(&mut bodies);
                        self.record_app(now, bodies);
                        self.drain();
                    }
                }
                Reply::ack()
            }
            Request::Svc { service, request } => {
                let max = self.cfg.max_fill_bytes;
                let Some(app) = self.app.as_mut() else {
                    return Reply::error(format!(
                        "svc {service}: no service runs on this node (services = [])"
                    ));
                };
                match app.control(&service, &request, max) {
                    Ok(reply) => Reply::Service(reply),
                    Err(e) => Reply::error(e.to_string()),
                }
            }
        }
    }

    /// Returns the node's membership.
    fn status(&self) -> StatusReply {
        StatusReply {
            ok: true,
            node: self.cfg.node_id,
            inc: self.inc,
            state: self.ring.state(),
            ring: self.ring.ring_id(),
            members: self.ring.members().to_vec(),
        }
    }

    /// Returns the status fields plus every counter (see the README's `ctl` section).
    fn stats(&self, now: u64) -> StatsReply {
        let secs = (now.saturating_sub(self.started_ns) as f64 / 1e9).max(1e-9);
        let rs = self.ring.stats();
        let (qf, qb) = self.ring.queue_depth();
        let (load_sent, load_refused) = self.load.totals();
        let h = &self.latency;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        StatsReply {
            status: self.status(),
            uptime_s: secs,
            drops: self.drops.clone(),
            ring_stats: rs.clone(),
            retransmissions: rs.frames_retransmitted,
            token_rotations_per_s: rs.tokens_received as f64 / secs,
            queue: QueueStats {
                frames: qf as u64,
                bytes: qb as u64,
                stored_frames: self.ring.stored_frames() as u64,
            },
            delivered: DeliveredStats {
                messages: self.delivered,
                bytes: self.delivered_bytes,
            },
            latency_us: LatencyStats {
                count: h.len(),
                p50: us(0.5),
                p90: us(0.9),
                p99: us(0.99),
                p999: us(0.999),
                max: h.max() as f64 / 1000.0,
            },
            load: LoadStats {
                running: self.load.is_running(),
                sent: load_sent,
                refused: load_refused,
            },
            socket_buffers: SocketBuffers {
                recv: self.sockets.granted.0 as u64,
                send: self.sockets.granted.1 as u64,
            },
            memory_kib: MemoryKib::of("self"),
            sync: self.app.as_ref().map(|a| {
                let size = a.state_size();
                let st = a.engine.stats();
                SyncStats {
                    syncing: a.engine.is_syncing(),
                    completed: st.completed,
                    aborted: st.aborted,
                    queued_ops: a.queued_ops() as u64,
                    checkpoints: size.items,
                    state_bytes: size.bytes,
                    services: a.names().into_iter().map(String::from).collect(),
                }
            }),
            control: self.control.stats(),
            records: self.records.as_ref().map(|w| w.stats().clone()),
            stable: self.stable.stats().clone(),
            kernel_drops: KernelDrops {
                unicast: crate::sockets::kernel_drops(&self.sockets.unicast),
                multicast: self
                    .sockets
                    .multicast
                    .as_ref()
                    .and_then(crate::sockets::kernel_drops),
            },
            actions: self.actions.stats(),
            mirror: self.mirror.as_ref().map(|m| m.stats()),
        }
    }
}
