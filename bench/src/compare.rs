//! `ringlab compare DIR...`: side-by-side tables (terminal and Markdown) of every recovery
//! phase and of throughput, and SVG plots: recovery-time box plots per configuration and a
//! throughput timeline with the faults marked.
//!
//! A run that stopped early (summary.json's `stopped`) is compared over the repetitions it
//! completed and marked as stopped, with how many of how many and why; a run directory
//! without summary.json (killed before it could write one, by a version that wrote it only
//! at the end) is listed as skipped.

use crate::summary::{fault_recoveries, Churn, ChurnAggregate, Spread, Summary};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The runs found under the directories given to [`load`].
#[derive(Debug, Default)]
pub struct Loaded {
    /// Each run's directory and summary.
    pub runs: Vec<(PathBuf, Summary)>,
    /// Run directories (with `records/`) that hold no summary.json.
    pub skipped: Vec<PathBuf>,
}

/// Finds the summaries under `dirs`: a directory with summary.json is one run; otherwise each
/// subdirectory with one is (a sweep, or `results/<name>/` with one run per timestamp).
pub fn load(dirs: &[PathBuf]) -> Result<Loaded> {
    let mut out = Loaded::default();
    for d in dirs {
        let mut found: Vec<PathBuf> = Vec::new();
        if d.join("summary.json").is_file() {
            found.push(d.join("summary.json"));
        } else {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(d)
                .with_context(|| format!("reading {}", d.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            subs.sort_by_key(|p| natural_key(&p.to_string_lossy()));
            for p in subs {
                if p.join("summary.json").is_file() {
                    found.push(p.join("summary.json"));
                } else if p.join("records").is_dir() {
                    out.skipped.push(p);
                }
            }
        }
        if found.is_empty() {
            if !out.skipped.is_empty() {
                let names: Vec<String> = out
                    .skipped
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                bail!(
                    "no summary.json in or under {}: its runs were killed before they could write one ({})",
                    d.display(),
                    names.join(", ")
                );
            }
            if d.join("records").is_dir() {
                bail!(
                    "no summary.json in {}: the run was killed before it could write one",
                    d.display()
                );
            }
            bail!("no summary.json in or under {}", d.display());
        }
        for f in found {
            let s: Summary = serde_json::from_str(
                &std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
            )
            .with_context(|| format!("parsing {}", f.display()))?;
            out.runs.push((f.parent().expect("a dir").to_path_buf(), s));
        }
    }
    Ok(out)
}

/// Sorts "token=200" before "token=1000": digit runs compare as numbers.
fn natural_key(s: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut digits = String::new();
    let mut text = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                out.push((0, std::mem::take(&mut text)));
            }
            digits.push(c);
        } else {
            if !digits.is_empty() {
                out.push((digits.parse().unwrap_or(u64::MAX), String::new()));
                digits.clear();
            }
            text.push(c);
        }
    }
    if !digits.is_empty() {
        out.push((digits.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((0, text));
    }
    out
}

/// The name a run goes by in tables and plots; a run that stopped early says so.
pub fn label(s: &Summary) -> String {
    let mut l = if s.label.is_empty() {
        s.experiment.name.clone()
    } else {
        format!("{} {}", s.experiment.name, s.label)
    };
    if let Some(b) = &s.backend {
        // Not namespaces on this machine: say where (`ssh`).
        l.push_str(&format!(" [{}]", b.kind));
    }
    if s.stopped.is_some() {
        l.push_str(" (stopped)");
    }
    l
}

/// The repetitions column: "3", or "1 of 3" for a run that stopped early.
fn reps_cell(s: &Summary) -> String {
    match &s.stopped {
        Some(st) => format!("{} of {}", s.reps.len(), st.planned_reps),
        None => s.reps.len().to_string(),
    }
}

fn cell(s: &Spread) -> String {
    match (s.median, s.p90, s.max) {
        (Some(m), Some(p), Some(x)) => format!("{m:.0} / {p:.0} / {x:.0} (n={})", s.n),
        _ => "-".into(),
    }
}

/// Formats a figure: one decimal below 100, none above.
fn num(v: f64, d: Option<usize>) -> String {
    match d {
        Some(d) => format!("{v:.d$}"),
        None if v.abs() < 100.0 => format!("{v:.1}"),
        None => format!("{v:.0}"),
    }
}

/// Returns how a table shows a list of values: every value, in order, when there are 5 or
/// fewer ("35.9, 124 (n=2)"), else the usual median, the 90th percentile (nearest rank) and
/// the largest ("2216 / 2220 / 2231 (n=20)"); "-" when empty. `d`: decimals (None: one
/// below 100, none above).
pub fn values_cell(v: &[f64], d: Option<usize>) -> String {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => "-".into(),
        1 => num(v[0], d),
        n if n <= 5 => {
            let all: Vec<String> = v.iter().map(|x| num(*x, d)).collect();
            format!("{} (n={n})", all.join(", "))
        }
        n => match crate::summary::median_p90_max(v) {
            Some((m, p, x)) => format!("{} / {} / {} (n={n})", num(m, d), num(p, d), num(x, d)),
            None => "-".into(),
        },
    }
}

/// The values of one recovery phase of the schedule's `i`-th fault over a run's
/// repetitions.
fn phase_values(
    s: &Summary,
    i: usize,
    g: &dyn Fn(&crate::summary::FaultRecovery) -> Option<f64>,
) -> Vec<f64> {
    fault_recoveries(s, i).filter_map(g).collect()
}

/// The names the runs go by in tables and plots: their labels, and where two runs share
/// one (several runs of one experiment), their start time and machine beside it.
pub fn run_names(runs: &[(PathBuf, Summary)]) -> Vec<String> {
    let labels: Vec<String> = runs.iter().map(|(_, s)| label(s)).collect();
    labels
        .iter()
        .zip(runs)
        .map(|(l, (_, s))| {
            if labels.iter().filter(|x| *x == l).count() > 1 {
                let host = s
                    .machine
                    .get("hostname")
                    .and_then(|h| h.as_str())
                    .unwrap_or("?");
                format!("{l} ({} on {host})", s.started)
            } else {
                l.clone()
            }
        })
        .collect()
}

/// The churn table's row of one window over the repetitions: from each repetition's window
/// in `w` when there are any (summaries hold them), else from the aggregate.
fn churn_row(t: &mut String, name: &str, window: &str, c: &ChurnAggregate, w: &[&Churn]) {
    let of = |g: &dyn Fn(&Churn) -> Option<f64>, d: Option<usize>, spread: &Spread| {
        if w.is_empty() {
            cell(spread)
        } else {
            values_cell(&w.iter().filter_map(|x| g(x)).collect::<Vec<_>>(), d)
        }
    };
    let _ = writeln!(
        t,
        "| {name} | {window} | {} | {} | {} | {} | {}/{} |",
        of(&|x| Some(x.changes as f64), Some(0), &c.changes),
        of(&|x| Some(x.changes_per_s), Some(2), &c.changes_per_s),
        of(&|x| x.last_change_ms, None, &c.last_change_ms),
        of(
            &|x| Some(x.changes_after_settle as f64),
            Some(0),
            &c.changes_after_settle
        ),
        c.settled,
        c.reps
    );
}

/// Renders the tables as Markdown (which reads well in a terminal too).
pub fn tables(runs: &[(PathBuf, Summary)]) -> String {
    let names = run_names(runs);
    let mut t = String::new();
    t.push_str(
        "Recovery, ms from the fault's timestamp: every value when there are 5 repetitions or \
         fewer, else median / p90 / max; n: repetitions with a value; never settled: \
         repetitions in which some running node did not settle\n\n",
    );
    t.push_str("| configuration | fault | detection | membership | sync | first delivery | over bound |\n|---|---|---|---|---|---|---|\n");
    for (k, (_, s)) in runs.iter().enumerate() {
        for f in &s.faults {
            let v = |g: &dyn Fn(&crate::summary::FaultRecovery) -> Option<f64>| {
                values_cell(&phase_values(s, f.index, g), None)
            };
            let seen = phase_values(s, f.index, &|_| Some(0.0)).len();
            let never = seen - phase_values(s, f.index, &|x| x.membership_ms).len();
            let never = if never > 0 {
                format!("; {never} never settled")
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "| {} | {} {} | {} | {}{never} | {} | {} | {}/{} |",
                names[k],
                f.index,
                crate::plot::fault_name(s, f.index),
                v(&|x| x.detection_ms),
                v(&|x| x.membership_ms),
                v(&|x| x.sync_ms),
                v(&|x| x.first_delivery_ms),
                f.out_of_bound,
                reps_cell(s)
            );
        }
    }
    t.push_str("\nThroughput and latency\n\n");
    t.push_str("| configuration | reps | start → full ring ms | msgs/s (median) | latency p50 / p99 / max ms | wrongly excluded | violations |\n|---|---|---|---|---|---|---|\n");
    for (k, (_, s)) in runs.iter().enumerate() {
        // From the records: with the message records off or sampled, these figures count
        // only what was recorded, so the throughput table's (from the counters) stands in.
        let (rate, lat) = match s.throughput.as_ref().map(|t| t.records.as_str()) {
            Some(r) if r != "all" => (
                format!("(records: {r}; see below)"),
                "(see below)".to_string(),
            ),
            _ => (
                format!("{:.0}", s.msgs_per_s.median.unwrap_or(0.0)),
                format!(
                    "{:.2} / {:.2} / {:.1}",
                    s.latency_ms.p50, s.latency_ms.p99, s.latency_ms.max
                ),
            ),
        };
        let _ = writeln!(
            t,
            "| {} | {} | {} | {rate} | {lat} | {} | {} |",
            names[k],
            reps_cell(s),
            values_cell(
                &s.reps
                    .iter()
                    .filter_map(|r| r.formation_ms)
                    .collect::<Vec<_>>(),
                None
            ),
            s.wrongly_excluded,
            s.violations
        );
    }
    if runs.iter().any(|(_, s)| s.formation_ms.p99.is_some()) {
        t.push_str("\nStart → full ring, ms from the last node's start: over repetitions (nearest rank)\n\n");
        t.push_str("| configuration | reps | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n");
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        for (k, (_, s)) in runs.iter().enumerate() {
            let m = &s.formation_ms;
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} |",
                names[k],
                m.n,
                f(m.median),
                f(m.p90),
                f(m.p99),
                f(m.max)
            );
        }
    }
    if runs
        .iter()
        .any(|(_, s)| s.churn.is_some() || s.faults.iter().any(|f| f.churn.is_some()))
    {
        t.push_str(
            "\nConfiguration changes (distinct regular configurations first installed in the \
             window) from each fault to the next, and after the last fault to the end: every value \
             when there are 5 repetitions or fewer, else median / p90 / max; settled: every running node installed within token + \
             consensus + 500 ms and nothing changed after\n\n",
        );
        t.push_str("| configuration | window | changes | changes/s | ms to the last change | changes after settling | settled |\n|---|---|---|---|---|---|---|\n");
        for (k, (_, s)) in runs.iter().enumerate() {
            for (j, f) in s.faults.iter().enumerate() {
                if let Some(c) = &f.churn {
                    let to = if j + 1 == s.faults.len() {
                        "end"
                    } else {
                        "next fault"
                    };
                    let w: Vec<&Churn> = fault_recoveries(s, f.index)
                        .filter_map(|x| x.churn.as_ref())
                        .collect();
                    let name =
                        format!("{} {} → {to}", f.index, crate::plot::fault_name(s, f.index));
                    churn_row(&mut t, &names[k], &name, c, &w);
                }
            }
            if let Some(c) = &s.churn {
                let w = if s.faults.is_empty() {
                    "full ring → end"
                } else {
                    "last fault → end"
                };
                let reps: Vec<&Churn> = s.reps.iter().filter_map(|r| r.churn.as_ref()).collect();
                churn_row(&mut t, &names[k], w, c, &reps);
            }
        }
    }
    if runs.iter().any(|(_, s)| !s.failover.is_empty()) {
        t.push_str("\nResource failover, ms from the fault's timestamp to each step on the new holder: median over repetitions (see bench/src/failover.rs)\n\n");
        t.push_str("| configuration | fault | group | moved | detection | membership | sync | placement | start | cmd | start − ring − cmd | double ownership |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let med = |s: &Spread| s.median.map_or("-".into(), |m| format!("{m:.1}"));
        for (k, (_, s)) in runs.iter().enumerate() {
            for f in &s.failover {
                let _ = writeln!(
                    t,
                    "| {} | {} {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    names[k],
                    f.index,
                    f.action,
                    f.group,
                    f.moved,
                    reps_cell(s),
                    med(&f.detection_ms),
                    med(&f.membership_ms),
                    med(&f.sync_ms),
                    med(&f.placement_ms),
                    med(&f.start_ms),
                    med(&f.cmd_ms),
                    med(&f.beyond_ring_ms),
                    med(&f.double_ms),
                );
            }
        }
    }
    if runs.iter().any(|(_, s)| s.store.is_some()) {
        t.push_str("\nStore copies to the node restarted with an empty store: median over repetitions (see bench/src/store.rs)\n\n");
        t.push_str("| configuration | finished | copy s | copy MB/s | raw MB/s | copy/raw | resume ms | resent bytes | peak RSS requester / providers MiB | held bytes requester / providers | digests differ |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        let med = |s: &Spread, f: &dyn Fn(f64) -> String| s.median.map_or("-".into(), f);
        for (k, (_, s)) in runs.iter().enumerate() {
            let Some(c) = &s.store else { continue };
            let _ = writeln!(
                t,
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} |",
                names[k],
                c.finished,
                reps_cell(s),
                med(&c.copy_s, &|v| format!("{v:.2}")),
                med(&c.copy_mb_per_s, &|v| format!("{v:.1}")),
                med(&c.raw_mb_per_s, &|v| format!("{v:.1}")),
                med(&c.copy_over_raw, &|v| format!("{:.0}%", v * 100.0)),
                med(&c.resume_ms, &|v| format!("{v:.0}")),
                med(&c.resent_bytes, &|v| format!("{v:.0}")),
                med(&c.rss_kib_max_requester, &|v| format!("{:.1}", v / 1024.0)),
                med(&c.rss_kib_max_providers, &|v| format!("{:.1}", v / 1024.0)),
                med(&c.held_bytes_max_requester, &|v| format!("{v:.0}")),
                med(&c.held_bytes_max_providers, &|v| format!("{v:.0}")),
                c.digests_unequal
            );
        }
    }
    if runs.iter().any(|(_, s)| s.usage.is_some()) {
        t.push_str("\nProcess usage per node: median / p90 / max over nodes and repetitions (a corosync node: its daemon and its CPG client together)\n\n");
        t.push_str("| configuration | CPU µs per delivered message | RSS idle MiB | RSS peak MiB |\n|---|---|---|---|\n");
        let mib = |s: &Spread| {
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}", v / 1024.0));
            format!("{} / {} / {}", f(s.median), f(s.p90), f(s.max))
        };
        for (k, (_, s)) in runs.iter().enumerate() {
            let Some(u) = &s.usage else { continue };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} |",
                names[k],
                cell(&u.cpu_us_per_msg),
                mib(&u.rss_idle_kib),
                mib(&u.rss_peak_kib)
            );
        }
    }
    if runs.iter().any(|(_, s)| s.peer.is_some()) {
        t.push_str("\nPeers measured\n\n");
        for (k, (_, s)) in runs.iter().enumerate() {
            let Some(p) = &s.peer else { continue };
            let _ = writeln!(
                t,
                "- {}: {} {}; log clock resolution {:.1} ms; checker findings about the peer: {}; knobs without an equivalent: {}",
                names[k],
                p.implementation,
                p.version,
                p.log_clock_res_ns as f64 / 1e6,
                s.peer_findings,
                if p.unmapped.is_empty() {
                    "none".to_string()
                } else {
                    p.unmapped
                        .iter()
                        .map(|u| format!("{} = {}", u.knob, u.value))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
    }
    t.push_str(&side_by_side(runs));
    let fam = family(runs);
    if !fam.is_empty() {
        t.push_str(
            "\nThroughput against raw UDP on the same bridge (per node, from the nodes' \
             counters; raw: one sender to every other namespace, measured before and after \
             each repetition; ring/raw per interleaved pair; CPU µs per delivered message, \
             per node, and per datagram of the raw sender)\n\n",
        );
        t.push_str(&crate::throughput::table(&fam));
    }
    let stopped: Vec<_> = runs
        .iter()
        .enumerate()
        .filter_map(|(k, (d, s))| s.stopped.as_ref().map(|st| (k, d, s, st)))
        .collect();
    if !stopped.is_empty() {
        t.push_str("\nStopped early (compared over the repetitions they completed)\n\n");
        for (k, d, _, st) in stopped {
            let _ = writeln!(t, "- {}: {} (`{}`)", names[k], st.describe(), d.display());
        }
    }
    t.push_str(&crate::hosts::clock_table(runs));
    t
}

/// The throughput-against-raw row of each run that has one.
fn family(runs: &[(PathBuf, Summary)]) -> Vec<crate::throughput::FamilyRow> {
    runs.iter()
        .filter_map(|(_, s)| crate::throughput::family_row(s))
        .collect()
}

/// Pairs the runs that differ only by `implementation` (their labels equal once the
/// `implementation=...` part is taken out) and gives corosync's figure over ringlab's for
/// each measure: below 1, corosync is faster or smaller.
fn side_by_side(runs: &[(PathBuf, Summary)]) -> String {
    use ringlab_net::harness::Implementation;
    let key = |s: &Summary| {
        s.label
            .split(',')
            .filter(|p| !p.starts_with("implementation="))
            .collect::<Vec<_>>()
            .join(",")
            + "|"
            + &s.experiment.name
    };
    let mut t = String::new();
    let pairs: Vec<(&Summary, &Summary)> = runs
        .iter()
        .filter(|(_, s)| s.experiment.implementation == Implementation::Ringlab)
        .filter_map(|(_, a)| {
            runs.iter()
                .find(|(_, b)| {
                    b.experiment.implementation == Implementation::Corosync && key(b) == key(a)
                })
                .map(|(_, b)| (a, b))
        })
        .collect();
    if pairs.is_empty() {
        return t;
    }
    t.push_str(
        "\nringlab and corosync side by side: medians over repetitions, and corosync / ringlab\n\n",
    );
    t.push_str("| experiment | measure | ringlab | corosync | corosync / ringlab |\n|---|---|---|---|---|\n");
    for (a, b) in pairs {
        let mut rows: Vec<(String, Option<f64>, Option<f64>)> = vec![(
            "start → full ring ms".into(),
            a.formation_ms.median,
            b.formation_ms.median,
        )];
        for fa in &a.faults {
            if let Some(fb) = b.faults.iter().find(|f| f.index == fa.index) {
                rows.push((
                    format!("{} {}: membership ms", fa.index, fa.action),
                    fa.membership_ms.median,
                    fb.membership_ms.median,
                ));
                rows.push((
                    format!("{} {}: first delivery ms", fa.index, fa.action),
                    fa.first_delivery_ms.median,
                    fb.first_delivery_ms.median,
                ));
            }
        }
        rows.push((
            "msgs/s per node".into(),
            a.msgs_per_s.median,
            b.msgs_per_s.median,
        ));
        rows.push((
            "latency p50 ms".into(),
            Some(a.latency_ms.p50),
            Some(b.latency_ms.p50),
        ));
        rows.push((
            "latency p99 ms".into(),
            Some(a.latency_ms.p99),
            Some(b.latency_ms.p99),
        ));
        if let (Some(ua), Some(ub)) = (&a.usage, &b.usage) {
            rows.push((
                "CPU µs per delivered message".into(),
                ua.cpu_us_per_msg.median,
                ub.cpu_us_per_msg.median,
            ));
            rows.push((
                "RSS idle MiB".into(),
                ua.rss_idle_kib.median.map(|v| v / 1024.0),
                ub.rss_idle_kib.median.map(|v| v / 1024.0),
            ));
            rows.push((
                "RSS peak MiB".into(),
                ua.rss_peak_kib.median.map(|v| v / 1024.0),
                ub.rss_peak_kib.median.map(|v| v / 1024.0),
            ));
        }
        rows.push((
            "wrongly excluded".into(),
            Some(a.wrongly_excluded as f64),
            Some(b.wrongly_excluded as f64),
        ));
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        for (m, x, y) in rows {
            let ratio = match (x, y) {
                (Some(x), Some(y)) if x > 0.0 => format!("{:.2}", y / x),
                _ => "-".into(),
            };
            let _ = writeln!(
                t,
                "| {} | {m} | {} | {} | {ratio} |",
                a.experiment.name,
                f(x),
                f(y)
            );
        }
    }
    t
}

/// Writes the recovery box plots of every phase (see [`crate::plot::recovery_svg`]).
/// Returns false, and writes nothing, when no run has a recovery time (every run stopped
/// before its first repetition completed, or no fault settled).
pub fn recovery_plot(runs: &[(PathBuf, Summary)], path: &Path) -> Result<bool> {
    match crate::plot::recovery_svg(runs, &run_names(runs)) {
        Some(svg) => {
            std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Writes the throughput timelines of the first repetition, one panel per configuration,
/// faults named and their intervals shaded (see [`crate::plot::throughput_svg`]).
pub fn throughput_plot(runs: &[(PathBuf, Summary)], path: &Path) -> Result<()> {
    std::fs::write(path, crate::plot::throughput_svg(runs, &run_names(runs)))
        .with_context(|| format!("writing {}", path.display()))
}

/// Prints the tables; with `out`, writes compare.md, recovery.svg and throughput.svg there.
pub fn compare(dirs: &[PathBuf], out: Option<&Path>) -> Result<String> {
    let Loaded { runs, skipped } = load(dirs)?;
    let mut t = tables(&runs);
    let family = family(&runs);
    if !skipped.is_empty() {
        t.push_str("\nSkipped (no summary.json: killed before it could write one)\n\n");
        for d in &skipped {
            let _ = writeln!(t, "- `{}`", d.display());
        }
    }
    if let Some(out) = out {
        std::fs::create_dir_all(out)?;
        let mut md = String::from("# Comparison\n\nRuns:\n\n");
        for ((d, s), name) in runs.iter().zip(run_names(&runs)) {
            let _ = writeln!(
                md,
                "- {name}: `{}` (`{}`; {}; {})",
                d.display(),
                s.command,
                s.started,
                crate::report::machine(&s.machine)
            );
        }
        md.push('\n');
        md.push_str(&t);
        if recovery_plot(&runs, &out.join("recovery.svg"))? {
            md.push_str("\n![recovery](recovery.svg)\n");
        } else {
            md.push_str("\n(no recovery times to plot)\n");
        }
        if let Some(svg) = crate::plot::sweep_svg(&runs) {
            std::fs::write(out.join("sweep.svg"), svg)?;
            md.push_str("\n![membership against the swept knob](sweep.svg)\n");
        }
        md.push_str("\n![throughput](throughput.svg)\n");
        if family.iter().any(|r| r.ring_over_raw.is_some()) {
            crate::throughput::plot(&family, &out.join("ring-over-raw.svg"))?;
            md.push_str("\n![ring over raw](ring-over-raw.svg)\n");
            std::fs::write(
                out.join("throughput-family.json"),
                serde_json::to_string_pretty(&family)?,
            )?;
        }
        std::fs::write(out.join("compare.md"), md)?;
        throughput_plot(&runs, &out.join("throughput.svg"))?;
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;
    use crate::summary::{summarise, FaultRecovery, RepSummary, StopCause, Stopped};

    fn run(label: &str, membership: &[f64]) -> Summary {
        let exp: Experiment = toml::from_str(
            "name = 'iso'\nnodes = 3\nduration_ms = 5000\n[[faults]]\nat_ms = 1000\naction = 'isolate'\nnodes = [3]\n",
        )
        .unwrap();
        let reps = membership
            .iter()
            .enumerate()
            .map(|(i, &m)| RepSummary {
                rep: i as u32 + 1,
                formation_ms: Some(5.0),
                faults: vec![FaultRecovery {
                    index: 0,
                    action: "isolate".into(),
                    membership_ms: Some(m),
                    detection_ms: Some(m - 1200.0),
                    within_bound: true,
                    ..Default::default()
                }],
                msgs_per_s: 1000.0,
                timeline: vec![(0.0, 1000.0), (100.0, 0.0), (200.0, 900.0)],
                ..Default::default()
            })
            .collect();
        summarise(
            &exp,
            label.into(),
            "test".into(),
            serde_json::Value::Null,
            "now".into(),
            reps,
        )
    }

    #[test]
    fn a_stopped_run_is_compared_over_what_it_completed_and_marked() {
        let dir = std::env::temp_dir().join(format!("ringlab-compare-stop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let write = |name: &str, s: &Summary| {
            let d = dir.join(name);
            std::fs::create_dir_all(d.join("records")).unwrap();
            std::fs::write(
                d.join("summary.json"),
                serde_json::to_string_pretty(s).unwrap(),
            )
            .unwrap();
        };
        let mut one = run("", &[1700.0]);
        one.stopped = Some(Stopped {
            cause: StopCause::Signal,
            reason: "interrupted by a signal".into(),
            completed_reps: 1,
            planned_reps: 3,
            abandoned_rep: Some(2),
        });
        let mut none = run("", &[]);
        none.stopped = Some(Stopped {
            cause: StopCause::Error,
            reason: "topo.sh up failed".into(),
            completed_reps: 0,
            planned_reps: 3,
            abandoned_rep: Some(1),
        });
        write("20250101T000000Z", &one);
        // A run killed before it wrote a summary (an older version wrote it at the end).
        std::fs::create_dir_all(dir.join("20250101T000001Z/records/rep-1")).unwrap();
        let t = compare(std::slice::from_ref(&dir), None).unwrap();
        assert!(
            t.contains("| iso (stopped) | 0 isolate 3 | 500 | 1700 | - | - | 0/1 of 3 |"),
            "{t}"
        );
        assert!(
            t.contains("- iso (stopped): stopped after 1 of 3 repetitions (signal: interrupted by a signal); rep 2 abandoned"),
            "{t}"
        );
        assert!(
            t.contains("Skipped (no summary.json") && t.contains("20250101T000001Z"),
            "{t}"
        );
        // Only runs that completed nothing: the tables and plots are still written.
        std::fs::remove_dir_all(&dir).unwrap();
        write("a", &none);
        let out = dir.join("out");
        let t = compare(&[dir.join("a")], Some(&out)).unwrap();
        assert!(t.contains("| iso (stopped) | 0 of 3 |"), "{t}");
        let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
        assert!(md.contains("(no recovery times to plot)"), "{md}");
        assert!(out.join("throughput.svg").is_file());
        // A run directory given by name without summary.json says why.
        std::fs::create_dir_all(dir.join("killed/records")).unwrap();
        let e = compare(&[dir.join("killed")], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("killed before it could write one"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tables_show_churn_and_the_start_percentiles() {
        use crate::summary::Churn;
        let mut s = run("", &[1700.0, 1710.0]);
        let c = |changes: u64, settled: bool| Churn {
            window_ms: 4000.0,
            changes,
            installs: 5 * changes,
            changes_per_s: changes as f64 / 4.0,
            last_change_ms: Some(100.0 * changes as f64),
            settle_ms: 2700.0,
            changes_after_settle: changes.saturating_sub(1),
            settled,
        };
        for (r, (n, ok)) in s.reps.iter_mut().zip([(1, true), (3, false)]) {
            r.faults[0].churn = Some(c(n, ok));
            r.churn = Some(c(n, ok));
        }
        let s = summarise(
            &s.experiment.clone(),
            "".into(),
            "test".into(),
            serde_json::Value::Null,
            "now".into(),
            s.reps,
        );
        assert_eq!(s.formation_ms.p99, Some(5.0));
        let t = tables(&[("a".into(), s)]);
        assert!(t.contains("| iso | 2 | 5.0 | 5.0 | 5.0 | 5.0 |"), "{t}");
        assert!(
            t.contains("| iso | 0 isolate 3 → end | 1, 3 (n=2) | 0.25, 0.75 (n=2) | 100, 300 (n=2) | 0, 2 (n=2) | 1/2 |"),
            "{t}"
        );
        assert!(t.contains("| iso | last fault → end | 1, 3 (n=2) |"), "{t}");
    }

    #[test]
    fn a_few_values_are_all_shown_and_many_by_the_usual_median() {
        // Two repetitions of 124.4 and 35.9 ms used to read "124 / 124 / 124".
        assert_eq!(values_cell(&[124.4, 35.9], None), "35.9, 124 (n=2)");
        assert_eq!(values_cell(&[], None), "-");
        assert_eq!(values_cell(&[7.0], None), "7.0");
        assert_eq!(
            values_cell(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], Some(0)),
            "4 / 6 / 6 (n=6)"
        );
        assert_eq!(
            values_cell(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], None),
            "3.5 / 6.0 / 6.0 (n=6)"
        );
    }

    #[test]
    fn runs_of_one_experiment_are_told_apart_by_start_and_machine() {
        let mut a = run("", &[1700.0]);
        a.started = "2026-11-21T09:24:47Z".into();
        a.machine = serde_json::json!({"hostname": "vm"});
        let mut b = run("", &[1710.0]);
        b.started = "2026-12-02T09:16:19Z".into();
        b.machine = serde_json::json!({"hostname": "box"});
        let c = run("token=500", &[1700.0]);
        let names = run_names(&[("a".into(), a), ("b".into(), b), ("c".into(), c)]);
        assert_eq!(
            names,
            [
                "iso (2026-11-21T09:24:47Z on vm)",
                "iso (2026-12-02T09:16:19Z on box)",
                "iso token=500"
            ]
        );
    }

    #[test]
    fn the_recovery_plot_names_faults_marks_the_unsettled_and_draws_the_bound() {
        let mut s = run("token=500", &[1700.0, 1710.0]);
        s.reps[1].faults[0].membership_ms = None;
        s.bound_ms = 5620.0;
        let t = run("token=1000", &[2200.0]);
        let runs = vec![("a".into(), s), ("b".into(), t)];
        let svg = crate::plot::recovery_svg(&runs, &run_names(&runs)).unwrap();
        for want in [
            "0 isolate 3",
            "✕ 1 never",
            "bound 5620",
            "iso token=500",
            "detection: first node out of OPERATIONAL",
            "first delivery on the settled ring",
            crate::plot::colour(1),
        ] {
            assert!(svg.contains(want), "{want} missing");
        }
        // A sweep of one numeric knob is also drawn against the knob's value.
        let sweep = crate::plot::sweep_svg(&runs).unwrap();
        assert!(sweep.contains("against token") && sweep.contains(">isolate 3<"));
        let one = vec![("a".into(), run("", &[1.0])), ("b".into(), run("", &[2.0]))];
        assert!(crate::plot::sweep_svg(&one).is_none());
    }

    #[test]
    fn sweep_values_sort_as_numbers() {
        let mut v = vec!["t/token=3000", "t/token=200", "t/token=1000", "t/token=500"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(
            v,
            ["t/token=200", "t/token=500", "t/token=1000", "t/token=3000"]
        );
    }

    #[test]
    fn tables_and_plots_show_each_configuration() {
        let runs = vec![
            ("a".into(), run("token=500", &[1700.0, 1710.0, 1800.0])),
            ("b".into(), run("token=1000", &[2200.0, 2210.0, 2300.0])),
        ];
        let t = tables(&runs);
        assert!(
            t.contains(
                "| iso token=500 | 0 isolate 3 | 500, 510, 600 (n=3) | 1700, 1710, 1800 (n=3) |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| iso token=1000 | 0 isolate 3 | 1000, 1010, 1100 (n=3) | 2200, 2210, 2300 (n=3) |"),
            "{t}"
        );
        let dir = std::env::temp_dir().join(format!("ringlab-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(recovery_plot(&runs, &dir.join("r.svg")).unwrap());
        throughput_plot(&runs, &dir.join("t.svg")).unwrap();
        for f in ["r.svg", "t.svg"] {
            let svg = std::fs::read_to_string(dir.join(f)).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("iso token=500"),
                "{f}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
