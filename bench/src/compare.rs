//! `ringlab compare DIR...`: side-by-side tables (terminal and Markdown) of every recovery
//! phase and of throughput, and SVG plots: recovery-time box plots per configuration and a
//! throughput timeline with the faults marked.
//!
//! A run that stopped early (summary.json's `stopped`) is compared over the repetitions it
//! completed and marked as stopped, with how many of how many and why; a run directory
//! without summary.json (killed before it could write one, by a version that wrote it only
//! at the end) is listed as skipped.

use crate::summary::{scheduled_fault, ChurnAggregate, Spread, Summary};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
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
        (Some(m), Some(p), Some(x)) => format!("{m:.0} / {p:.0} / {x:.0}"),
        _ => "-".into(),
    }
}

/// median / p90 / max with `d` decimals.
fn cell_d(s: &Spread, d: usize) -> String {
    match (s.median, s.p90, s.max) {
        (Some(m), Some(p), Some(x)) => format!("{m:.d$} / {p:.d$} / {x:.d$}"),
        _ => "-".into(),
    }
}

/// The churn table's row of one window over the repetitions.
fn churn_row(t: &mut String, s: &Summary, window: &str, c: &ChurnAggregate) {
    let _ = writeln!(
        t,
        "| {} | {window} | {} | {} | {} | {} | {}/{} |",
        label(s),
        cell(&c.changes),
        cell_d(&c.changes_per_s, 2),
        cell(&c.last_change_ms),
        cell(&c.changes_after_settle),
        c.settled,
        c.reps
    );
}

/// Renders the tables as Markdown (which reads well in a terminal too).
pub fn tables(runs: &[(PathBuf, Summary)]) -> String {
    let mut t = String::new();
    t.push_str("Recovery, ms from the fault's timestamp: median / p90 / max over repetitions\n\n");
    t.push_str("| configuration | fault | detection | membership | sync | first delivery | over bound |\n|---|---|---|---|---|---|---|\n");
    for (_, s) in runs {
        for f in &s.faults {
            let _ = writeln!(
                t,
                "| {} | {} {} | {} | {} | {} | {} | {}/{} |",
                label(s),
                f.index,
                f.action,
                cell(&f.detection_ms),
                cell(&f.membership_ms),
                cell(&f.sync_ms),
                cell(&f.first_delivery_ms),
                f.out_of_bound,
                reps_cell(s)
            );
        }
    }
    t.push_str("\nThroughput and latency\n\n");
    t.push_str("| configuration | reps | start → full ring ms | msgs/s (median) | latency p50 / p99 / max ms | wrongly excluded | violations |\n|---|---|---|---|---|---|---|\n");
    for (_, s) in runs {
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
            label(s),
            reps_cell(s),
            cell(&s.formation_ms),
            s.wrongly_excluded,
            s.violations
        );
    }
    if runs.iter().any(|(_, s)| s.formation_ms.p99.is_some()) {
        t.push_str("\nStart → full ring, ms from the last node's start: over repetitions (nearest rank)\n\n");
        t.push_str("| configuration | reps | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n");
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        for (_, s) in runs {
            let m = &s.formation_ms;
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} |",
                label(s),
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
             window) from each fault to the next, and after the last fault to the end: median / \
             p90 / max over repetitions; settled: every running node installed within token + \
             consensus + 500 ms and nothing changed after\n\n",
        );
        t.push_str("| configuration | window | changes | changes/s | ms to the last change | changes after settling | settled |\n|---|---|---|---|---|---|---|\n");
        for (_, s) in runs {
            for (k, f) in s.faults.iter().enumerate() {
                if let Some(c) = &f.churn {
                    let to = if k + 1 == s.faults.len() {
                        "end"
                    } else {
                        "next fault"
                    };
                    churn_row(&mut t, s, &format!("{} {} → {to}", f.index, f.action), c);
                }
            }
            if let Some(c) = &s.churn {
                let w = if s.faults.is_empty() {
                    "full ring → end"
                } else {
                    "last fault → end"
                };
                churn_row(&mut t, s, w, c);
            }
        }
    }
    if runs.iter().any(|(_, s)| !s.failover.is_empty()) {
        t.push_str("\nResource failover, ms from the fault's timestamp to each step on the new holder: median over repetitions (see bench/src/failover.rs)\n\n");
        t.push_str("| configuration | fault | group | moved | detection | membership | sync | placement | start | cmd | start − ring − cmd | double ownership |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        let med = |s: &Spread| s.median.map_or("-".into(), |m| format!("{m:.1}"));
        for (_, s) in runs {
            for f in &s.failover {
                let _ = writeln!(
                    t,
                    "| {} | {} {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    label(s),
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
        for (_, s) in runs {
            let Some(c) = &s.store else { continue };
            let _ = writeln!(
                t,
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} |",
                label(s),
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
        for (_, s) in runs {
            let Some(u) = &s.usage else { continue };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} |",
                label(s),
                cell(&u.cpu_us_per_msg),
                mib(&u.rss_idle_kib),
                mib(&u.rss_peak_kib)
            );
        }
    }
    if runs.iter().any(|(_, s)| s.peer.is_some()) {
        t.push_str("\nPeers measured\n\n");
        for (_, s) in runs {
            let Some(p) = &s.peer else { continue };
            let _ = writeln!(
                t,
                "- {}: {} {}; log clock resolution {:.1} ms; checker findings about the peer: {}; knobs without an equivalent: {}",
                label(s),
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
        .filter_map(|(d, s)| s.stopped.as_ref().map(|st| (d, s, st)))
        .collect();
    if !stopped.is_empty() {
        t.push_str("\nStopped early (compared over the repetitions they completed)\n\n");
        for (d, s, st) in stopped {
            let _ = writeln!(t, "- {}: {} (`{}`)", label(s), st.describe(), d.display());
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

fn quartiles(mut v: Vec<f64>) -> Option<[f64; 5]> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        let x = (v.len() - 1) as f64 * p;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
    };
    Some([v[0], q(0.25), q(0.5), q(0.75), v[v.len() - 1]])
}

/// Box plots of the membership phase of every fault, one box per configuration and fault.
/// Returns false, and writes nothing, when no run has a recovery time (every run stopped
/// before its first repetition completed, or no fault settled).
pub fn recovery_plot(runs: &[(PathBuf, Summary)], path: &Path) -> Result<bool> {
    let mut boxes: Vec<(String, [f64; 5], bool)> = Vec::new();
    for (_, s) in runs {
        for i in 0..s.faults.len() {
            let v: Vec<f64> = s
                .reps
                .iter()
                .filter_map(|r| scheduled_fault(&s.experiment, r, i))
                .filter_map(|f| f.membership_ms)
                .collect();
            let heal = s.faults[i].action == "heal";
            if let Some(q) = quartiles(v) {
                boxes.push((
                    format!("{} #{} {}", label(s), i, s.faults[i].action),
                    q,
                    heal,
                ));
            }
        }
    }
    if boxes.is_empty() {
        return Ok(false);
    }
    // Recoveries span 5 ms (a merge) to seconds (a token loss): a log scale shows both.
    let ymax = boxes.iter().map(|b| b.1[4]).fold(1.0, f64::max) * 1.5;
    let ymin = boxes
        .iter()
        .map(|b| b.1[0])
        .fold(f64::INFINITY, f64::min)
        .clamp(0.5, 1.0);
    let n = boxes.len();
    let key_rows = n as u32;
    let root =
        SVGBackend::new(path, (200 + 70 * n as u32, 520 + 16 * key_rows)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, key) = root.split_vertically(500);
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            "Recovery: fault → every running node on its settled ring (ms, log scale)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                format!("{}", i as usize + 1)
            } else {
                String::new()
            }
        })
        .y_desc("ms")
        .disable_x_mesh()
        .draw()?;
    for (i, (name, _, heal)) in boxes.iter().enumerate() {
        let color = if *heal { BLUE } else { RED };
        key.draw(&Text::new(
            format!("{}: {name}", i + 1),
            (80, 16 * i as i32 + 2),
            ("sans-serif", 13).into_font().color(&color),
        ))?;
    }
    for (i, (_, q, heal)) in boxes.iter().enumerate() {
        let x = i as f64;
        let color = if *heal { BLUE } else { RED };
        let (lo, hi) = (q[1].max(ymin), q[3].max(ymin));
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - 0.3, lo), (x + 0.3, hi)],
            color.mix(0.25).filled(),
        )))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - 0.3, lo), (x + 0.3, hi)],
            color.stroke_width(1),
        )))?;
        for (a, b) in [
            ((x - 0.3, q[2].max(ymin)), (x + 0.3, q[2].max(ymin))),
            ((x, q[0].max(ymin)), (x, q[1].max(ymin))),
            ((x, q[3]), (x, q[4])),
            ((x - 0.15, q[0].max(ymin)), (x + 0.15, q[0].max(ymin))),
            ((x - 0.15, q[4]), (x + 0.15, q[4])),
        ] {
            chart.draw_series(LineSeries::new([a, b], color.stroke_width(2)))?;
        }
    }
    root.present()?;
    Ok(true)
}

/// Throughput over time (first repetition of each configuration), faults marked.
pub fn throughput_plot(runs: &[(PathBuf, Summary)], path: &Path) -> Result<()> {
    type Series<'a> = (String, &'a Vec<(f64, f64)>, Vec<(u64, String)>);
    let series: Vec<Series> = runs
        .iter()
        .filter_map(|(_, s)| {
            s.reps.first().map(|r| {
                (
                    label(s),
                    &r.timeline,
                    s.experiment
                        .faults
                        .iter()
                        .filter_map(|f| Some((f.at_ms()?, f.action.name().to_string())))
                        .collect(),
                )
            })
        })
        .collect();
    let xmax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (1000, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput (distinct messages delivered per s, 100 ms windows; rep 1)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("ms since the first full ring")
        .y_desc("msgs/s")
        .draw()?;
    // One line per fault time; the actions at that time stacked under it.
    let mut marked: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for (_, _, faults) in &series {
        for (at, action) in faults {
            let names = marked.entry(*at).or_default();
            if !names.contains(action) {
                names.push(action.clone());
            }
        }
    }
    for (at, names) in &marked {
        let x = *at as f64;
        chart.draw_series(LineSeries::new(
            [(x, 0.0), (x, ymax)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
        for (k, name) in names.iter().enumerate() {
            chart.draw_series(std::iter::once(Text::new(
                name.clone(),
                (x, ymax * (0.97 - 0.04 * k as f64)),
                ("sans-serif", 12),
            )))?;
        }
    }
    for (i, (name, tl, _)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(tl.iter().copied(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
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
        for (d, s) in &runs {
            let _ = writeln!(md, "- {}: `{}` ({})", label(s), d.display(), s.command);
        }
        md.push('\n');
        md.push_str(&t);
        if recovery_plot(&runs, &out.join("recovery.svg"))? {
            md.push_str("\n![recovery](recovery.svg)\n");
        } else {
            md.push_str("\n(no recovery times to plot)\n");
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
            t.contains("| iso (stopped) | 0 isolate | 500 / 500 / 500 | 1700 / 1700 / 1700 | - | - | 0/1 of 3 |"),
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
            t.contains("| iso | 0 isolate → end | 3 / 3 / 3 | 0.75 / 0.75 / 0.75 | 300 / 300 / 300 | 2 / 2 / 2 | 1/2 |"),
            "{t}"
        );
        assert!(t.contains("| iso | last fault → end | 3 / 3 / 3 |"), "{t}");
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
            t.contains("| iso token=500 | 0 isolate | 510 / 600 / 600 | 1710 / 1800 / 1800 |"),
            "{t}"
        );
        assert!(
            t.contains("| iso token=1000 | 0 isolate | 1010 / 1100 / 1100 | 2210 / 2300 / 2300 |"),
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
