//! A harness for clusters of real node processes on one host: write configs, start nodes as
//! child processes, talk to their control sockets, kill and restart them, gather records.
//! Used by `ringlab cluster` and by the loopback tests. Harness code, not protocol core: it
//! sleeps and reads the clock, which the cores never do.
//!
//! Only this harness's own children are ever signalled, by their PID (`Child::kill`), and
//! every child still running is killed when the [`Cluster`] is dropped, panics included.

use crate::clock::monotonic_ns;
use crate::config::{NodeConfig, Peer, Transport};
use crate::control::{self, Ack, CtlError, Request, StatsReply, StatusReply};
use crate::stable;
use ringlab_records::{Body, Record, Writer};
use ringlab_ring::{Config as RingConfig, MembState, NodeId, RingId};
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What cluster to run.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Nodes, ids 1..=n, at `127.0.0.<id>` (or `127.1.<a>.<id>` with `ip_block` a).
    pub nodes: usize,
    /// Transport.
    pub transport: Transport,
    /// Ring knobs.
    pub totem: RingConfig,
    /// UDP port.
    pub port: u16,
    /// Multicast group.
    pub group: IpAddr,
    /// Working directory for configs, sockets, state, records, logs.
    pub dir: PathBuf,
    /// The key the nodes share, if any.
    pub key: Key,
    /// Whether send/deliver records are written.
    pub record_messages: bool,
    /// Of those, only every Nth message's (see [`NodeConfig::record_every`]).
    pub record_every: u64,
    /// The `ringlab` binary.
    pub binary: PathBuf,
    /// recvmmsg/sendmmsg on (see [`NodeConfig::batched_io`]).
    pub batched_io: bool,
    /// Run on ::1 (nodes differ by port) instead of `127.0.0.<id>`.
    pub ipv6: bool,
    /// Services every node runs (see [`NodeConfig::services`]).
    pub services: Vec<String>,
    /// Their sections, by service name, given to every node (see
    /// [`NodeConfig::service_config`]).
    pub service_config: std::collections::BTreeMap<String, toml::Value>,
    /// Run each node in network namespace `<prefix>-n<id>` made by netns-scripts/topo.sh,
    /// at `10.77.0.<id>`, instead of on loopback. PID and command files go to
    /// `/run/ringlab-<prefix>/` so that fault.sh can signal and restart the nodes.
    pub netns: Option<String>,
    /// Which Totem each node runs: ringlab's own (`ringlab node`) or corosync's
    /// (`ringlab corosync-node`, which needs `netns`; see [`Implementation`]).
    pub implementation: Implementation,
}

/// Which Totem a cluster's nodes run.
///
/// With [`Implementation::Corosync`] each node is `ringlab corosync-node --config FILE`,
/// started in its namespace inside a private mount namespace (`unshare -m`) with its own
/// tmpfs on `/run` and `/dev/shm` (corosync's IPC files) and `STATE_DIR/corosync-lib`
/// bound on `/var/lib/corosync`: a corosync daemon per namespace, each with its own files,
/// and nothing left on the host when the node's namespace ends. That process runs
/// corosync as its child (which dies with it) and a CPG client that answers the same control
/// requests and writes the same records as a ringlab node; the harness treats both alike.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Implementation {
    /// ringlab's Totem (`ringlab node`).
    #[default]
    Ringlab,
    /// corosync's Totem through its CPG (`ringlab corosync-node`).
    Corosync,
}

impl Implementation {
    /// Its name in experiment files and results (`ringlab`, `corosync`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ringlab => "ringlab",
            Self::Corosync => "corosync",
        }
    }
}

impl std::fmt::Display for Implementation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Implementation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ringlab" => Ok(Self::Ringlab),
            "corosync" => Ok(Self::Corosync),
            o => Err(format!(
                "unknown implementation {o:?} (known: ringlab, corosync)"
            )),
        }
    }
}

/// The file in a corosync node's state directory that holds its daemon's PID (written by
/// `ringlab corosync-node`).
pub const COROSYNC_PID_FILE: &str = "corosync.pid";

/// The directory under a corosync node's state directory bound on `/var/lib/corosync`.
pub const COROSYNC_LIB_DIR: &str = "corosync-lib";

/// Where a corosync node reads the cluster's key: a copy inside its private `/run` (the
/// tmpfs that hides the host's `/run`, and the run's key with it, and that vanishes with the
/// node's mount namespace).
pub const COROSYNC_KEY_PATH: &str = "/run/ringlab-cluster.key";

/// The shell script a corosync node starts with, inside `unshare -m` (positional
/// arguments: the lib directory, the ringlab binary, the config, the key file or "").
/// The key is opened before `/run` is covered and copied (0600) into the private one.
const COROSYNC_WRAPPER: &str = "if [ -n \"$4\" ]; then exec 3<\"$4\"; fi \\
    && mount -t tmpfs -o size=16m,mode=0755 tmpfs /run \\
    && mount -t tmpfs -o size=64m tmpfs /dev/shm \\
    && mount --bind \"$1\" /var/lib/corosync \\
    && if [ -n \"$4\" ]; then (umask 077 && cat <&3 >/run/ringlab-cluster.key) && exec 3<&-; fi \\
    && exec \"$2\" corosync-node --config \"$3\"";

/// Returns the command that starts a corosync node in network namespace `netns`, in a
/// mount namespace of its own (see [`Implementation`]): `lib` is bound on
/// `/var/lib/corosync`, `key` (the run's key file) copied into the private `/run`. `ip netns
/// exec` execs unshare, which execs sh, which execs the node: the child's PID is the node's.
pub fn corosync_command(
    netns: &str,
    lib: &std::path::Path,
    binary: &std::path::Path,
    config: &std::path::Path,
    key: Option<&std::path::Path>,
) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", netns])
        .args(["unshare", "-m", "--propagation", "private"])
        .args(["sh", "-c", COROSYNC_WRAPPER, "sh"])
        .arg(lib)
        .arg(binary)
        .arg(config)
        .arg(key.unwrap_or(std::path::Path::new("")));
    c
}

/// The key a cluster's nodes share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    /// None: datagrams are not authenticated.
    None,
    /// A fixed key derived from nothing secret, written to the cluster's directory: for
    /// loopback tests and benchmarks only, where nobody else is on the segment.
    Fixed,
    /// A key file the caller made and removes (`ringlab run`: 32 random bytes from the OS,
    /// mode 0600, in the run's own state directory).
    File(PathBuf),
}

impl From<bool> for Key {
    /// `true` is [`Key::Fixed`], `false` [`Key::None`].
    fn from(key: bool) -> Self {
        if key {
            Self::Fixed
        } else {
            Self::None
        }
    }
}

/// A running cluster of node processes.
pub struct Cluster {
    /// What it runs.
    pub spec: Spec,
    children: Vec<Option<Child>>,
    harness_records: PathBuf,
}

/// Why a harness step failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An I/O step failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// A node did not answer as expected.
    #[error("{0}")]
    Node(String),
    /// A control call failed (no answer, a refusal, a reply that does not parse).
    #[error(transparent)]
    Ctl(#[from] CtlError),
    /// Event records could not be read.
    #[error(transparent)]
    Records(#[from] ringlab_records::ReadError),
}

fn ioe(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let w = what.into();
    move |e| HarnessError::Io(w, e)
}

impl Cluster {
    /// Returns node `id`'s IPv4 address, `127.0.0.<id>` (an IPv6 cluster puts every node on ::1
    /// and tells them apart by port).
    pub fn addr(id: NodeId) -> IpAddr {
        IpAddr::from([127, 0, 0, id as u8])
    }

    /// Returns node `id`'s address in a namespace topology: `10.77.0.<id>` (netns-scripts/lib.sh).
    pub fn netns_addr(id: NodeId) -> IpAddr {
        IpAddr::from([10, 77, 0, id as u8])
    }

    fn node_addr(&self, id: NodeId) -> (IpAddr, Option<u16>) {
        if self.spec.netns.is_some() {
            (Self::netns_addr(id), None)
        } else if self.spec.ipv6 {
            (
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                Some(self.spec.port + id as u16),
            )
        } else {
            (Self::addr(id), None)
        }
    }

    /// Returns the path of node `id`'s control socket.
    pub fn control_path(&self, id: NodeId) -> PathBuf {
        self.spec.dir.join(format!("node-{id}.sock"))
    }

    /// Returns the path of node `id`'s record file.
    pub fn events_path(&self, id: NodeId) -> PathBuf {
        self.spec.dir.join(format!("node-{id}.jsonl"))
    }

    /// Writes every node's config (and the key) and starts every node.
    pub fn start(spec: Spec) -> Result<Self, HarnessError> {
        assert!((1..=250).contains(&spec.nodes));
        std::fs::create_dir_all(&spec.dir)
            .map_err(ioe(format!("creating {}", spec.dir.display())))?;
        let mut c = Self {
            children: (0..spec.nodes).map(|_| None).collect(),
            harness_records: spec.dir.join("harness.jsonl"),
            spec,
        };
        if c.spec.key == Key::Fixed {
            let key: Vec<u8> = (0..32u8)
                .map(|i| i.wrapping_mul(97).wrapping_add(13))
                .collect();
            std::fs::write(c.fixed_key_path(), key).map_err(ioe("writing the key"))?;
        }
        for id in 1..=c.spec.nodes as NodeId {
            c.write_config(id)?;
        }
        // All processes first, then their control sockets: the nodes start together, as a
        // cluster booted at once would (start → full ring is measured from the last start).
        for id in 1..=c.spec.nodes as NodeId {
            c.launch(id)?;
        }
        for id in 1..=c.spec.nodes as NodeId {
            c.await_control(id)?;
        }
        Ok(c)
    }

    fn fixed_key_path(&self) -> PathBuf {
        self.spec.dir.join("cluster.key")
    }

    /// Returns the key file the nodes read, if any.
    pub fn key_file(&self) -> Option<PathBuf> {
        match &self.spec.key {
            Key::None => None,
            Key::Fixed => Some(self.fixed_key_path()),
            Key::File(p) => Some(p.clone()),
        }
    }

    /// Returns node `id`'s state directory, its own (`state/node-<id>/`): stable storage
    /// and its resources' default files (`resources/RESOURCE`) are the node's alone.
    pub fn state_dir(&self, id: NodeId) -> PathBuf {
        self.spec.dir.join("state").join(format!("node-{id}"))
    }

    /// Returns node `id`'s config.
    pub fn config(&self, id: NodeId) -> NodeConfig {
        NodeConfig {
            node_id: id,
            bind: self.node_addr(id).0,
            port: self.spec.port,
            transport: self.spec.transport,
            mcast_group: self.spec.group,
            nodes: (1..=self.spec.nodes as NodeId)
                .map(|i| Peer {
                    id: i,
                    addr: self.node_addr(i).0,
                    port: self.node_addr(i).1,
                })
                .collect(),
            events: Some(self.events_path(id)),
            record_messages: self.spec.record_messages,
            record_every: self.spec.record_every,
            control: self.control_path(id),
            state_dir: self.state_dir(id),
            key_file: match self.spec.implementation {
                Implementation::Ringlab => self.key_file(),
                Implementation::Corosync => self.key_file().map(|_| COROSYNC_KEY_PATH.into()),
            },
            recv_buffer: Some(4 << 20),
            send_buffer: Some(4 << 20),
            batched_io: self.spec.batched_io,
            services: self.spec.services.clone(),
            max_fill_bytes: crate::config::DEFAULT_MAX_FILL_BYTES,
            service_config: self.spec.service_config.clone(),
            totem: self.spec.totem.clone(),
        }
    }

    fn config_path(&self, id: NodeId) -> PathBuf {
        self.spec.dir.join(format!("node-{id}.toml"))
    }

    fn write_config(&self, id: NodeId) -> Result<(), HarnessError> {
        let text =
            toml::to_string(&self.config(id)).map_err(|e| HarnessError::Node(e.to_string()))?;
        std::fs::write(self.config_path(id), text).map_err(ioe("writing a config"))
    }

    /// Starts (or restarts) node `id`.
    pub fn spawn(&mut self, id: NodeId) -> Result<(), HarnessError> {
        self.launch(id)?;
        self.await_control(id)
    }

    /// Starts node `id`'s process without waiting for it.
    fn launch(&mut self, id: NodeId) -> Result<(), HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.dir.join(format!("node-{id}.log")))
            .map_err(ioe("opening a node log"))?;
        let mut cmd = match (&self.spec.netns, self.spec.implementation) {
            (Some(prefix), Implementation::Ringlab) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &format!("{prefix}-n{id}")])
                    .arg(&self.spec.binary)
                    .arg("node")
                    .arg("--config")
                    .arg(self.config_path(id));
                c
            }
            (None, Implementation::Ringlab) => {
                let mut c = Command::new(&self.spec.binary);
                c.arg("node").arg("--config").arg(self.config_path(id));
                c
            }
            (Some(prefix), Implementation::Corosync) => {
                let lib = self.state_dir(id).join(COROSYNC_LIB_DIR);
                std::fs::create_dir_all(&lib)
                    .map_err(ioe(format!("creating {}", lib.display())))?;
                corosync_command(
                    &format!("{prefix}-n{id}"),
                    &lib,
                    &self.spec.binary,
                    &self.config_path(id),
                    self.key_file().as_deref(),
                )
            }
            (None, Implementation::Corosync) => {
                return Err(HarnessError::Node(
                    "corosync nodes run only in network namespaces (each daemon needs its own \
                     network namespace for its IPC sockets): use `ringlab run`"
                        .into(),
                ))
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(ioe("cloning a log handle"))?)
            .stderr(log)
            .spawn()
            .map_err(ioe(format!("starting {}", self.spec.binary.display())))?;
        if let Some(prefix) = &self.spec.netns {
            // `ip netns exec` execs the node in place: the child's PID is the node's.
            let st = PathBuf::from(format!("/run/ringlab-{prefix}"));
            let _ = std::fs::write(st.join(format!("node-{id}.pid")), child.id().to_string());
            let _ = std::fs::write(
                st.join(format!("node-{id}.cmd")),
                format!(
                    "{} {} --config {}",
                    self.spec.binary.display(),
                    match self.spec.implementation {
                        Implementation::Ringlab => "node",
                        Implementation::Corosync => "corosync-node",
                    },
                    self.config_path(id).display()
                ),
            );
        }
        self.children[id as usize - 1] = Some(child);
        self.record_fault(monotonic_ns(), "start", vec![id], vec![]);
        Ok(())
    }

    /// Waits for node `id`'s control socket to answer.
    fn await_control(&mut self, id: NodeId) -> Result<(), HarnessError> {
        let deadline = monotonic_ns() + 10_000_000_000;
        while monotonic_ns() < deadline {
            if self.status(id).is_ok() {
                return Ok(());
            }
            if let Some(Some(c)) = self.children.get_mut(id as usize - 1) {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(HarnessError::Node(format!(
                        "node {id} exited at start ({status}); see {}",
                        self.spec.dir.join(format!("node-{id}.log")).display()
                    )));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(HarnessError::Node(format!(
            "node {id}'s control socket never answered"
        )))
    }

    /// Returns the incarnation node `id` last started with (its stable storage; 0 when the
    /// state file is missing or damaged).
    pub fn incarnation(&self, id: NodeId) -> u32 {
        stable::read(&stable::path(&self.config(id).state_dir, id))
            .ok()
            .flatten()
            .map_or(0, |s| s.incarnation)
    }

    /// SIGKILLs node `id` (this harness's own child, by PID) and records the crash.
    pub fn kill(&mut self, id: NodeId) {
        // A corosync node's daemon first: killed after its CPG client, it would see the
        // client's IPC close and tell the group the client left before its own SIGKILL (a
        // crash that announces itself). By PID, read while this harness runs the node.
        if let Some(d) = self
            .corosync_pid(id)
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(d, rustix::process::Signal::KILL);
        }
        if let Some(mut c) = self.children[id as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
            let inc = self.incarnation(id);
            self.append_record(&Record {
                t_ns: monotonic_ns(),
                node: id,
                inc,
                body: Body::Crash {},
            });
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) node `id`, this harness's own child, by PID.
    pub fn pause(&mut self, id: NodeId, pause: bool) -> bool {
        use rustix::process::{kill_process, Pid, Signal};
        let Some(c) = self.children[id as usize - 1].as_ref() else {
            return false;
        };
        let Some(pid) = Pid::from_raw(c.id() as i32) else {
            return false;
        };
        let sig = if pause { Signal::STOP } else { Signal::CONT };
        // A corosync node's daemon is its child: stopped and continued with it (read from
        // the PID file the node wrote, and only while the node runs, so never a stranger).
        if let Some(d) = self.corosync_pid(id).and_then(Pid::from_raw) {
            let _ = kill_process(d, sig);
        }
        kill_process(pid, sig).is_ok()
    }

    /// Returns the PID of node `id`'s corosync daemon, while a corosync node runs it.
    pub fn corosync_pid(&self, id: NodeId) -> Option<i32> {
        if self.spec.implementation != Implementation::Corosync {
            return None;
        }
        self.children[id as usize - 1].as_ref()?;
        std::fs::read_to_string(self.state_dir(id).join(COROSYNC_PID_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Appends a record of the harness (a fault it applied) to its record file.
    pub fn record_fault(
        &self,
        t_ns: u64,
        action: &str,
        targets: Vec<NodeId>,
        groups: Vec<Vec<NodeId>>,
    ) {
        append_fault(&self.harness_records, t_ns, action, targets, groups);
    }

    fn append_record(&self, r: &Record) {
        append_record(&self.harness_records, r);
    }

    /// Returns node `id`'s process id while this harness runs it.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.children[id as usize - 1].as_ref().map(Child::id)
    }

    /// Returns whether node `id`'s process runs.
    pub fn is_running(&mut self, id: NodeId) -> bool {
        match self.children[id as usize - 1].as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends `req` to node `id`; returns its typed reply ([`Request`]'s variants say which
    /// type), or the error: a refusal and a reply that does not parse are errors.
    pub fn call<R: DeserializeOwned>(&self, id: NodeId, req: &Request) -> Result<R, HarnessError> {
        Ok(control::call(&self.control_path(id), req)?)
    }

    /// Returns node `id`'s membership (`status`).
    pub fn status(&self, id: NodeId) -> Result<StatusReply, HarnessError> {
        self.call(id, &Request::Status)
    }

    /// Returns node `id`'s status and counters (`stats`).
    pub fn stats(&self, id: NodeId) -> Result<StatsReply, HarnessError> {
        self.call(id, &Request::Stats)
    }

    /// Waits until every node in `ids` is operational on one ring of exactly `ids`.
    pub fn wait_ring(&self, ids: &[NodeId], timeout: Duration) -> Result<RingId, HarnessError> {
        wait_ring_with(ids, timeout, &mut |id| self.status(id))
    }

    /// Waits until no running node has a load running or frames queued and delivery counts
    /// have stopped moving, so stopping the nodes loses nothing they accepted.
    pub fn wait_quiet(&mut self, timeout: Duration) -> bool {
        let ids: Vec<NodeId> = (1..=self.spec.nodes as NodeId).collect();
        wait_quiet_with(&ids, timeout, &mut |id| {
            if self.is_running(id) {
                self.stats(id).ok()
            } else {
                None
            }
        })
    }

    /// Reads every record the nodes and the harness wrote.
    pub fn records(&self) -> Result<Vec<Record>, HarnessError> {
        let mut out = Vec::new();
        let mut files: Vec<PathBuf> = (1..=self.spec.nodes as NodeId)
            .map(|i| self.events_path(i))
            .collect();
        files.push(self.harness_records.clone());
        for f in files {
            // A node that never started wrote no file.
            if f.exists() && ringlab_records::read_file(&f, &mut out)?.torn {
                tracing::warn!(
                    file = %f.display(),
                    "a torn last record (its writer was killed mid-write) is read as the end"
                );
            }
        }
        Ok(out)
    }

    /// Asks every running node to quit, waits for them (a node drains for up to
    /// [`QUIT_DRAIN_TOKENS`](crate::node::QUIT_DRAIN_TOKENS) token timeouts), then kills what
    /// is left.
    pub fn stop(&mut self) {
        for id in 1..=self.spec.nodes as NodeId {
            if self.is_running(id) {
                let _ = self.call::<Ack>(id, &Request::Quit);
            }
        }
        let drain = crate::node::QUIT_DRAIN_TOKENS.saturating_mul(self.spec.totem.token);
        let deadline = monotonic_ns().saturating_add(drain.saturating_add(3_000) * 1_000_000);
        for c in self.children.iter_mut().flatten() {
            while monotonic_ns() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.iter_mut().for_each(|c| *c = None);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Appends `r` to a harness's record file at `path` (a failure is logged: a record the
/// harness could not write must not stop the run it records).
pub fn append_record(path: &std::path::Path, r: &Record) {
    let written = Writer::append(path).and_then(|mut w| {
        w.write(r)?;
        w.flush()
    });
    if let Err(e) = written {
        tracing::warn!(error = %e, file = %path.display(), "the harness could not write a record");
    }
}

/// Appends a harness's `fault` record (node 0) to `path`.
pub fn append_fault(
    path: &std::path::Path,
    t_ns: u64,
    action: &str,
    targets: Vec<NodeId>,
    groups: Vec<Vec<NodeId>>,
) {
    append_record(
        path,
        &Record {
            t_ns,
            node: 0,
            inc: 0,
            body: Body::Fault {
                action: action.into(),
                targets,
                groups,
            },
        },
    );
}

/// Waits until every node in `ids` is operational on one ring of exactly `ids`, asking
/// each with `status` (a harness's control call, local or remote).
pub fn wait_ring_with(
    ids: &[NodeId],
    timeout: Duration,
    status: &mut dyn FnMut(NodeId) -> Result<StatusReply, HarnessError>,
) -> Result<RingId, HarnessError> {
    let deadline = monotonic_ns() + timeout.as_nanos() as u64;
    let mut last = String::new();
    loop {
        let mut ring = None;
        let mut ok = true;
        for &id in ids {
            match status(id) {
                Ok(s) => {
                    let r = Some(s.ring);
                    if s.state != MembState::Operational
                        || s.members != ids
                        || (ring.is_some() && ring != r)
                    {
                        ok = false;
                        last = serde_json::to_string(&s).expect("a status serialises");
                    }
                    ring = r;
                }
                Err(e) => {
                    ok = false;
                    last = e.to_string();
                }
            }
        }
        if ok {
            return Ok(ring.expect("at least one node"));
        }
        if monotonic_ns() > deadline {
            return Err(HarnessError::Node(format!(
                "no ring of {ids:?} in {timeout:?}; last: {last}"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until none of `ids` that answers `stats` (a node that does not run answers `None`)
/// has a load running or frames queued and their delivery counts have stopped moving.
pub fn wait_quiet_with(
    ids: &[NodeId],
    timeout: Duration,
    stats: &mut dyn FnMut(NodeId) -> Option<StatsReply>,
) -> bool {
    let deadline = monotonic_ns() + timeout.as_nanos() as u64;
    let mut last: Vec<u64> = Vec::new();
    while monotonic_ns() < deadline {
        let mut now_counts = Vec::new();
        let mut queued = 0u64;
        for &id in ids {
            if let Some(s) = stats(id) {
                queued += s.queue.frames;
                // A load still running (or not yet started its first send) is not quiet.
                queued += u64::from(s.load.running);
                now_counts.push(s.delivered.messages);
            }
        }
        if queued == 0 && now_counts == last {
            return true;
        }
        last = now_counts;
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Returns whether process `pid` is gone (or a zombie nobody reaped yet: it runs nothing),
/// waiting up to 2 s for it: what tests of killed children check.
pub fn process_gone(pid: i32) -> bool {
    for _ in 0..200 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) => {
                let state = s
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next());
                if state == Some("Z") {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(key: Key) -> Cluster {
        let dir = PathBuf::from("/nonexistent/cluster");
        Cluster {
            spec: Spec {
                nodes: 2,
                transport: Transport::Unicast,
                totem: RingConfig::default(),
                port: 5405,
                group: [239, 192, 1, 1].into(),
                dir: dir.clone(),
                key,
                record_messages: false,
                record_every: 1,
                binary: "ringlab".into(),
                batched_io: true,
                ipv6: false,
                services: vec![],
                service_config: Default::default(),
                netns: None,
                implementation: Implementation::Ringlab,
            },
            children: vec![None, None],
            harness_records: dir.join("harness.jsonl"),
        }
    }

    #[test]
    fn every_node_is_given_the_key_the_spec_names() {
        let run_key = PathBuf::from("/run/ringlab-rly1/cluster.key");
        for (key, want) in [
            (Key::None, None),
            (false.into(), None),
            (
                Key::Fixed,
                Some(PathBuf::from("/nonexistent/cluster/cluster.key")),
            ),
            (
                true.into(),
                Some(PathBuf::from("/nonexistent/cluster/cluster.key")),
            ),
            (Key::File(run_key.clone()), Some(run_key.clone())),
        ] {
            let c = cluster(key.clone());
            for id in [1, 2] {
                assert_eq!(c.config(id).key_file, want, "{key:?}");
            }
        }
    }
}
