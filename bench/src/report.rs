//! `ringlab report DIR... --out DIR`: one self-contained HTML page (inline CSS and SVG, no
//! script, nothing fetched from the network) of one or more runs: the experiments and the
//! machine, the recovery phases per fault and configuration, a timeline per repetition,
//! recovery box plots, and the checker's verdict with its first violations and the commands
//! that replay them.
//!
//! It reads what a run directory holds: summary.json always; `latency-rep-N.hlog` for the
//! latency over time and `records/rep-N/` for each node's configuration installs when they
//! are there (records are not committed, so a committed result has no membership lanes).
//! A part that cannot be drawn says so in the page. Each configuration keeps one colour in
//! every table and plot ([`crate::plot::colour`]).

use crate::compare::{load, run_names, values_cell, Loaded};
use crate::plot::{colour, esc, fault_name, Installs, LatencySeries};
use crate::summary::{fault_recoveries, Summary};
use anyhow::{Context, Result};
use ringlab_records::Body;
use ringlab_ring::event::ConfigKind;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The section headings of the page, in order (the browser test looks for them).
pub const SECTIONS: [&str; 6] = [
    "Experiments and machine",
    "Recovery phases",
    "Recovery box plots",
    "Timelines",
    "Checker verdict",
    "All tables",
];

/// Repetitions drawn per configuration (a long sweep's page stays readable); the rest are
/// listed as left out.
const MAX_TIMELINES: usize = 10;

/// Reads the runs under `dirs` (as `ringlab compare` finds them) and writes `out/report.html`;
/// returns its path.
pub fn write(dirs: &[PathBuf], out: &Path) -> Result<PathBuf> {
    let loaded = load(dirs)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join("report.html");
    std::fs::write(&path, render(&loaded))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes report.html into a run's (or a sweep's) directory, next to summary.json, as
/// `ringlab run` and `ringlab sweep` do at the end; a failure is printed, not returned, since
/// the run's results are already written.
pub fn write_beside(dir: &Path) {
    if let Err(e) = write(&[dir.to_path_buf()], dir) {
        eprintln!(
            "ringlab: could not write report.html in {}: {e:#}",
            dir.display()
        );
    }
}

/// Returns the page of the runs loaded.
pub fn render(loaded: &Loaded) -> String {
    let runs = &loaded.runs;
    let names = run_names(runs);
    let mut h = String::new();
    let title = if runs.len() == 1 {
        format!("ringlab report: {}", names[0])
    } else {
        format!("ringlab report: {} runs", runs.len())
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>{CSS}</style></head><body>\n<h1>{}</h1>\n<nav>",
        esc(&title),
        esc(&title)
    );
    for (i, s) in SECTIONS.iter().enumerate() {
        let _ = write!(h, "<a href=\"#s{i}\">{s}</a> ");
    }
    h.push_str("</nav>\n");
    experiments(&mut h, loaded, &names);
    recovery_table(&mut h, runs, &names);
    let _ = writeln!(h, "<h2 id=\"s2\">{}</h2>", SECTIONS[2]);
    match crate::plot::recovery_svg(runs, &names) {
        Some(svg) => h.push_str(&svg),
        None => h.push_str("<p class=\"na\">No recovery times to plot: no repetition completed, or no fault settled.</p>\n"),
    }
    if let Some(svg) = crate::plot::sweep_svg(runs) {
        h.push_str(&svg);
    }
    timelines(&mut h, runs, &names);
    verdict(&mut h, runs, &names);
    let _ = writeln!(
        h,
        "<h2 id=\"s5\">{}</h2>\n<p>As <code>ringlab compare</code> prints them.</p>\n<pre>{}</pre>",
        SECTIONS[5],
        esc(&crate::compare::tables(runs))
    );
    h.push_str("</body></html>\n");
    h
}

const CSS: &str = "body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#111}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 7px;text-align:left;vertical-align:top}\
th{background:#f0f0f0}code,pre{background:#f6f6f6;padding:1px 4px}pre{padding:8px;overflow-x:auto;font-size:12px}\
.sw{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:middle}\
.na{color:#a00}.ok{color:#070;font-weight:bold}.bad{color:#c00;font-weight:bold}nav a{margin-right:1em}\
h2{border-bottom:1px solid #ccc;margin-top:1.6em}svg{max-width:100%;height:auto}";

fn swatch(k: usize) -> String {
    format!(
        "<span class=\"sw\" style=\"background:{}\"></span>",
        colour(k)
    )
}

fn experiments(h: &mut String, loaded: &Loaded, names: &[String]) {
    let _ = writeln!(h, "<h2 id=\"s0\">{}</h2>", SECTIONS[0]);
    h.push_str("<table><tr><th>configuration</th><th>directory</th><th>started (UTC)</th><th>repetitions</th><th>cluster</th><th>knobs</th><th>load</th><th>faults (ms after the first full ring)</th><th>command</th></tr>\n");
    for (k, (d, s)) in loaded.runs.iter().enumerate() {
        let e = &s.experiment;
        let reps = match &s.stopped {
            Some(st) => format!(
                "{} of {} (stopped: {})",
                s.reps.len(),
                st.planned_reps,
                st.describe()
            ),
            None => s.reps.len().to_string(),
        };
        let faults: Vec<String> = e
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| match f.at_ms() {
                Some(t) => format!("{t}: {}", fault_name(s, i)),
                None => fault_name(s, i),
            })
            .collect();
        let _ = writeln!(
            h,
            "<tr><td>{}{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} nodes, {}, {:?}, {} ms measured{}</td><td>token {} ms, consensus {} ms, bound {:.0} ms</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            swatch(k),
            esc(&names[k]),
            esc(&d.display().to_string()),
            esc(&s.started),
            esc(&reps),
            e.nodes,
            esc(&e.shape),
            e.transport,
            e.duration_ms,
            if e.loss_pct > 0 { format!(", {}% loss", e.loss_pct) } else { String::new() },
            e.totem.token,
            e.totem.consensus_ms(),
            s.bound_ms,
            esc(&load_words(&e.load)),
            esc(&faults.join("; ")),
            esc(&s.command)
        );
    }
    h.push_str("</table>\n<p>Machine");
    let mut machines: Vec<String> = loaded
        .runs
        .iter()
        .map(|(_, s)| machine(&s.machine))
        .collect();
    machines.dedup();
    if machines.len() > 1 {
        h.push_str("s (the runs were made on different machines)");
    }
    h.push_str(":</p><ul>");
    for m in machines {
        let _ = write!(h, "<li>{}</li>", esc(&m));
    }
    h.push_str("</ul>\n");
    if !loaded.skipped.is_empty() {
        h.push_str(
            "<p class=\"na\">Skipped (no summary.json: killed before it could write one):</p><ul>",
        );
        for d in &loaded.skipped {
            let _ = write!(h, "<li><code>{}</code></li>", esc(&d.display().to_string()));
        }
        h.push_str("</ul>\n");
    }
}

/// The load in words: "200 msgs/s of 1024 B from nodes 1–5, agreed".
fn load_words(l: &crate::experiment::Load) -> String {
    if l.senders == 0 {
        return "none".into();
    }
    let rate = if l.rate == 0 {
        "as fast as the ring takes".to_string()
    } else {
        format!("{} msgs/s", l.rate)
    };
    let what = match &l.service {
        Some(svc) => format!("the {svc} service's workload"),
        None => format!("{} B messages", l.size),
    };
    format!(
        "{rate} of {what} from each of nodes 1–{}, {}",
        l.senders,
        if l.safe { "safe" } else { "agreed" }
    )
}

/// The machine in words: "vm: AMD EPYC, 2 CPUs, 23.5 GiB, Linux 6.18".
pub fn machine(m: &serde_json::Value) -> String {
    let g = |k: &str| {
        m.get(k)
            .map(|v| v.to_string().trim_matches('"').to_string())
    };
    match (
        g("hostname"),
        g("cpu"),
        g("cpus"),
        g("memory_gib"),
        g("kernel"),
    ) {
        (Some(h), Some(c), Some(n), Some(mem), Some(k)) => {
            format!("{h}: {c}, {n} CPUs, {mem} GiB, Linux {k}")
        }
        _ if m.is_null() => "not recorded".into(),
        _ => m.to_string(),
    }
}

fn recovery_table(h: &mut String, runs: &[(PathBuf, Summary)], names: &[String]) {
    let _ = writeln!(h, "<h2 id=\"s1\">{}</h2>", SECTIONS[1]);
    h.push_str("<p>ms from the fault's timestamp; every value when there are 5 repetitions or fewer, else median / p90 / max; n: repetitions with a value. Detection: the first node out of OPERATIONAL; membership: every running node installed the ring it settled on; sync: every such node finished its sync; first delivery: the first message delivered on a settled ring. Over bound: repetitions whose membership phase exceeded the bound or never settled.</p>\n");
    h.push_str("<table><tr><th>configuration</th><th>fault</th><th>detection</th><th>membership</th><th>sync</th><th>first delivery</th><th>over bound / reps</th></tr>\n");
    for (k, (_, s)) in runs.iter().enumerate() {
        for fa in &s.faults {
            let recs: Vec<_> = fault_recoveries(s, fa.index).collect();
            let col = |g: &dyn Fn(&crate::summary::FaultRecovery) -> Option<f64>| {
                esc(&values_cell(
                    &recs.iter().filter_map(|f| g(f)).collect::<Vec<_>>(),
                    None,
                ))
            };
            let never = recs.iter().filter(|f| f.membership_ms.is_none()).count();
            let over = if fa.out_of_bound > 0 {
                format!("<span class=\"bad\">{}</span>", fa.out_of_bound)
            } else {
                "0".into()
            };
            let _ = writeln!(
                h,
                "<tr><td>{}{}</td><td>{} {}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{over} / {}</td></tr>",
                swatch(k),
                esc(&names[k]),
                fa.index,
                esc(&fault_name(s, fa.index)),
                col(&|f| f.detection_ms),
                col(&|f| f.membership_ms),
                if never > 0 { format!(" <span class=\"bad\">({never} never settled)</span>") } else { String::new() },
                col(&|f| f.sync_ms),
                col(&|f| f.first_delivery_ms),
                recs.len()
            );
        }
    }
    h.push_str("</table>\n");
}

/// Reads a latency-rep-N.hlog: (interval start ms, p50, p99, max) in ms.
pub fn read_hlog(path: &Path) -> Option<LatencySeries> {
    use base64::Engine as _;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let bytes = std::fs::read(path).ok()?;
    let mut de = Deserializer::new();
    let mut out = Vec::new();
    for e in IntervalLogIterator::new(&bytes) {
        let Ok(LogEntry::Interval(i)) = e else {
            continue;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(i.encoded_histogram())
        else {
            continue;
        };
        let Ok(h) = de.deserialize::<u64, _>(&mut raw.as_slice()) else {
            continue;
        };
        if h.is_empty() {
            continue;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        out.push((
            i.start_timestamp().as_secs_f64() * 1000.0,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max()),
        ));
    }
    Some(out)
}

/// Reads each node's regular installs from `records/rep-N/`, in ms since the first full ring
/// (every node on a configuration of all nodes). None when the records are not there.
pub fn read_installs(dir: &Path, s: &Summary, rep: u32) -> Option<Installs> {
    let d = dir.join("records").join(format!("rep-{rep}"));
    if !d.is_dir() {
        return None;
    }
    let set = ringlab_records::read_paths(&[d]).ok()?;
    let mut regs: Vec<(u64, u32, Vec<u32>)> = set
        .records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Config {
                kind: ConfigKind::Regular,
                members,
                ..
            } => Some((r.t_ns, r.node, members.clone())),
            _ => None,
        })
        .collect();
    regs.sort_by_key(|x| x.0);
    let n = s.experiment.nodes;
    let mut seen = std::collections::BTreeSet::new();
    let mut formed = None;
    for (t, node, m) in &regs {
        if m.len() == n {
            seen.insert(*node);
            if seen.len() == n {
                formed = Some(*t);
                break;
            }
        }
    }
    let t0 = formed.or_else(|| regs.first().map(|x| x.0))?;
    Some(
        regs.into_iter()
            .map(|(t, node, m)| (node, (t as f64 - t0 as f64) / 1e6, m))
            .collect(),
    )
}

fn timelines(h: &mut String, runs: &[(PathBuf, Summary)], names: &[String]) {
    let _ = writeln!(h, "<h2 id=\"s3\">{}</h2>", SECTIONS[3]);
    h.push_str("<p>Per repetition, on one time axis (s since the first full ring): throughput, delivery latency percentiles and each node's configuration installs. Dashed lines: the fault steps, named; grey: a fault in effect until the step that restores it; coloured: from the fault until every running node settled (this repetition's membership phase). The y axis of throughput follows the steady rate; the windows above it (backlog after an outage) are marked ▲ and the peak is given.</p>\n");
    for (k, (d, s)) in runs.iter().enumerate() {
        let _ = writeln!(h, "<h3>{}{}</h3>", swatch(k), esc(&names[k]));
        if s.reps.is_empty() {
            h.push_str("<p class=\"na\">No completed repetition.</p>\n");
            continue;
        }
        for (i, r) in s.reps.iter().enumerate().take(MAX_TIMELINES) {
            let lat = read_hlog(&d.join(format!("latency-rep-{}.hlog", r.rep)));
            let ins = read_installs(d, s, r.rep);
            let _ = writeln!(
                h,
                "<details{}><summary>repetition {}: {:.0} msgs/s, latency p50 {:.2} / p99 {:.2} ms, {} rings formed, {} violations</summary>",
                if i == 0 { " open" } else { "" },
                r.rep,
                r.msgs_per_s,
                r.latency_ms.p50,
                r.latency_ms.p99,
                r.rings_formed,
                r.violations.len()
            );
            h.push_str(&crate::plot::rep_timeline_svg(
                s,
                i,
                k,
                lat.as_ref(),
                ins.as_ref(),
            ));
            h.push_str("</details>\n");
        }
        if s.reps.len() > MAX_TIMELINES {
            let _ = writeln!(
                h,
                "<p>{} more repetitions not drawn (summary.json and runs.csv hold them).</p>",
                s.reps.len() - MAX_TIMELINES
            );
        }
    }
    if runs.len() > 1 {
        h.push_str("<h3>Repetition 1 of every configuration</h3>\n");
        h.push_str(&crate::plot::throughput_svg(runs, names));
    }
}

fn verdict(h: &mut String, runs: &[(PathBuf, Summary)], names: &[String]) {
    let _ = writeln!(h, "<h2 id=\"s4\">{}</h2>", SECTIONS[4]);
    let total: usize = runs.iter().map(|(_, s)| s.violations).sum();
    let reps: usize = runs.iter().map(|(_, s)| s.reps.len()).sum();
    if total == 0 {
        let _ = writeln!(
            h,
            "<p class=\"ok\">The checker found no violation in {reps} repetitions.</p>"
        );
    } else {
        let _ = writeln!(
            h,
            "<p class=\"bad\">The checker found {total} violations in {reps} repetitions.</p>"
        );
    }
    for (k, (d, s)) in runs.iter().enumerate() {
        let bad: Vec<_> = s.reps.iter().filter(|r| !r.violations.is_empty()).collect();
        let findings: usize = s.reps.iter().map(|r| r.peer_findings.len()).sum();
        if bad.is_empty() && findings == 0 {
            continue;
        }
        let _ = writeln!(h, "<h3>{}{}</h3>", swatch(k), esc(&names[k]));
        for r in &bad {
            let _ = writeln!(
                h,
                "<p>Repetition {}: {} violations; the first:</p><ul>",
                r.rep,
                r.violations.len()
            );
            for v in r.violations.iter().take(5) {
                let _ = write!(h, "<li><code>{}</code></li>", esc(v));
            }
            h.push_str("</ul>\n");
            let rec = d.join("records").join(format!("rep-{}", r.rep));
            let _ = writeln!(
                h,
                "<p>Check the records again: <code>ringlab check {}</code>{}</p>",
                esc(&rec.display().to_string()),
                if rec.is_dir() {
                    ""
                } else {
                    " (the records are not in this directory: they are not committed; rerun the experiment to write them)"
                }
            );
        }
        if findings > 0 {
            let _ = writeln!(
                h,
                "<p>Findings about the peer implementation (not violations of ringlab): {findings}; the first: <code>{}</code></p>",
                esc(s.reps.iter().flat_map(|r| r.peer_findings.iter()).next().map_or("", |x| x))
            );
        }
        let _ = writeln!(
            h,
            "<p>Replay the run (as root, from the repository root): <code>{}</code></p>",
            esc(&s.command)
        );
    }
    h.push_str("<p>A failing simulator seed replays with <code>ringlab sim --seed SEED</code> and the options it printed.</p>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_are_read_from_records_in_ms_since_the_first_full_ring() {
        use ringlab_records::Record;
        let dir =
            std::env::temp_dir().join(format!("ringlab-report-installs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let exp: crate::experiment::Experiment =
            toml::from_str("name = 'iso'\nnodes = 2\nduration_ms = 5000\n").unwrap();
        let s = crate::summary::summarise(
            &exp,
            "".into(),
            "".into(),
            serde_json::Value::Null,
            "".into(),
            vec![],
        );
        let cfg = |t_ns: u64, node: u32, seq: u64, members: Vec<u32>| Record {
            t_ns,
            node,
            inc: 1,
            body: Body::Config {
                kind: ConfigKind::Regular,
                ring: ringlab_ring::RingId { rep: 1, seq },
                members,
                left: vec![],
                joined: vec![],
            },
        };
        let recs = vec![
            cfg(1_000_000, 1, 4, vec![1]),
            cfg(5_000_000, 1, 8, vec![1, 2]),
            cfg(7_000_000, 2, 8, vec![1, 2]),
            cfg(1_007_000_000, 1, 12, vec![1]),
        ];
        assert_eq!(read_installs(&dir, &s, 1), None, "no records: none");
        ringlab_records::write_run(&dir.join("records/rep-1"), &recs).unwrap();
        let ins = read_installs(&dir, &s, 1).unwrap();
        // Full ring at 7 ms (node 2's install of {1, 2}): the time axis starts there.
        assert_eq!(
            ins,
            [
                (1, -6.0, vec![1]),
                (1, -2.0, vec![1, 2]),
                (2, 0.0, vec![1, 2]),
                (1, 1000.0, vec![1])
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_page_has_every_section_and_says_what_it_cannot_draw() {
        let exp: crate::experiment::Experiment = toml::from_str(
            "name = 'iso'\nnodes = 3\nduration_ms = 5000\n[[faults]]\nat_ms = 1000\naction = 'isolate'\nnodes = [3]\n",
        )
        .unwrap();
        let rep = crate::summary::RepSummary {
            rep: 1,
            faults: vec![crate::summary::FaultRecovery {
                index: 0,
                action: "isolate".into(),
                membership_ms: Some(2200.0),
                ..Default::default()
            }],
            violations: vec!["SafeDelivery: m1 at node 2".into()],
            timeline: vec![(0.0, 1000.0), (100.0, 1000.0)],
            ..Default::default()
        };
        let s = crate::summary::summarise(
            &exp,
            "".into(),
            "ringlab run experiments/iso.toml".into(),
            serde_json::json!({"hostname": "vm", "cpu": "EPYC", "cpus": 2, "memory_gib": 4, "kernel": "6.1"}),
            "2026-12-02T00:00:00Z".into(),
            vec![rep],
        );
        let page = render(&Loaded {
            runs: vec![("/nowhere/iso".into(), s)],
            skipped: vec![],
        });
        for sec in SECTIONS {
            assert!(page.contains(&format!(">{sec}</h2>")), "{sec}");
        }
        for want in [
            "vm: EPYC, 2 CPUs, 4 GiB, Linux 6.1",
            "1000: isolate 3",
            "The checker found 1 violations in 1 repetitions.",
            "SafeDelivery: m1 at node 2",
            "ringlab check /nowhere/iso/records/rep-1",
            "<code>ringlab run experiments/iso.toml</code>",
            "delivery latency over time: unavailable",
            "membership changes per node: unavailable",
        ] {
            assert!(page.contains(want), "{want} missing");
        }
    }
}
