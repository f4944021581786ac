//! The node's side of the control protocol: what each [`Request`] does to the node, and the
//! typed reply it builds (the status and every counter of `stats` included).
//!
//! Guarantees: a request runs inside the node's loop, between two turns, so a reply is a
//! consistent snapshot; every argument is checked against its bound before anything is done
//! (a [`BadArgument`] naming the argument and the bound: load sizes, rate, count and
//! duration; checkpoint names, sections and sizes within what the checkpoint service and one
//! ring message take; `ckpt_fill` and queued checkpoint operations within the node's
//! `max_fill_bytes`); a refused request changes nothing and gets an [`ErrorReply`]-shaped
//! reply saying why. `quit` stops the load and lets the node drain, at most three token
//! timeouts, before it exits; a `load` is refused meanwhile.
//!
//! [`ErrorReply`]: crate::control::ErrorReply

use super::{Node, QUIT_DRAIN_TOKENS};
use crate::clock::monotonic_ns;
use crate::control::{
    BadArgument, CkptDigestReply, CkptFillReply, DeliveredStats, KernelDrops, LatencyStats,
    LoadStats, MemoryKib, QueueStats, Reply, Request, SocketBuffers, StatsReply, StatusReply,
    StopLoadReply, SyncStats,
};
use ringlab_ring::pack::MESSAGE_MAX;
use ringlab_sync::checkpoint::SECTION_MAX;
use ringlab_sync::{Op, SyncEngine, CHECKPOINT_SERVICE};

const NO_CHECKPOINTS: &str = "the checkpoint service is not running (services)";

/// Room kept in one ring message for the headers of the sync message that carries a
/// section (name, section and data travel together in one).
const CKPT_HEADROOM: usize = 64;

/// What a waiting checkpoint operation costs beyond its bytes (queue slot, allocation), in
/// the `max_fill_bytes` account.
const OP_OVERHEAD: u64 = 64;

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
                self.load.stop();
                let bound = QUIT_DRAIN_TOKENS
                    .saturating_mul(self.cfg.totem.token)
                    .saturating_mul(1_000_000);
                self.quit_by.get_or_insert(now.saturating_add(bound));
                Reply::ack()
            }
            Request::Ckpt {
                op,
                name,
                section,
                size,
            } => {
                let max = self.cfg.max_fill_bytes;
                let Some(app) = self.app.as_mut() else {
                    return Reply::error(NO_CHECKPOINTS);
                };
                let op = match ckpt_op(&op, name, section, size) {
                    Ok(op) => op,
                    Err(e) => return Reply::error(e.to_string()),
                };
                let len = SyncEngine::op_message(CHECKPOINT_SERVICE, &op.encode()).len();
                let queued = app.queued_bytes() as u64 + app.queued_ops() as u64 * OP_OVERHEAD;
                if queued.saturating_add(len as u64 + OP_OVERHEAD) > max {
                    return Reply::error(
                        BadArgument {
                            cmd: "ckpt",
                            arg: "size",
                            value: size.to_string(),
                            bound: format!(
                                "checkpoint operations already waiting take {queued} of \
                                 max_fill_bytes={max} bytes; retry once they are sent"
                            ),
                        }
                        .to_string(),
                    );
                }
                app.queue_op(&op);
                Reply::ack()
            }
            Request::CkptDigest => match self.app.as_ref() {
                Some(a) => Reply::CkptDigest(CkptDigestReply {
                    ok: true,
                    syncing: a.engine.is_syncing(),
                    digest: a
                        .checkpoints()
                        .digest()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                }),
                None => Reply::error(NO_CHECKPOINTS),
            },
            Request::CkptFill { bytes } => {
                let max = self.cfg.max_fill_bytes;
                let Some(app) = self.app.as_mut() else {
                    return Reply::error(NO_CHECKPOINTS);
                };
                let queued = app.queued_bytes() as u64 + app.queued_ops() as u64 * OP_OVERHEAD;
                let room = max.saturating_sub(queued);
                let sections = bytes.div_ceil(SECTION_MAX.max(1)) as u64;
                let cost = (bytes as u64).saturating_add(sections.saturating_mul(OP_OVERHEAD));
                if bytes == 0 || cost > room {
                    return Reply::error(
                        BadArgument {
                            cmd: "ckpt_fill",
                            arg: "bytes",
                            value: bytes.to_string(),
                            bound: format!(
                                "1 to max_fill_bytes={max} bytes in all, less what checkpoint \
                                 operations already waiting take ({queued})"
                            ),
                        }
                        .to_string(),
                    );
                }
                let section = bytes.clamp(1, SECTION_MAX);
                for i in 0..bytes.div_ceil(section) {
                    let name = format!("c{}", i / 64).into_bytes();
                    if i % 64 == 0 {
                        app.queue_op(&Op::Create(name.clone()));
                    }
                    let data = vec![i as u8; section];
                    app.queue_op(&Op::Write(
                        name,
                        (i as u32).to_be_bytes().to_vec(),
                        data.into(),
                    ));
                }
                Reply::CkptFill(CkptFillReply {
                    ok: true,
                    sections: bytes.div_ceil(section) as u64,
                })
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
            memory_kib: memory_kib(),
            sync: self.app.as_ref().map(|a| {
                let c = a.checkpoints();
                let st = a.engine.stats();
                SyncStats {
                    syncing: a.engine.is_syncing(),
                    completed: st.completed,
                    aborted: st.aborted,
                    queued_ops: a.queued_ops() as u64,
                    checkpoints: c.checkpoints().len() as u64,
                    state_bytes: c.state_bytes() as u64,
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
        }
    }
}

/// Builds the checkpoint operation `op` from a `ckpt` request's arguments, each checked
/// against what the checkpoint service and one ring message take.
fn ckpt_op(op: &str, name: String, section: String, size: usize) -> Result<Op, BadArgument> {
    let bad = |arg: &'static str, value: String, bound: String| BadArgument {
        cmd: "ckpt",
        arg,
        value,
        bound,
    };
    let bytes = |n: usize| format!("<{n} bytes>");
    let service_max = || format!("at most {SECTION_MAX} bytes (the checkpoint service's bound)");
    if name.len() > SECTION_MAX {
        return Err(bad("name", bytes(name.len()), service_max()));
    }
    if section.len() > SECTION_MAX {
        return Err(bad("section", bytes(section.len()), service_max()));
    }
    let (n, s) = (name.into_bytes(), section.into_bytes());
    let op = match op {
        "create" => Op::Create(n),
        "open" => Op::Open(n),
        "close" => Op::Close(n),
        "unlink" => Op::Unlink(n),
        "delete" => Op::Delete(n, s),
        "write" => {
            if size > SECTION_MAX {
                return Err(bad("size", size.to_string(), service_max()));
            }
            Op::Write(n, s, vec![0xC5; size].into())
        }
        _ => {
            return Err(bad(
                "op",
                op.chars().take(32).collect(),
                "one of create, open, close, unlink, write, delete".into(),
            ))
        }
    };
    // Every operation travels in one ring message, with room for the sync message that
    // carries a section later.
    let len = SyncEngine::op_message(CHECKPOINT_SERVICE, &op.encode()).len();
    let together = MESSAGE_MAX - CKPT_HEADROOM;
    if len > together {
        return Err(bad(
            "name+section+size",
            len.to_string(),
            format!("at most {together} bytes encoded (one ring message)"),
        ));
    }
    Ok(op)
}

/// Returns (current, peak) resident set size of this process in KiB, from /proc.
fn memory_kib() -> MemoryKib {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    MemoryKib {
        rss: field("VmRSS:"),
        peak_rss: field("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(op: &str, name: usize, section: usize, size: usize) -> String {
        ckpt_op(op, "n".repeat(name), "s".repeat(section), size)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn checkpoint_arguments_past_their_bounds_are_refused_with_their_name() {
        assert!(err("create", SECTION_MAX + 1, 0, 0).contains("ckpt: name=<524289 bytes>"));
        assert!(err("write", 1, SECTION_MAX + 1, 0).contains("section="));
        assert!(err("write", 1, 1, SECTION_MAX + 1).contains("size=524289"));
        let e = err("write", SECTION_MAX, SECTION_MAX, 1);
        assert!(e.contains("name+section+size"), "{e}");
        // Every operation, not only a write, must fit one ring message.
        let e = err("delete", SECTION_MAX, SECTION_MAX, 0);
        assert!(e.contains("name+section+size"), "{e}");
        assert!(err("shred", 1, 0, 0).contains("op=shred"));
        // At the bounds: accepted, and the operation fits one ring message with room for
        // the sync message that carries it later.
        let together = MESSAGE_MAX - CKPT_HEADROOM;
        let w = ckpt_op(
            "write",
            "n".repeat(SECTION_MAX),
            "s".repeat(together - SECTION_MAX - 1000 - 64),
            1000,
        )
        .unwrap();
        assert!(SyncEngine::op_message(CHECKPOINT_SERVICE, &w.encode()).len() <= MESSAGE_MAX);
        assert!(ckpt_op("create", "n".repeat(SECTION_MAX), String::new(), 0).is_ok());
    }
}
