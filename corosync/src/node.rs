//! The `ringlab corosync-node` process: corosync as its child, one CPG connection, and the
//! same control protocol and event records as a ringlab node.
//!
//! Start-up, in order: the CPG library is loaded (a clear error if it is missing, before
//! anything is taken); `STATE_DIR/corosync.conf` is written from [`crate::conf::render`] and
//! the knobs it leaves out go to `STATE_DIR/corosync-unmapped.json`; with a `key_file`,
//! corosync's key goes to `STATE_DIR/corosync-authkey` (0600); the incarnation is bumped in
//! stable storage exactly as a ringlab node bumps it ([`ringlab_net::stable::Stable`]), so
//! the harness reads it where it always does; `corosync -f -c STATE_DIR/corosync.conf` is
//! started as a child with `PR_SET_PDEATHSIG=SIGKILL` (a SIGKILL of this process takes
//! corosync with it) and `TZ=UTC` (its log's timestamps are UTC), its PID written to
//! `STATE_DIR/corosync.pid` and its stdout and stderr to `STATE_DIR/corosync.out`; the node
//! waits at most 15 s for `cpg_model_initialize` to succeed, joins group `ringlab`, and only
//! then binds its control socket (a client that finds the socket finds a node in the group).
//!
//! Then one single-threaded mio loop over the CPG fd, the control socket and the load's
//! timer; corosync's log (`STATE_DIR/corosync.log`) is read every 100 ms for its state
//! changes, and corosync's exit is noticed within 200 ms (the node then exits with an error).
//!
//! What each record holds (the bodies of a ringlab node, written through
//! [`ringlab_records::Writer`]; fields are only ever added):
//! - `config`: on every change of the CPG group's membership (`cpg_confchg`: what the
//!   application sees, delivered in agreed order with the messages), a transitional
//!   configuration (the members of the previous view still in the new one; `left` those that
//!   are not) then a regular one (`left` the old members not in it, `joined` those not in the
//!   transitional configuration). Their ring id is the view's: `rep` the totem ring's node
//!   id, `seq` the totem ring's seq shifted left 16 bits, or'ed with a 16-bit FNV-1a hash of
//!   the view's sorted `(nodeid, pid)` pairs. A view is not a totem ring: a node whose CPG
//!   client joins the group after its daemon joined the ring (a restart) starts delivering
//!   at its join, which every member sees at the same point of the agreed order; numbering
//!   configurations by the totem ring alone made the joiner's `seq` disagree with the
//!   others' for every message of that ring. A member is handed the totem configuration
//!   before the view, a joiner after it: so a view is recorded (with the time it arrived)
//!   once its totem configuration is known: when one is handed, before the view's first
//!   message, before the next view, or [`VIEW_SETTLE_NS`] after it arrived. Every member
//!   computes the same id for the same view without knowing the views before it; the totem
//!   seq keeps a view that repeats a member set (a node excluded under loss and merged back)
//!   apart from the earlier one. The regular record carries added fields `cpg_members` (`[nodeid, pid]`
//!   pairs) and `totem_ring`; totem changes themselves are logged (and set the `status`
//!   state); every CPG group change is also written, as it comes, to
//!   `STATE_DIR/corosync-cpg.jsonl`;
//! - `send` and `deliver` (with `record_messages`, sampled by `record_every`): `deliver.ring` is the current view's id;
//!   `deliver.seq` counts deliveries since that view's regular configuration (from 1),
//!   because CPG does not hand the ring's own seq; `safe` is always false (CPG has only
//!   agreed order); `sent_t_ns` comes from the payload;
//! - `state`: from corosync's log lines (see [`crate::log`]), with added fields `source`
//!   (`"corosync-log"`), `log_time` (the line's own timestamp as written, corosync's coarse
//!   real-time clock, ms) and `log_unix_ns` (the same in Unix ns); `t_ns` is when the node
//!   read the line (CLOCK_MONOTONIC, [`ringlab_net::clock`]), so it lags the change by up to
//!   100 ms;
//! - `stop`: as a ringlab node writes it when a `quit` leaves own messages undelivered;
//! - on `leave`, a `state` record to `left` (reason `shutdown`) with an added `source`
//!   (`"corosync-node"`), as a ringlab node records its graceful leave.
//!
//! Records with added fields are encoded by [`ringlab_records::encode_line`] and written,
//! after the writer is flushed, with one `write` to the same file opened for appending
//! (the records crate has no call for added fields); readers ignore fields they do not know.
//!
//! The load: at a fixed rate, as a ringlab node's (a message refused with
//! `CS_ERR_TRY_AGAIN` drops the backlog and counts in `refused`); at rate 0 it calls
//! `cpg_mcast_joined` until corosync answers `CS_ERR_TRY_AGAIN`, then again 1 ms later.
//! corosync 3.1.7's IPC mostly makes the call wait while corosync is busy rather than answer
//! `CS_ERR_TRY_AGAIN`, so a turn of the load is bounded to 5 ms (and 4096 messages), and
//! the control socket and deliveries are served between turns (measured: a `status` answered
//! within 0.1 s while three nodes load at rate 0).
//!
//! The payload of each message: `node` (4 bytes), `inc` (4), `counter` (8) of its
//! [`MsgId`], the send time (8, CLOCK_MONOTONIC ns), all big-endian, then zero padding to
//! the load's size; a size below these 24 bytes sends 24.

#![allow(unsafe_code)]

use crate::conf::{self, Unmapped};
use crate::control::server::{self, Server};
use crate::cpg::{Cpg, CpgAddress, CpgError, CpgEvent, Lib, Mcast};
use crate::log::{current_year, LogParser};
use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use ringlab_net::clock::monotonic_ns;
use ringlab_net::control::{
    ActionStats, DeliveredStats, KernelDrops, LatencyStats, LoadStats, MemoryKib, QueueStats,
    Reply, Request, SocketBuffers, StatsReply, StatusReply, StopLoadReply,
};
use ringlab_net::stable::{Stable, StableError};
use ringlab_net::{LoadSpec, NodeConfig};
use ringlab_records::{Body, Record, Writer};
use ringlab_ring::event::ConfigKind;
use ringlab_ring::pack::MsgId;
use ringlab_ring::{MembState, NodeId, RingId};
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CPG: Token = Token(0);
const CONTROL: Token = Token(2);

/// The CPG group every node joins.
pub const GROUP: &str = "ringlab";
/// Bytes of the payload's header: the message id and the send time.
pub const HEADER_LEN: usize = 24;
/// How often corosync's log is read.
const LOG_POLL_NS: u64 = 100_000_000;
/// How often the child is checked.
const CHILD_POLL_NS: u64 = 200_000_000;
/// Most messages one turn of the load sends.
const PER_TURN: usize = 4096;
/// Longest one turn of the load sends: `cpg_mcast_joined` is a request to corosync that
/// waits while corosync is busy, so a turn is bounded in time as well, and the control
/// socket and CPG's deliveries are served between turns.
const TURN_NS: u64 = 5_000_000;
/// How long a load at maximum rate waits after `CS_ERR_TRY_AGAIN`.
const TRY_AGAIN_NS: u64 = 1_000_000;
/// How long a CPG view waits for its totem configuration before it is recorded on the ring
/// known then (a member is handed the totem configuration first, a joiner after).
pub const VIEW_SETTLE_NS: u64 = 20_000_000;

/// Token-loss timeouts a `quit` drains at most (as a ringlab node).
pub const QUIT_DRAIN_TOKENS: u64 = ringlab_net::node::QUIT_DRAIN_TOKENS;

/// How the node starts corosync.
#[derive(Clone, Debug)]
pub struct Options {
    /// The corosync binary (`corosync`, searched on PATH, then `/usr/sbin/corosync`).
    pub corosync: PathBuf,
    /// How long to wait for CPG to answer after corosync was started.
    pub start_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let on_path = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("corosync").is_file()));
        Self {
            corosync: if on_path {
                PathBuf::from("corosync")
            } else {
                PathBuf::from("/usr/sbin/corosync")
            },
            start_timeout: Duration::from_secs(15),
        }
    }
}

/// Why the node could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The CPG library is missing, or a CPG call failed.
    #[error(transparent)]
    Cpg(#[from] CpgError),
    /// A file, the child or the poll could not be set up.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        cause: std::io::Error,
    },
    /// Stable storage could not be opened.
    #[error(transparent)]
    Stable(#[from] StableError),
    /// The events file could not be opened.
    #[error(transparent)]
    Records(#[from] ringlab_records::WriteError),
    /// The config cannot be run on corosync.
    #[error("{0}")]
    Config(String),
    /// corosync exited.
    #[error("corosync exited ({status}); see {log}")]
    CorosyncExited {
        /// Its exit status.
        status: String,
        /// Its log and output.
        log: String,
    },
    /// CPG did not answer in time.
    #[error("corosync's CPG did not answer within {secs} s (last: {last}); see {log}")]
    StartTimeout {
        /// The bound.
        secs: u64,
        /// The last error.
        last: String,
        /// Its log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |cause| NodeError::Io { what, cause }
}

/// The files the node keeps in its state directory.
#[derive(Clone, Debug)]
pub struct StateFiles {
    /// corosync.conf.
    pub conf: PathBuf,
    /// The unmapped knobs (JSON).
    pub unmapped: PathBuf,
    /// corosync's PID.
    pub pid: PathBuf,
    /// corosync's log.
    pub log: PathBuf,
    /// corosync's stdout and stderr.
    pub out: PathBuf,
    /// Every CPG group change (JSON lines).
    pub cpg: PathBuf,
}

impl StateFiles {
    /// Returns the files under `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            conf: state_dir.join("corosync.conf"),
            unmapped: state_dir.join("corosync-unmapped.json"),
            pid: state_dir.join("corosync.pid"),
            log: state_dir.join(conf::LOG_FILE),
            out: state_dir.join("corosync.out"),
            cpg: state_dir.join("corosync-cpg.jsonl"),
        }
    }
}

/// The event records: the one writer, and the same file opened for appending the records
/// that carry added fields.
struct Records {
    writer: Writer<File>,
    annotated: File,
}

impl Records {
    fn write(&mut self, r: &Record) {
        // A failure is counted and logged once by the writer.
        let _ = self.writer.write(r);
    }

    /// Writes `r` with the fields of `extra` added, after what the writer holds.
    fn write_with(&mut self, r: &Record, extra: &serde_json::Map<String, serde_json::Value>) {
        let _ = self.writer.flush();
        let mut line = Vec::with_capacity(256);
        ringlab_records::encode_line(r, &mut line);
        if line.ends_with(b"}\n") && !extra.is_empty() {
            line.truncate(line.len() - 2);
            for (k, v) in extra {
                line.push(b',');
                line.extend_from_slice(serde_json::Value::from(k.as_str()).to_string().as_bytes());
                line.push(b':');
                line.extend_from_slice(v.to_string().as_bytes());
            }
            line.extend_from_slice(b"}\n");
        }
        if let Err(e) = self.annotated.write_all(&line) {
            tracing::warn!(error = %e, "writing an event record failed");
        }
    }
}

/// The load generator over CPG.
#[derive(Default)]
struct Load {
    spec: Option<LoadSpec>,
    started_ns: u64,
    /// Messages sent or given up (rate load) since the start.
    issued: u64,
    sent: u64,
    refused: u64,
    retry_at: u64,
    size_at: usize,
    total_sent: u64,
    total_refused: u64,
}

impl Load {
    fn start(&mut self, spec: LoadSpec, now: u64) {
        *self = Self {
            total_sent: self.total_sent,
            total_refused: self.total_refused,
            spec: Some(spec),
            started_ns: now,
            retry_at: now,
            ..Self::default()
        };
    }

    fn stop(&mut self) -> (u64, u64) {
        self.spec = None;
        (self.sent, self.refused)
    }

    fn next_size(&mut self) -> usize {
        let spec = self.spec.as_ref().expect("a running load");
        if spec.sizes.is_empty() {
            return spec.size;
        }
        let s = spec.sizes[self.size_at % spec.sizes.len()];
        self.size_at += 1;
        s
    }

    /// Returns when the load wants to run next.
    fn deadline(&self, waits: bool) -> Option<u64> {
        let spec = self.spec.as_ref()?;
        let end = spec
            .duration_ms
            .map(|d| self.started_ns.saturating_add(d.saturating_mul(1_000_000)));
        if waits {
            return end;
        }
        let next = if spec.rate == 0 {
            self.retry_at
        } else {
            self.started_ns
                .saturating_add((self.issued as u128 * 1_000_000_000 / spec.rate as u128) as u64)
        };
        Some(end.map_or(next, |e| e.min(next)))
    }
}

/// One running corosync node.
pub struct CorosyncNode {
    cfg: NodeConfig,
    files: StateFiles,
    inc: u32,
    stable: Stable,
    child: Option<Child>,
    child_pid: u32,
    cpg: Cpg,
    poll: Poll,
    control: Server,
    records: Option<Records>,
    cpg_log: Option<File>,
    // Membership.
    ring: RingId,
    totem_ring: RingId,
    /// A CPG view not recorded yet, with the time it arrived (see `flush_view`).
    pending_view: Option<(u64, Vec<CpgAddress>)>,
    members: Vec<NodeId>,
    regular: bool,
    ring_seq: u64,
    cpg_members: Vec<CpgAddress>,
    // Counters.
    started_ns: u64,
    delivered: u64,
    delivered_bytes: u64,
    foreign: u64,
    latency: Histogram<u64>,
    load: Load,
    counter: u64,
    own_sent: u64,
    own_delivered: u64,
    pad: Vec<u8>,
    // corosync's log.
    log: LogParser,
    log_file: Option<File>,
    log_at: u64,
    next_log_ns: u64,
    next_child_ns: u64,
    // Exit.
    exit: Option<&'static str>,
    quit_by: Option<u64>,
}

impl CorosyncNode {
    /// Starts corosync and joins the group (see the module docs for the order).
    pub fn start(cfg: NodeConfig, opts: &Options) -> Result<Self, NodeError> {
        let lib = Lib::load()?;
        if !cfg.services.is_empty() {
            return Err(NodeError::Config(format!(
                "services = {:?}: corosync runs no ringlab services",
                cfg.services
            )));
        }
        let files = StateFiles::new(&cfg.state_dir);
        ringlab_net::stable::create_private_dir(&cfg.state_dir).map_err(io(format!(
            "creating state_dir {}",
            cfg.state_dir.display()
        )))?;
        let rendered = conf::render(&cfg);
        write_file(&files.conf, rendered.text.as_bytes(), 0o644)?;
        let unmapped: &[Unmapped] = &rendered.unmapped;
        let json = serde_json::to_vec_pretty(unmapped).expect("unmapped knobs serialise");
        write_file(&files.unmapped, &json, 0o644)?;
        for u in unmapped {
            tracing::info!(knob = %u.knob, value = %u.value, why = %u.why, "not carried to corosync");
        }
        if let Some(k) = &cfg.key_file {
            let key = std::fs::read(k).map_err(io(format!("reading key_file {}", k.display())))?;
            if key.len() < ringlab_ring::auth::KEY_MIN {
                return Err(NodeError::Config(format!(
                    "key_file {}: {}",
                    k.display(),
                    ringlab_ring::auth::KeyError(key.len())
                )));
            }
            write_file(
                &conf::authkey_path(&cfg.state_dir),
                &conf::authkey_from(&key),
                0o600,
            )?;
        }
        let stable = Stable::open(&cfg.state_dir, cfg.node_id)?;
        let inc = stable.incarnation();
        let records = match &cfg.events {
            Some(p) => {
                let writer = Writer::append(p)?;
                let annotated = File::options()
                    .append(true)
                    .open(p)
                    .map_err(io(format!("opening {}", p.display())))?;
                Some(Records { writer, annotated })
            }
            None => None,
        };
        let log_at = std::fs::metadata(&files.log).map_or(0, |m| m.len());
        let out = File::options()
            .create(true)
            .append(true)
            .open(&files.out)
            .map_err(io(format!("opening {}", files.out.display())))?;
        let out2 = out.try_clone().map_err(io("duplicating a file"))?;
        let mut cmd = Command::new(&opts.corosync);
        cmd.arg("-f")
            .arg("-c")
            .arg(&files.conf)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(out2);
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl: then nobody would kill us.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("parent exited before exec"));
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {}", opts.corosync.display())))?;
        let child_pid = child.id();
        let mut guard = ChildGuard(Some(child));
        write_file(&files.pid, format!("{child_pid}\n").as_bytes(), 0o644)?;
        tracing::info!(node = cfg.node_id, inc, pid = child_pid, "corosync started");

        let cpg = connect(&lib, &mut guard, opts.start_timeout, &files)?;
        let poll = Poll::new().map_err(io("creating the poll"))?;
        let fd = cpg.fd()?;
        poll.registry()
            .register(&mut SourceFd(&fd), CPG, Interest::READABLE)
            .map_err(io("registering the CPG fd"))?;
        let mut listener =
            server::bind(&cfg.control).map_err(io(format!("binding {}", cfg.control.display())))?;
        poll.registry()
            .register(&mut listener, CONTROL, Interest::READABLE)
            .map_err(io("registering the control socket"))?;
        let cpg_log = File::options()
            .create(true)
            .append(true)
            .open(&files.cpg)
            .ok();
        let now = monotonic_ns();
        let node_id = cfg.node_id;
        Ok(Self {
            files,
            inc,
            stable,
            child: guard.0.take(),
            child_pid,
            cpg,
            poll,
            control: Server::new(listener),
            records,
            cpg_log,
            ring: RingId { rep: 0, seq: 0 },
            totem_ring: RingId { rep: 0, seq: 0 },
            pending_view: None,
            members: vec![node_id],
            regular: false,
            ring_seq: 0,
            cpg_members: Vec::new(),
            started_ns: now,
            delivered: 0,
            delivered_bytes: 0,
            foreign: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
            load: Load::default(),
            counter: 0,
            own_sent: 0,
            own_delivered: 0,
            pad: Vec::new(),
            log: LogParser::new(current_year()),
            log_file: None,
            log_at,
            next_log_ns: now,
            next_child_ns: now + CHILD_POLL_NS,
            exit: None,
            quit_by: None,
            cfg,
        })
    }

    /// Returns corosync's PID.
    pub fn corosync_pid(&self) -> u32 {
        self.child_pid
    }

    /// Runs the loop until `leave` or `quit` (drained); stops corosync and returns which.
    pub fn run(mut self) -> Result<&'static str, NodeError> {
        let res = self.run_loop();
        self.shut_down();
        res
    }

    fn run_loop(&mut self) -> Result<&'static str, NodeError> {
        let mut events = Events::with_capacity(64);
        // Whether CPG may hold more to dispatch: mio's readiness is edge-triggered, so after
        // a dispatch that handed anything back, the next turn dispatches again without
        // waiting, until one hands back nothing. True at first: what arrived before the fd
        // was registered.
        let mut cpg_more = true;
        loop {
            let now = monotonic_ns();
            let deadline = [
                self.load.deadline(!self.regular),
                self.quit_by,
                Some(self.next_log_ns),
                Some(self.next_child_ns),
                self.pending_view.as_ref().map(|(t, _)| t + VIEW_SETTLE_NS),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
            let timeout = if cpg_more {
                Duration::ZERO
            } else {
                Duration::from_nanos(deadline.saturating_sub(now))
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("polling")(e)),
            }
            let mut cpg_ready = false;
            for ev in events.iter() {
                match ev.token() {
                    CPG => cpg_ready = true,
                    CONTROL => self.control.accept(self.poll.registry()),
                    t => self.serve(t),
                }
            }
            // After `leave`, nothing more is taken from CPG (a ringlab node delivers
            // nothing once it has left).
            if self.exit.is_none() && (cpg_ready || cpg_more) {
                cpg_more = self.dispatch()? > 0;
            }
            let now = monotonic_ns();
            if now >= self.next_log_ns {
                self.read_log(now);
                self.next_log_ns = now + LOG_POLL_NS;
            }
            if self
                .pending_view
                .as_ref()
                .is_some_and(|(t, _)| now >= t + VIEW_SETTLE_NS)
            {
                self.flush_view();
            }
            if now >= self.next_child_ns {
                self.check_child()?;
                self.next_child_ns = now + CHILD_POLL_NS;
            }
            self.run_load(now)?;
            self.quit_when_drained(monotonic_ns());
            if let Some(r) = self.records.as_mut() {
                let _ = r.writer.flush();
            }
            if let Some(why) = self.exit {
                return Ok(why);
            }
        }
    }

    /// Dispatches what CPG holds; returns how many events it handed back.
    fn dispatch(&mut self) -> Result<usize, NodeError> {
        let events = self.cpg.dispatch()?;
        let n = events.len();
        for e in events {
            let now = monotonic_ns();
            match e {
                CpgEvent::Deliver { nodeid, data, .. } => self.on_deliver(now, nodeid, &data),
                CpgEvent::TotemConfchg { ring, members } => {
                    // corosync logged the state changes that led here before it handed the
                    // change to CPG: they are recorded first, so that the records keep
                    // corosync's order.
                    self.read_log(now);
                    self.next_log_ns = now + LOG_POLL_NS;
                    self.on_totem(
                        RingId {
                            rep: ring.nodeid,
                            seq: ring.seq,
                        },
                        members,
                    )
                }
                CpgEvent::Confchg {
                    members,
                    left,
                    joined,
                } => {
                    let pairs = |v: &[CpgAddress]| -> Vec<[u32; 3]> {
                        v.iter().map(|a| [a.nodeid, a.pid, a.reason]).collect()
                    };
                    if let Some(f) = self.cpg_log.as_mut() {
                        let line = serde_json::json!({
                            "t_ns": now,
                            "node": self.cfg.node_id,
                            "inc": self.inc,
                            "ring": self.ring,
                            "members": pairs(&members),
                            "left": pairs(&left),
                            "joined": pairs(&joined),
                        });
                        let _ = writeln!(f, "{line}");
                    }
                    // The view before it, if still pending, belongs to the totem ring known
                    // now; this one waits for its own (see `flush_view`).
                    self.flush_view();
                    self.cpg_members = members.clone();
                    self.pending_view = Some((now, members));
                }
            }
        }
        Ok(n)
    }

    fn record(&mut self, now: u64, body: Body) {
        if let Some(r) = self.records.as_mut() {
            r.write(&Record {
                t_ns: now,
                node: self.cfg.node_id,
                inc: self.inc,
                body,
            });
        }
    }

    fn record_with(
        &mut self,
        now: u64,
        body: Body,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) {
        if let Some(r) = self.records.as_mut() {
            r.write_with(
                &Record {
                    t_ns: now,
                    node: self.cfg.node_id,
                    inc: self.inc,
                    body,
                },
                extra,
            );
        }
    }

    fn on_totem(&mut self, ring: RingId, mut new: Vec<NodeId>) {
        new.sort_unstable();
        new.dedup();
        tracing::info!(%ring, members = ?new, "totem configuration");
        self.totem_ring = ring;
        // corosync hands a change only once it is OPERATIONAL; a log already past that (it
        // left OPERATIONAL again before the change was taken from CPG) means the ring is
        // gone again. No log line read yet (`start`): the change alone says it.
        self.regular = matches!(self.log.state(), MembState::Operational | MembState::Start);
        // A joiner is handed its view before the totem configuration it belongs to.
        self.flush_view();
    }

    /// The id of CPG view `pairs` (sorted `(nodeid, pid)`) on the current totem ring (see the
    /// module's docs).
    fn view_ring(&self, pairs: &[(u32, u32)]) -> RingId {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (n, p) in pairs {
            for b in n.to_be_bytes().into_iter().chain(p.to_be_bytes()) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        RingId {
            rep: self.totem_ring.rep,
            seq: (self.totem_ring.seq << 16) | (h & 0xffff),
        }
    }

    /// Records the pending CPG view, if any, as the configuration the application sees, on
    /// the totem ring known now, with the time the view arrived. Called when the totem
    /// configuration it belongs to is handed (a joiner gets its view first), before the
    /// view's first message, before the next view, at exit, and [`VIEW_SETTLE_NS`] after it
    /// arrived (a member got the totem configuration first).
    fn flush_view(&mut self) {
        let Some((now, members)) = self.pending_view.take() else {
            return;
        };
        let mut pairs: Vec<(u32, u32)> = members.iter().map(|a| (a.nodeid, a.pid)).collect();
        pairs.sort_unstable();
        let mut new: Vec<NodeId> = pairs.iter().map(|p| p.0).collect();
        new.dedup();
        let ring = self.view_ring(&pairs);
        let old = std::mem::take(&mut self.members);
        let trans: Vec<NodeId> = old.iter().filter(|m| new.contains(m)).copied().collect();
        let minus = |a: &[NodeId], b: &[NodeId]| -> Vec<NodeId> {
            a.iter().filter(|m| !b.contains(m)).copied().collect()
        };
        self.record(
            now,
            Body::Config {
                kind: ConfigKind::Transitional,
                ring,
                members: trans.clone(),
                left: minus(&old, &trans),
                joined: Vec::new(),
            },
        );
        let mut extra = serde_json::Map::new();
        extra.insert("cpg_members".into(), serde_json::json!(pairs));
        extra.insert(
            "totem_ring".into(),
            serde_json::json!({"rep": self.totem_ring.rep, "seq": self.totem_ring.seq}),
        );
        self.record_with(
            now,
            Body::Config {
                kind: ConfigKind::Regular,
                ring,
                members: new.clone(),
                left: minus(&old, &new),
                joined: minus(&new, &trans),
            },
            &extra,
        );
        tracing::info!(%ring, members = ?new, "CPG view");
        self.ring = ring;
        self.members = new;
        self.ring_seq = 0;
    }

    fn on_deliver(&mut self, now: u64, _nodeid: u32, data: &[u8]) {
        self.flush_view();
        let Some((id, sent_t_ns)) = parse_header(data) else {
            self.foreign += 1;
            return;
        };
        self.ring_seq += 1;
        self.delivered += 1;
        self.delivered_bytes += data.len() as u64;
        if id.node == self.cfg.node_id && id.inc == self.inc {
            self.own_delivered += 1;
        }
        let _ = self.latency.record(now.saturating_sub(sent_t_ns).max(1));
        if self.cfg.records_message(&id) {
            self.record(
                now,
                Body::Deliver {
                    id,
                    ring: self.ring,
                    seq: self.ring_seq,
                    len: data.len(),
                    safe: false,
                    sent_t_ns,
                },
            );
        }
    }

    /// Reads what corosync's log gained and records its state changes.
    fn read_log(&mut self, now: u64) {
        if self.log_file.is_none() {
            match File::open(&self.files.log) {
                Ok(f) => self.log_file = Some(f),
                Err(_) => return,
            }
        }
        let Some(f) = self.log_file.as_mut() else {
            return;
        };
        let len = f.metadata().map_or(0, |m| m.len());
        if len < self.log_at {
            // Truncated or replaced: read it again from its start.
            self.log_at = 0;
        }
        if len == self.log_at || f.seek(SeekFrom::Start(self.log_at)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.take(len - self.log_at).read_to_end(&mut buf).is_err() {
            return;
        }
        self.log_at += buf.len() as u64;
        for s in self.log.feed(&buf) {
            // Lines read before a totem change are older than it (see `dispatch`), so a
            // state other than OPERATIONAL read here is one the installed ring left.
            if s.to != MembState::Operational {
                self.regular = false;
            }
            let mut extra = serde_json::Map::new();
            extra.insert("source".into(), "corosync-log".into());
            extra.insert("log_time".into(), s.log_time.clone().into());
            if let Some(ns) = s.log_unix_ns {
                extra.insert("log_unix_ns".into(), ns.into());
            }
            if let Some(g) = s.gather_from {
                extra.insert("gather_from".into(), g.into());
            }
            self.record_with(
                now,
                Body::State {
                    from: s.from,
                    to: s.to,
                    reason: s.reason,
                },
                &extra,
            );
        }
    }

    fn check_child(&mut self) -> Result<(), NodeError> {
        let Some(c) = self.child.as_mut() else {
            return Ok(());
        };
        match c.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Err(NodeError::CorosyncExited {
                    status: status.to_string(),
                    log: format!(
                        "{} and {}",
                        self.files.log.display(),
                        self.files.out.display()
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    fn run_load(&mut self, now: u64) -> Result<(), NodeError> {
        let Some(spec) = self.load.spec.clone() else {
            return Ok(());
        };
        let over = spec.count.is_some_and(|c| self.load.sent >= c)
            || spec.duration_ms.is_some_and(|d| {
                now >= self
                    .load
                    .started_ns
                    .saturating_add(d.saturating_mul(1_000_000))
            });
        if over {
            self.load.spec = None;
            return Ok(());
        }
        if !self.regular {
            return Ok(());
        }
        let due = if spec.rate == 0 {
            if now < self.load.retry_at {
                return Ok(());
            }
            u64::MAX
        } else {
            let elapsed = now.saturating_sub(self.load.started_ns) as u128;
            (elapsed * spec.rate as u128 / 1_000_000_000) as u64 + 1
        };
        let due = spec.count.map_or(due, |c| due.min(c));
        let mut turn = 0;
        while self.load.issued < due
            && turn < PER_TURN
            && monotonic_ns().saturating_sub(now) < TURN_NS
        {
            let size = self.load.next_size();
            match self.send_one(size)? {
                Mcast::Sent => {
                    self.load.issued += 1;
                    self.load.sent += 1;
                    self.load.total_sent += 1;
                    turn += 1;
                }
                Mcast::TryAgain => {
                    if spec.rate == 0 {
                        self.load.retry_at = monotonic_ns() + TRY_AGAIN_NS;
                    } else {
                        // Behind: the backlog is dropped, not burst later.
                        let dropped = due - self.load.issued;
                        self.load.refused += dropped;
                        self.load.total_refused += dropped;
                        self.load.issued = due;
                    }
                    return Ok(());
                }
            }
        }
        if spec.rate == 0 {
            self.load.retry_at = now;
        }
        Ok(())
    }

    /// Multicasts one message of `size` bytes; records its `send` once corosync took it.
    fn send_one(&mut self, size: usize) -> Result<Mcast, NodeError> {
        let id = MsgId {
            node: self.cfg.node_id,
            inc: self.inc,
            counter: self.counter + 1,
        };
        let now = monotonic_ns();
        let header = encode_header(id, now);
        let pad = size.saturating_sub(HEADER_LEN);
        if self.pad.len() < pad {
            self.pad.resize(pad, 0);
        }
        let r = self.cpg.mcast(&[&header, &self.pad[..pad]])?;
        if r == Mcast::Sent {
            self.counter += 1;
            self.own_sent += 1;
            if self.cfg.records_message(&id) {
                self.record(
                    now,
                    Body::Send {
                        id,
                        len: HEADER_LEN + pad,
                        safe: false,
                    },
                );
            }
        }
        Ok(r)
    }

    fn quit_when_drained(&mut self, now: u64) {
        let Some(by) = self.quit_by else { return };
        if self.exit.is_some() {
            return;
        }
        let undelivered = self.own_sent.saturating_sub(self.own_delivered);
        if undelivered > 0 && now < by {
            return;
        }
        if undelivered > 0 {
            tracing::warn!(
                undelivered,
                "quitting with own messages undelivered; recorded"
            );
            self.record(now, Body::Stop { undelivered });
        }
        self.exit = Some("quit");
    }

    fn serve(&mut self, t: Token) {
        let Some(mut session) = self.control.read(t) else {
            return;
        };
        while let Some(req) = session.next_request() {
            let reply = match req {
                Ok(req) => self.handle(req),
                Err(bad) => bad,
            };
            session.reply(&reply);
        }
        self.control.finish(session);
    }

    /// Carries out one control request; returns its reply.
    fn handle(&mut self, req: Request) -> Reply {
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
                if spec.safe {
                    return Reply::error(
                        "load: safe=true refused: corosync's CPG orders messages only as agreed \
                         (CPG_TYPE_SAFE is not implemented)",
                    );
                }
                if let Some(name) = &spec.service {
                    return Reply::error(format!(
                        "load: service={name} refused: corosync runs no ringlab services"
                    ));
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
                self.load.stop();
                if let Err(e) = self.cpg.leave(GROUP) {
                    tracing::warn!(error = %e, "cpg_leave");
                }
                // As a ringlab node records its graceful leave; corosync itself leaves the
                // ring when the node stops it (SIGTERM: it sends its leave message).
                let from = self.status().state;
                let mut extra = serde_json::Map::new();
                extra.insert("source".into(), "corosync-node".into());
                self.record_with(
                    now,
                    Body::State {
                        from,
                        to: MembState::Left,
                        reason: ringlab_ring::Reason::Shutdown,
                    },
                    &extra,
                );
                self.exit = Some("left");
                Reply::ack()
            }
            Request::Quit => {
                self.load.stop();
                if self.quit_by.is_none() {
                    let bound = QUIT_DRAIN_TOKENS
                        .saturating_mul(self.cfg.totem.token)
                        .saturating_mul(1_000_000);
                    self.quit_by = Some(now.saturating_add(bound));
                }
                Reply::ack()
            }
            Request::Svc { service, .. } => Reply::error(format!(
                "svc {service}: refused: corosync runs no ringlab services"
            )),
        }
    }

    /// Returns the membership: `operational` while in a regular configuration (from the
    /// last totem configuration change until corosync's log says it left OPERATIONAL), else
    /// `gather`; `ring` and `members` are those of the last totem configuration change.
    fn status(&self) -> StatusReply {
        StatusReply {
            ok: true,
            node: self.cfg.node_id,
            inc: self.inc,
            state: if self.regular {
                MembState::Operational
            } else {
                MembState::Gather
            },
            ring: self.ring,
            members: self.members.clone(),
        }
    }

    /// Returns the status plus the counters corosync lets the node fill honestly:
    /// `delivered`, `latency_us`, `load`, `control`, `records`, `stable`, `uptime_s`, and
    /// `memory_kib` (`rss` and `peak_rss` are the sum of corosync's process and this one's,
    /// VmRSS and VmHWM from /proc, the implementation's whole footprint; each is also in
    /// the log at debug level). Every counter of the ring (`ring_stats`, `retransmissions`,
    /// `token_rotations_per_s`, `queue`, `drops`, `socket_buffers`, `kernel_drops`) stays 0:
    /// corosync does not expose them through CPG.
    fn stats(&self, now: u64) -> StatsReply {
        let secs = (now.saturating_sub(self.started_ns) as f64 / 1e9).max(1e-9);
        let h = &self.latency;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let mine = MemoryKib::of("self");
        let theirs = MemoryKib::of(&self.child_pid.to_string());
        tracing::debug!(?mine, ?theirs, "memory (this process, corosync)");
        let sum = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        StatsReply {
            status: self.status(),
            uptime_s: secs,
            drops: Default::default(),
            ring_stats: Default::default(),
            retransmissions: 0,
            token_rotations_per_s: 0.0,
            queue: QueueStats {
                frames: 0,
                bytes: 0,
                stored_frames: 0,
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
                running: self.load.spec.is_some(),
                sent: self.load.total_sent,
                refused: self.load.total_refused,
            },
            socket_buffers: SocketBuffers { recv: 0, send: 0 },
            memory_kib: MemoryKib {
                rss: sum(mine.rss, theirs.rss),
                peak_rss: sum(mine.peak_rss, theirs.peak_rss),
            },
            sync: None,
            control: self.control.stats(),
            records: self.records.as_ref().map(|r| r.writer.stats().clone()),
            stable: self.stable.stats().clone(),
            kernel_drops: KernelDrops::default(),
            actions: ActionStats::default(),
            mirror: None,
        }
    }

    /// Closes the control connections and removes the socket, flushes the records, and
    /// stops corosync: SIGTERM (it leaves the ring), at most 5 s, then SIGKILL; reaps it.
    fn shut_down(&mut self) {
        self.flush_view();
        self.control.close_all();
        let _ = std::fs::remove_file(&self.cfg.control);
        if let Some(r) = self.records.as_mut() {
            let _ = r.writer.flush();
        }
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
        let _ = std::fs::remove_file(&self.files.pid);
    }
}

impl Drop for CorosyncNode {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c);
        }
    }
}

/// Kills the child on every error path of the start.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop_child(c);
        }
    }
}

/// Stops corosync by its PID: SIGTERM, then SIGKILL after 5 s; always reaps it.
fn stop_child(mut c: Child) {
    if let Ok(Some(_)) = c.try_wait() {
        return;
    }
    // SAFETY: kill(2) on our own child's PID, not yet reaped (so not reused).
    unsafe {
        libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(
        pid = c.id(),
        "corosync did not stop on SIGTERM within 5 s; killing it"
    );
    let _ = c.kill();
    let _ = c.wait();
}

/// Waits (bounded) for CPG to answer, then joins the group.
fn connect(
    lib: &Lib,
    child: &mut ChildGuard,
    timeout: Duration,
    files: &StateFiles,
) -> Result<Cpg, NodeError> {
    let until = Instant::now() + timeout;
    let log = || format!("{} and {}", files.log.display(), files.out.display());
    let mut last = String::from("nothing yet");
    let mut cpg = None;
    loop {
        if let Some(c) = child.0.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                child.0 = None;
                return Err(NodeError::CorosyncExited {
                    status: status.to_string(),
                    log: log(),
                });
            }
        }
        if cpg.is_none() {
            match Cpg::initialize(lib) {
                Ok(c) => cpg = Some(c),
                Err(e) => last = e.to_string(),
            }
        }
        if let Some(c) = cpg.as_ref() {
            match c.join(GROUP) {
                Ok(()) => return Ok(cpg.take().expect("connected")),
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= until {
            return Err(NodeError::StartTimeout {
                secs: timeout.as_secs(),
                last,
                log: log(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), NodeError> {
    let what = || format!("writing {}", path.display());
    let mut f = File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io(what()))?;
    f.write_all(data).map_err(io(what()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(io(what()))
}

/// Returns the payload's header: the message id and the send time, big-endian.
pub fn encode_header(id: MsgId, sent_t_ns: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&id.node.to_be_bytes());
    h[4..8].copy_from_slice(&id.inc.to_be_bytes());
    h[8..16].copy_from_slice(&id.counter.to_be_bytes());
    h[16..24].copy_from_slice(&sent_t_ns.to_be_bytes());
    h
}

/// Returns the message id and send time of a payload; `None` when it is too short to be
/// one of ours.
pub fn parse_header(data: &[u8]) -> Option<(MsgId, u64)> {
    let h = data.get(..HEADER_LEN)?;
    let u32_at = |i: usize| u32::from_be_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_be_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    Some((
        MsgId {
            node: u32_at(0),
            inc: u32_at(4),
            counter: u64_at(8),
        },
        u64_at(16),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_round_trips() {
        let id = MsgId {
            node: 3,
            inc: 7,
            counter: 1 << 40,
        };
        let h = encode_header(id, 123_456_789);
        assert_eq!(parse_header(&h), Some((id, 123_456_789)));
        let mut long = h.to_vec();
        long.extend_from_slice(&[0; 100]);
        assert_eq!(parse_header(&long), Some((id, 123_456_789)));
        assert_eq!(parse_header(&h[..23]), None);
    }

    #[test]
    fn a_load_waits_off_the_ring_and_paces_its_rate() {
        let mut l = Load::default();
        assert_eq!(l.deadline(false), None);
        l.start(
            LoadSpec {
                rate: 1000,
                duration_ms: Some(50),
                sizes: vec![10, 20],
                ..LoadSpec::default()
            },
            1_000,
        );
        // Off the ring: only the end of the load wakes the loop.
        assert_eq!(l.deadline(true), Some(1_000 + 50_000_000));
        // The first message is due at once, the 4th 3 ms after the start.
        assert_eq!(l.deadline(false), Some(1_000));
        l.issued = 3;
        assert_eq!(l.deadline(false), Some(1_000 + 3_000_000));
        assert_eq!([l.next_size(), l.next_size(), l.next_size()], [10, 20, 10]);
        l.sent = 7;
        l.total_sent = 7;
        assert_eq!(l.stop(), (7, 0));
        assert_eq!(l.deadline(false), None);
        // A new load keeps the totals and starts its own counts.
        l.start(LoadSpec::default(), 5);
        assert_eq!((l.sent, l.total_sent), (0, 7));
        assert_eq!(l.deadline(false), Some(5));
    }

    #[test]
    fn an_annotated_record_reads_back_with_the_one_reader() {
        let dir = std::env::temp_dir().join(format!("ringlab-cs-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("r.jsonl");
        let _ = std::fs::remove_file(&p);
        let mut r = Records {
            writer: Writer::append(&p).unwrap(),
            annotated: File::options().append(true).open(&p).unwrap(),
        };
        let rec = |t, body| Record {
            t_ns: t,
            node: 1,
            inc: 2,
            body,
        };
        r.write(&rec(1, Body::Stop { undelivered: 0 }));
        let mut extra = serde_json::Map::new();
        extra.insert("source".into(), "corosync-log".into());
        extra.insert("log_unix_ns".into(), 5u64.into());
        let st = Body::State {
            from: MembState::Operational,
            to: MembState::Gather,
            reason: ringlab_ring::Reason::TokenLoss,
        };
        r.write_with(&rec(2, st.clone()), &extra);
        r.write(&rec(3, Body::Stop { undelivered: 1 }));
        r.writer.flush().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .contains("\"source\":\"corosync-log\""));
        let mut out = Vec::new();
        let read = ringlab_records::read_file(&p, &mut out).unwrap();
        assert!(!read.torn);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].body, st);
        assert_eq!(out.iter().map(|r| r.t_ns).collect::<Vec<_>>(), [1, 2, 3]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
