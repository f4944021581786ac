//! The node's side of the control protocol: what each [`Request`] does to the node, and the
//! typed reply it builds (the status and every counter of `stats` included).
//!
//! Guarantees: a request runs inside the node's loop, between two turns, so a reply is a
//! consistent snapshot; a refused request changes nothing and gets an [`ErrorReply`]-shaped
//! reply saying why.
//!
//! [`ErrorReply`]: crate::control::ErrorReply

use super::Node;
use crate::clock::monotonic_ns;
use crate::control::{
    CkptDigestReply, CkptFillReply, DeliveredStats, LatencyStats, LoadStats, MemoryKib, QueueStats,
    Reply, Request, SocketBuffers, StatsReply, StatusReply, StopLoadReply, SyncStats,
};
use ringlab_sync::checkpoint::SECTION_MAX;

const NO_CHECKPOINTS: &str = "the checkpoint service is not running (services)";

impl Node {
    /// Carries out one control request; returns its reply.
    pub(super) fn handle(&mut self, req: Request) -> Reply {
        let now = monotonic_ns();
        match req {
            Request::Status => Reply::Status(self.status()),
            Request::Stats => Reply::Stats(Box::new(self.stats(now))),
            Request::Load(spec) => {
                if let Err(e) = spec.check() {
                    return Reply::error(e);
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
                self.exit = Some("quit");
                Reply::ack()
            }
            Request::Ckpt {
                op,
                name,
                section,
                size,
            } => {
                let Some(app) = self.app.as_mut() else {
                    return Reply::error(NO_CHECKPOINTS);
                };
                let (n, s) = (name.into_bytes(), section.into_bytes());
                let op = match op.as_str() {
                    "create" => ringlab_sync::Op::Create(n),
                    "open" => ringlab_sync::Op::Open(n),
                    "close" => ringlab_sync::Op::Close(n),
                    "unlink" => ringlab_sync::Op::Unlink(n),
                    "write" if size <= SECTION_MAX => {
                        ringlab_sync::Op::Write(n, s, vec![0xC5; size].into())
                    }
                    "delete" => ringlab_sync::Op::Delete(n, s),
                    _ => {
                        return Reply::error(
                            "op: create, open, close, unlink, write (size <= 512 KiB), delete",
                        )
                    }
                };
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
                let Some(app) = self.app.as_mut() else {
                    return Reply::error(NO_CHECKPOINTS);
                };
                let section = bytes.clamp(1, SECTION_MAX);
                for i in 0..bytes.div_ceil(section) {
                    let name = format!("c{}", i / 64).into_bytes();
                    if i % 64 == 0 {
                        app.queue_op(&ringlab_sync::Op::Create(name.clone()));
                    }
                    let data = vec![i as u8; section];
                    app.queue_op(&ringlab_sync::Op::Write(
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
        }
    }
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
