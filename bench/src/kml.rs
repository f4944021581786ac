//! The `kml` service in `ringlab run`: at the end of every repetition, each live node's real
//! directory (`STATE_DIR/kml`, which the node mirrors its fileset into) is read with
//! `ringlab kml-digest` and compared with the tree digest the node's `svc kml status`
//! returns, and the trees of the nodes with each other; and the reintegration's figures are
//! read from the `kml` records.
//!
//! What it guarantees:
//! - the wait for the services to settle is bounded ([`SETTLE_MS`]): every node answering,
//!   none syncing, one `tree` and one `digest` everywhere, twice in a row; past the bound the
//!   comparison is made with what the nodes say then;
//! - a check that finds nothing fails, never passes: no live node, a node whose status cannot
//!   be read, or a directory `kml-digest` cannot read (missing, unreadable) makes `equal`
//!   false, with the reason in `error`;
//! - the reintegration time of a node is the first `reint_start` record of its last
//!   incarnation to the last `reint_done` after it (its own clock, CLOCK_MONOTONIC); a
//!   `reint_start` without a `reint_done` after it gives none.

use anyhow::{Context, Result};
use ringlab_net::control::Request;
use ringlab_net::harness::Cluster;
use ringlab_records::{Body, Record};
use ringlab_ring::NodeId;
use ringlab_sync::kml::service::Status;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The longest wait for every node's service to settle after the schedule (ms).
pub const SETTLE_MS: u64 = 30_000;

/// The service's name: its directory under a node's state directory, and `svc kml`.
pub const KML: &str = "kml";

/// One node's end of a repetition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KmlNode {
    /// The node.
    pub node: NodeId,
    /// `tree` of its `svc kml status`: what its real directory must show (hex).
    pub tree: Option<String>,
    /// `digest` of its status: the whole fileset (hex).
    pub digest: Option<String>,
    /// `ringlab kml-digest STATE_DIR/kml` (hex).
    pub dir: Option<String>,
    /// Whether `dir` equals `tree`.
    pub equal: bool,
    /// Records in its history.
    pub records: u64,
    /// Conflicts in its history.
    pub conflicts: u64,
    /// Reintegrations its service completed.
    pub reintegrations: u64,
    /// ms from its first `reint_start` record to the last `reint_done` after it.
    pub reint_ms: Option<f64>,
    /// Records its `reint_done` records say were reintegrated (applied), summed.
    pub reint_applied: u64,
    /// Conflicts its `reint_done` records found, summed.
    pub reint_conflicts: u64,
    /// Why something could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A repetition's `kml` check (`reps[].kml` in summary.json).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KmlCheck {
    /// Every live node's real directory equals its tree, and every tree is the same.
    pub equal: bool,
    /// Every live node reports the same tree.
    pub trees_equal: bool,
    /// Whether the nodes settled within [`SETTLE_MS`] (no sync running, one tree).
    pub settled: bool,
    /// ms from the end of the schedule until they settled.
    pub settle_ms: f64,
    /// The largest `reint_ms` of the nodes.
    pub reint_ms: Option<f64>,
    /// Records in the history (node 1's, or the first live node's).
    pub records: u64,
    /// Conflicts in the history (likewise).
    pub conflicts: u64,
    /// Per live node.
    pub nodes: Vec<KmlNode>,
}

/// Returns node `id`'s `svc kml status`.
pub fn status(c: &Cluster, id: NodeId) -> Result<Status> {
    Ok(c.call::<Status>(
        id,
        &Request::Svc {
            service: KML.into(),
            request: serde_json::json!({"op": "status"}),
        },
    )?)
}

/// Returns `binary kml-digest dir`: the hex digest, or why it failed.
pub fn dir_digest(binary: &Path, dir: &Path) -> Result<String> {
    let out = Command::new(binary)
        .arg("kml-digest")
        .arg(dir)
        .output()
        .with_context(|| format!("running {} kml-digest", binary.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "kml-digest {}: {} ({})",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Waits (at most [`SETTLE_MS`], or until `stop` says so) until every node of `nodes`
/// answers, none syncs, and all show one tree and one digest twice in a row; returns
/// whether they did and how long it took (ms).
pub fn settle(c: &Cluster, nodes: &[NodeId], stop: &dyn Fn() -> bool) -> (bool, f64) {
    let t0 = ringlab_net::monotonic_ns();
    let mut last: Option<Vec<(String, String)>> = None;
    loop {
        let now: Option<Vec<(String, String)>> = nodes
            .iter()
            .map(|&n| {
                status(c, n)
                    .ok()
                    .filter(|s| !s.syncing)
                    .map(|s| (s.tree, s.digest))
            })
            .collect();
        let ms = (ringlab_net::monotonic_ns() - t0) as f64 / 1e6;
        if let Some(v) = &now {
            let one = v.windows(2).all(|w| w[0] == w[1]);
            if one && last.as_ref() == Some(v) {
                return (true, ms);
            }
        }
        last = now;
        if ms >= SETTLE_MS as f64 || stop() {
            return (false, ms);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Compares every node of `nodes`' real directory with its tree (see the module's doc).
pub fn check(c: &Cluster, binary: &Path, nodes: &[NodeId]) -> KmlCheck {
    let mut out = KmlCheck::default();
    for &n in nodes {
        let mut k = KmlNode {
            node: n,
            ..KmlNode::default()
        };
        match status(c, n) {
            Ok(s) => {
                k.tree = Some(s.tree);
                k.digest = Some(s.digest);
                k.records = s.records;
                k.conflicts = s.conflicts;
                k.reintegrations = s.reintegrations;
            }
            Err(e) => k.error = Some(format!("svc kml status: {e:#}")),
        }
        match dir_digest(binary, &c.state_dir(n).join(KML)) {
            Ok(d) => k.dir = Some(d),
            Err(e) => {
                let e = format!("{e:#}");
                k.error = Some(k.error.map_or(e.clone(), |x| format!("{x}; {e}")));
            }
        }
        k.equal = k.tree.is_some() && k.tree == k.dir;
        out.nodes.push(k);
    }
    let trees: Vec<&Option<String>> = out.nodes.iter().map(|k| &k.tree).collect();
    out.trees_equal = !trees.is_empty() && trees.windows(2).all(|w| w[0] == w[1]);
    out.equal = out.trees_equal && out.nodes.iter().all(|k| k.equal);
    if let Some(k) = out.nodes.first() {
        out.records = k.records;
        out.conflicts = k.conflicts;
    }
    out
}

/// Fills in each node's reintegration figures from the repetition's records.
pub fn add_reintegration(check: &mut KmlCheck, records: &[Record]) {
    for k in &mut check.nodes {
        let last_inc = records
            .iter()
            .filter(|r| r.node == k.node)
            .map(|r| r.inc)
            .max();
        let mut start = None;
        let mut done = None;
        for r in records
            .iter()
            .filter(|r| r.node == k.node && Some(r.inc) == last_inc)
        {
            if let Body::Kml {
                phase,
                records: n,
                conflicts,
                ..
            } = &r.body
            {
                match phase.as_str() {
                    "reint_start" => {
                        start.get_or_insert(r.t_ns);
                    }
                    "reint_done" if start.is_some() => {
                        done = Some(r.t_ns);
                        k.reint_applied += n.unwrap_or(0);
                        k.reint_conflicts += conflicts.unwrap_or(0);
                    }
                    _ => {}
                }
            }
        }
        k.reint_ms = match (start, done) {
            (Some(s), Some(d)) if d >= s => Some((d - s) as f64 / 1e6),
            _ => None,
        };
    }
    check.reint_ms = check
        .nodes
        .iter()
        .filter_map(|k| k.reint_ms)
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kml(t: u64, node: NodeId, inc: u32, phase: &str, n: Option<u64>) -> Record {
        Record {
            t_ns: t,
            node,
            inc,
            body: Body::Kml {
                phase: phase.into(),
                origin: 0,
                recno: 0,
                kind: None,
                path: None,
                records: n,
                conflicts: n.map(|_| 1),
                detail: None,
            },
        }
    }

    #[test]
    fn reintegration_runs_from_the_first_start_to_the_last_done_of_the_last_incarnation() {
        let mut c = KmlCheck {
            nodes: vec![
                KmlNode {
                    node: 1,
                    ..KmlNode::default()
                },
                KmlNode {
                    node: 2,
                    ..KmlNode::default()
                },
                KmlNode {
                    node: 3,
                    ..KmlNode::default()
                },
            ],
            ..KmlCheck::default()
        };
        let recs = vec![
            kml(1_000_000, 1, 1, "reint_start", None),
            kml(2_000_000, 1, 1, "abort", None),
            kml(3_000_000, 1, 1, "reint_start", None),
            kml(5_000_000, 1, 1, "reint_done", Some(10)),
            // An earlier incarnation's is not this one's.
            kml(1_000_000, 2, 1, "reint_start", None),
            kml(9_000_000, 2, 2, "reint_start", None),
            kml(10_000_000, 2, 2, "reint_done", Some(3)),
            // Started, never done: none.
            kml(1_000_000, 3, 1, "reint_start", None),
        ];
        add_reintegration(&mut c, &recs);
        assert_eq!(c.nodes[0].reint_ms, Some(4.0));
        assert_eq!(
            (c.nodes[0].reint_applied, c.nodes[0].reint_conflicts),
            (10, 1)
        );
        assert_eq!(c.nodes[1].reint_ms, Some(1.0));
        assert_eq!(c.nodes[2].reint_ms, None);
        assert_eq!(c.reint_ms, Some(4.0));
    }
}
