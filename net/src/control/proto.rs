//! The control protocol's messages: one [`Request`] enum (tagged by `cmd`, snake_case) and one
//! reply struct per command.
//!
//! Every reply carries `ok`: `true` in the reply structs, `false` in [`ErrorReply`]. The field
//! names and nesting below are the wire format; renaming one is a protocol change.

use crate::drops::NodeDrops;
use crate::load::LoadSpec;
use crate::stable::StableStats;
use ringlab_records::WriterStats;
use ringlab_ring::{MembState, NodeId, RingId};
use serde::{Deserialize, Serialize};

/// A control request (one JSON object per line, `{"cmd": "...", ...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Asks for the node's membership; replies [`StatusReply`].
    Status,
    /// Asks for the status and every counter; replies [`StatsReply`].
    Stats,
    /// Starts a load, replacing the running one; replies [`Ack`] (an error for a bad size).
    Load(LoadSpec),
    /// Stops the running load; replies [`StopLoadReply`].
    StopLoad,
    /// Leaves the ring gracefully, then the node exits; replies [`Ack`].
    Leave,
    /// Makes the node exit; replies [`Ack`].
    Quit,
    /// A control command of a service the node runs (see its module in `ringlab-sync`:
    /// `request` is its typed command, e.g. `{"op": "write", "name": "c", "size": 100}`);
    /// replies the service's typed reply (`{"ok": true, ...}`) as [`Reply::Service`].
    Svc {
        /// The service's name, as the registry lists it.
        service: String,
        /// Its command.
        #[serde(default)]
        request: serde_json::Value,
    },
}

/// A request argument out of its bounds; the node refuses the request with this as its
/// error (`{"ok": false, "error": "load: duration_ms=... refused: ..."}`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{cmd}: {arg}={value} refused: {bound}")]
pub struct BadArgument {
    /// The command.
    pub cmd: &'static str,
    /// The argument.
    pub arg: &'static str,
    /// Its value as given (a long text by its length only).
    pub value: String,
    /// What it must be.
    pub bound: String,
}

/// The reply of a request that was done and has nothing to report: `{"ok": true}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Always true.
    pub ok: bool,
}

/// The reply to a request the node refused: `{"ok": false, "error": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Always false.
    pub ok: bool,
    /// Why.
    pub error: String,
}

/// The reply to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// Always true.
    pub ok: bool,
    /// The node's id.
    pub node: NodeId,
    /// Its incarnation.
    pub inc: u32,
    /// Its membership state.
    pub state: MembState,
    /// The ring it is on (or last was on).
    pub ring: RingId,
    /// That ring's members.
    pub members: Vec<NodeId>,
}

/// The reply to `stats`: the status fields plus every counter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    /// The status fields, at the top level of the reply.
    #[serde(flatten)]
    pub status: StatusReply,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// Datagrams dropped before the ring saw them, and failed sends, per reason.
    pub drops: NodeDrops,
    /// The ring's own counters.
    pub ring_stats: ringlab_ring::Stats,
    /// Frames re-multicast on request (`ring_stats.frames_retransmitted`).
    pub retransmissions: u64,
    /// Tokens accepted per second since the start.
    pub token_rotations_per_s: f64,
    /// The send queue and the frame store.
    pub queue: QueueStats,
    /// Messages delivered.
    pub delivered: DeliveredStats,
    /// Send-to-deliver latency of delivered messages, in µs.
    pub latency_us: LatencyStats,
    /// The load generator.
    pub load: LoadStats,
    /// The socket buffers the kernel granted.
    pub socket_buffers: SocketBuffers,
    /// The process's memory.
    pub memory_kib: MemoryKib,
    /// The sync engine and its services (`null` without services).
    pub sync: Option<SyncStats>,
    /// The control channel's connections (absent from older nodes: zeros).
    #[serde(default)]
    pub control: ControlStats,
    /// The event-record writer: records written, failed writes, the first failure
    /// (`null` without an events file, or from older nodes).
    #[serde(default)]
    pub records: Option<WriterStats>,
    /// Stable storage: state-file writes, failed writes, the first failure.
    #[serde(default)]
    pub stable: StableStats,
    /// Datagrams the kernel dropped at each of the node's sockets before the node read
    /// them (receive buffer full, mostly).
    #[serde(default)]
    pub kernel_drops: KernelDrops,
    /// The services' actions: run, ended well, failed, timed out, running and queued now
    /// (absent from older nodes: zeros).
    #[serde(default)]
    pub actions: ActionStats,
    /// The real-directory mirror of the services that keep files: changes applied, failed,
    /// directory comparisons and differences found (absent without such a service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<crate::mirror::MirrorStats>,
}

/// The services' actions in a [`StatsReply`] (resource starts and stops the node ran).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActionStats {
    /// Actions begun (commands spawned and file actions done).
    pub run: u64,
    /// Actions that ended well.
    pub ok: u64,
    /// Actions that failed (a non-zero exit, a signal, a spawn or file error, or a timeout).
    pub failed: u64,
    /// Of those, commands killed at their timeout.
    pub timed_out: u64,
    /// Commands running now.
    pub running: u64,
    /// Commands waiting for a free slot now.
    pub queued: u64,
}

/// The kernel's drops per socket in a [`StatsReply`]: the `drops` column of
/// `/proc/net/udp` (`udp6` for IPv6) on the socket's inode, read when `stats` is asked,
/// counted since the socket was opened. `null` where /proc does not list the socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelDrops {
    /// The unicast socket (bind:port): tokens, unicast frames, the unicast transport.
    pub unicast: Option<u64>,
    /// The multicast socket (group:port; `null` with the unicast transport).
    pub multicast: Option<u64>,
}

/// The control channel in a [`StatsReply`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStats {
    /// Connections served now (this one included).
    pub clients: u64,
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Connections refused because as many as the node serves were open (each got one
    /// error line).
    pub refused: u64,
    /// Connections dropped by the node: past a bound (1 MiB of replies unread, 1 MiB
    /// without a newline) or after a read or write error.
    pub dropped: u64,
}

/// Queue depths in a [`StatsReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Frames waiting to be sent.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames held for retransmission and recovery.
    pub stored_frames: u64,
}

/// Delivery counts in a [`StatsReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredStats {
    /// Messages delivered.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Latency percentiles in a [`StatsReply`], in µs, from an hdrhistogram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Messages measured.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// The load generator in a [`StatsReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadStats {
    /// Whether a load runs.
    pub running: bool,
    /// Messages every load submitted.
    pub sent: u64,
    /// Messages the send queue refused.
    pub refused: u64,
}

/// Socket buffer sizes in a [`StatsReply`], as the kernel granted them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketBuffers {
    /// SO_RCVBUF.
    pub recv: u64,
    /// SO_SNDBUF.
    pub send: u64,
}

/// Resident set size in a [`StatsReply`], in KiB (`null` where /proc does not tell).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryKib {
    /// Now.
    pub rss: Option<u64>,
    /// Peak.
    pub peak_rss: Option<u64>,
}

impl MemoryKib {
    /// Reads process `pid`'s (`"self"`: this process's) current and peak resident set size
    /// (VmRSS, VmHWM) from `/proc/<pid>/status`; a field /proc does not give is `None`.
    pub fn of(pid: &str) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> Option<u64> {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        Self {
            rss: field("VmRSS:"),
            peak_rss: field("VmHWM:"),
        }
    }
}

/// The sync engine and its services in a [`StatsReply`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStats {
    /// Whether a sync runs.
    pub syncing: bool,
    /// Syncs completed.
    pub completed: u64,
    /// Syncs aborted by a configuration change.
    pub aborted: u64,
    /// Service operations waiting to be sent.
    pub queued_ops: u64,
    /// Items of committed state, every service together (the checkpoint service's
    /// checkpoints, ...; each service's own `status` command tells its own).
    pub checkpoints: u64,
    /// Bytes of committed state, every service together.
    pub state_bytes: u64,
    /// The services the node runs (absent from older nodes: empty).
    #[serde(default)]
    pub services: Vec<String>,
}

/// The reply to `stop_load`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopLoadReply {
    /// Always true.
    pub ok: bool,
    /// Messages the stopped load submitted (0 when none ran).
    pub sent: u64,
    /// Messages the send queue refused it.
    pub refused: u64,
}

/// Any reply, as the node sends it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `{"ok": true}`.
    Ack(Ack),
    /// `{"ok": false, "error": ...}`.
    Error(ErrorReply),
    /// To `status`.
    Status(StatusReply),
    /// To `stats`.
    Stats(Box<StatsReply>),
    /// To `stop_load`.
    StopLoad(StopLoadReply),
    /// To `svc`: the service's own typed reply.
    Service(serde_json::Value),
}

impl Reply {
    /// Returns `{"ok": true}`.
    pub fn ack() -> Self {
        Self::Ack(Ack { ok: true })
    }

    /// Returns `{"ok": false, "error": why}`.
    pub fn error(why: impl Into<String>) -> Self {
        Self::Error(ErrorReply {
            ok: false,
            error: why.into(),
        })
    }

    /// Returns the reply's JSON line (without the newline), keys in sorted order at every
    /// level as the protocol always sent them.
    pub fn to_line(&self) -> String {
        serde_json::to_value(self)
            .expect("a reply serialises")
            .to_string()
    }
}

impl Request {
    /// Returns the request's JSON line (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a request serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status() -> StatusReply {
        StatusReply {
            ok: true,
            node: 3,
            inc: 2,
            state: MembState::Operational,
            ring: RingId { rep: 1, seq: 8 },
            members: vec![1, 2, 3],
        }
    }

    /// The wire format: what the node sent when it built its replies with `json!`.
    #[test]
    fn replies_keep_the_untyped_wire_format() {
        let st = status();
        let old_status = json!({
            "ok": true, "node": 3, "inc": 2, "state": "operational",
            "ring": {"rep": 1, "seq": 8}, "members": [1, 2, 3],
        });
        assert_eq!(serde_json::to_value(&st).unwrap(), old_status);
        let stats = StatsReply {
            status: st,
            uptime_s: 1.5,
            drops: NodeDrops {
                foreign: 4,
                ..NodeDrops::default()
            },
            ring_stats: ringlab_ring::Stats::default(),
            retransmissions: 7,
            token_rotations_per_s: 100.25,
            queue: QueueStats {
                frames: 1,
                bytes: 2,
                stored_frames: 3,
            },
            delivered: DeliveredStats {
                messages: 10,
                bytes: 20,
            },
            latency_us: LatencyStats {
                count: 5,
                p50: 1.0,
                p90: 2.0,
                p99: 3.0,
                p999: 4.0,
                max: 5.5,
            },
            load: LoadStats {
                running: true,
                sent: 11,
                refused: 1,
            },
            socket_buffers: SocketBuffers {
                recv: 4096,
                send: 8192,
            },
            memory_kib: MemoryKib {
                rss: Some(100),
                peak_rss: None,
            },
            sync: Some(SyncStats {
                syncing: false,
                completed: 1,
                aborted: 0,
                queued_ops: 2,
                checkpoints: 3,
                state_bytes: 4,
                services: vec!["checkpoint".into()],
            }),
            control: ControlStats {
                clients: 1,
                accepted: 2,
                refused: 3,
                dropped: 4,
            },
            records: Some(WriterStats {
                written: 5,
                failed: 1,
                first_error: Some("No space left on device (os error 28)".into()),
            }),
            stable: StableStats {
                written: 3,
                failed: 0,
                first_error: None,
            },
            kernel_drops: KernelDrops {
                unicast: Some(12),
                multicast: None,
            },
            actions: ActionStats {
                run: 3,
                ok: 1,
                failed: 2,
                timed_out: 1,
                running: 0,
                queued: 0,
            },
            mirror: None,
        };
        let mut old = old_status.clone();
        let more = json!({
            "uptime_s": 1.5,
            "drops": NodeDrops { foreign: 4, ..NodeDrops::default() },
            "ring_stats": ringlab_ring::Stats::default(),
            "retransmissions": 7,
            "token_rotations_per_s": 100.25,
            "queue": {"frames": 1, "bytes": 2, "stored_frames": 3},
            "delivered": {"messages": 10, "bytes": 20},
            "latency_us": {
                "count": 5, "p50": 1.0, "p90": 2.0, "p99": 3.0, "p999": 4.0, "max": 5.5,
            },
            "load": {"running": true, "sent": 11, "refused": 1},
            "socket_buffers": {"recv": 4096, "send": 8192},
            "memory_kib": {"rss": 100, "peak_rss": null},
            "sync": {
                "syncing": false, "completed": 1, "aborted": 0, "queued_ops": 2,
                "checkpoints": 3, "state_bytes": 4, "services": ["checkpoint"],
            },
            "control": {"clients": 1, "accepted": 2, "refused": 3, "dropped": 4},
            "records": {
                "written": 5, "failed": 1,
                "first_error": "No space left on device (os error 28)",
            },
            "stable": {"written": 3, "failed": 0, "first_error": null},
            "kernel_drops": {"unicast": 12, "multicast": null},
            "actions": {"run": 3, "ok": 1, "failed": 2, "timed_out": 1, "running": 0, "queued": 0},
        });
        old.as_object_mut()
            .unwrap()
            .extend(more.as_object().unwrap().clone());
        let reply = Reply::Stats(Box::new(stats.clone()));
        // Byte for byte, key order included.
        assert_eq!(reply.to_line(), old.to_string());
        // A reply of a node from before the fields added since still parses.
        let mut older = old.clone();
        for f in ["control", "records", "stable", "kernel_drops", "actions"] {
            older.as_object_mut().unwrap().remove(f);
        }
        let parsed: StatsReply = serde_json::from_value(older).unwrap();
        assert_eq!(parsed.control, ControlStats::default());
        assert_eq!(parsed.records, None);
        assert_eq!(parsed.kernel_drops, KernelDrops::default());
        assert_eq!(parsed.actions, ActionStats::default());
        assert_eq!(
            serde_json::from_str::<StatsReply>(&reply.to_line()).unwrap(),
            stats
        );
        let no_sync = StatsReply {
            sync: None,
            ..stats
        };
        assert_eq!(
            serde_json::to_value(&no_sync).unwrap()["sync"],
            serde_json::Value::Null
        );
        assert_eq!(Reply::ack().to_line(), r#"{"ok":true}"#);
        assert_eq!(
            Reply::error("no").to_line(),
            json!({"ok": false, "error": "no"}).to_string()
        );
        assert_eq!(
            Reply::StopLoad(StopLoadReply {
                ok: true,
                sent: 3,
                refused: 4
            })
            .to_line(),
            json!({"ok": true, "sent": 3, "refused": 4}).to_string()
        );
        assert_eq!(
            Reply::Service(json!({"ok": true, "sections": 2})).to_line(),
            json!({"ok": true, "sections": 2}).to_string()
        );
    }

    /// Requests as old clients wrote them still parse.
    #[test]
    fn old_request_lines_parse() {
        let r = |s: &str| serde_json::from_str::<Request>(s).unwrap();
        assert_eq!(r(r#"{"cmd":"status"}"#), Request::Status);
        assert_eq!(
            r(r#"{"cmd":"load","rate":0,"sizes":[1,2],"count":5,"extra":1}"#),
            Request::Load(LoadSpec {
                sizes: vec![1, 2],
                count: Some(5),
                ..LoadSpec::default()
            })
        );
        assert_eq!(
            r(r#"{"cmd":"load","rate":9,"count":null}"#),
            Request::Load(LoadSpec {
                rate: 9,
                ..LoadSpec::default()
            })
        );
        assert_eq!(
            r(r#"{"cmd":"svc","service":"checkpoint","request":{"op":"open","name":"c0"}}"#),
            Request::Svc {
                service: "checkpoint".into(),
                request: json!({"op": "open", "name": "c0"}),
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"shred"}"#).is_err());
    }
}
