//! `ringlab compare DIR...`: side-by-side tables (terminal and Markdown) of every recovery
//! phase and of throughput, and SVG plots: recovery-time box plots per configuration and a
//! throughput timeline with the faults marked.

use crate::runner::{Spread, Summary};
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Finds the summaries under `dirs`: a directory with summary.json is one run; otherwise each
/// subdirectory with one is (a sweep, or results/<name>/ with one run per timestamp).
pub fn load(dirs: &[PathBuf]) -> Result<Vec<(PathBuf, Summary)>> {
    let mut out = Vec::new();
    for d in dirs {
        let mut found: Vec<PathBuf> = Vec::new();
        if d.join("summary.json").is_file() {
            found.push(d.join("summary.json"));
        } else {
            let mut subs: Vec<PathBuf> = std::fs::read_dir(d)
                .with_context(|| format!("reading {}", d.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join("summary.json").is_file())
                .map(|p| p.join("summary.json"))
                .collect();
            subs.sort();
            found.extend(subs);
        }
        if found.is_empty() {
            bail!("no summary.json in or under {}", d.display());
        }
        for f in found {
            let s: Summary = serde_json::from_str(
                &std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
            )
            .with_context(|| format!("parsing {}", f.display()))?;
            out.push((f.parent().expect("a dir").to_path_buf(), s));
        }
    }
    Ok(out)
}

/// The name a run goes by in tables and plots.
pub fn label(s: &Summary) -> String {
    if s.label.is_empty() {
        s.experiment.name.clone()
    } else {
        format!("{} {}", s.experiment.name, s.label)
    }
}

fn cell(s: &Spread) -> String {
    match (s.median, s.p90, s.max) {
        (Some(m), Some(p), Some(x)) => format!("{m:.0} / {p:.0} / {x:.0}"),
        _ => "-".into(),
    }
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
                s.reps.len()
            );
        }
    }
    t.push_str("\nThroughput and latency\n\n");
    t.push_str("| configuration | reps | start → full ring ms | msgs/s (median) | latency p50 / p99 / max ms | wrongly excluded | violations |\n|---|---|---|---|---|---|---|\n");
    for (_, s) in runs {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.0} | {:.2} / {:.2} / {:.1} | {} | {} |",
            label(s),
            s.reps.len(),
            cell(&s.formation_ms),
            s.msgs_per_s.median.unwrap_or(0.0),
            s.latency_ms.p50,
            s.latency_ms.p99,
            s.latency_ms.max,
            s.wrongly_excluded,
            s.violations
        );
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
pub fn recovery_plot(runs: &[(PathBuf, Summary)], path: &Path) -> Result<()> {
    let mut boxes: Vec<(String, [f64; 5], bool)> = Vec::new();
    for (_, s) in runs {
        for i in 0..s.faults.len() {
            let off = usize::from(s.experiment.loss_pct > 0);
            let v: Vec<f64> = s
                .reps
                .iter()
                .filter_map(|r| r.faults.iter().find(|f| f.index == i + off))
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
        bail!("no recovery times to plot");
    }
    let ymax = boxes.iter().map(|b| b.1[4]).fold(1.0, f64::max) * 1.1;
    let n = boxes.len();
    let root = SVGBackend::new(path, (160 + 90 * n as u32, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Recovery: fault → every running node on its settled ring (ms)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(170)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)?;
    let labels: Vec<String> = boxes.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_label_style(
            ("sans-serif", 11)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_desc("ms")
        .disable_x_mesh()
        .draw()?;
    for (i, (_, q, heal)) in boxes.iter().enumerate() {
        let x = i as f64;
        let color = if *heal { BLUE } else { RED };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - 0.3, q[1]), (x + 0.3, q[3])],
            color.mix(0.25).filled(),
        )))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x - 0.3, q[1]), (x + 0.3, q[3])],
            color.stroke_width(1),
        )))?;
        for (a, b) in [
            ((x - 0.3, q[2]), (x + 0.3, q[2])),
            ((x, q[0]), (x, q[1])),
            ((x, q[3]), (x, q[4])),
            ((x - 0.15, q[0]), (x + 0.15, q[0])),
            ((x - 0.15, q[4]), (x + 0.15, q[4])),
        ] {
            chart.draw_series(LineSeries::new([a, b], color.stroke_width(2)))?;
        }
    }
    root.present()?;
    Ok(())
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
                        .map(|f| (f.at_ms, f.action.clone()))
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
    let mut marked = std::collections::BTreeSet::new();
    for (_, _, faults) in &series {
        for (at, action) in faults {
            if marked.insert((*at, action.clone())) {
                let x = *at as f64;
                chart.draw_series(LineSeries::new(
                    [(x, 0.0), (x, ymax)],
                    BLACK.mix(0.4).stroke_width(1),
                ))?;
                chart.draw_series(std::iter::once(Text::new(
                    action.clone(),
                    (x, ymax * 0.97),
                    ("sans-serif", 12),
                )))?;
            }
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
    let runs = load(dirs)?;
    let t = tables(&runs);
    if let Some(out) = out {
        std::fs::create_dir_all(out)?;
        let mut md = String::from("# Comparison\n\nRuns:\n\n");
        for (d, s) in &runs {
            let _ = writeln!(md, "- {}: `{}` ({})", label(s), d.display(), s.command);
        }
        md.push('\n');
        md.push_str(&t);
        md.push_str("\n![recovery](recovery.svg)\n\n![throughput](throughput.svg)\n");
        std::fs::write(out.join("compare.md"), md)?;
        recovery_plot(&runs, &out.join("recovery.svg"))?;
        throughput_plot(&runs, &out.join("throughput.svg"))?;
    }
    Ok(t)
}
