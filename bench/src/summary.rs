//! The result model of `ringlab run`: what summary.json and runs.csv hold, and the functions
//! that compute it from measurements.
//!
//! [`analysis`](crate::analysis) measures one repetition ([`RepSummary`]);
//! [`runner`](crate::runner) aggregates the repetitions ([`summarise`]) and writes
//! summary.json ([`Summary`]) and runs.csv ([`write_csv`]); [`compare`](crate::compare)
//! reads summary.json back.

use crate::experiment::Experiment;
use crate::failover::Failover;
use anyhow::Result;
use hdrhistogram::Histogram;
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Percentiles of a set of values (ms for latency).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// How many values.
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

impl Percentiles {
    /// Returns the percentiles of a histogram of µs values, in ms.
    pub fn of_us(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1000.0,
        }
    }
}

/// Throughput and latency of one phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PhaseStats {
    /// Length, ms.
    pub ms: f64,
    /// Distinct messages delivered (first delivery anywhere) per second.
    pub msgs_per_s: f64,
    /// Send-to-deliver latency over all deliveries at all nodes, ms.
    pub latency_ms: Percentiles,
}

/// The recovery of one fault.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FaultRecovery {
    /// Index in the schedule.
    pub index: usize,
    /// The action.
    pub action: String,
    /// Its targets.
    pub targets: Vec<NodeId>,
    /// Its monotonic timestamp, ns.
    pub t_ns: u64,
    /// ms from the fault to the first node leaving OPERATIONAL (none: nobody left).
    pub detection_ms: Option<f64>,
    /// ms to the last regular install of the interval at every running node.
    pub membership_ms: Option<f64>,
    /// ms until every running node finished its last sync (with services).
    pub sync_ms: Option<f64>,
    /// ms to the first delivery on a settled ring.
    pub first_delivery_ms: Option<f64>,
    /// The memberships the running nodes settled on.
    pub settled: Vec<Vec<NodeId>>,
    /// Whether every running node installed a configuration in the interval and the
    /// membership phase is within the bound.
    pub within_bound: bool,
    /// Throughput and latency before, during and after.
    pub before: PhaseStats,
    /// From the fault until membership settled.
    pub during: PhaseStats,
    /// From then until the next fault or the end.
    pub after: PhaseStats,
    /// Configuration changes from the fault to the next fault or the end (absent in
    /// summaries written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
}

/// Configuration changes over one window: from a fault's timestamp to the next fault's (or
/// to the end of the measured part), or, in a repetition without faults, from the first
/// full ring to the end.
///
/// A *change* is a regular configuration (a ring id) whose first install anywhere falls in
/// the window: one membership change counts once however many nodes install it, so the
/// figures compare across cluster sizes, and a node that churns on its own still counts
/// each ring it forms. `installs` counts every node's installs beside it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Churn {
    /// Length of the window, ms.
    pub window_ms: f64,
    /// Distinct regular configurations first installed in the window.
    pub changes: u64,
    /// Regular installs in the window, each node's counted.
    pub installs: u64,
    /// `changes` per second of the window.
    pub changes_per_s: f64,
    /// ms from the window's start to its last regular install at any node (none: nothing
    /// changed).
    pub last_change_ms: Option<f64>,
    /// The settle window, ms from the window's start: token + consensus + 500 ms (the
    /// target of issue 16: settled within it, then no change until the next fault).
    pub settle_ms: f64,
    /// Distinct regular configurations first installed after the settle window.
    pub changes_after_settle: u64,
    /// Settled, then quiet: every running node installed a regular configuration within the
    /// settle window (or no node changed at all), and no configuration was first installed
    /// after it until the window's end.
    pub settled: bool,
}

/// Where a run's nodes ran, when not on this machine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Backend {
    /// `ssh`.
    pub kind: String,
    /// The inventory file.
    pub inventory: String,
    /// Each host and its nodes.
    pub hosts: Vec<(String, Vec<ringlab_ring::NodeId>)>,
    /// Each host's machine, as it said at the start (kernel, cpus, cpu, hostname).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<std::collections::BTreeMap<String, String>>,
}

/// What one repetition measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RepSummary {
    /// Repetition number, from 1.
    pub rep: u32,
    /// ms from the last node's start to every node on one full ring.
    pub formation_ms: Option<f64>,
    /// ms from the first node's start to the same.
    pub formation_from_first_ms: Option<f64>,
    /// Each fault's recovery.
    pub faults: Vec<FaultRecovery>,
    /// Distinct messages delivered per second over the loaded part.
    pub msgs_per_s: f64,
    /// Latency over the whole repetition.
    pub latency_ms: Percentiles,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Regular configurations (distinct ring ids) formed after the first full ring, up to
    /// the end of the measured part.
    pub rings_formed: u64,
    /// Live, reachable nodes left out of a ring formed after the first full ring (each ring
    /// counted once): nodes excluded although no scheduled fault cut them off.
    pub wrongly_excluded: u64,
    /// Checker violations.
    pub violations: Vec<String>,
    /// Throughput timeline: (ms since formation, distinct msgs/s) in 100 ms windows.
    pub timeline: Vec<(f64, f64)>,
    /// With the resources service: each group's failover over each fault (absent without).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<Failover>,
    /// On the ssh backend: each host's clock against the controller's, before and after
    /// the repetition, and the offset its records were mapped with (absent locally, where
    /// every node shares one clock).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::hosts::remote::HostClock>,
    /// On the ssh backend: the largest uncertainty of a host's offset, ms. A span between
    /// two records of different hosts (a recovery, a latency across hosts) is known within
    /// twice this (absent locally: one clock, no uncertainty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_uncertainty_ms: Option<f64>,
    /// With a `[store]` section and a restart with an empty store: the copy (absent
    /// without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreCopy>,
    /// With the kml service: every live node's real directory against its tree, and the
    /// reintegration (absent without; see [`crate::kml`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kml: Option<crate::kml::KmlCheck>,
    /// On a peer implementation (corosync): what the checker reported, kept as findings
    /// about the peer instead of violations (see [`crate::peer`]; absent on ringlab).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_findings: Vec<String>,
    /// With `[baseline] raw = true` and no `[store]`: throughput per node from the nodes'
    /// counters against the raw fan-outs around the repetition (absent without; see
    /// [`crate::throughput`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<crate::throughput::RepThroughput>,
    /// Each node's CPU time and memory over the measured part (see [`crate::peer`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage: Vec<crate::peer::NodeUsage>,
    /// Configuration changes after the last fault record (a heal counts) to the end of the
    /// measured part; without faults, from the first full ring (absent in summaries written
    /// before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    /// With `capture`: the repetition's pcapng (its size, and whether the cap was reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::CaptureSummary>,
}

/// One repetition's full store copy to the node restarted with an empty store (see
/// [`crate::store`] for how each figure is measured).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoreCopy {
    /// The node the copy went to.
    pub requester: NodeId,
    /// How it travelled: `unicast` (the chunk protocol) or `ring`.
    pub path: String,
    /// The chunk protocol's design (`push` or `pull`; none on the ring path).
    pub design: Option<String>,
    /// Keys the fill wrote.
    pub keys: u64,
    /// Bytes of keys and values of node 1's store after the fill.
    pub store_bytes: u64,
    /// The fill's seconds.
    pub fill_s: f64,
    /// Whether the copy's `finish` record is in.
    pub finished: bool,
    /// Seconds from the copy's first `start` to its `finish`.
    pub copy_s: Option<f64>,
    /// Bytes of keys and values the `finish` record counts.
    pub copied_bytes: u64,
    /// copied_bytes / copy_s, MB/s (10^6 bytes).
    pub copy_mb_per_s: Option<f64>,
    /// Raw UDP of one flow on the same topology before the repetition, MB/s.
    pub raw_before_mb_per_s: Option<f64>,
    /// The same after the repetition.
    pub raw_after_mb_per_s: Option<f64>,
    /// The copy's rate over the mean of the raw rates before and after.
    pub copy_over_raw: Option<f64>,
    /// The providers the copy's records name, in order.
    pub providers: Vec<NodeId>,
    /// ms from the half-way step's fault record to the next `chunk` record.
    pub resume_ms: Option<f64>,
    /// With a half-way step: whether it fired after the copy's `finish` (a copy too quick
    /// for the trigger, which then measured nothing of a resume); absent without one, and
    /// in summaries written before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_after_finish: Option<bool>,
    /// Bytes received again: the finish's `resent_bytes` plus what aborted copies loaded.
    pub resent_bytes: u64,
    /// `resume` records.
    pub resumes: u64,
    /// `abort` records.
    pub aborts: u64,
    /// The requester's largest VmRSS during the copy, KiB.
    pub rss_kib_max_requester: u64,
    /// The providers' largest VmRSS during the copy, KiB.
    pub rss_kib_max_providers: u64,
    /// The requester's most `transfer_held_bytes` during the copy.
    pub held_bytes_max_requester: u64,
    /// The providers' most `transfer_held_bytes` during the copy.
    pub held_bytes_max_providers: u64,
    /// Whether every live node's store had one version and digest at the end.
    pub digests_equal: Option<bool>,
}

/// The store copies of a run, over its repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoreAggregate {
    /// Repetitions whose copy finished.
    pub finished: usize,
    /// Copy seconds.
    pub copy_s: Spread,
    /// Copy MB/s.
    pub copy_mb_per_s: Spread,
    /// Raw single flow MB/s, every measurement (before the first repetition and after each).
    pub raw_mb_per_s: Spread,
    /// Copy over raw.
    pub copy_over_raw: Spread,
    /// Resume ms.
    pub resume_ms: Spread,
    /// Bytes received again.
    pub resent_bytes: Spread,
    /// The requester's peak VmRSS, KiB.
    pub rss_kib_max_requester: Spread,
    /// The providers' peak VmRSS, KiB.
    pub rss_kib_max_providers: Spread,
    /// The requester's most held bytes.
    pub held_bytes_max_requester: Spread,
    /// The providers' most held bytes.
    pub held_bytes_max_providers: Spread,
    /// Repetitions whose live nodes ended with different store digests.
    pub digests_unequal: usize,
}

impl StoreAggregate {
    /// Aggregates the copies of `reps` (none when no repetition has one).
    pub fn of(reps: &[RepSummary]) -> Option<Self> {
        let c: Vec<&StoreCopy> = reps.iter().filter_map(|r| r.store.as_ref()).collect();
        if c.is_empty() {
            return None;
        }
        let of = |g: &dyn Fn(&StoreCopy) -> Option<f64>| {
            Spread::of(c.iter().filter_map(|x| g(x)).collect())
        };
        // Each raw measurement once: the first's before, then every one's after.
        let mut raw: Vec<f64> = c
            .first()
            .and_then(|x| x.raw_before_mb_per_s)
            .into_iter()
            .collect();
        raw.extend(c.iter().filter_map(|x| x.raw_after_mb_per_s));
        Some(Self {
            finished: c.iter().filter(|x| x.finished).count(),
            copy_s: of(&|x| x.copy_s),
            copy_mb_per_s: of(&|x| x.copy_mb_per_s),
            raw_mb_per_s: Spread::of(raw),
            copy_over_raw: of(&|x| x.copy_over_raw),
            resume_ms: of(&|x| x.resume_ms),
            resent_bytes: of(&|x| Some(x.resent_bytes as f64)),
            rss_kib_max_requester: of(&|x| Some(x.rss_kib_max_requester as f64)),
            rss_kib_max_providers: of(&|x| Some(x.rss_kib_max_providers as f64)),
            held_bytes_max_requester: of(&|x| Some(x.held_bytes_max_requester as f64)),
            held_bytes_max_providers: of(&|x| Some(x.held_bytes_max_providers as f64)),
            digests_unequal: c.iter().filter(|x| x.digests_equal == Some(false)).count(),
        })
    }
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
    /// 99th percentile (nearest rank, as the median and p90; absent in summaries written
    /// before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// Smallest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

impl Spread {
    /// Returns the spread of a list.
    pub fn of(v: Vec<f64>) -> Self {
        let n = v.len();
        let min = v.iter().copied().filter(|x| !x.is_nan()).reduce(f64::min);
        let p99 = quantile(v.clone(), 0.99);
        match median_p90_max(v) {
            Some((m, p, x)) => Self {
                n,
                median: Some(m),
                p90: Some(p),
                p99,
                max: Some(x),
                min,
            },
            None => Self::default(),
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
    /// Configuration changes from the fault to the next (absent in summaries written before
    /// this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnAggregate>,
}

/// [`Churn`] over the repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChurnAggregate {
    /// Repetitions with a window.
    pub reps: usize,
    /// Distinct configurations first installed in the window.
    pub changes: Spread,
    /// Changes per second of the window.
    pub changes_per_s: Spread,
    /// ms to the last change (repetitions with a change).
    pub last_change_ms: Spread,
    /// Changes after the settle window.
    pub changes_after_settle: Spread,
    /// Repetitions settled, then quiet ([`Churn::settled`]).
    pub settled: usize,
}

impl ChurnAggregate {
    /// Aggregates the windows given (none when there is none).
    pub fn of<'a>(c: impl IntoIterator<Item = &'a Churn>) -> Option<Self> {
        let c: Vec<&Churn> = c.into_iter().collect();
        if c.is_empty() {
            return None;
        }
        Some(Self {
            reps: c.len(),
            changes: Spread::of(c.iter().map(|x| x.changes as f64).collect()),
            changes_per_s: Spread::of(c.iter().map(|x| x.changes_per_s).collect()),
            last_change_ms: Spread::of(c.iter().filter_map(|x| x.last_change_ms).collect()),
            changes_after_settle: Spread::of(
                c.iter().map(|x| x.changes_after_settle as f64).collect(),
            ),
            settled: c.iter().filter(|x| x.settled).count(),
        })
    }
}

/// One group's failover over one fault of the schedule, over all repetitions (ms from the
/// fault's timestamp; see [`crate::failover`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FailoverAggregate {
    /// Index in the schedule.
    pub index: usize,
    /// The action.
    pub action: String,
    /// The group.
    pub group: String,
    /// Repetitions in which another node started the group.
    pub moved: usize,
    /// First node out of OPERATIONAL.
    pub detection_ms: Spread,
    /// The new holder's regular configuration.
    pub membership_ms: Spread,
    /// Its sync done.
    pub sync_ms: Spread,
    /// Its start command begun.
    pub placement_ms: Spread,
    /// Its start command ended: the failover.
    pub start_ms: Spread,
    /// The start command's own time.
    pub cmd_ms: Spread,
    /// start − membership − cmd.
    pub beyond_ring_ms: Spread,
    /// Two holders or more at once, over the fault's interval.
    pub double_ms: Spread,
}

/// summary.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The experiment as run.
    pub experiment: Experiment,
    /// Where it ran, when not in namespaces on this machine: `ssh` and the inventory
    /// (absent: the local backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<Backend>,
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
    /// Set when the run ended before its last repetition (absent: it ran every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
    /// Whether the nodes authenticated every datagram with a key (absent in summaries
    /// written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
    /// The name prefix of the run's namespaces, links and tables (absent in older summaries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// With the resources service: each group's failover per fault (absent without).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<FailoverAggregate>,
    /// With a store copy: its figures over the repetitions (absent without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreAggregate>,
    /// With the kml service: its checks over the repetitions (absent without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kml: Option<KmlAggregate>,
    /// On corosync: its version, unmapped knobs and differences (absent on ringlab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<crate::peer::PeerInfo>,
    /// On corosync: the checker's findings about the peer over the repetitions.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub peer_findings: usize,
    /// CPU time per delivered message (µs, node and daemon together) and resident memory
    /// (KiB), over every node and repetition (absent when nothing was sampled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageAggregate>,
    /// Throughput against the raw baseline over the repetitions (see
    /// [`crate::throughput`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<crate::throughput::ThroughputAggregate>,
    /// Configuration changes after each repetition's last fault over the repetitions
    /// (absent in summaries written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnAggregate>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Process usage over a run's nodes and repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageAggregate {
    /// CPU per delivered message, µs (node + daemon).
    pub cpu_us_per_msg: Spread,
    /// Resident memory of one node before the load (node + daemon), KiB.
    pub rss_idle_kib: Spread,
    /// Peak resident memory of one node (node + daemon), KiB.
    pub rss_peak_kib: Spread,
}

impl UsageAggregate {
    /// Over every node of every repetition.
    pub fn of(reps: &[RepSummary]) -> Option<Self> {
        let us: Vec<&crate::peer::NodeUsage> = reps.iter().flat_map(|r| &r.usage).collect();
        if us.is_empty() {
            return None;
        }
        let sum = |a: Option<u64>, b: Option<u64>| a.map(|a| (a + b.unwrap_or(0)) as f64);
        Some(Self {
            cpu_us_per_msg: Spread::of(us.iter().filter_map(|u| u.cpu_us_per_msg).collect()),
            rss_idle_kib: Spread::of(
                us.iter()
                    .filter_map(|u| sum(u.rss_idle_kib, u.daemon_rss_idle_kib))
                    .collect(),
            ),
            rss_peak_kib: Spread::of(
                us.iter()
                    .filter_map(|u| sum(u.rss_peak_kib, u.daemon_rss_peak_kib))
                    .collect(),
            ),
        })
    }
}

/// The kml checks of a run, over its repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KmlAggregate {
    /// Repetitions checked.
    pub checked: usize,
    /// Repetitions where some real directory differed from its tree, the trees differed,
    /// or something could not be read.
    pub unequal: usize,
    /// Reintegration ms (each repetition's slowest node).
    pub reint_ms: Spread,
    /// Records in the history at the end.
    pub records: Spread,
    /// Conflicts in the history at the end.
    pub conflicts: Spread,
}

impl KmlAggregate {
    /// Aggregates the checks of `reps` (none when no repetition has one).
    pub fn of(reps: &[RepSummary]) -> Option<Self> {
        let c: Vec<&crate::kml::KmlCheck> = reps.iter().filter_map(|r| r.kml.as_ref()).collect();
        if c.is_empty() {
            return None;
        }
        Some(Self {
            checked: c.len(),
            unequal: c.iter().filter(|x| !x.equal).count(),
            reint_ms: Spread::of(c.iter().filter_map(|x| x.reint_ms).collect()),
            records: Spread::of(c.iter().map(|x| x.records as f64).collect()),
            conflicts: Spread::of(c.iter().map(|x| x.conflicts as f64).collect()),
        })
    }
}

/// Why a run has fewer repetitions than it planned.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// A signal: Ctrl-C (SIGINT), SIGTERM or SIGHUP.
    Signal,
    /// An error in a repetition (the reason says which).
    Error,
    /// Not finished: the run is still under way, or was killed (SIGKILL, a crash) before it
    /// could say why. Every run writes this before its first repetition and replaces it.
    Unfinished,
}

/// How a run stopped early: summary.json's `stopped`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stopped {
    /// What stopped it.
    pub cause: StopCause,
    /// In words: the signal, or the error.
    pub reason: String,
    /// Repetitions completed; their results are in `reps`.
    pub completed_reps: u32,
    /// Repetitions planned.
    pub planned_reps: u32,
    /// The repetition under way when it stopped, abandoned (its records may be in
    /// records/rep-N/, its results are not in the summary).
    pub abandoned_rep: Option<u32>,
}

impl Stopped {
    /// One line: "stopped after 1 of 3 repetitions (signal: ...); rep 2 abandoned".
    pub fn describe(&self) -> String {
        let cause = match self.cause {
            StopCause::Signal => "signal",
            StopCause::Error => "error",
            StopCause::Unfinished => "unfinished",
        };
        let mut t = format!(
            "stopped after {} of {} repetitions ({cause}: {})",
            self.completed_reps, self.planned_reps, self.reason
        );
        if let Some(r) = self.abandoned_rep {
            t.push_str(&format!("; rep {r} abandoned"));
        }
        t
    }
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
    config_changes: Option<u64>,
    changes_per_s: Option<f64>,
    last_change_ms: Option<f64>,
    changes_after_settle: Option<u64>,
    settled_then_quiet: Option<bool>,
}

/// Returns the `q` quantile of a list by nearest rank (the value at `round((n - 1) × q)` in
/// sorted order), as [`median_p90_max`] takes its median and p90 (None when empty).
pub fn quantile(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[((v.len() - 1) as f64 * q).round() as usize])
}

/// Returns the median, 90th percentile and maximum of a list (None when empty). The median
/// is the usual one (the mean of the two middle values of an even count); the 90th
/// percentile is taken by nearest rank.
pub fn median_p90_max(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some((median(&v)?, at(0.9), *v.last().expect("non-empty")))
}

/// Returns the usual median of a sorted list: its middle value, or the mean of the two
/// middle values of an even count (None when empty).
pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Returns the `q` quantile of a sorted, non-empty list, interpolated linearly between
/// ranks (as box plots draw their quartiles).
pub fn interpolated(sorted: &[f64], q: f64) -> f64 {
    let x = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (x - lo as f64)
}

/// Returns the recovery of the schedule's `i`-th fault in repetition `r`. A start-up loss
/// (`loss_pct`) is recorded as fault 0, so the schedule follows it; a step that leaves no
/// record (`svc`) has none.
pub fn scheduled_fault<'a>(
    exp: &Experiment,
    r: &'a RepSummary,
    i: usize,
) -> Option<&'a FaultRecovery> {
    let k = exp.recorded_index(i)?;
    r.faults.iter().find(|x| x.index == k)
}

/// The recoveries of `s`'s scheduled fault `i`, one per repetition that recorded it.
pub fn fault_recoveries(s: &Summary, i: usize) -> impl Iterator<Item = &FaultRecovery> {
    s.reps
        .iter()
        .filter_map(move |r| scheduled_fault(&s.experiment, r, i))
}

/// Aggregates the repetitions of one run into its summary; `label`, `command`, `machine`
/// and `started` are recorded as given.
pub fn summarise(
    exp: &Experiment,
    label: String,
    command: String,
    machine: serde_json::Value,
    started: String,
    reps: Vec<RepSummary>,
) -> Summary {
    let nth = |r: &RepSummary, i: usize| scheduled_fault(exp, r, i).cloned();
    let mut faults = Vec::new();
    for (i, f) in exp.faults.iter().enumerate() {
        if !f.action.leaves_record() {
            continue;
        }
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
            action: f.action.name().into(),
            detection_ms: of(&|x| x.detection_ms),
            membership_ms: of(&|x| x.membership_ms),
            sync_ms: of(&|x| x.sync_ms),
            first_delivery_ms: of(&|x| x.first_delivery_ms),
            out_of_bound: reps
                .iter()
                .filter_map(|r| nth(r, i))
                .filter(|x| !x.within_bound)
                .count(),
            churn: ChurnAggregate::of(
                reps.iter()
                    .filter_map(|r| nth(r, i))
                    .filter_map(|x| x.churn)
                    .collect::<Vec<_>>()
                    .iter(),
            ),
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
    let mut failover = Vec::new();
    for (i, f) in exp.faults.iter().enumerate() {
        let Some(k) = exp.recorded_index(i) else {
            continue;
        };
        let rows: Vec<&Failover> = reps
            .iter()
            .flat_map(|r| r.failover.iter())
            .filter(|x| x.fault == k)
            .collect();
        let groups: std::collections::BTreeSet<&str> =
            rows.iter().map(|x| x.group.as_str()).collect();
        for g in groups {
            let of_g: Vec<&&Failover> = rows.iter().filter(|x| x.group == g).collect();
            let of = |h: &dyn Fn(&Failover) -> Option<f64>| {
                Spread::of(of_g.iter().filter_map(|x| h(x)).collect())
            };
            failover.push(FailoverAggregate {
                index: i,
                action: f.action.name().into(),
                group: g.into(),
                moved: of_g.iter().filter(|x| x.to.is_some()).count(),
                detection_ms: of(&|x| x.to.and(x.detection_ms)),
                membership_ms: of(&|x| x.membership_ms),
                sync_ms: of(&|x| x.sync_ms),
                placement_ms: of(&|x| x.placement_ms),
                start_ms: of(&|x| x.start_ms),
                cmd_ms: of(&|x| x.cmd_ms),
                beyond_ring_ms: of(&|x| x.beyond_ring_ms),
                double_ms: of(&|x| Some(x.double_ms)),
            });
        }
    }
    Summary {
        experiment: exp.clone(),
        label,
        command,
        machine,
        started,
        bound_ms: ringlab_sim::liveness_bound(&exp.totem) as f64 / 1e6,
        formation_ms: Spread::of(reps.iter().filter_map(|r| r.formation_ms).collect()),
        faults,
        msgs_per_s: Spread::of(reps.iter().map(|r| r.msgs_per_s).collect()),
        latency_ms: p,
        wrongly_excluded: reps.iter().map(|r| r.wrongly_excluded).sum(),
        violations: reps.iter().map(|r| r.violations.len()).sum(),
        stopped: None,
        authenticated: None,
        prefix: None,
        store: StoreAggregate::of(&reps),
        kml: KmlAggregate::of(&reps),
        peer: None,
        peer_findings: reps.iter().map(|r| r.peer_findings.len()).sum(),
        usage: UsageAggregate::of(&reps),
        throughput: crate::throughput::ThroughputAggregate::of(exp.raw_transport().as_str(), &reps),
        churn: ChurnAggregate::of(reps.iter().filter_map(|r| r.churn.as_ref())),
        reps,
        failover,
        backend: None,
    }
}

/// Writes runs.csv: one row per repetition and fault (the churn columns: the fault's window,
/// [`Churn`]).
pub fn write_csv(path: &Path, s: &Summary) -> Result<()> {
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
                config_changes: f.churn.as_ref().map(|c| c.changes),
                changes_per_s: f.churn.as_ref().map(|c| c.changes_per_s),
                last_change_ms: f.churn.as_ref().and_then(|c| c.last_change_ms),
                changes_after_settle: f.churn.as_ref().map(|c| c.changes_after_settle),
                settled_then_quiet: f.churn.as_ref().map(|c| c.settled),
            })?;
        }
    }
    w.flush()?;
    Ok(())
}

/// One row of store.csv.
#[derive(Serialize)]
struct StoreRow {
    label: String,
    rep: u32,
    requester: NodeId,
    path: String,
    design: Option<String>,
    keys: u64,
    store_bytes: u64,
    fill_s: f64,
    finished: bool,
    copy_s: Option<f64>,
    copied_bytes: u64,
    copy_mb_per_s: Option<f64>,
    raw_before_mb_per_s: Option<f64>,
    raw_after_mb_per_s: Option<f64>,
    copy_over_raw: Option<f64>,
    providers: String,
    resume_ms: Option<f64>,
    half_after_finish: Option<bool>,
    resent_bytes: u64,
    resumes: u64,
    aborts: u64,
    rss_kib_max_requester: u64,
    rss_kib_max_providers: u64,
    held_bytes_max_requester: u64,
    held_bytes_max_providers: u64,
    digests_equal: Option<bool>,
}

/// Writes store.csv: one row per repetition with a store copy (nothing without one);
/// returns whether it wrote one.
pub fn write_store_csv(path: &Path, s: &Summary) -> Result<bool> {
    if s.reps.iter().all(|r| r.store.is_none()) {
        return Ok(false);
    }
    let mut w = csv::Writer::from_path(path)?;
    for r in &s.reps {
        let Some(c) = &r.store else { continue };
        w.serialize(StoreRow {
            label: s.label.clone(),
            rep: r.rep,
            requester: c.requester,
            path: c.path.clone(),
            design: c.design.clone(),
            keys: c.keys,
            store_bytes: c.store_bytes,
            fill_s: c.fill_s,
            finished: c.finished,
            copy_s: c.copy_s,
            copied_bytes: c.copied_bytes,
            copy_mb_per_s: c.copy_mb_per_s,
            raw_before_mb_per_s: c.raw_before_mb_per_s,
            raw_after_mb_per_s: c.raw_after_mb_per_s,
            copy_over_raw: c.copy_over_raw,
            providers: join(&c.providers),
            resume_ms: c.resume_ms,
            half_after_finish: c.half_after_finish,
            resent_bytes: c.resent_bytes,
            resumes: c.resumes,
            aborts: c.aborts,
            rss_kib_max_requester: c.rss_kib_max_requester,
            rss_kib_max_providers: c.rss_kib_max_providers,
            held_bytes_max_requester: c.held_bytes_max_requester,
            held_bytes_max_providers: c.held_bytes_max_providers,
            digests_equal: c.digests_equal,
        })?;
    }
    w.flush()?;
    Ok(true)
}

/// One row of failover.csv.
#[derive(Serialize)]
struct FailoverRow {
    label: String,
    rep: u32,
    fault: usize,
    action: String,
    group: String,
    from: String,
    to: Option<NodeId>,
    detection_ms: Option<f64>,
    membership_ms: Option<f64>,
    sync_ms: Option<f64>,
    placement_ms: Option<f64>,
    start_ms: Option<f64>,
    cmd_ms: Option<f64>,
    beyond_ring_ms: Option<f64>,
    double_ms: f64,
}

/// Writes failover.csv: one row per repetition, fault and group (nothing without the
/// resources service's records); returns whether it wrote one.
pub fn write_failover_csv(path: &Path, s: &Summary) -> Result<bool> {
    if s.reps.iter().all(|r| r.failover.is_empty()) {
        return Ok(false);
    }
    let mut w = csv::Writer::from_path(path)?;
    for r in &s.reps {
        for f in &r.failover {
            w.serialize(FailoverRow {
                label: s.label.clone(),
                rep: r.rep,
                fault: f.fault,
                action: f.action.clone(),
                group: f.group.clone(),
                from: join(&f.from),
                to: f.to,
                detection_ms: f.detection_ms,
                membership_ms: f.membership_ms,
                sync_ms: f.sync_ms,
                placement_ms: f.placement_ms,
                start_ms: f.start_ms,
                cmd_ms: f.cmd_ms,
                beyond_ring_ms: f.beyond_ring_ms,
                double_ms: f.double_ms,
            })?;
        }
    }
    w.flush()?;
    Ok(true)
}

/// Joins node ids with commas.
fn join(v: &[NodeId]) -> String {
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(n: u32, faults: Vec<FaultRecovery>, p50: f64, max: f64) -> RepSummary {
        RepSummary {
            rep: n,
            formation_ms: Some(10.0 * n as f64),
            faults,
            msgs_per_s: 100.0 * n as f64,
            latency_ms: Percentiles {
                count: 10,
                p50,
                p90: 2.0 * p50,
                p99: 3.0 * p50,
                p999: 4.0 * p50,
                max,
            },
            wrongly_excluded: 1,
            violations: vec!["x".into(); n as usize - 1],
            ..Default::default()
        }
    }

    fn recovery(index: usize, action: &str, membership: Option<f64>) -> FaultRecovery {
        FaultRecovery {
            index,
            action: action.into(),
            targets: vec![3],
            membership_ms: membership,
            detection_ms: membership.map(|m| m / 2.0),
            within_bound: membership.is_some_and(|m| m < 1000.0),
            settled: vec![vec![1, 2], vec![3]],
            ..Default::default()
        }
    }

    #[test]
    fn percentiles_of_a_list() {
        assert_eq!(median_p90_max(vec![]), None);
        assert_eq!(
            median_p90_max(vec![5.0, 1.0, 3.0, 2.0, 4.0]),
            Some((3.0, 5.0, 5.0))
        );
    }

    #[test]
    fn spread_has_a_nearest_rank_p99() {
        let s = Spread::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (s.median, s.p90, s.p99, s.max),
            (Some(50.5), Some(90.0), Some(99.0), Some(100.0))
        );
        assert_eq!(Spread::of(vec![7.0]).p99, Some(7.0));
        assert_eq!(Spread::of(vec![]).p99, None);
    }

    #[test]
    fn churn_aggregates_over_the_repetitions_with_a_window() {
        let c = |changes: u64, last: Option<f64>, settled: bool| Churn {
            window_ms: 2000.0,
            changes,
            changes_per_s: changes as f64 / 2.0,
            last_change_ms: last,
            changes_after_settle: changes.saturating_sub(1),
            settled,
            ..Default::default()
        };
        let exp: Experiment = toml::from_str(
            "name = 'x'\nnodes = 3\nduration_ms = 5000\n\
             [[faults]]\nat_ms = 1000\naction = 'isolate'\nnodes = [3]\n",
        )
        .unwrap();
        let with = |n: u32, ch: Option<Churn>| RepSummary {
            faults: vec![FaultRecovery {
                churn: ch.clone(),
                ..recovery(0, "isolate", Some(400.0))
            }],
            churn: ch,
            ..rep(n, vec![], 1.0, 1.0)
        };
        let reps = vec![
            with(1, Some(c(1, Some(300.0), true))),
            with(2, Some(c(0, None, true))),
            with(3, Some(c(4, Some(3900.0), false))),
            with(4, None),
        ];
        let s = summarise(
            &exp,
            "".into(),
            "".into(),
            serde_json::Value::Null,
            "".into(),
            reps,
        );
        let a = s.churn.as_ref().unwrap();
        assert_eq!((a.reps, a.settled), (3, 2));
        assert_eq!((a.changes.median, a.changes.max), (Some(1.0), Some(4.0)));
        assert_eq!(a.changes_per_s.max, Some(2.0));
        // Only the repetitions with a change have a time to it.
        assert_eq!(a.last_change_ms.n, 2);
        assert_eq!(a.changes_after_settle.max, Some(3.0));
        assert_eq!(s.faults[0].churn.as_ref(), Some(a));
        assert_eq!(ChurnAggregate::of(std::iter::empty()), None);
    }

    #[test]
    fn summarise_aggregates_each_scheduled_fault_past_the_startup_loss() {
        let exp: Experiment = toml::from_str(
            "name = 'x'\nnodes = 3\nduration_ms = 5000\nloss_pct = 5\n\
             [[faults]]\nat_ms = 1000\naction = 'isolate'\nnodes = [3]\n\
             [[faults]]\nat_ms = 3000\naction = 'heal'\n",
        )
        .unwrap();
        // Fault 0 of each repetition is the start-up loss; the schedule follows it.
        let reps = vec![
            rep(
                1,
                vec![
                    recovery(0, "loss", None),
                    recovery(1, "isolate", Some(400.0)),
                    recovery(2, "heal", Some(20.0)),
                ],
                1.0,
                9.0,
            ),
            rep(
                2,
                vec![
                    recovery(0, "loss", None),
                    recovery(1, "isolate", Some(2000.0)),
                ],
                3.0,
                5.0,
            ),
            rep(3, vec![recovery(0, "loss", None)], 2.0, 7.0),
        ];
        let s = summarise(
            &exp,
            "token=500".into(),
            "ringlab run".into(),
            serde_json::json!({"cpus": 2}),
            "now".into(),
            reps.clone(),
        );
        assert_eq!(s.label, "token=500");
        assert_eq!(s.faults.len(), 2);
        let iso = &s.faults[0];
        assert_eq!((iso.index, iso.action.as_str()), (0, "isolate"));
        assert_eq!(iso.membership_ms.n, 2);
        // The usual median of two: their mean.
        assert_eq!(iso.membership_ms.median, Some(1200.0));
        assert_eq!(iso.membership_ms.max, Some(2000.0));
        assert_eq!(iso.detection_ms.median, Some(600.0));
        assert_eq!(iso.out_of_bound, 1);
        let heal = &s.faults[1];
        assert_eq!((heal.index, heal.action.as_str()), (1, "heal"));
        assert_eq!(heal.membership_ms.n, 1);
        assert_eq!(heal.sync_ms, Spread::default());
        assert_eq!(heal.out_of_bound, 0);
        assert_eq!(s.formation_ms.median, Some(20.0));
        assert_eq!(s.msgs_per_s.max, Some(300.0));
        // Latency: the median of each percentile over repetitions, and the largest max.
        assert_eq!(s.latency_ms.count, 30);
        assert_eq!(s.latency_ms.p50, 2.0);
        assert_eq!(s.latency_ms.p99, 6.0);
        assert_eq!(s.latency_ms.max, 9.0);
        assert_eq!(s.wrongly_excluded, 3);
        assert_eq!(s.violations, 3);
        assert_eq!(
            s.bound_ms,
            ringlab_sim::liveness_bound(&exp.totem) as f64 / 1e6
        );
        assert_eq!(s.reps, reps);
        assert_eq!(
            scheduled_fault(&exp, &s.reps[1], 0).map(|f| f.membership_ms),
            Some(Some(2000.0))
        );
        assert!(scheduled_fault(&exp, &s.reps[2], 0).is_none());
    }

    #[test]
    fn runs_csv_has_one_row_per_repetition_and_fault() {
        let exp: Experiment =
            toml::from_str("name = 'x'\nnodes = 3\nduration_ms = 5000\n").unwrap();
        let reps = vec![
            rep(
                1,
                vec![
                    FaultRecovery {
                        churn: Some(Churn {
                            window_ms: 4000.0,
                            changes: 2,
                            installs: 9,
                            changes_per_s: 0.5,
                            last_change_ms: Some(3200.0),
                            settle_ms: 2700.0,
                            changes_after_settle: 1,
                            settled: false,
                        }),
                        ..recovery(0, "isolate", Some(400.0))
                    },
                    recovery(1, "heal", None),
                ],
                1.0,
                2.0,
            ),
            rep(2, vec![recovery(0, "isolate", Some(500.0))], 1.0, 2.0),
        ];
        let s = summarise(
            &exp,
            "l".into(),
            "c".into(),
            serde_json::Value::Null,
            "now".into(),
            reps,
        );
        let path = std::env::temp_dir().join(format!("ringlab-runs-{}.csv", std::process::id()));
        write_csv(&path, &s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "label,rep,fault,action,targets,detection_ms,membership_ms,sync_ms,first_delivery_ms,\
             settled,within_bound,before_msgs_per_s,during_msgs_per_s,after_msgs_per_s,\
             before_p50_ms,before_p99_ms,during_p99_ms,after_p99_ms,after_max_ms,formation_ms,\
             violations,config_changes,changes_per_s,last_change_ms,changes_after_settle,\
             settled_then_quiet"
        );
        assert_eq!(
            &lines[1..],
            [
                "l,1,0,isolate,3,200.0,400.0,,,\"1,2|3\",true,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,10.0,0,\
                 2,0.5,3200.0,1,false",
                "l,1,1,heal,3,,,,,\"1,2|3\",false,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,10.0,0,,,,,",
                "l,2,0,isolate,3,250.0,500.0,,,\"1,2|3\",true,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,20.0,1,,,,,",
            ]
        );
    }

    /// Every summary.json under results/ (written by earlier versions) loads, and writes back
    /// with the same fields in the same order and format, and the same values.
    #[test]
    fn committed_summaries_load_and_write_back_unchanged() {
        fn visit(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    visit(&p, out);
                } else if p.file_name().is_some_and(|n| n == "summary.json") {
                    out.push(p);
                }
            }
        }
        // serde_json's float parsing may be one ulp off, so the texts are compared with
        // every digit run masked, and the values as parsed.
        fn masked(t: &str) -> String {
            let mut out = String::new();
            for c in t.chars() {
                if !(c.is_ascii_digit() && out.ends_with('#')) {
                    out.push(if c.is_ascii_digit() { '#' } else { c });
                }
            }
            out
        }
        let mut files = Vec::new();
        visit(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../results"),
            &mut files,
        );
        assert!(files.len() >= 10, "only {} summaries", files.len());
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let s: Summary =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let back = serde_json::to_string_pretty(&s).unwrap();
            assert_eq!(masked(&back), masked(&text), "{}", f.display());
            let v = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
            assert_eq!(v(&back), v(&text), "{}", f.display());
        }
    }
}
