//! corosync as a configuration like any other (`implementation = "corosync"`), and what
//! `ringlab run` measures of every node's process whichever Totem it runs.
//!
//! **How a corosync node runs.** The harness starts `ringlab corosync-node` in the node's
//! namespace inside a private mount namespace (see
//! [`Implementation`]); that process writes the
//! node's `corosync.conf` from the same config a ringlab node reads (udpu, the experiment's
//! `[totem]` knobs under corosync's names, `token_coefficient` 0), runs the distribution's
//! `corosync -f` as its child, and joins one CPG group through libcpg: it runs the
//! experiment's load, answers the harness's control requests and writes the same records as
//! a ringlab node. The knobs corosync has no equivalent for are written by each node to
//! `STATE_DIR/corosync-unmapped.json`; the run reports them (summary.json `peer.unmapped`,
//! and on the console), never drops them silently.
//!
//! **The checker on a peer.** corosync follows its own variant of extended virtual
//! synchrony (it discards old-ring messages after the first gap in recovery, and its CPG
//! delivers a configuration change per group, not per ring): what the checker reports on a
//! corosync run is kept as a *finding about the peer* (`reps[].peer_findings`,
//! `peer_findings` in summary.json) and does not fail the run. A violation on ringlab still
//! fails it.
//!
//! **Process usage.** For every node, whichever implementation: CPU time (user + system,
//! from `/proc/PID/stat`) over the measured part of the repetition and per message the node
//! delivered, resident memory before the load starts (idle) and its peak at the end
//! (`VmHWM`), of the node's process and, for corosync, of its daemon apart
//! (`reps[].usage`). A corosync node's own process is the CPG client: its CPU and memory are
//! the client's, beside the daemon's.

use crate::experiment::Experiment;
use anyhow::{bail, Context, Result};
use ringlab_net::harness::{Cluster, Implementation};
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;

/// What the harness needs installed for corosync nodes, and how to get it.
pub const INSTALL_HINT: &str =
    "implementation = \"corosync\" needs the distribution's corosync and its CPG library: \
     apt-get install corosync libcpg4 (Debian, Ubuntu)";

/// The file each corosync node writes its knobs without an equivalent to.
pub const UNMAPPED_FILE: &str = "corosync-unmapped.json";

/// Where the CPG library is looked for (as the dynamic loader would find it).
const LIBCPG: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libcpg.so.4",
    "/usr/lib/aarch64-linux-gnu/libcpg.so.4",
    "/usr/lib64/libcpg.so.4",
    "/usr/lib/libcpg.so.4",
    "/lib/x86_64-linux-gnu/libcpg.so.4",
];

/// Checks what an experiment on corosync cannot do: services (ringlab's sync layer runs on
/// ringlab's ring only), safe messages (CPG orders agreed only), `svc` steps.
pub fn check_experiment(exp: &Experiment) -> Result<()> {
    if !exp.services.is_empty() {
        bail!(
            "implementation = \"corosync\" runs no ringlab services (services = {:?}): \
             the sync layer runs on ringlab's ring only",
            exp.services
        );
    }
    if exp.load.safe {
        bail!(
            "implementation = \"corosync\": CPG delivers agreed messages only (load.safe = true)"
        );
    }
    if exp.store.is_some() {
        bail!("implementation = \"corosync\" has no store ([store])");
    }
    Ok(())
}

/// Returns corosync's version (`corosync -v`), or says how to install what is missing.
pub fn require_installed() -> Result<String> {
    let out = Command::new("corosync")
        .arg("-v")
        .output()
        .map_err(|e| anyhow::anyhow!("{INSTALL_HINT} (running `corosync -v`: {e})"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|l| {
            l.split_once("version '")
                .and_then(|(_, r)| r.split_once('\''))
        })
        .map(|(v, _)| v.to_string())
        .with_context(|| format!("`corosync -v` printed no version: {text:?}"))?;
    if !LIBCPG.iter().any(|p| Path::new(p).exists()) && !ldconfig_has("libcpg.so.4") {
        bail!("{INSTALL_HINT} (libcpg.so.4 was not found)");
    }
    if !Path::new("/var/lib/corosync").is_dir() {
        bail!("{INSTALL_HINT} (/var/lib/corosync, which each node's own directory is bound on, is missing)");
    }
    Ok(version)
}

fn ldconfig_has(lib: &str) -> bool {
    Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(lib))
}

/// One knob of the experiment that corosync has no equivalent for (as the node wrote it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmapped {
    /// The knob.
    pub knob: String,
    /// Its value in the experiment.
    pub value: String,
    /// Why it has no equivalent.
    pub why: String,
}

/// The peer a run measured (summary.json `peer`, absent on ringlab runs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// `corosync`.
    pub implementation: Implementation,
    /// Its exact version (`corosync -v`).
    pub version: String,
    /// The experiment's knobs it has no equivalent for.
    pub unmapped: Vec<Unmapped>,
    /// The resolution of its log clock (CLOCK_REALTIME_COARSE), ns, as `clock_getres` gives
    /// it here: the `state` records parsed from its log carry the log's own timestamp at this
    /// resolution beside the reading time (`t_ns`).
    pub log_clock_res_ns: u64,
    /// What it promises differently from ringlab, in words (the results carry it beside the
    /// figures).
    pub differences: Vec<String>,
}

/// What corosync's CPG promises differently from ringlab (written into every corosync run's
/// summary and into the README next to the figures).
pub const DIFFERENCES: &[&str] = &[
    "CPG delivers agreed order only; ringlab also offers safe delivery (delivered once every member has it)",
    "corosync discards old-ring messages after the first gap in recovery (its EVS variant); ringlab delivers them up to the gap and reports the rest as a transitional configuration",
    "CPG reports membership per process group (joined/left lists) and the totem ring separately; ringlab reports transitional and regular configurations of the ring itself",
    "corosync retransmits and orders with its own defaults for knobs the experiment does not set; the experiment's knobs are mapped by name, with token_coefficient 0 so that `token` means the same",
    "a corosync node's deliver records are written by the CPG client after the daemon hands the message over IPC: one hop more than ringlab, whose records are written by the node that runs the ring",
];

/// Reads the knobs node `id` reported it could not map (empty when it wrote none).
pub fn read_unmapped(cluster: &Cluster, id: NodeId) -> Result<Vec<Unmapped>> {
    let p = cluster.state_dir(id).join(UNMAPPED_FILE);
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// The resolution of CLOCK_REALTIME_COARSE here, ns.
pub fn coarse_clock_res_ns() -> u64 {
    rustix::time::clock_getres(rustix::time::ClockId::RealtimeCoarse)
        .tv_nsec
        .max(0) as u64
}

/// One process's CPU time and memory, read from /proc.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// User + system CPU time so far, s.
    pub cpu_s: f64,
    /// Resident memory now, KiB.
    pub rss_kib: u64,
    /// Peak resident memory so far (VmHWM), KiB.
    pub hwm_kib: u64,
}

/// Reads process `pid`'s CPU time and memory (none when it is gone).
pub fn sample(pid: i32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = rustix::param::clock_ticks_per_second() as f64;
    let mem = ringlab_net::control::MemoryKib::of(&pid.to_string());
    Some(ProcSample {
        cpu_s: ticks as f64 / hz,
        rss_kib: mem.rss.unwrap_or(0),
        hwm_kib: mem.peak_rss.unwrap_or(0),
    })
}

/// The processes of node `id`: its own and, on corosync, its daemon's.
pub fn pids(cluster: &Cluster, id: NodeId) -> (Option<i32>, Option<i32>) {
    (cluster.pid(id).map(|p| p as i32), cluster.corosync_pid(id))
}

/// Samples every node's processes (node, daemon) at once.
pub fn sample_all(cluster: &Cluster, nodes: &[NodeId]) -> Vec<(NodeId, NodeSample)> {
    nodes
        .iter()
        .map(|&id| {
            let (p, d) = (cluster.pid(id).map(|p| p as i32), cluster.corosync_pid(id));
            (
                id,
                NodeSample {
                    pid: p,
                    daemon_pid: d,
                    node: p.and_then(sample),
                    daemon: d.and_then(sample),
                },
            )
        })
        .collect()
}

/// A node's processes sampled at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NodeSample {
    /// The node's process.
    pub pid: Option<i32>,
    /// Its corosync daemon.
    pub daemon_pid: Option<i32>,
    /// The node's process's figures.
    pub node: Option<ProcSample>,
    /// The daemon's.
    pub daemon: Option<ProcSample>,
}

/// One node's process usage over a repetition's measured part (`reps[].usage`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// The node.
    pub node: NodeId,
    /// CPU time of the node's process over the measured part, s (a ringlab node: the whole
    /// node; a corosync node: its CPG client).
    pub cpu_s: Option<f64>,
    /// CPU time of its corosync daemon, s (absent on ringlab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_cpu_s: Option<f64>,
    /// Messages it delivered over the measured part.
    pub delivered: u64,
    /// (cpu_s + daemon_cpu_s) per delivered message, µs.
    pub cpu_us_per_msg: Option<f64>,
    /// Resident memory of the node's process before the load started, KiB.
    pub rss_idle_kib: Option<u64>,
    /// Its peak resident memory at the end (VmHWM), KiB.
    pub rss_peak_kib: Option<u64>,
    /// The daemon's, before the load, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_rss_idle_kib: Option<u64>,
    /// The daemon's peak at the end, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon_rss_peak_kib: Option<u64>,
}

/// Each node's usage between `before` and `after` (a node restarted in between, whose PID
/// changed, gets no CPU figure: its CPU time is not one process's).
pub fn usage(
    before: &[(NodeId, NodeSample)],
    after: &[(NodeId, NodeSample)],
    delivered: &std::collections::BTreeMap<NodeId, u64>,
) -> Vec<NodeUsage> {
    before
        .iter()
        .map(|(id, b)| {
            let a = after
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, a)| *a)
                .unwrap_or_default();
            let same = b.pid.is_some() && a.pid == b.pid;
            let same_d = b.daemon_pid.is_some() && a.daemon_pid == b.daemon_pid;
            let cpu = |x: Option<ProcSample>, y: Option<ProcSample>, same: bool| match (x, y) {
                (Some(x), Some(y)) if same => Some((y.cpu_s - x.cpu_s).max(0.0)),
                _ => None,
            };
            let cpu_s = cpu(b.node, a.node, same);
            let daemon_cpu_s = cpu(b.daemon, a.daemon, same_d);
            let n = delivered.get(id).copied().unwrap_or(0);
            let total = match (cpu_s, daemon_cpu_s, b.daemon_pid.is_some()) {
                (Some(c), Some(d), true) => Some(c + d),
                (Some(c), _, false) => Some(c),
                _ => None,
            };
            NodeUsage {
                node: *id,
                cpu_s,
                daemon_cpu_s,
                delivered: n,
                cpu_us_per_msg: total.filter(|_| n > 0).map(|t| t * 1e6 / n as f64),
                rss_idle_kib: b.node.map(|s| s.rss_kib),
                rss_peak_kib: a.node.filter(|_| same).map(|s| s.hwm_kib),
                daemon_rss_idle_kib: b.daemon.map(|s| s.rss_kib),
                daemon_rss_peak_kib: a.daemon.filter(|_| same_d).map(|s| s.hwm_kib),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_samples_itself() {
        let s = sample(std::process::id() as i32).expect("our own /proc");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(sample(i32::MAX).is_none());
    }

    fn ns(pid: i32, cpu: f64, rss: u64, daemon: Option<(i32, f64, u64)>) -> NodeSample {
        NodeSample {
            pid: Some(pid),
            daemon_pid: daemon.map(|d| d.0),
            node: Some(ProcSample {
                cpu_s: cpu,
                rss_kib: rss,
                hwm_kib: rss,
            }),
            daemon: daemon.map(|d| ProcSample {
                cpu_s: d.1,
                rss_kib: d.2,
                hwm_kib: d.2,
            }),
        }
    }

    #[test]
    fn usage_adds_the_daemon_and_drops_a_restarted_process() {
        let before = vec![
            (1, ns(10, 1.0, 100, Some((11, 2.0, 1000)))),
            (2, ns(20, 1.0, 100, None)),
            (3, ns(30, 1.0, 100, None)),
        ];
        let after = vec![
            (1, ns(10, 1.5, 150, Some((11, 3.0, 2000)))),
            (2, ns(20, 3.0, 120, None)),
            (3, ns(31, 0.1, 90, None)),
        ];
        let delivered = [(1, 1000), (2, 1000), (3, 1000)].into_iter().collect();
        let u = usage(&before, &after, &delivered);
        assert_eq!(u[0].cpu_us_per_msg, Some(1500.0));
        assert_eq!(u[0].daemon_rss_peak_kib, Some(2000));
        assert_eq!(u[1].cpu_us_per_msg, Some(2000.0));
        assert_eq!(u[1].daemon_cpu_s, None);
        assert_eq!(u[2].cpu_s, None, "restarted: not one process's time");
        assert_eq!(u[2].cpu_us_per_msg, None);
    }

    #[test]
    fn an_experiment_on_corosync_refuses_services_and_safe_messages() {
        let mut e: Experiment =
            toml::from_str("name='x'\nnodes=3\nduration_ms=1000\nimplementation='corosync'")
                .expect("parses");
        assert!(check_experiment(&e).is_ok());
        e.load.safe = true;
        assert!(check_experiment(&e).is_err());
        e.load.safe = false;
        e.services = vec!["checkpoint".into()];
        assert!(check_experiment(&e).is_err());
    }
}
