//! `ringlab run`: carries out an [`Experiment`] in network namespaces and writes its results.
//!
//! A run holds its name prefix ([`PrefixLock`]) from start to end, so no other run uses or
//! tears down its namespaces, and it touches nothing but what carries that prefix. For every
//! repetition: `topo.sh up` (a fresh topology; namespaces of the prefix that exist already
//! are an error, never torn down), the run's key written into the topology's state
//! directory, nodes started in their namespaces, the first full ring awaited, the store
//! filled (with a `[store]` section, see [`crate::store`]), the load started, the schedule
//! applied (network faults by `fault.sh`, whose printed timestamp
//! becomes the `fault` record; process faults by the runner on its own children), then the
//! load stopped, every fault cleared, the nodes stopped and `topo.sh down`. The topology, the
//! key and the nodes are removed on every exit path: by `Drop` on errors and panics, and by
//! the stop flag (Ctrl-C, SIGTERM, SIGHUP) which every wait checks. The scripts run in their
//! own process group, so a Ctrl-C at the terminal reaches the runner, not a teardown under
//! way. Then the checker and [`analyse`] run over the records.
//!
//! With `[baseline] raw = true`, raw UDP of one flow between two of the run's namespaces is
//! measured before the first repetition (its topology up, no node started) and after each
//! repetition (its nodes stopped, its topology not yet down), so the measurements interleave
//! with the copies: raw, copy, raw, copy, raw ([`crate::store::raw_flow`]). A step that waits
//! for the copy (`at = "copy-half"`) or names its provider is resolved from the requester's
//! records as they are written; the copy must finish within `duration_ms`, or the repetition
//! fails saying so.
//!
//! The key: unless the experiment says `key = false`, every run makes one of 32 random bytes
//! from the OS, writes it (mode 0600) to `/run/ringlab-<P>/cluster.key` for each repetition's
//! nodes, and removes it with the topology.
//!
//! summary.json is written before the first repetition (marked unfinished), after each, and
//! at the end; a run stopped by a signal or an error still writes it, with `stopped` saying
//! why and how many repetitions of how many completed ([`Stopped`]).

use crate::analysis::{analyse, RunFacts};
use crate::experiment::Experiment;
use crate::fault::{FaultAction, NetworkFault, ProcessOp, Target, When};
use crate::hosts::remote::{RemoteCluster, SshHosts};
use crate::prefix::{self, PrefixLock};
use crate::store::{CopyFacts, CopyWatch};
use crate::summary::{
    summarise, write_csv, write_failover_csv, write_store_csv, RepSummary, StopCause, Stopped,
    Summary,
};
use anyhow::{bail, Context, Result};
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ringlab_net::control::{Ack, Request, StopLoadReply};
use ringlab_net::harness::{Cluster, Implementation, Key, Spec};
use ringlab_net::{monotonic_ns, LoadSpec};
use ringlab_records::{Body, Record};
use ringlab_ring::NodeId;
use ringlab_sync::store::service::DB_FILE;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const TOPO_SH: &str = include_str!("../../netns-scripts/topo.sh");
const FAULT_SH: &str = include_str!("../../netns-scripts/fault.sh");
const LIB_SH: &str = include_str!("../../netns-scripts/lib.sh");

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOpts {
    /// The `ringlab` binary the nodes run.
    pub binary: PathBuf,
    /// The directory results go to (`results/<name>/<timestamp>`).
    pub out: PathBuf,
    /// The command line, for the record.
    pub command: String,
    /// A label for `compare` (a sweep's parameter values).
    pub label: String,
    /// The ssh backend's hosts (none: the local backend, namespaces on this machine).
    pub hosts: Option<crate::hosts::inventory::Inventory>,
    /// On the ssh backend: print every remote command instead of running it.
    pub dry_run: bool,
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs as root or says why not.
pub fn require_root() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "ringlab run needs root (it makes network namespaces and nftables tables); \
             without root, 'ringlab cluster' runs nodes on loopback"
        );
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            bail!("ringlab run needs '{tool}' (apt-get install iproute2 nftables)");
        }
    }
    Ok(())
}

/// The namespace scripts, written out of the binary (so the runner and the scripts always
/// match) into a private directory, removed on drop.
pub struct Scripts {
    /// Their directory.
    pub dir: PathBuf,
}

impl Scripts {
    /// Writes them into a new directory only root can enter (a name nobody could have made
    /// beforehand: root runs these files).
    pub fn write() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let mut tag = [0u8; 8];
        rustix::rand::getrandom(&mut tag, rustix::rand::GetRandomFlags::empty())
            .context("reading random bytes")?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let dir =
            std::env::temp_dir().join(format!("ringlab-scripts-{}-{tag}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let scripts = Self { dir };
        for (name, text) in [
            ("topo.sh", TOPO_SH),
            ("fault.sh", FAULT_SH),
            ("lib.sh", LIB_SH),
        ] {
            std::fs::write(scripts.dir.join(name), text)?;
        }
        Ok(scripts)
    }

    /// A script's command for a topology of `prefix`, which this run holds: topo.sh is told
    /// so (it refuses a prefix another run holds). Its own process group: a Ctrl-C at the
    /// terminal does not cut a teardown short.
    fn cmd(&self, script: &str, binary: &Path, prefix: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.dir.join(script))
            .env("RINGLAB_BIN", binary)
            .env("RINGLAB_LOCKED_PREFIX", prefix)
            .process_group(0);
        c
    }
}

impl Drop for Scripts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A topology that is torn down when dropped (errors and panics included).
pub(crate) struct Topology<'a> {
    scripts: &'a Scripts,
    binary: PathBuf,
    prefix: String,
    /// The key file written into its state directory.
    key: Option<PathBuf>,
}

impl<'a> Topology<'a> {
    /// Makes the topology of `lock`'s prefix; whatever of that prefix exists already is an
    /// error (the prefix is this run's: it was left by this run's previous repetition, whose
    /// teardown failed), never torn down here.
    pub(crate) fn up(
        scripts: &'a Scripts,
        binary: &Path,
        lock: &PrefixLock,
        exp: &Experiment,
    ) -> Result<Self> {
        let prefix = lock.prefix();
        let left = prefix::leftovers(prefix)?;
        if !left.is_empty() {
            bail!(
                "{} of prefix '{prefix}' exist before the topology is made (a teardown failed?); not touching them: {}",
                left.len(),
                left.join(", ")
            );
        }
        let t = Topology {
            scripts,
            binary: binary.into(),
            prefix: prefix.into(),
            key: None,
        };
        let out = scripts
            .cmd("topo.sh", binary, prefix)
            .args(["up", "--nodes", &exp.nodes.to_string()])
            .args(["--shape", &exp.shape, "--prefix", prefix])
            .output()
            .context("running topo.sh")?;
        if !out.status.success() {
            bail!(
                "topo.sh up failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(t)
    }

    /// Writes the run's key into the topology's state directory; returns its path.
    pub(crate) fn write_key(&mut self, key: &[u8; KEY_LEN]) -> Result<PathBuf> {
        let path = prefix::state_dir(&self.prefix).join("cluster.key");
        write_key(&path, key)?;
        self.key = Some(path.clone());
        Ok(path)
    }

    /// Runs fault.sh; returns the timestamp it printed.
    fn fault(&self, args: &[String], seed: u64) -> Result<u64> {
        let out = self
            .scripts
            .cmd("fault.sh", &self.binary, &self.prefix)
            .env("RINGLAB_SEED", seed.to_string())
            .args(["--prefix", &self.prefix])
            .args(args)
            .output()
            .context("running fault.sh")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "fault.sh {} failed: {}{}",
                args.join(" "),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("t_ns=")?.parse().ok())
            .with_context(|| format!("fault.sh printed no t_ns: {stdout}"))
    }
}

impl Drop for Topology<'_> {
    fn drop(&mut self) {
        if let Some(k) = &self.key {
            if let Err(e) = std::fs::remove_file(k) {
                tracing::warn!(key = %k.display(), error = %e, "removing the run's key");
            }
        }
        match self
            .scripts
            .cmd("topo.sh", &self.binary, &self.prefix)
            .args(["down", "--prefix", &self.prefix])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "ringlab run: topo.sh down --prefix {} failed: {}",
                self.prefix,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("ringlab run: running topo.sh down: {e}"),
        }
    }
}

/// Bytes of a run's key.
pub const KEY_LEN: usize = 32;

/// Returns a fresh key: [`KEY_LEN`] random bytes from the OS.
pub fn random_key() -> Result<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    let mut filled = 0;
    while filled < KEY_LEN {
        filled +=
            rustix::rand::getrandom(&mut key[filled..], rustix::rand::GetRandomFlags::empty())
                .context("reading random bytes for the run's key")?;
    }
    Ok(key)
}

/// Writes `key` to a new file at `path`, mode 0600 from its creation.
pub fn write_key(path: &Path, key: &[u8]) -> Result<()> {
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    f.write_all(key)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing the key file {}", path.display()))
}

/// What an attacker on the segment can do when the nodes run without a key.
pub const NO_KEY_WARNING: &str =
    "WARNING: this experiment runs WITHOUT AUTHENTICATION (key = false). \
Anyone who can send a datagram on the nodes' segment can forge tokens, joins and commit tokens \
(split the ring, exclude any node, stall or take over ordering), inject messages that are \
delivered in total order as if a member had sent them, and replay captured datagrams. \
Leave out 'key = false' to run with a fresh random key.";

fn machine() -> serde_json::Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    serde_json::json!({
        "cpu": cpu,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": (mem_kib as f64 / 1048576.0 * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "hostname": read("/proc/sys/kernel/hostname").trim(),
    })
}

fn start_load(c: &Nodes<'_>, exp: &Experiment, id: NodeId, ms_left: u64) {
    if (id as usize) <= exp.load.senders && ms_left > 0 {
        let load = LoadSpec {
            rate: exp.load.rate,
            size: exp.load.size,
            safe: exp.load.safe,
            duration_ms: Some(ms_left),
            service: exp.load.service.clone(),
            state_bytes: exp.load.state_bytes,
            ..LoadSpec::default()
        };
        let _ = c.call::<Ack>(id, &Request::Load(load));
    }
}

/// Copies the frame counts the relays printed when `clear` stopped them (fault.sh's
/// `relay-N.log`: received, sent, dropped, bursts begun, per direction) into the
/// repetition's directory, where a relay carried a node's link (bursty loss, or
/// impairments without netem); the state directory goes with the topology.
fn keep_relay_counts(prefix: &str, nodes: usize, dir: &Path) {
    let state = prefix::state_dir(prefix);
    for n in 1..=nodes {
        let log = state.join(format!("relay-{n}.log"));
        if log.exists() {
            if let Err(e) = std::fs::copy(&log, dir.join(format!("relay-{n}.log"))) {
                tracing::warn!(log = %log.display(), error = %e, "keeping a relay's counts");
            }
        }
    }
}

/// The longest control socket path the nodes are given (a Unix socket's path must be shorter
/// than 108 bytes).
const SOCKET_PATH_MAX: usize = 100;

/// Returns the directory the nodes of repetition `rep` are given for `dir` (their records,
/// configs, control sockets and state): `dir` itself, or, where a control socket's path
/// under it would be too long for a Unix socket (a sweep's long labels), a symbolic link to
/// it in the topology's state directory (`/run/ringlab-<P>/rep-N`, removed with the
/// topology), so everything is still written into `dir`.
fn short_dir(dir: &Path, prefix: &str, rep: u32, nodes: usize) -> Result<PathBuf> {
    let sock = dir.join(format!("node-{nodes}.sock"));
    if sock.as_os_str().len() <= SOCKET_PATH_MAX {
        return Ok(dir.into());
    }
    let link = prefix::state_dir(prefix).join(format!("rep-{rep}"));
    let target =
        std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    std::os::unix::fs::symlink(&target, &link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
    Ok(link)
}

/// Waits, ticking every ~10 ms: the progress bar, the stop flag and the copy's watch.
struct Ticker<'a> {
    /// A dry run: no waiting.
    dry_run: bool,
    stop: &'a AtomicBool,
    pb: &'a ProgressBar,
    base: u64,
    t0: u64,
    nodes: Vec<NodeId>,
}

impl Ticker<'_> {
    /// Waits until `deadline` (monotonic ns) or until `done` says so; returns whether `done`
    /// did. Fails when the stop flag is set.
    fn until(
        &self,
        deadline: u64,
        cluster: &mut Nodes<'_>,
        watch: &mut Option<CopyWatch>,
        done: &dyn Fn(&Option<CopyWatch>) -> bool,
    ) -> Result<bool> {
        if self.dry_run {
            return Ok(false);
        }
        loop {
            if let Some(w) = watch.as_mut() {
                w.poll(cluster.local_mut()?, &self.nodes)?;
            }
            if done(watch) {
                return Ok(true);
            }
            let now = monotonic_ns();
            self.pb
                .set_position(self.base + now.saturating_sub(self.t0) / 1_000_000);
            if now >= deadline {
                return Ok(false);
            }
            if self.stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            std::thread::sleep(Duration::from_nanos((deadline - now).min(10_000_000)));
        }
    }
}

/// The raw baseline measured after the previous repetition (none before the first:
/// measured by the first), replaced by each repetition with the one it measured after it.
#[derive(Debug, Default)]
pub struct RawBefore {
    /// The store experiments' single flow, bytes/s.
    flow: Option<f64>,
    /// The fan-outs.
    fanout: Vec<crate::raw::RawFanout>,
}

/// Measures the experiment's raw fan-outs from node 1 to every other node.
fn fanouts(
    exp: &Experiment,
    opts: &RunOpts,
    lock: &PrefixLock,
    pb: &ProgressBar,
    rep: u32,
) -> Result<Vec<crate::raw::RawFanout>> {
    let to: Vec<NodeId> = (2..=exp.nodes as NodeId).collect();
    exp.baseline
        .raw_transports
        .iter()
        .map(|&t| {
            pb.set_message(format!("rep {rep}: raw {} fan-out", t.as_str()));
            crate::raw::fanout(
                &opts.binary,
                lock.prefix(),
                1,
                &to,
                exp.load.size,
                t,
                exp.baseline.raw_ms as f64 / 1000.0,
            )
            .with_context(|| format!("the raw {} fan-out", t.as_str()))
        })
        .collect()
}

/// Reads every running node's counters.
fn read_stats(
    c: &mut Nodes<'_>,
    nodes: &[NodeId],
) -> BTreeMap<NodeId, crate::throughput::Counters> {
    let mut m = BTreeMap::new();
    for &id in nodes {
        if c.is_running(id) {
            if let Ok(s) = c.stats(id) {
                m.insert(id, (&s).into());
            }
        }
    }
    m
}

/// The local backend's cluster of `exp` in the namespaces of `prefix`, its files in `dir`.
pub(crate) fn local_spec(
    exp: &Experiment,
    binary: &Path,
    prefix: &str,
    dir: PathBuf,
    key: Key,
) -> Spec {
    Spec {
        nodes: exp.nodes,
        transport: exp.transport,
        totem: exp.totem.clone(),
        port: 5405,
        group: "239.77.0.1".parse().expect("an address"),
        dir,
        key,
        record_messages: exp.record_messages,
        record_every: exp.record_every,
        binary: binary.into(),
        batched_io: true,
        ipv6: false,
        services: exp.services.clone(),
        service_config: exp.service_config.clone(),
        netns: Some(prefix.into()),
        implementation: exp.implementation,
    }
}

/// Where a run's nodes run: network namespaces on this machine (the scripts that make
/// them), or the hosts of an inventory over ssh ([`crate::hosts`]).
pub enum Backend {
    /// Namespaces here.
    Local(Scripts),
    /// Hosts over ssh.
    Ssh(SshHosts),
}

/// One repetition's nodes, on either backend: the calls the runner makes on them.
enum Nodes<'a> {
    Local(Cluster),
    Ssh(RemoteCluster<'a>),
}

/// What only the local backend does yet (checked before a run by [`check_ssh`]).
const LOCAL_ONLY: &str = "only the local backend does this (see check_ssh)";

impl Nodes<'_> {
    fn local(&self) -> Result<&Cluster> {
        match self {
            Self::Local(c) => Ok(c),
            Self::Ssh(_) => bail!(LOCAL_ONLY),
        }
    }

    fn local_mut(&mut self) -> Result<&mut Cluster> {
        match self {
            Self::Local(c) => Ok(c),
            Self::Ssh(_) => bail!(LOCAL_ONLY),
        }
    }

    fn call<R: serde::de::DeserializeOwned>(&self, id: NodeId, req: &Request) -> Result<R> {
        Ok(match self {
            Self::Local(c) => c.call(id, req)?,
            Self::Ssh(c) => c.call(id, req)?,
        })
    }

    fn stats(&self, id: NodeId) -> Result<ringlab_net::control::StatsReply> {
        self.call(id, &Request::Stats)
    }

    fn is_running(&mut self, id: NodeId) -> bool {
        match self {
            Self::Local(c) => c.is_running(id),
            Self::Ssh(c) => c.is_running(id),
        }
    }

    fn kill(&mut self, id: NodeId) -> Result<()> {
        match self {
            Self::Local(c) => {
                c.kill(id);
                Ok(())
            }
            Self::Ssh(c) => c.kill(id),
        }
    }

    fn pause(&mut self, id: NodeId, pause: bool) -> Result<()> {
        match self {
            Self::Local(c) => {
                c.pause(id, pause);
                Ok(())
            }
            Self::Ssh(c) => c.pause(id, pause),
        }
    }

    fn spawn(&mut self, id: NodeId) -> Result<()> {
        match self {
            Self::Local(c) => Ok(c.spawn(id)?),
            Self::Ssh(c) => c.spawn(id),
        }
    }

    fn record_fault(
        &self,
        t_ns: u64,
        action: &str,
        targets: Vec<NodeId>,
        groups: Vec<Vec<NodeId>>,
    ) {
        match self {
            Self::Local(c) => c.record_fault(t_ns, action, targets, groups),
            Self::Ssh(c) => c.record_fault(t_ns, action, targets, groups),
        }
    }

    fn wait_ring(&self, ids: &[NodeId], timeout: Duration) -> Result<ringlab_ring::RingId> {
        Ok(match self {
            Self::Local(c) => c.wait_ring(ids, timeout)?,
            Self::Ssh(c) => c.wait_ring(ids, timeout)?,
        })
    }

    fn wait_quiet(&mut self, timeout: Duration) -> bool {
        match self {
            Self::Local(c) => c.wait_quiet(timeout),
            Self::Ssh(c) => c.wait_quiet(timeout),
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Local(c) => c.stop(),
            Self::Ssh(c) => c.stop(),
        }
    }

    fn records(&mut self) -> Result<Vec<Record>> {
        Ok(match self {
            Self::Local(c) => c.records()?,
            Self::Ssh(c) => c.records()?,
        })
    }

    /// CPU and memory of each node (local only: a remote process's /proc is not read).
    fn sample_all(&self, nodes: &[NodeId]) -> Vec<(NodeId, crate::peer::NodeSample)> {
        match self {
            Self::Local(c) => crate::peer::sample_all(c, nodes),
            Self::Ssh(_) => vec![],
        }
    }
}

/// Carries out a network fault: `fault.sh` on the local topology, nftables on the hosts.
fn net_fault(
    topo: Option<&Topology<'_>>,
    nodes: &mut Nodes<'_>,
    f: &NetworkFault,
    seed: u64,
) -> Result<u64> {
    match (topo, nodes) {
        (Some(topo), _) => {
            let mut t = 0;
            for args in f.script_calls() {
                t = topo.fault(&args, seed)?;
            }
            Ok(t)
        }
        (None, Nodes::Ssh(r)) => r.fault(f),
        (None, Nodes::Local(_)) => bail!("a local repetition without its topology"),
    }
}

/// Says why `exp` cannot run on the ssh backend yet, if it cannot: what needs this
/// machine's namespaces (relays, the trunk, raw baselines between namespaces, corosync's
/// private mounts) or reads the nodes' files in place (the store's database, kml's
/// directories).
pub fn check_ssh(exp: &Experiment) -> Result<()> {
    let no = |what: &str| {
        bail!("experiment {}: {what} runs only on the local backend (namespaces on this machine) for now", exp.name)
    };
    if exp.implementation != Implementation::Ringlab {
        return no("corosync");
    }
    if exp.store.is_some() || exp.services.iter().any(|s| s == "store") {
        return no("the store service");
    }
    if exp.services.iter().any(|s| s == crate::kml::KML) {
        return no("the kml service");
    }
    if exp.baseline.raw {
        return no("[baseline] raw");
    }
    if exp.capture {
        return no("capture (the bridge's frames)");
    }
    if exp.loss_burst > 1 {
        return no("bursty loss (loss_burst)");
    }
    for (i, f) in exp.faults.iter().enumerate() {
        match &f.action {
            FaultAction::Network(n) => {
                if let Some(why) = crate::hosts::nft::unsupported(n) {
                    bail!(
                        "experiment {}: faults[{i}] ({}): not on the ssh backend: {why}",
                        exp.name,
                        f.action
                    );
                }
            }
            FaultAction::Process(ProcessOp::RestartEmpty, _) => {
                return no("restart with an empty store");
            }
            FaultAction::Process(..) | FaultAction::Svc(..) => {}
        }
        if f.target.is_some() || f.when == When::CopyHalf {
            return no("a step that follows the store's copy");
        }
    }
    Ok(())
}

/// Runs one repetition; returns its records and summary. `raw_before` is replaced by the
/// raw baseline measured after it.
#[allow(clippy::too_many_arguments)]
fn run_rep(
    exp: &Experiment,
    opts: &RunOpts,
    lock: &PrefixLock,
    key: Option<&[u8; KEY_LEN]>,
    backend: &Backend,
    rep: u32,
    stop: &AtomicBool,
    pb: &ProgressBar,
    raw_before: &mut RawBefore,
    unmapped: &mut Option<Vec<crate::peer::Unmapped>>,
) -> Result<(Vec<Record>, RepSummary)> {
    let base = (rep as u64 - 1) * exp.duration_ms;
    let (flow_from, flow_to) = exp.baseline_ends();
    let raw = || {
        crate::store::raw_flow(
            &opts.binary,
            lock.prefix(),
            flow_from,
            flow_to,
            exp.datagram_bytes(),
        )
        .context("the raw single-flow baseline")
    };
    let fan_out = exp.baseline.raw && exp.store.is_none();
    let dir = opts.out.join("records").join(format!("rep-{rep}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (topo, mut cluster, capture) = match backend {
        Backend::Local(scripts) => {
            pb.set_message(format!("rep {rep}: topology"));
            let mut topo = Topology::up(scripts, &opts.binary, lock, exp)?;
            if exp.baseline.raw && exp.store.is_some() && raw_before.flow.is_none() {
                pb.set_message(format!("rep {rep}: raw flow {flow_from} → {flow_to}"));
                raw_before.flow = Some(raw()?);
            }
            if fan_out && raw_before.fanout.is_empty() {
                raw_before.fanout = fanouts(exp, opts, lock, pb, rep)?;
            }
            let key = match key {
                Some(k) => Key::File(topo.write_key(k)?),
                None => Key::None,
            };
            let spec = local_spec(
                exp,
                &opts.binary,
                lock.prefix(),
                short_dir(&dir, lock.prefix(), rep, exp.nodes)?,
                key,
            );
            let (cap_bytes, cap_s) = (exp.capture_max_bytes, exp.duration_ms / 1000 + 600);
            let capture = crate::capture::start_for_rep(
                exp.capture,
                &opts.binary,
                lock.prefix(),
                &dir,
                cap_bytes,
                cap_s,
            );
            pb.set_message(format!("rep {rep}: starting nodes"));
            (Some(topo), Nodes::Local(Cluster::start(spec)?), capture)
        }
        Backend::Ssh(hosts) => {
            pb.set_message(format!(
                "rep {rep}: starting nodes on {} hosts",
                hosts.inv.hosts.len()
            ));
            (
                None,
                Nodes::Ssh(RemoteCluster::start(hosts, rep, exp, &dir)?),
                None,
            )
        }
    };
    let all: Vec<NodeId> = (1..=exp.nodes as NodeId).collect();
    cluster
        .wait_ring(&all, Duration::from_secs(30))
        .context("the first full ring")?;
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    let filled = match &exp.store {
        Some(st) => {
            pb.set_message(format!("rep {rep}: filling the store ({} bytes)", st.bytes));
            Some(crate::store::fill(cluster.local()?, st, &all, &|| {
                stop.load(Ordering::Relaxed)
            })?)
        }
        None => None,
    };
    let t0 = monotonic_ns();
    let end = t0 + exp.duration_ms * 1_000_000;
    let seed = exp.seed.wrapping_add(rep as u64);
    if exp.loss_pct > 0 {
        let loss = NetworkFault::Loss {
            nodes: vec![],
            pct: exp.loss_pct,
            // Gilbert–Elliott in a relay on every node's port (fault.sh).
            burst: if exp.loss_burst > 1 {
                exp.loss_burst
            } else {
                0
            },
        };
        let t = net_fault(topo.as_ref(), &mut cluster, &loss, seed)?;
        cluster.record_fault(t, "loss", all.clone(), vec![]);
    }
    if exp.implementation == Implementation::Corosync && unmapped.is_none() {
        let u = crate::peer::read_unmapped(cluster.local()?, 1)?;
        pb.suspend(|| {
            for k in &u {
                eprintln!(
                    "ringlab run: corosync has no equivalent of {} = {}: {}",
                    k.knob, k.value, k.why
                );
            }
        });
        *unmapped = Some(u);
    }
    let usage_before = cluster.sample_all(&all);
    let (stats_before, stats_before_ns) = (read_stats(&mut cluster, &all), monotonic_ns());
    for &id in &all {
        start_load(&cluster, exp, id, exp.duration_ms);
    }
    let ticker = Ticker {
        dry_run: opts.dry_run,
        stop,
        pb,
        base,
        t0,
        nodes: all.clone(),
    };
    let store_bytes = filled.as_ref().map_or(0, |f| f.bytes);
    let mut watch: Option<CopyWatch> = None;
    let mut half_ns = None;
    let mut half_provider = None;
    let mut paused: BTreeSet<NodeId> = BTreeSet::new();
    let mut prev_ns = t0;
    for (i, f) in exp.faults.iter().enumerate() {
        pb.set_message(format!(
            "rep {rep}: {} {:?} {}",
            f.action,
            f.target.map_or_else(
                || format!("{:?}", f.action.nodes()),
                |t| t.as_str().to_string()
            ),
            match f.when {
                When::AtMs(t) => format!("at {t} ms"),
                When::AfterMs(t) => format!("{t} ms after the step before"),
                When::CopyHalf => "when the copy is half-way".into(),
            }
        ));
        match f.when {
            When::AtMs(t) => {
                ticker.until(t0 + t * 1_000_000, &mut cluster, &mut watch, &|_| false)?;
            }
            When::AfterMs(t) => {
                let at = prev_ns + t * 1_000_000;
                if at > end {
                    bail!(
                        "faults[{i}] ({}, after_ms = {t}) falls after the repetition's end (duration_ms)",
                        f.action
                    );
                }
                ticker.until(at, &mut cluster, &mut watch, &|_| false)?;
            }
            When::CopyHalf => {
                let fired = ticker.until(end, &mut cluster, &mut watch, &|w| {
                    w.as_ref()
                        .is_some_and(|w| crate::store::copy_half(&w.records, store_bytes).is_some())
                })?;
                if !fired {
                    let w = watch.as_ref();
                    bail!(
                        "faults[{i}] ({}, at = \"copy-half\") never fired: the copy to node {} did \
                         not reach half of {store_bytes} bytes within duration_ms; its last \
                         store_sync record: {:?}",
                        f.action,
                        w.map_or(0, |w| w.requester),
                        w.and_then(|w| w.records.last()).map(|r| &r.body)
                    );
                }
            }
        }
        let action = match f.target {
            Some(Target::Provider) => {
                let p = watch
                    .as_ref()
                    .and_then(|w| crate::store::provider(&w.records))
                    .with_context(|| {
                        format!(
                            "faults[{i}] ({}) targets the copy's provider, but no chunk record names one yet",
                            f.action
                        )
                    })?;
                f.action.with_nodes(vec![p])
            }
            None => f.action.clone(),
        };
        let record = action.record(exp.nodes);
        match &action {
            FaultAction::Svc(nodes, cmd) => {
                // No fault: a service's command, no record (see `crate::fault`).
                let req = action
                    .svc_request()
                    .with_context(|| format!("faults[{i}] (svc {cmd:?}): not a command"))?;
                let t = monotonic_ns();
                for &n in nodes {
                    cluster
                        .call::<serde_json::Value>(n, &req)
                        .with_context(|| format!("faults[{i}] (svc {cmd:?}) on node {n}"))?;
                }
                prev_ns = t;
            }
            FaultAction::Network(net) => {
                let t = net_fault(topo.as_ref(), &mut cluster, net, seed)?;
                cluster.record_fault(t, record.action, record.targets, record.groups);
                prev_ns = t;
            }
            FaultAction::Process(op, nodes) => {
                // Read before the first signal, as fault.sh does: no effect precedes the
                // record.
                let t = monotonic_ns();
                for &n in nodes {
                    match op {
                        ProcessOp::Kill => cluster.kill(n)?,
                        ProcessOp::Pause => {
                            cluster.pause(n, true)?;
                            paused.insert(n);
                        }
                        ProcessOp::Resume => {
                            cluster.pause(n, false)?;
                            paused.remove(&n);
                        }
                        ProcessOp::Restart => {
                            if cluster.is_running(n) {
                                cluster.kill(n)?;
                            }
                            cluster.spawn(n)?;
                        }
                        ProcessOp::RestartEmpty => {
                            let cluster = cluster.local_mut()?;
                            if cluster.is_running(n) {
                                cluster.kill(n);
                            }
                            let db = cluster.state_dir(n).join(DB_FILE);
                            std::fs::remove_file(&db)
                                .with_context(|| format!("removing {}", db.display()))?;
                            cluster.spawn(n)?;
                            watch = Some(CopyWatch::new(
                                n,
                                cluster.incarnation(n),
                                cluster.events_path(n),
                            ));
                        }
                        ProcessOp::Leave => {
                            cluster.call::<Ack>(n, &Request::Leave)?;
                        }
                    }
                }
                cluster.record_fault(t, record.action, record.targets, record.groups);
                prev_ns = t;
                if matches!(op, ProcessOp::Restart | ProcessOp::RestartEmpty) {
                    let left = end.saturating_sub(monotonic_ns()) / 1_000_000;
                    for &n in nodes {
                        start_load(&cluster, exp, n, left);
                    }
                }
            }
        }
        if f.when == When::CopyHalf {
            half_ns = Some(prev_ns);
            half_provider = f.target.and_then(|_| action.nodes().first().copied());
        }
    }
    ticker.until(end, &mut cluster, &mut watch, &|_| false)?;
    if let Some(w) = &watch {
        if !w.finished() {
            bail!(
                "the copy to node {} did not finish within duration_ms ({} ms); its last store_sync record: {:?}",
                w.requester,
                exp.duration_ms,
                w.records.last().map(|r| &r.body)
            );
        }
    }
    let end_ns = monotonic_ns();
    let usage_after = cluster.sample_all(&all);
    let (stats_after, stats_after_ns) = (read_stats(&mut cluster, &all), monotonic_ns());
    pb.set_message(format!("rep {rep}: stopping"));
    for &id in &all {
        if cluster.is_running(id) {
            let _ = cluster.call::<StopLoadReply>(id, &Request::StopLoad);
        }
    }
    for n in paused {
        let _ = cluster.pause(n, false);
    }
    let _ = net_fault(topo.as_ref(), &mut cluster, &NetworkFault::Clear, seed);
    if topo.is_some() {
        keep_relay_counts(lock.prefix(), exp.nodes, &dir);
    }
    // A safe message sent just before the load stopped is delivered only after the ring's
    // next rotations, which an idle ring makes once per `hold`: the harness's quiet (no
    // frame queued, delivery counts unchanged over 100 ms) can come before that, and nodes
    // asked to quit then leave a message safe at its sender undelivered at the others (a
    // SafeDelivery violation of the shutdown, not of the run). Safe loads (a service's
    // writes are submitted safe) get one token timeout first.
    if exp.load.safe || exp.load.service.is_some() {
        std::thread::sleep(Duration::from_millis(exp.totem.token));
    }
    cluster.wait_quiet(Duration::from_secs(5));
    let mut stats = serde_json::Map::new();
    for &id in &all {
        if cluster.is_running(id) {
            if let Ok(s) = cluster.stats(id) {
                stats.insert(id.to_string(), serde_json::to_value(s)?);
            }
        }
    }
    std::fs::write(
        dir.join("stats.json"),
        serde_json::to_string_pretty(&stats)?,
    )?;
    // Every live node's store at the end: one version and digest?
    let digests = if exp.store.is_some() {
        let live: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|&n| cluster.is_running(n))
            .collect();
        let statuses = live
            .iter()
            .map(|&n| crate::store::status(cluster.local()?, n))
            .collect::<Result<Vec<_>>>()
            .context("the store's status at the end")?;
        std::fs::write(
            dir.join("store-status.json"),
            serde_json::to_string_pretty(&live.iter().zip(&statuses).collect::<Vec<_>>())?,
        )?;
        crate::store::digests_equal(&statuses)
    } else {
        None
    };
    // The kml service: every live node's real directory against its tree.
    let mut kml = if exp.services.iter().any(|s| s == crate::kml::KML) {
        let live: Vec<NodeId> = all
            .iter()
            .copied()
            .filter(|&n| cluster.is_running(n))
            .collect();
        pb.set_message(format!("rep {rep}: kml: waiting for one tree"));
        let local = cluster.local()?;
        let (settled, settle_ms) =
            crate::kml::settle(local, &live, &|| stop.load(Ordering::Relaxed));
        let mut c = crate::kml::check(local, &opts.binary, &live);
        c.settled = settled;
        c.settle_ms = settle_ms;
        Some(c)
    } else {
        None
    };
    cluster.stop();
    let records = cluster.records()?;
    // The nodes' stores are no result, and each is as large as the store: removed.
    if let Nodes::Local(cluster) = &cluster {
        if exp.services.iter().any(|s| s == "store") {
            for &id in &all {
                let _ = std::fs::remove_file(cluster.state_dir(id).join(DB_FILE));
            }
        }
        // The kml mirrors are checked above (their digests are in the summary): removed.
        if kml.is_some() {
            for &id in &all {
                let _ = std::fs::remove_dir_all(cluster.state_dir(id).join(crate::kml::KML));
            }
        }
    }
    let clocks = match &cluster {
        Nodes::Ssh(r) => Some((r.clocks.clone(), r.uncertainty_ns())),
        Nodes::Local(_) => None,
    };
    drop(cluster);
    let raw_after = if exp.baseline.raw && exp.store.is_some() {
        pb.set_message(format!("rep {rep}: raw flow {flow_from} → {flow_to}"));
        Some(raw()?)
    } else {
        None
    };
    let fan_after = if fan_out {
        fanouts(exp, opts, lock, pb, rep)?
    } else {
        vec![]
    };
    let capture = crate::capture::finish_for_rep(capture, &records, &opts.out);
    drop(topo);

    let starts: Vec<u64> = records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Fault { action, .. } if r.node == 0 && action == "start" => Some(r.t_ns),
            _ => None,
        })
        .take(exp.nodes)
        .collect();
    let facts = RunFacts {
        nodes: all,
        starts,
        bound_ns: ringlab_sim::liveness_bound(&exp.totem),
        end_ns,
        settle_ns: crate::analysis::settle_ns(&exp.totem),
    };
    let mut s = analyse(rep, &records, &facts);
    if let Some((hosts, u)) = clocks {
        s.hosts = hosts;
        s.clock_uncertainty_ms = Some(u as f64 / 1e6);
    }
    s.capture = capture;
    let found: Vec<String> = ringlab_sim::check(&records, None)
        .violations
        .iter()
        .map(|v| v.to_string())
        .collect();
    // On a peer, what the checker reports is a finding about the peer, not a failure of the
    // run (see `crate::peer`).
    match exp.implementation {
        Implementation::Ringlab => s.violations = found,
        Implementation::Corosync => s.peer_findings = found,
    }
    let mut delivered: BTreeMap<NodeId, u64> = BTreeMap::new();
    for r in &records {
        if matches!(r.body, Body::Deliver { .. }) && r.t_ns > t0 && r.t_ns <= end_ns {
            *delivered.entry(r.node).or_default() += 1;
        }
    }
    if exp.store.is_none() {
        let t = crate::throughput::measure(
            exp.raw_transport(),
            crate::throughput::records_kept(exp.record_messages, exp.record_every),
            &stats_before,
            &stats_after,
            stats_before_ns,
            stats_after_ns,
            std::mem::take(&mut raw_before.fanout),
            fan_after.clone(),
        );
        // The counters count every message whatever the records keep.
        delivered = crate::throughput::delivered(&t);
        s.throughput = Some(t);
    }
    raw_before.fanout = fan_after;
    s.usage = crate::peer::usage(&usage_before, &usage_after, &delivered);
    if let (Some(w), Some(fl)) = (&watch, &filled) {
        s.store = Some(crate::store::analyse_copy(
            &records,
            &CopyFacts {
                requester: w.requester,
                inc: w.inc,
                keys: fl.keys,
                store_bytes: fl.bytes,
                fill_seconds: fl.seconds,
                half_ns,
                half_provider,
                raw_before: raw_before.flow,
                raw_after,
                rss_kib: w.rss_kib.clone(),
                held_bytes: w.held_bytes.clone(),
                digests_equal: digests,
            },
        ));
    }
    if let Some(c) = kml.as_mut() {
        crate::kml::add_reintegration(c, &records);
        std::fs::write(dir.join("kml.json"), serde_json::to_string_pretty(&c)?)?;
        if !c.equal {
            pb.suspend(|| {
                eprintln!(
                    "ringlab run: kml: rep {rep}: the real directories do not all equal one tree \
                     (settled: {}):",
                    c.settled
                );
                for k in &c.nodes {
                    eprintln!(
                        "  node {}: tree {:?} dir {:?}{}",
                        k.node,
                        k.tree,
                        k.dir,
                        k.error
                            .as_ref()
                            .map_or(String::new(), |e| format!(" ({e})"))
                    );
                }
            });
        }
    }
    s.kml = kml;
    raw_before.flow = raw_after;
    write_hlog(
        &opts.out.join(format!("latency-rep-{rep}.hlog")),
        &records,
        t0,
    )?;
    Ok((records, s))
}

/// Writes an hdrhistogram interval log (V2, 1 s intervals) of delivery latency in µs.
fn write_hlog(path: &Path, records: &[Record], t0: u64) -> Result<()> {
    let mut by_sec: std::collections::BTreeMap<u64, Histogram<u64>> = Default::default();
    for r in records {
        if let Body::Deliver { sent_t_ns, .. } = &r.body {
            if r.t_ns < t0 {
                continue;
            }
            let h = by_sec
                .entry((r.t_ns - t0) / 1_000_000_000)
                .or_insert_with(|| Histogram::new(3).expect("sigfig 3"));
            let _ = h.record((r.t_ns.saturating_sub(*sent_t_ns) / 1000).max(1));
        }
    }
    let mut buf = Vec::new();
    let mut ser = V2Serializer::new();
    {
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment("ringlab delivery latency, microseconds; interval start is seconds since the first full ring")
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut buf, &mut ser)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (sec, h) in &by_sec {
            w.write_histogram(h, Duration::from_secs(*sec), Duration::from_secs(1), None)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
    }
    std::fs::write(path, buf)?;
    Ok(())
}

/// Why a signal stopped a run, in summary.json.
pub const SIGNAL_REASON: &str =
    "interrupted by a signal (Ctrl-C, SIGTERM or SIGHUP); the repetition under way was torn down";

/// Runs repetitions 1..=`planned` with `one` until all are done, one fails, or `stop` is set;
/// `after` sees the completed ones after each. Returns them and, when it ended early, how.
pub fn run_reps(
    planned: u32,
    stop: &AtomicBool,
    mut one: impl FnMut(u32) -> Result<RepSummary>,
    mut after: impl FnMut(&[RepSummary]),
) -> (Vec<RepSummary>, Option<Stopped>) {
    let mut reps = Vec::new();
    for rep in 1..=planned {
        let stopped = |cause, reason: String, abandoned| Stopped {
            cause,
            reason,
            completed_reps: rep - 1,
            planned_reps: planned,
            abandoned_rep: abandoned,
        };
        if stop.load(Ordering::Relaxed) {
            return (
                reps,
                Some(stopped(StopCause::Signal, SIGNAL_REASON.into(), None)),
            );
        }
        match one(rep) {
            Ok(s) => reps.push(s),
            // A signal makes the repetition fail wherever it was; the signal is the cause.
            Err(_) if stop.load(Ordering::Relaxed) => {
                return (
                    reps,
                    Some(stopped(StopCause::Signal, SIGNAL_REASON.into(), Some(rep))),
                )
            }
            Err(e) => {
                return (
                    reps,
                    Some(stopped(StopCause::Error, format!("{e:#}"), Some(rep))),
                )
            }
        }
        after(&reps);
    }
    (reps, None)
}

/// Writes summary.json whole or not at all (a reader never sees half of one).
fn write_summary(out: &Path, s: &Summary) -> Result<()> {
    let tmp = out.join(".summary.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(s)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out.join("summary.json"))
        .with_context(|| format!("writing {}", out.join("summary.json").display()))
}

/// Runs every repetition under `lock`'s prefix and writes summary.json, runs.csv, the
/// records and the latency logs into `opts.out`. Returns the summary, with `stopped` set
/// when a signal or an error ended it early; the caller fails loudly on that and on
/// violations. An error before the first repetition (no root, the results directory) is
/// returned as such.
pub fn run(
    exp: &Experiment,
    opts: &RunOpts,
    lock: &PrefixLock,
    stop: &AtomicBool,
) -> Result<Summary> {
    let mut r = Run::new(exp, opts, lock)?;
    let pb = r.progress(exp.reps as u64 * exp.duration_ms);
    let (reps, stopped) = run_reps(exp.reps, stop, |rep| r.rep(lock, rep, stop, &pb), |_| {});
    pb.finish_and_clear();
    r.finish(reps, stopped)
}

/// One configuration's run, a repetition at a time: what `ringlab run` does in one go and
/// `ringlab sweep --interleave` does for several configurations in turn (repetition 1 of
/// each, then repetition 2 of each ...), so that the machine's noise falls on all of them.
pub struct Run<'a> {
    exp: &'a Experiment,
    opts: &'a RunOpts,
    backend: Backend,
    key: Option<[u8; KEY_LEN]>,
    started: String,
    machine: serde_json::Value,
    peer_version: Option<String>,
    raw: RawBefore,
    unmapped: Option<Vec<crate::peer::Unmapped>>,
    done: Vec<RepSummary>,
    prefix: String,
}

impl<'a> Run<'a> {
    /// Checks what the run needs (root, the tools; corosync where it runs), makes its
    /// results directory and writes an unfinished summary.json.
    pub fn new(exp: &'a Experiment, opts: &'a RunOpts, lock: &PrefixLock) -> Result<Self> {
        let key = if exp.key { Some(random_key()?) } else { None };
        let backend = match &opts.hosts {
            None => {
                require_root()?;
                Backend::Local(Scripts::write()?)
            }
            Some(inv) => {
                check_ssh(exp)?;
                inv.check_for(
                    exp.nodes,
                    exp.transport == ringlab_net::config::Transport::Unicast,
                )?;
                Backend::Ssh(SshHosts::connect(
                    inv.clone(),
                    lock.prefix(),
                    &opts.binary,
                    key.as_ref().map(|k| &k[..]),
                    opts.dry_run,
                )?)
            }
        };
        let peer_version = match exp.implementation {
            Implementation::Ringlab => None,
            Implementation::Corosync => Some(crate::peer::require_installed()?),
        };
        std::fs::create_dir_all(&opts.out)
            .with_context(|| format!("creating {}", opts.out.display()))?;
        let r = Self {
            exp,
            opts,
            backend,
            key,
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            machine: machine(),
            peer_version,
            raw: RawBefore::default(),
            unmapped: None,
            done: vec![],
            prefix: lock.prefix().into(),
        };
        write_summary(&opts.out, &r.summary(vec![], Some(r.unfinished(&[]))))?;
        Ok(r)
    }

    /// A progress bar of `len` ms.
    pub fn progress(&self, len: u64) -> ProgressBar {
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {percent:>3}% {msg}",
            )
            .expect("a template")
            .progress_chars("=> "),
        );
        pb
    }

    fn unfinished(&self, reps: &[RepSummary]) -> Stopped {
        Stopped {
            cause: StopCause::Unfinished,
            reason: "the run is under way, or was killed before it could finish".into(),
            completed_reps: reps.len() as u32,
            planned_reps: self.exp.reps,
            abandoned_rep: None,
        }
    }

    fn summary(&self, reps: Vec<RepSummary>, stopped: Option<Stopped>) -> Summary {
        let mut s = summarise(
            self.exp,
            self.opts.label.clone(),
            self.opts.command.clone(),
            self.machine.clone(),
            self.started.clone(),
            reps,
        );
        s.stopped = stopped;
        s.authenticated = Some(self.key.is_some());
        if let Backend::Ssh(h) = &self.backend {
            s.backend = Some(crate::summary::Backend {
                kind: "ssh".into(),
                inventory: h.inv.path.display().to_string(),
                hosts: h
                    .inv
                    .hosts
                    .iter()
                    .map(|x| (x.name.clone(), x.nodes.clone()))
                    .collect(),
                machines: h.machines.clone(),
            });
        }
        s.prefix = Some(self.prefix.clone());
        s.peer = self
            .peer_version
            .clone()
            .map(|version| crate::peer::PeerInfo {
                implementation: self.exp.implementation,
                version,
                unmapped: self.unmapped.clone().unwrap_or_default(),
                log_clock_res_ns: crate::peer::coarse_clock_res_ns(),
                differences: crate::peer::DIFFERENCES
                    .iter()
                    .map(|d| d.to_string())
                    .collect(),
            });
        s
    }

    /// Runs repetition `rep` (its topology up and down), says its violations, and writes
    /// the summary so far (still marked unfinished).
    pub fn rep(
        &mut self,
        lock: &PrefixLock,
        rep: u32,
        stop: &AtomicBool,
        pb: &ProgressBar,
    ) -> Result<RepSummary> {
        let (_, s) = run_rep(
            self.exp,
            self.opts,
            lock,
            self.key.as_ref(),
            &self.backend,
            rep,
            stop,
            pb,
            &mut self.raw,
            &mut self.unmapped,
        )?;
        let out = &self.opts.out;
        if !s.violations.is_empty() {
            pb.suspend(|| {
                eprintln!(
                    "ringlab run: CHECKER VIOLATIONS in rep {rep} (records kept in {}):",
                    out.join("records").join(format!("rep-{rep}")).display()
                );
                for v in s.violations.iter().take(10) {
                    eprintln!("  {v}");
                }
            });
        }
        if !s.peer_findings.is_empty() {
            pb.suspend(|| {
                eprintln!(
                    "ringlab run: rep {rep}: {} checker finding(s) about the peer ({}), kept in \
                     summary.json (reps[].peer_findings); they do not fail the run",
                    s.peer_findings.len(),
                    self.exp.implementation
                );
            });
        }
        self.done.push(s.clone());
        let sum = self.summary(self.done.clone(), Some(self.unfinished(&self.done)));
        if let Err(e) = write_summary(out, &sum) {
            pb.suspend(|| eprintln!("ringlab run: {e:#}"));
        }
        Ok(s)
    }

    /// Writes the final summary.json, runs.csv, failover.csv, store.csv, throughput.csv and
    /// report.html from `reps`
    /// (the completed repetitions) and how the run ended.
    pub fn finish(self, reps: Vec<RepSummary>, stopped: Option<Stopped>) -> Result<Summary> {
        let summary = self.summary(reps, stopped);
        let out = &self.opts.out;
        write_summary(out, &summary)?;
        write_csv(&out.join("runs.csv"), &summary)?;
        write_failover_csv(&out.join("failover.csv"), &summary)?;
        write_store_csv(&out.join("store.csv"), &summary)?;
        crate::throughput::write_csv(&out.join("throughput.csv"), &summary)?;
        crate::report::write_beside(out);
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultStep;

    /// The fault.sh calls of a step, and its record's action, targets and groups.
    type Applied = (Vec<Vec<String>>, String, Vec<NodeId>, Vec<Vec<NodeId>>);

    /// Returns what the runner does for one step at 5 nodes.
    fn applied(step: &str) -> Applied {
        let f: FaultStep = toml::from_str(&format!("at_ms = 1000\n{step}")).unwrap();
        let calls = match &f.action {
            FaultAction::Network(net) => net.script_calls(),
            FaultAction::Process(..) | FaultAction::Svc(..) => vec![],
        };
        let r = f.action.record(5);
        (calls, r.action.to_string(), r.targets, r.groups)
    }

    fn rep_summary(rep: u32) -> RepSummary {
        RepSummary {
            rep,
            ..Default::default()
        }
    }

    #[test]
    fn every_repetition_runs_when_nothing_stops_them() {
        let stop = AtomicBool::new(false);
        let mut seen = Vec::new();
        let (reps, stopped) = run_reps(3, &stop, |r| Ok(rep_summary(r)), |d| seen.push(d.len()));
        assert_eq!(reps.iter().map(|r| r.rep).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(stopped, None);
        assert_eq!(seen, [1, 2, 3]);
    }

    #[test]
    fn an_error_stops_the_run_saying_which_repetition_and_why() {
        let stop = AtomicBool::new(false);
        let (reps, stopped) = run_reps(
            4,
            &stop,
            |r| {
                if r == 3 {
                    Err(anyhow::anyhow!("topo.sh up failed").context("rep 3"))
                } else {
                    Ok(rep_summary(r))
                }
            },
            |_| {},
        );
        assert_eq!(reps.len(), 2);
        assert_eq!(
            stopped,
            Some(Stopped {
                cause: StopCause::Error,
                reason: "rep 3: topo.sh up failed".into(),
                completed_reps: 2,
                planned_reps: 4,
                abandoned_rep: Some(3),
            })
        );
        assert_eq!(
            stopped.unwrap().describe(),
            "stopped after 2 of 4 repetitions (error: rep 3: topo.sh up failed); rep 3 abandoned"
        );
    }

    #[test]
    fn a_signal_mid_repetition_stops_the_run_as_a_signal() {
        let stop = AtomicBool::new(false);
        let (reps, stopped) = run_reps(
            3,
            &stop,
            |r| {
                if r == 2 {
                    // What the handler does; the repetition's wait then fails.
                    stop.store(true, Ordering::Relaxed);
                    bail!("interrupted");
                }
                Ok(rep_summary(r))
            },
            |_| {},
        );
        assert_eq!(reps.len(), 1);
        let s = stopped.unwrap();
        assert_eq!(
            (s.cause, s.completed_reps, s.planned_reps, s.abandoned_rep),
            (StopCause::Signal, 1, 3, Some(2))
        );
        assert_eq!(s.reason, SIGNAL_REASON);
        // A signal between repetitions: none is abandoned, no further one starts.
        let stop = AtomicBool::new(false);
        let mut ran = Vec::new();
        let (reps, stopped) = run_reps(
            3,
            &stop,
            |r| {
                ran.push(r);
                Ok(rep_summary(r))
            },
            |_| stop.store(true, Ordering::Relaxed),
        );
        assert_eq!((ran, reps.len()), (vec![1], 1));
        let s = stopped.unwrap();
        assert_eq!(
            (s.cause, s.completed_reps, s.abandoned_rep),
            (StopCause::Signal, 1, None)
        );
    }

    #[test]
    fn a_run_key_is_random_and_written_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let (a, b) = (random_key().unwrap(), random_key().unwrap());
        assert_ne!(a, b);
        assert_ne!(a, [0; KEY_LEN]);
        let dir = std::env::temp_dir().join(format!("ringlab-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        write_key(&path, &a).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), a);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        // Never over an existing file (a key of another run, a symlink planted there).
        assert!(write_key(&path, &b).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), a);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_action_makes_its_fault_calls_and_its_record() {
        type Case<'a> = (
            &'a str,
            &'a [&'a [&'a str]],
            &'a str,
            &'a [NodeId],
            &'a [&'a [NodeId]],
        );
        let cases: &[Case] = &[
            (
                "action = 'isolate'\nnodes = [5]",
                &[&["isolate", "5"]],
                "isolate",
                &[5],
                &[],
            ),
            (
                "action = 'isolate'\nnodes = [4, 5]",
                &[&["isolate", "4,5"]],
                "isolate",
                &[4, 5],
                &[],
            ),
            (
                "action = 'split'\ngroups = [[1, 2], [3, 4, 5]]",
                &[&["split", "1,2", "3,4,5"]],
                "split",
                &[],
                &[&[1, 2], &[3, 4, 5]],
            ),
            (
                "action = 'cut'\nnodes = [1, 2]",
                &[&["cut", "1", "2"]],
                "cut",
                &[1, 2],
                &[],
            ),
            (
                "action = 'cut'\nnodes = [1, 2]\noneway = true",
                &[&["cut", "1", "2", "--oneway"]],
                "cut-oneway",
                &[1, 2],
                &[],
            ),
            ("action = 'heal'", &[&["heal"]], "heal", &[], &[]),
            ("action = 'clear'", &[&["clear"]], "clear", &[], &[]),
            (
                "action = 'trunk-down'",
                &[&["trunk", "down"]],
                "trunk-down",
                &[],
                &[&[1, 2], &[3, 4, 5]],
            ),
            (
                "action = 'trunk-up'",
                &[&["trunk", "up"]],
                "trunk-up",
                &[],
                &[&[1, 2], &[3, 4, 5]],
            ),
            (
                "action = 'loss'\npct = 10",
                &[&["loss", "all", "10"]],
                "loss",
                &[1, 2, 3, 4, 5],
                &[],
            ),
            (
                "action = 'loss'\nnodes = [2, 3]\npct = 10",
                &[&["loss", "2", "10"], &["loss", "3", "10"]],
                "loss",
                &[2, 3],
                &[],
            ),
            (
                "action = 'loss'\npct = 10\nburst = 5",
                &[&["loss", "all", "10", "5"]],
                "loss",
                &[1, 2, 3, 4, 5],
                &[],
            ),
            (
                "action = 'loss'\nnodes = [2]\npct = 10\nburst = 5",
                &[&["loss", "2", "10", "5"]],
                "loss",
                &[2],
                &[],
            ),
            (
                "action = 'delay'\nnodes = [2]\nms = 5\njitter_ms = 2",
                &[&["delay", "2", "5", "2"]],
                "delay",
                &[2],
                &[],
            ),
            (
                "action = 'delay'\nnodes = [2]\nms = 5",
                &[&["delay", "2", "5", "0"]],
                "delay",
                &[2],
                &[],
            ),
            (
                "action = 'reorder'\nnodes = [2]\npct = 5",
                &[&["reorder", "2", "5", "1"]],
                "reorder",
                &[2],
                &[],
            ),
            (
                "action = 'reorder'\nnodes = [2, 4]\npct = 5\nms = 20",
                &[&["reorder", "2", "5", "20"], &["reorder", "4", "5", "20"]],
                "reorder",
                &[2, 4],
                &[],
            ),
            (
                "action = 'duplicate'\nnodes = [1]\npct = 3",
                &[&["duplicate", "1", "3"]],
                "duplicate",
                &[1],
                &[],
            ),
            ("action = 'kill'\nnodes = [3]", &[], "kill", &[3], &[]),
            (
                "action = 'pause'\nnodes = [3, 4]",
                &[],
                "pause",
                &[3, 4],
                &[],
            ),
            ("action = 'resume'\nnodes = [3]", &[], "resume", &[3], &[]),
            ("action = 'restart'\nnodes = [3]", &[], "restart", &[3], &[]),
            ("action = 'leave'\nnodes = [5]", &[], "leave", &[5], &[]),
        ];
        for &(step, calls, action, targets, groups) in cases {
            let calls: Vec<Vec<String>> = calls
                .iter()
                .map(|c| c.iter().map(|a| a.to_string()).collect())
                .collect();
            let groups: Vec<Vec<NodeId>> = groups.iter().map(|g| g.to_vec()).collect();
            assert_eq!(
                applied(step),
                (calls, action.to_string(), targets.to_vec(), groups),
                "{step}"
            );
        }
    }
}
