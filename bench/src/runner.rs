//! `ringlab run`: carries out an [`Experiment`] in network namespaces and writes its results.
//!
//! For every repetition: `topo.sh up` (a fresh topology), nodes started in their namespaces,
//! the first full ring awaited, the load started, the schedule applied (network faults by
//! `fault.sh`, whose printed timestamp becomes the `fault` record; process faults by the
//! runner on its own children), then the load stopped, every fault cleared, the nodes
//! stopped and `topo.sh down`. The topology and the nodes are torn down on every exit path:
//! by `Drop` on errors and panics, and by the stop flag (Ctrl-C, SIGTERM) which every wait
//! checks. Then the checker and [`analyse`] run over the records.

use crate::analysis::{analyse, median_p90_max, FaultRecovery, Percentiles, RepSummary, RunFacts};
use crate::experiment::{Experiment, FaultStep, NETWORK_ACTIONS};
use anyhow::{bail, Context, Result};
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2Serializer;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ringlab_net::control::{Ack, Request, StopLoadReply};
use ringlab_net::harness::{Cluster, Spec};
use ringlab_net::{monotonic_ns, LoadSpec};
use ringlab_ring::record::{Body, Record};
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
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
    /// The directory results go to (results/<name>/<timestamp>).
    pub out: PathBuf,
    /// Name prefix of every namespace, link and nftables table.
    pub prefix: String,
    /// The command line, for the record.
    pub command: String,
    /// A label for `compare` (a sweep's parameter values).
    pub label: String,
}

/// Summary statistics of one recovery phase over all repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// Values.
    pub n: usize,
    /// Median.
    pub median: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

impl Spread {
    /// The spread of a list.
    pub fn of(v: Vec<f64>) -> Self {
        let n = v.len();
        match median_p90_max(v) {
            Some((m, p, x)) => Spread {
                n,
                median: Some(m),
                p90: Some(p),
                max: Some(x),
            },
            None => Spread::default(),
        }
    }
}

/// One fault of the schedule over all repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultAggregate {
    /// Index in the schedule.
    pub index: usize,
    /// The action.
    pub action: String,
    /// Detection, ms.
    pub detection_ms: Spread,
    /// Membership, ms.
    pub membership_ms: Spread,
    /// Sync, ms.
    pub sync_ms: Spread,
    /// First delivery, ms.
    pub first_delivery_ms: Spread,
    /// Repetitions whose membership phase missed the bound (or never settled).
    pub out_of_bound: usize,
}

/// summary.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The experiment as run.
    pub experiment: Experiment,
    /// Label for comparisons.
    pub label: String,
    /// The command that produced it.
    pub command: String,
    /// The machine.
    pub machine: serde_json::Value,
    /// Start, UTC.
    pub started: String,
    /// The recovery bound of each fault, ms (the liveness bound the knobs imply).
    pub bound_ms: f64,
    /// Start to full ring, ms.
    pub formation_ms: Spread,
    /// Per fault.
    pub faults: Vec<FaultAggregate>,
    /// Throughput, distinct messages per second, per repetition.
    pub msgs_per_s: Spread,
    /// Latency over all repetitions, ms.
    pub latency_ms: Percentiles,
    /// Live nodes wrongly excluded, summed over repetitions.
    pub wrongly_excluded: u64,
    /// Checker violations, summed.
    pub violations: usize,
    /// Every repetition.
    pub reps: Vec<RepSummary>,
}

/// One row of runs.csv.
#[derive(Serialize)]
struct CsvRow {
    label: String,
    rep: u32,
    fault: usize,
    action: String,
    targets: String,
    detection_ms: Option<f64>,
    membership_ms: Option<f64>,
    sync_ms: Option<f64>,
    first_delivery_ms: Option<f64>,
    settled: String,
    within_bound: bool,
    before_msgs_per_s: f64,
    during_msgs_per_s: f64,
    after_msgs_per_s: f64,
    before_p50_ms: f64,
    before_p99_ms: f64,
    during_p99_ms: f64,
    after_p99_ms: f64,
    after_max_ms: f64,
    formation_ms: Option<f64>,
    violations: usize,
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
    /// Writes them.
    pub fn write() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("ringlab-scripts-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        for (name, text) in [
            ("topo.sh", TOPO_SH),
            ("fault.sh", FAULT_SH),
            ("lib.sh", LIB_SH),
        ] {
            std::fs::write(dir.join(name), text)?;
        }
        Ok(Scripts { dir })
    }

    fn cmd(&self, script: &str, binary: &Path) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.dir.join(script)).env("RINGLAB_BIN", binary);
        c
    }
}

impl Drop for Scripts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A topology that is torn down when dropped (errors and panics included).
struct Topology<'a> {
    scripts: &'a Scripts,
    binary: PathBuf,
    prefix: String,
}

impl<'a> Topology<'a> {
    fn up(scripts: &'a Scripts, binary: &Path, prefix: &str, exp: &Experiment) -> Result<Self> {
        // Whatever a crashed earlier run with this prefix left goes first.
        let _ = scripts
            .cmd("topo.sh", binary)
            .args(["down", "--prefix", prefix])
            .output();
        let t = Topology {
            scripts,
            binary: binary.into(),
            prefix: prefix.into(),
        };
        let out = scripts
            .cmd("topo.sh", binary)
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

    /// Runs fault.sh; returns the timestamp it printed.
    fn fault(&self, args: &[String], seed: u64) -> Result<u64> {
        let out = self
            .scripts
            .cmd("fault.sh", &self.binary)
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
        let _ = self
            .scripts
            .cmd("topo.sh", &self.binary)
            .args(["down", "--prefix", &self.prefix])
            .output();
    }
}

fn join(v: &[NodeId]) -> String {
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The fault.sh calls for a network fault: one, or one per node for per-node impairments.
fn fault_calls(f: &FaultStep) -> Vec<Vec<String>> {
    let args = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let each =
        |mk: &dyn Fn(String) -> Vec<String>| f.nodes.iter().map(|n| mk(n.to_string())).collect();
    let (pct, ms, jitter) = (f.pct.to_string(), f.ms.to_string(), f.jitter_ms.to_string());
    match f.action.as_str() {
        "isolate" => vec![args(&["isolate", &join(&f.nodes)])],
        "split" => vec![std::iter::once("split".to_string())
            .chain(f.groups.iter().map(|g| join(g)))
            .collect()],
        "cut" => {
            let (a, b) = (f.nodes[0].to_string(), f.nodes[1].to_string());
            let oneway: &[&str] = if f.oneway { &["--oneway"] } else { &[] };
            vec![args(&[&["cut", a.as_str(), b.as_str()], oneway].concat())]
        }
        "trunk-down" => vec![args(&["trunk", "down"])],
        "trunk-up" => vec![args(&["trunk", "up"])],
        "heal" | "clear" => vec![args(&[&f.action])],
        "loss" if f.nodes.is_empty() => vec![args(&["loss", "all", &pct])],
        "loss" => each(&|n| args(&["loss", &n, &pct])),
        "delay" => each(&|n| args(&["delay", &n, &ms, &jitter])),
        "reorder" => each(&|n| args(&["reorder", &n, &pct, &f.ms.max(1).to_string()])),
        "duplicate" => each(&|n| args(&["duplicate", &n, &pct])),
        other => unreachable!("{other} is not a network action"),
    }
}

/// The action and groups a fault's record carries: a one-way cut is named so, and a split
/// (or the two-sites trunk going down or up) names its groups.
fn fault_record(f: &FaultStep, nodes: usize) -> (String, Vec<Vec<NodeId>>) {
    match f.action.as_str() {
        "cut" if f.oneway => ("cut-oneway".into(), vec![]),
        "split" => (f.action.clone(), f.groups.clone()),
        "trunk-down" | "trunk-up" => {
            let half = (nodes / 2) as NodeId;
            let sites = vec![(1..=half).collect(), (half + 1..=nodes as NodeId).collect()];
            (f.action.clone(), sites)
        }
        _ => (f.action.clone(), vec![]),
    }
}

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

/// Sleeps until `deadline` (monotonic ns) unless `stop` is set; ticks the progress bar.
fn wait_until(
    deadline: u64,
    stop: &AtomicBool,
    pb: &ProgressBar,
    base: u64,
    t0: u64,
) -> Result<()> {
    loop {
        let now = monotonic_ns();
        pb.set_position(base + now.saturating_sub(t0) / 1_000_000);
        if now >= deadline {
            return Ok(());
        }
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_nanos((deadline - now).min(5_000_000)));
    }
}

fn start_load(c: &Cluster, exp: &Experiment, id: NodeId, ms_left: u64) {
    if (id as usize) <= exp.load.senders && ms_left > 0 {
        let load = LoadSpec {
            rate: exp.load.rate,
            size: exp.load.size,
            safe: exp.load.safe,
            duration_ms: Some(ms_left),
            ..LoadSpec::default()
        };
        let _ = c.call::<Ack>(id, &Request::Load(load));
    }
}

/// Runs one repetition; returns its records and summary.
fn run_rep(
    exp: &Experiment,
    opts: &RunOpts,
    scripts: &Scripts,
    rep: u32,
    stop: &AtomicBool,
    pb: &ProgressBar,
) -> Result<(Vec<Record>, RepSummary)> {
    let base = (rep as u64 - 1) * exp.duration_ms;
    pb.set_message(format!("rep {rep}: topology"));
    let topo = Topology::up(scripts, &opts.binary, &opts.prefix, exp)?;
    let dir = opts.out.join("records").join(format!("rep-{rep}"));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = Spec {
        nodes: exp.nodes,
        transport: exp.transport,
        totem: exp.totem.clone(),
        port: 5405,
        group: "239.77.0.1".parse().expect("an address"),
        dir: dir.clone(),
        key: false,
        record_messages: true,
        binary: opts.binary.clone(),
        batched_io: true,
        ipv6: false,
        services: exp.services.clone(),
        netns: Some(opts.prefix.clone()),
    };
    pb.set_message(format!("rep {rep}: starting nodes"));
    let mut cluster = Cluster::start(spec)?;
    let all: Vec<NodeId> = (1..=exp.nodes as NodeId).collect();
    cluster
        .wait_ring(&all, Duration::from_secs(30))
        .context("the first full ring")?;
    let t0 = monotonic_ns();
    let seed = exp.seed.wrapping_add(rep as u64);
    if exp.loss_pct > 0 {
        let t = topo.fault(
            &["loss".into(), "all".into(), exp.loss_pct.to_string()],
            seed,
        )?;
        cluster.record_fault(t, "loss", all.clone(), vec![]);
    }
    for &id in &all {
        start_load(&cluster, exp, id, exp.duration_ms);
    }
    let mut paused: BTreeSet<NodeId> = BTreeSet::new();
    for f in &exp.faults {
        pb.set_message(format!(
            "rep {rep}: {} {:?} at {} ms",
            f.action, f.nodes, f.at_ms
        ));
        wait_until(t0 + f.at_ms * 1_000_000, stop, pb, base, t0)?;
        if NETWORK_ACTIONS.contains(&f.action.as_str()) {
            let (action, groups) = fault_record(f, exp.nodes);
            let mut t = 0;
            for args in fault_calls(f) {
                t = topo.fault(&args, seed)?;
            }
            let targets = if f.nodes.is_empty() && f.action == "loss" {
                all.clone()
            } else {
                f.nodes.clone()
            };
            cluster.record_fault(t, &action, targets, groups);
        } else {
            // Read before the first signal, as fault.sh does: no effect precedes the record.
            let t = monotonic_ns();
            for &n in &f.nodes {
                match f.action.as_str() {
                    "kill" => cluster.kill(n),
                    "pause" => {
                        cluster.pause(n, true);
                        paused.insert(n);
                    }
                    "resume" => {
                        cluster.pause(n, false);
                        paused.remove(&n);
                    }
                    "restart" => {
                        if cluster.is_running(n) {
                            cluster.kill(n);
                        }
                        cluster.spawn(n)?;
                    }
                    "leave" => {
                        cluster.call::<Ack>(n, &Request::Leave)?;
                    }
                    _ => unreachable!(),
                }
            }
            cluster.record_fault(t, &f.action, f.nodes.clone(), vec![]);
            if f.action == "restart" {
                for &n in &f.nodes {
                    start_load(&cluster, exp, n, exp.duration_ms.saturating_sub(f.at_ms));
                }
            }
        }
    }
    wait_until(t0 + exp.duration_ms * 1_000_000, stop, pb, base, t0)?;
    let end_ns = monotonic_ns();
    pb.set_message(format!("rep {rep}: stopping"));
    for &id in &all {
        if cluster.is_running(id) {
            let _ = cluster.call::<StopLoadReply>(id, &Request::StopLoad);
        }
    }
    for n in paused {
        cluster.pause(n, false);
    }
    let _ = topo.fault(&["clear".into()], seed);
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
    cluster.stop();
    let records = cluster.records()?;
    drop(cluster);
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
    };
    let mut s = analyse(rep, &records, &facts);
    s.violations = ringlab_sim::check(&records, None)
        .violations
        .iter()
        .map(|v| v.to_string())
        .collect();
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

/// Runs every repetition and writes summary.json, runs.csv, the records and the latency
/// logs into `opts.out`. Returns the summary; the caller fails loudly on violations.
pub fn run(exp: &Experiment, opts: &RunOpts, stop: &AtomicBool) -> Result<Summary> {
    require_root()?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let scripts = Scripts::write()?;
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let pb = ProgressBar::new(exp.reps as u64 * exp.duration_ms);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
            .expect("a template")
            .progress_chars("=> "),
    );
    let mut reps = Vec::new();
    for rep in 1..=exp.reps {
        let (_, s) = run_rep(exp, opts, &scripts, rep, stop, &pb)?;
        if !s.violations.is_empty() {
            pb.suspend(|| {
                eprintln!(
                    "ringlab run: CHECKER VIOLATIONS in rep {rep} (records kept in {}):",
                    opts.out
                        .join("records")
                        .join(format!("rep-{rep}"))
                        .display()
                );
                for v in s.violations.iter().take(10) {
                    eprintln!("  {v}");
                }
            });
        }
        reps.push(s);
    }
    pb.finish_and_clear();
    let summary = summarise(exp, opts, started, reps);
    std::fs::write(
        opts.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    write_csv(&opts.out.join("runs.csv"), &summary)?;
    Ok(summary)
}

/// Returns the recovery of the schedule's `i`-th fault in repetition `r`. A start-up loss
/// (`loss_pct`) is recorded as fault 0, so the schedule follows it.
pub fn scheduled_fault<'a>(
    exp: &Experiment,
    r: &'a RepSummary,
    i: usize,
) -> Option<&'a FaultRecovery> {
    let off = usize::from(exp.loss_pct > 0);
    r.faults.iter().find(|x| x.index == i + off)
}

/// Aggregates the repetitions of one run.
pub fn summarise(
    exp: &Experiment,
    opts: &RunOpts,
    started: String,
    reps: Vec<RepSummary>,
) -> Summary {
    let nth = |r: &RepSummary, i: usize| scheduled_fault(exp, r, i).cloned();
    let mut faults = Vec::new();
    for (i, f) in exp.faults.iter().enumerate() {
        let of = |g: &dyn Fn(&FaultRecovery) -> Option<f64>| {
            Spread::of(
                reps.iter()
                    .filter_map(|r| nth(r, i))
                    .filter_map(|x| g(&x))
                    .collect(),
            )
        };
        faults.push(FaultAggregate {
            index: i,
            action: f.action.clone(),
            detection_ms: of(&|x| x.detection_ms),
            membership_ms: of(&|x| x.membership_ms),
            sync_ms: of(&|x| x.sync_ms),
            first_delivery_ms: of(&|x| x.first_delivery_ms),
            out_of_bound: reps
                .iter()
                .filter_map(|r| nth(r, i))
                .filter(|x| !x.within_bound)
                .count(),
        });
    }
    // Percentiles do not merge; across repetitions, report the median of each and the max.
    let med = |g: &dyn Fn(&Percentiles) -> f64| {
        Spread::of(reps.iter().map(|r| g(&r.latency_ms)).collect())
            .median
            .unwrap_or(0.0)
    };
    let p = Percentiles {
        count: reps.iter().map(|r| r.latency_ms.count).sum(),
        p50: med(&|l| l.p50),
        p90: med(&|l| l.p90),
        p99: med(&|l| l.p99),
        p999: med(&|l| l.p999),
        max: reps.iter().map(|r| r.latency_ms.max).fold(0.0, f64::max),
    };
    Summary {
        experiment: exp.clone(),
        label: opts.label.clone(),
        command: opts.command.clone(),
        machine: machine(),
        started,
        bound_ms: ringlab_sim::liveness_bound(&exp.totem) as f64 / 1e6,
        formation_ms: Spread::of(reps.iter().filter_map(|r| r.formation_ms).collect()),
        faults,
        msgs_per_s: Spread::of(reps.iter().map(|r| r.msgs_per_s).collect()),
        latency_ms: p,
        wrongly_excluded: reps.iter().map(|r| r.wrongly_excluded).sum(),
        violations: reps.iter().map(|r| r.violations.len()).sum(),
        reps,
    }
}

fn write_csv(path: &Path, s: &Summary) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    for r in &s.reps {
        for f in &r.faults {
            w.serialize(CsvRow {
                label: s.label.clone(),
                rep: r.rep,
                fault: f.index,
                action: f.action.clone(),
                targets: join(&f.targets),
                detection_ms: f.detection_ms,
                membership_ms: f.membership_ms,
                sync_ms: f.sync_ms,
                first_delivery_ms: f.first_delivery_ms,
                settled: f
                    .settled
                    .iter()
                    .map(|g| join(g))
                    .collect::<Vec<_>>()
                    .join("|"),
                within_bound: f.within_bound,
                before_msgs_per_s: f.before.msgs_per_s,
                during_msgs_per_s: f.during.msgs_per_s,
                after_msgs_per_s: f.after.msgs_per_s,
                before_p50_ms: f.before.latency_ms.p50,
                before_p99_ms: f.before.latency_ms.p99,
                during_p99_ms: f.during.latency_ms.p99,
                after_p99_ms: f.after.latency_ms.p99,
                after_max_ms: f.after.latency_ms.max,
                formation_ms: r.formation_ms,
                violations: r.violations.len(),
            })?;
        }
    }
    w.flush()?;
    Ok(())
}
