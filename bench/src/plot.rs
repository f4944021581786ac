//! Hand-written SVG plots that `ringlab compare` writes as files and `ringlab report` inlines
//! in its page: recovery box plots per phase, throughput timelines one panel per
//! configuration, and a repetition's timeline (throughput, latency percentiles and
//! membership changes per node on one time axis).
//!
//! Every plot labels its axes with units, names each fault on the time axis, shades the
//! faults' intervals and their recovery phases, and gives each configuration one colour
//! ([`colour`]) in every plot, in the order the runs were given.

use crate::summary::{fault_recoveries, scheduled_fault, Summary};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Colours of the configurations, in the order the runs were given (Tableau 10).
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Returns the colour of the `i`-th configuration.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for SVG and HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A step that ends a fault's interval (the network or the process restored).
fn restores(action: &str) -> bool {
    matches!(action, "heal" | "trunk-up" | "clear" | "resume" | "restart")
}

/// Returns a fault step's name with its targets: "isolate 5", "heal".
pub fn fault_name(s: &Summary, i: usize) -> String {
    let Some(f) = s.experiment.faults.get(i) else {
        return format!("fault {i}");
    };
    let nodes = f.action.nodes();
    if nodes.is_empty() {
        f.action.name().to_string()
    } else {
        let n: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        format!("{} {}", f.action.name(), n.join(","))
    }
}

/// The scheduled faults of a run that have a time: (schedule index, ms, name, action).
fn timed_faults(s: &Summary) -> Vec<(usize, f64, String, String)> {
    s.experiment
        .faults
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            Some((
                i,
                f.at_ms()? as f64,
                fault_name(s, i),
                f.action.name().to_string(),
            ))
        })
        .collect()
}

/// The intervals (ms) during which a disrupting fault was in effect: from it to the next
/// step that restores, or to `end`.
fn fault_intervals(s: &Summary, end: f64) -> Vec<(f64, f64)> {
    let f = timed_faults(s);
    let mut out = Vec::new();
    for (k, (_, at, _, action)) in f.iter().enumerate() {
        if restores(action) || action == "svc" {
            continue;
        }
        let until = f[k + 1..]
            .iter()
            .find(|x| restores(&x.3))
            .map_or(end, |x| x.1);
        out.push((*at, until));
    }
    out
}

/// A small SVG document under construction.
struct Svg {
    w: f64,
    h: f64,
    body: String,
}

impl Svg {
    fn new(w: f64, h: f64) -> Self {
        Self {
            w,
            h,
            body: String::new(),
        }
    }
    fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, fill: &str, s: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" fill="{fill}">{}</text>"#,
            esc(s)
        );
    }
    fn text_rot(&mut self, x: f64, y: f64, size: f64, angle: f64, anchor: &str, s: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" transform="rotate({angle} {x:.1} {y:.1})">{}</text>"#,
            esc(s)
        );
    }
    fn line(&mut self, a: (f64, f64), b: (f64, f64), stroke: &str, width: f64, dash: &str) {
        let d = dash_attr(dash);
        let _ = writeln!(
            self.body,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{stroke}" stroke-width="{width}"{d}/>"#,
            a.0, a.1, b.0, b.1
        );
    }
    fn rect(&mut self, (x, y, w, h): (f64, f64, f64, f64), fill: &str, opacity: f64, stroke: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" fill-opacity="{opacity}" stroke="{stroke}"/>"#,
            w.max(0.0),
            h.max(0.0)
        );
    }
    fn circle(&mut self, x: f64, y: f64, r: f64, fill: &str) {
        let _ = writeln!(
            self.body,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}" stroke="black" stroke-width="0.5"/>"#
        );
    }
    fn polyline(&mut self, pts: &[(f64, f64)], stroke: &str, width: f64, dash: &str) {
        if pts.is_empty() {
            return;
        }
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let d = dash_attr(dash);
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}"{d}/>"#,
            p.join(" ")
        );
    }
    fn finish(self) -> String {
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n{}</svg>\n",
            self.body,
            w = self.w,
            h = self.h
        )
    }
}

/// Ticks of a log axis between `lo` and `hi`: 1, 2, 5 × 10^k.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut e = lo.log10().floor() as i32;
    // 1, 2, 5 over up to three decades; over more, the decades alone.
    let steps: &[f64] = if hi / lo > 1000.0 {
        &[1.0]
    } else {
        &[1.0, 2.0, 5.0]
    };
    while 10f64.powi(e) <= hi {
        for &m in steps {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        e += 1;
    }
    out
}

/// Ticks of a linear axis from 0 to `hi`: about `n` round steps.
fn lin_ticks(hi: f64, n: usize) -> Vec<f64> {
    if hi <= 0.0 {
        return vec![0.0];
    }
    let raw = hi / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (0..)
        .map(|k| k as f64 * step)
        .take_while(|v| *v <= hi * 1.0001)
        .collect()
}

/// Formats a tick: 1500 → "1.5k" above 10,000, else as is.
fn tick_label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", (v / 100.0).round() / 10.0)
    } else if v >= 1.0 || v == 0.0 {
        format!("{}", (v * 10.0).round() / 10.0)
    } else {
        format!("{v}")
    }
}

/// Draws the configurations' colour key in rows from (x, y); returns the height used.
fn legend(svg: &mut Svg, names: &[String], x0: f64, y0: f64, width: f64) -> f64 {
    let (mut x, mut y) = (x0, y0);
    for (i, n) in names.iter().enumerate() {
        let w = 30.0 + 7.0 * n.chars().count() as f64;
        if x + w > x0 + width && x > x0 {
            x = x0;
            y += 18.0;
        }
        svg.rect((x, y - 10.0, 14.0, 10.0), colour(i), 0.8, colour(i));
        svg.text(x + 18.0, y, 12.0, "start", "black", n);
        x += w;
    }
    y - y0 + 18.0
}

/// One slot of the recovery plot: a configuration's fault.
struct Slot {
    run: usize,
    fault: String,
    /// Per phase: the values, and how many repetitions had none.
    phases: Vec<(Vec<f64>, usize)>,
    bound: f64,
}

/// The recovery phases plotted, with their getters.
type Phase = (
    &'static str,
    fn(&crate::summary::FaultRecovery) -> Option<f64>,
);

/// Returns the recovery box plots as SVG: one panel per phase (detection, membership, sync
/// when measured, first delivery), one slot per configuration and fault, coloured by
/// configuration, every value drawn as a point, boxes from five values, the membership
/// bound dashed, and the repetitions that never settled counted above their slot. None
/// when no run has a recovery time.
pub fn recovery_svg(runs: &[(PathBuf, Summary)], names: &[String]) -> Option<String> {
    let mut phases: Vec<Phase> = vec![
        ("detection: first node out of OPERATIONAL", |f| {
            f.detection_ms
        }),
        ("membership: every running node on its settled ring", |f| {
            f.membership_ms
        }),
        ("first delivery on the settled ring", |f| {
            f.first_delivery_ms
        }),
    ];
    if runs
        .iter()
        .any(|(_, s)| s.faults.iter().any(|f| f.sync_ms.n > 0))
    {
        phases.insert(2, ("sync done at every running node", |f| f.sync_ms));
    }
    let mut slots = Vec::new();
    for (k, (_, s)) in runs.iter().enumerate() {
        for fa in &s.faults {
            let recs: Vec<_> = fault_recoveries(s, fa.index).collect();
            let ph = phases
                .iter()
                .map(|(_, g)| {
                    let v: Vec<f64> = recs.iter().filter_map(|f| g(f)).collect();
                    let missing = recs.len() - v.len();
                    (v, missing)
                })
                .collect();
            slots.push(Slot {
                run: k,
                fault: format!("{} {}", fa.index, fault_name(s, fa.index)),
                phases: ph,
                bound: s.bound_ms,
            });
        }
    }
    if slots
        .iter()
        .all(|s| s.phases.iter().all(|(v, _)| v.is_empty()))
    {
        return None;
    }
    let all = slots
        .iter()
        .flat_map(|s| s.phases.iter().flat_map(|p| p.0.iter().copied()))
        .chain(slots.iter().map(|s| s.bound));
    let (lo, hi) = all.fold((f64::INFINITY, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let ymin = 10f64.powf(lo.max(0.1).log10().floor());
    let ymax = (hi * 1.6).max(ymin * 10.0);
    let left = 80.0;
    let slot_w = ((900.0 - left - 30.0) / slots.len() as f64).clamp(60.0, 240.0);
    let width = (left + 30.0 + slot_w * slots.len() as f64).max(900.0);
    let mut svg = Svg::new(width, 0.0);
    svg.text(
        left,
        24.0,
        16.0,
        "start",
        "black",
        "Recovery after each fault: ms from the fault's timestamp (log scale)",
    );
    svg.text(
        left,
        42.0,
        12.0,
        "start",
        "#444",
        "points: every repetition; box: quartiles and whiskers (5 or more); dashed: the bound; ✕: never settled",
    );
    let lh = legend(&mut svg, names, left, 62.0, width - left - 20.0);
    let panel_h = 200.0;
    let mut y0 = 62.0 + lh + 10.0;
    let x_of = |i: usize| left + slot_w * (i as f64 + 0.5);
    let ylog = |v: f64, top: f64| {
        let f = (v.max(ymin).log10() - ymin.log10()) / (ymax.log10() - ymin.log10());
        top + panel_h * (1.0 - f)
    };
    for (p, (title, _)) in phases.iter().enumerate() {
        svg.text(left, y0 + 14.0, 13.0, "start", "black", title);
        let top = y0 + 22.0;
        svg.rect(
            (left, top, slot_w * slots.len() as f64, panel_h),
            "none",
            0.0,
            "#999",
        );
        for t in log_ticks(ymin, ymax) {
            let y = ylog(t, top);
            svg.line(
                (left - 4.0, y),
                (left + slot_w * slots.len() as f64, y),
                "#ddd",
                0.5,
                "",
            );
            svg.text(left - 6.0, y + 4.0, 11.0, "end", "black", &tick_label(t));
        }
        svg.text_rot(18.0, top + panel_h / 2.0, 12.0, -90.0, "middle", "ms (log)");
        for (i, sl) in slots.iter().enumerate() {
            let x = x_of(i);
            if i > 0 && slots[i - 1].run != sl.run {
                svg.line(
                    (x - slot_w / 2.0, top),
                    (x - slot_w / 2.0, top + panel_h),
                    "#999",
                    1.0,
                    "",
                );
            }
            let c = colour(sl.run);
            let (v, missing) = &sl.phases[p];
            let mut v = v.clone();
            v.sort_by(|a, b| a.total_cmp(b));
            if v.len() >= 5 {
                let q = |f: f64| crate::summary::interpolated(&v, f);
                let (q1, q2, q3) = (ylog(q(0.25), top), ylog(q(0.5), top), ylog(q(0.75), top));
                svg.line(
                    (x, ylog(v[0], top)),
                    (x, ylog(v[v.len() - 1], top)),
                    c,
                    1.5,
                    "",
                );
                svg.rect((x - 16.0, q3, 32.0, q1 - q3), c, 0.25, c);
                svg.line((x - 16.0, q2), (x + 16.0, q2), c, 2.5, "");
            } else if let Some(m) = crate::summary::median(&v) {
                let y = ylog(m, top);
                svg.line((x - 14.0, y), (x + 14.0, y), c, 2.5, "");
            }
            for (j, val) in v.iter().enumerate() {
                let dx = ((j % 5) as f64 - 2.0) * 3.0;
                svg.circle(x + dx, ylog(*val, top), 2.5, c);
            }
            if p == 1 && sl.bound > 0.0 {
                let y = ylog(sl.bound, top);
                svg.line(
                    (x - slot_w / 2.0 + 3.0, y),
                    (x + slot_w / 2.0 - 3.0, y),
                    c,
                    1.5,
                    "5,3",
                );
                if i == 0 || slots[i - 1].run != sl.run {
                    let b = format!("bound {}", tick_label(sl.bound.round()));
                    svg.text(x - slot_w / 2.0 + 4.0, y + 12.0, 10.0, "start", "#333", &b);
                }
            }
            if *missing > 0 && p == 1 {
                let m = format!("✕ {missing} never");
                svg.text(x, top + panel_h - 6.0, 11.0, "middle", "#c00", &m);
            }
            if v.is_empty() && p != 1 {
                svg.text(x, top + 12.0, 10.0, "middle", "#666", "none");
            }
        }
        y0 = top + panel_h + 8.0;
    }
    // Fault names under the last panel, slanted so that long ones fit.
    for (i, sl) in slots.iter().enumerate() {
        svg.text_rot(x_of(i) + 4.0, y0 + 8.0, 12.0, 35.0, "start", &sl.fault);
    }
    let longest = slots
        .iter()
        .map(|s| s.fault.chars().count())
        .max()
        .unwrap_or(0) as f64;
    svg.text(
        left,
        y0 + 20.0 + longest * 4.5,
        12.0,
        "start",
        "#444",
        "fault (schedule index and action), one slot per configuration and fault",
    );
    svg.h = y0 + 34.0 + longest * 4.5;
    Some(svg.finish())
}

/// The knob a set of runs sweeps: its name and each run's value, when every run's label
/// starts with the same `knob=number` (a sweep's labels: "token=200", "consensus=60,loss_pct=5");
/// with the rest of each label (the other knobs).
fn swept(runs: &[(PathBuf, Summary)]) -> Option<(String, Vec<(f64, String)>)> {
    let mut knob: Option<String> = None;
    let mut out = Vec::new();
    for (_, s) in runs {
        let (first, rest) = s.label.split_once(',').unwrap_or((&s.label, ""));
        let (k, v) = first.split_once('=')?;
        if knob.get_or_insert_with(|| k.to_string()) != k {
            return None;
        }
        out.push((v.parse::<f64>().ok()?, rest.to_string()));
    }
    let distinct: std::collections::BTreeSet<u64> = out.iter().map(|x| x.0.to_bits()).collect();
    (runs.len() >= 2 && distinct.len() >= 2).then(|| (knob.unwrap_or_default(), out))
}

/// Returns, for runs that sweep one numeric knob, each fault's membership phase against the
/// knob's value as SVG: every repetition a point in its configuration's colour, a line
/// through the medians per fault (and per value of the other knobs), named at its end, and
/// each configuration's bound dashed. None when the runs are not such a sweep.
pub fn sweep_svg(runs: &[(PathBuf, Summary)]) -> Option<String> {
    let (knob, xs) = swept(runs)?;
    // Series: (fault name, other knobs) → [(x, run, values)].
    type Points = Vec<(f64, usize, Vec<f64>)>;
    let mut series: Vec<(String, Points)> = Vec::new();
    for (k, ((_, s), (x, rest))) in runs.iter().zip(&xs).enumerate() {
        for fa in &s.faults {
            let v: Vec<f64> = fault_recoveries(s, fa.index)
                .filter_map(|f| f.membership_ms)
                .collect();
            let mut name = fault_name(s, fa.index);
            if !rest.is_empty() {
                let _ = write!(name, " ({rest})");
            }
            match series.iter_mut().find(|x| x.0 == name) {
                Some(e) => e.1.push((*x, k, v)),
                None => series.push((name, vec![(*x, k, v)])),
            }
        }
    }
    if series.iter().all(|s| s.1.iter().all(|p| p.2.is_empty())) {
        return None;
    }
    let vals = series
        .iter()
        .flat_map(|s| s.1.iter().flat_map(|p| p.2.iter().copied()))
        .chain(runs.iter().map(|(_, s)| s.bound_ms));
    let (lo, hi) = vals.fold((f64::INFINITY, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return None;
    }
    let ymin = 10f64.powf(lo.max(0.1).log10().floor());
    let ymax = (hi * 1.6).max(ymin * 10.0);
    let (xlo, xhi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x.0), b.max(x.0))
        });
    let xlog = xlo > 0.0 && xhi / xlo >= 5.0;
    let (left, top, w, h) = (80.0, 50.0, 640.0, 380.0);
    let fx = |x: f64| {
        let f = if xlog {
            (x.ln() - xlo.ln()) / (xhi.ln() - xlo.ln())
        } else {
            (x - xlo) / (xhi - xlo)
        };
        left + 20.0 + (w - 40.0) * f
    };
    let fy = |v: f64| {
        top + h * (1.0 - (v.max(ymin).log10() - ymin.log10()) / (ymax.log10() - ymin.log10()))
    };
    let mut svg = Svg::new(left + w + 260.0, top + h + 60.0);
    svg.text(
        left,
        22.0,
        16.0,
        "start",
        "black",
        &format!(
            "Membership phase against {knob}: ms from the fault until every running node settled"
        ),
    );
    svg.text(left, 40.0, 12.0, "start", "#444", "points: every repetition (colour: configuration); line: the medians; dashed: each configuration's bound");
    svg.rect((left, top, w, h), "none", 0.0, "#999");
    for t in log_ticks(ymin, ymax) {
        let y = fy(t);
        svg.line((left - 4.0, y), (left + w, y), "#e5e5e5", 0.5, "");
        svg.text(left - 6.0, y + 4.0, 11.0, "end", "black", &tick_label(t));
    }
    svg.text_rot(24.0, top + h / 2.0, 12.0, -90.0, "middle", "ms (log)");
    let mut seen = std::collections::BTreeSet::new();
    for (k, (x, _)) in xs.iter().enumerate() {
        let px = fx(*x);
        if seen.insert(x.to_bits()) {
            svg.line((px, top + h), (px, top + h + 4.0), "black", 1.0, "");
            svg.text(px, top + h + 16.0, 11.0, "middle", "black", &tick_label(*x));
        }
        let b = runs[k].1.bound_ms;
        if b > 0.0 {
            svg.line(
                (px - 14.0, fy(b)),
                (px + 14.0, fy(b)),
                colour(k),
                1.5,
                "5,3",
            );
        }
    }
    svg.text(
        left + w / 2.0,
        top + h + 34.0,
        12.0,
        "middle",
        "black",
        &format!(
            "{knob} (the swept knob{})",
            if xlog { ", log scale" } else { "" }
        ),
    );
    const DASHES: [&str; 4] = ["", "6,3", "2,3", "8,3,2,3"];
    let mut names: Vec<(f64, String, &str)> = Vec::new();
    for (j, (name, pts)) in series.iter().enumerate() {
        let mut line = Vec::new();
        for (x, k, v) in pts {
            let mut v = v.clone();
            v.sort_by(|a, b| a.total_cmp(b));
            for (i, val) in v.iter().enumerate() {
                svg.circle(
                    fx(*x) + ((i % 5) as f64 - 2.0) * 2.5,
                    fy(*val),
                    3.0,
                    colour(*k),
                );
            }
            if let Some(m) = crate::summary::median(&v) {
                line.push((fx(*x), fy(m)));
            }
        }
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let dash = DASHES[j % DASHES.len()];
        svg.polyline(&line, "#333", 1.2, dash);
        if let Some((_, y)) = line.last() {
            names.push((*y, name.clone(), dash));
        }
    }
    // The names beside the plot, at the height of each line's last point, kept apart.
    names.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut last = f64::NEG_INFINITY;
    for (y, name, dash) in names {
        let y = y.max(last + 13.0);
        last = y;
        svg.line((left + w + 6.0, y), (left + w + 26.0, y), "#333", 1.2, dash);
        svg.text(left + w + 30.0, y + 4.0, 11.0, "start", "#333", &name);
    }
    Some(svg.finish())
}

/// A time axis panel's geometry.
struct Panel {
    left: f64,
    top: f64,
    w: f64,
    h: f64,
    xmax: f64,
}

impl Panel {
    fn x(&self, ms: f64) -> f64 {
        self.left + self.w * (ms / self.xmax).clamp(0.0, 1.0)
    }
    /// Draws the frame, a linear y axis from 0 to `ymax` and its title.
    fn frame(&self, svg: &mut Svg, ymax: f64, ylabel: &str) {
        svg.rect((self.left, self.top, self.w, self.h), "none", 0.0, "#999");
        for t in lin_ticks(ymax, 4) {
            let y = self.top + self.h * (1.0 - t / ymax);
            svg.line(
                (self.left - 4.0, y),
                (self.left + self.w, y),
                "#e5e5e5",
                0.5,
                "",
            );
            svg.text(
                self.left - 6.0,
                y + 4.0,
                11.0,
                "end",
                "black",
                &tick_label(t),
            );
        }
        svg.text_rot(
            self.left - 52.0,
            self.top + self.h / 2.0,
            12.0,
            -90.0,
            "middle",
            ylabel,
        );
    }
    /// Shades the fault intervals grey and draws each fault as a named dashed line.
    fn faults(&self, svg: &mut Svg, s: &Summary, names: bool) {
        for (a, b) in fault_intervals(s, self.xmax) {
            svg.rect(
                (self.x(a), self.top, self.x(b) - self.x(a), self.h),
                "#888",
                0.12,
                "none",
            );
        }
        for (_, at, name, _) in timed_faults(s) {
            let x = self.x(at);
            svg.line((x, self.top), (x, self.top + self.h), "#333", 1.0, "4,3");
            if names {
                svg.text(x + 3.0, self.top + 12.0, 11.0, "start", "#333", &name);
            }
        }
    }
    /// Draws the time axis under the panel.
    fn time_axis(&self, svg: &mut Svg) {
        let bottom = self.top + self.h;
        for t in lin_ticks(self.xmax / 1000.0, 10) {
            let x = self.x(t * 1000.0);
            svg.line((x, bottom), (x, bottom + 4.0), "black", 1.0, "");
            svg.text(x, bottom + 16.0, 11.0, "middle", "black", &tick_label(t));
        }
        svg.text(
            self.left + self.w / 2.0,
            bottom + 32.0,
            12.0,
            "middle",
            "black",
            "s since the first full ring",
        );
    }
}

/// Returns a y-axis top that the steady rate sets, not the backlog spikes after an outage:
/// the larger of 1.3 × the 95th percentile and 1.1 × the median; with `clipped`, whether
/// a value lies above it.
fn robust_top(v: &[f64]) -> (f64, bool) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (1.0, false);
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let max = s[s.len() - 1];
    let p95 = s[((s.len() - 1) as f64 * 0.95).round() as usize];
    let med = crate::summary::median(&s).unwrap_or(0.0);
    let top = (p95 * 1.3).max(med * 1.1).max(1.0);
    if max <= top {
        ((max * 1.1).max(1.0), false)
    } else {
        (top, true)
    }
}

/// The SVG attribute of a dash pattern (none for a solid line).
fn dash_attr(dash: &str) -> String {
    if dash.is_empty() {
        String::new()
    } else {
        format!(r#" stroke-dasharray="{dash}""#)
    }
}

/// Draws a throughput line clipped at `ymax`, with a triangle where it is clipped.
fn rate_line(svg: &mut Svg, p: &Panel, tl: &[(f64, f64)], ymax: f64, c: &str) {
    let pts: Vec<(f64, f64)> = tl
        .iter()
        .map(|(t, v)| (p.x(*t), p.top + p.h * (1.0 - (v / ymax).min(1.0))))
        .collect();
    svg.polyline(&pts, c, 1.5, "");
    for (t, v) in tl {
        if *v > ymax {
            let x = p.x(*t);
            let _ = writeln!(
                svg.body,
                r#"<path d="M{:.1},{:.1} l-4,7 l8,0 z" fill="{c}"/>"#,
                x,
                p.top - 1.0
            );
        }
    }
}

/// Returns the throughput timelines (first repetition) as SVG: one panel per
/// configuration on one time axis, its faults named and their intervals shaded, the y
/// axis set by the steady rate (spikes above it are clipped and marked with their maximum).
pub fn throughput_svg(runs: &[(PathBuf, Summary)], names: &[String]) -> String {
    let xmax = runs
        .iter()
        .filter_map(|(_, s)| s.reps.first())
        .flat_map(|r| r.timeline.iter().map(|p| p.0 + 100.0))
        .fold(1000.0, f64::max);
    let (left, w, h) = (90.0, 980.0, 120.0);
    let mut svg = Svg::new(left + w + 30.0, 0.0);
    svg.text(
        left,
        24.0,
        16.0,
        "start",
        "black",
        "Throughput: distinct messages delivered per s in 100 ms windows (repetition 1)",
    );
    svg.text(
        left,
        42.0,
        12.0,
        "start",
        "#444",
        "grey: a fault in effect (to the step that restores it); dashed: a fault step; ▲: a window above the axis",
    );
    let mut y = 56.0;
    for (k, (_, s)) in runs.iter().enumerate() {
        let tl = s.reps.first().map(|r| r.timeline.as_slice()).unwrap_or(&[]);
        let v: Vec<f64> = tl.iter().map(|p| p.1).collect();
        let (ymax, clipped) = robust_top(&v);
        let mut title = names[k].clone();
        if clipped {
            let max = v.iter().copied().fold(0.0, f64::max);
            let _ = write!(
                title,
                " (axis clipped: peak {} msgs/s)",
                tick_label(max.round())
            );
        }
        if tl.is_empty() {
            title.push_str(" (no completed repetition)");
        }
        svg.rect((left, y + 4.0, 12.0, 10.0), colour(k), 0.8, colour(k));
        svg.text(left + 16.0, y + 13.0, 12.0, "start", "black", &title);
        let p = Panel {
            left,
            top: y + 20.0,
            w,
            h,
            xmax,
        };
        p.frame(&mut svg, ymax, "msgs/s");
        p.faults(&mut svg, s, true);
        rate_line(&mut svg, &p, tl, ymax, colour(k));
        y = p.top + h + 6.0;
        if k + 1 == runs.len() {
            p.time_axis(&mut svg);
            y += 40.0;
        }
    }
    svg.h = y + 6.0;
    svg.finish()
}

/// Latency percentiles over time (interval start ms, p50, p99, max), from a latency-rep-N.hlog.
pub type LatencySeries = Vec<(f64, f64, f64, f64)>;

/// Each node's regular configuration installs: (node, ms since the first full ring, ring
/// members).
pub type Installs = Vec<(u32, f64, Vec<u32>)>;

/// Returns one repetition's timeline as SVG: throughput, latency percentiles (when the
/// interval log is there) and each node's configuration installs (when the records are
/// there) on one time axis, faults named, their intervals shaded grey and their recovery
/// phases (fault → membership settled) shaded in the configuration's colour.
pub fn rep_timeline_svg(
    s: &Summary,
    rep: usize,
    k: usize,
    latency: Option<&LatencySeries>,
    installs: Option<&Installs>,
) -> String {
    let r = &s.reps[rep];
    let xmax = r
        .timeline
        .iter()
        .map(|p| p.0 + 100.0)
        .chain(latency.into_iter().flatten().map(|l| l.0 + 1000.0))
        .fold((s.experiment.duration_ms as f64).max(1000.0), f64::max);
    let (left, w) = (90.0, 980.0);
    let mut svg = Svg::new(left + w + 30.0, 0.0);
    let c = colour(k);
    // Recovery phases of this repetition: fault → membership settled.
    let phases: Vec<(f64, f64)> = timed_faults(s)
        .iter()
        .filter_map(|(i, at, _, _)| {
            let f = scheduled_fault(&s.experiment, r, *i)?;
            Some((*at, at + f.membership_ms?))
        })
        .collect();
    let shade = |svg: &mut Svg, p: &Panel| {
        for (a, b) in &phases {
            svg.rect(
                (p.x(*a), p.top, (p.x(*b) - p.x(*a)).max(2.0), p.h),
                c,
                0.25,
                "none",
            );
        }
    };
    // Throughput.
    let v: Vec<f64> = r.timeline.iter().map(|p| p.1).collect();
    let (ymax, clipped) = robust_top(&v);
    let mut t = "throughput, distinct msgs/s (100 ms windows)".to_string();
    if clipped {
        let max = v.iter().copied().fold(0.0, f64::max);
        let _ = write!(t, "; axis clipped, peak {} msgs/s", tick_label(max.round()));
    }
    svg.text(left, 16.0, 12.0, "start", "black", &t);
    let p = Panel {
        left,
        top: 22.0,
        w,
        h: 110.0,
        xmax,
    };
    p.frame(&mut svg, ymax, "msgs/s");
    shade(&mut svg, &p);
    p.faults(&mut svg, s, true);
    rate_line(&mut svg, &p, &r.timeline, ymax, c);
    let mut y = p.top + p.h + 24.0;
    // Latency.
    match latency {
        Some(l) if !l.is_empty() => {
            svg.text(left, y - 6.0, 12.0, "start", "black", "delivery latency, ms (1 s intervals, log scale): p50 solid, p99 dashed, max dotted");
            let p = Panel {
                left,
                top: y,
                w,
                h: 110.0,
                xmax,
            };
            let hi = l.iter().map(|x| x.3).fold(1.0, f64::max);
            let lo = l
                .iter()
                .map(|x| x.1)
                .fold(f64::INFINITY, f64::min)
                .max(0.01);
            let (ymin, ymax) = (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil()),
            );
            let ylog = |v: f64| {
                p.top
                    + p.h
                        * (1.0
                            - (v.max(ymin).log10() - ymin.log10()) / (ymax.log10() - ymin.log10()))
            };
            svg.rect((left, p.top, w, p.h), "none", 0.0, "#999");
            for t in log_ticks(ymin, ymax).into_iter().filter(|t| {
                let m = t / 10f64.powf(t.log10().floor());
                (m - 1.0).abs() < 1e-9
            }) {
                let yy = ylog(t);
                svg.line((left - 4.0, yy), (left + w, yy), "#e5e5e5", 0.5, "");
                svg.text(left - 6.0, yy + 4.0, 11.0, "end", "black", &tick_label(t));
            }
            svg.text_rot(
                left - 52.0,
                p.top + p.h / 2.0,
                12.0,
                -90.0,
                "middle",
                "ms (log)",
            );
            shade(&mut svg, &p);
            p.faults(&mut svg, s, false);
            for (sel, dash) in [(1usize, ""), (2, "5,3"), (3, "1,3")] {
                let pts: Vec<(f64, f64)> = l
                    .iter()
                    .flat_map(|x| {
                        let v = [x.1, x.2, x.3][sel - 1];
                        [(p.x(x.0), ylog(v)), (p.x(x.0 + 1000.0), ylog(v))]
                    })
                    .collect();
                svg.polyline(&pts, c, 1.5, dash);
            }
            y = p.top + p.h + 24.0;
        }
        _ => {
            svg.text(left, y, 12.0, "start", "#a00", "delivery latency over time: unavailable (no latency-rep-N.hlog in the run directory)");
            y += 18.0;
        }
    }
    // Membership per node.
    match installs {
        Some(ins) if !ins.is_empty() => {
            let mut nodes: Vec<u32> = ins.iter().map(|x| x.0).collect();
            nodes.sort_unstable();
            nodes.dedup();
            svg.text(
                left,
                y - 6.0,
                12.0,
                "start",
                "black",
                "regular configurations installed per node (tick: an install, label: its size)",
            );
            let lane = 16.0;
            let p = Panel {
                left,
                top: y,
                w,
                h: lane * nodes.len() as f64,
                xmax,
            };
            svg.rect((left, p.top, w, p.h), "none", 0.0, "#999");
            shade(&mut svg, &p);
            p.faults(&mut svg, s, false);
            for (j, n) in nodes.iter().enumerate() {
                let yy = p.top + lane * (j as f64 + 0.5);
                svg.text(
                    left - 6.0,
                    yy + 4.0,
                    11.0,
                    "end",
                    "black",
                    &format!("node {n}"),
                );
                svg.line((left, yy), (left + w, yy), "#eee", 0.5, "");
            }
            for (n, t, members) in ins {
                let j = nodes.iter().position(|x| x == n).unwrap_or(0);
                let yy = p.top + lane * (j as f64 + 0.5);
                let x = p.x(*t);
                svg.line((x, yy - 6.0), (x, yy + 6.0), c, 2.0, "");
                svg.text(
                    x + 2.0,
                    yy - 2.0,
                    9.0,
                    "start",
                    "#333",
                    &members.len().to_string(),
                );
            }
            y = p.top + p.h + 4.0;
        }
        _ => {
            svg.text(left, y, 12.0, "start", "#a00", "membership changes per node: unavailable (the records/ of this repetition are not in the run directory; a rerun writes them)");
            y += 10.0;
        }
    }
    let p = Panel {
        left,
        top: y - 4.0,
        w,
        h: 4.0,
        xmax,
    };
    p.time_axis(&mut svg);
    svg.h = y + 40.0;
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_sets_the_axis_not_a_spike() {
        let mut v = vec![1000.0; 100];
        v[50] = 25_000.0;
        let (top, clipped) = robust_top(&v);
        assert!(clipped);
        assert!((1000.0..2000.0).contains(&top), "{top}");
        let (top, clipped) = robust_top(&[1000.0, 900.0]);
        assert!(!clipped && top >= 1000.0);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            log_ticks(1.0, 100.0),
            [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(
            log_ticks(1.0, 20_000.0),
            [1.0, 10.0, 100.0, 1000.0, 10_000.0]
        );
        assert_eq!(lin_ticks(1000.0, 4), [0.0, 250.0, 500.0, 750.0, 1000.0]);
        assert_eq!(tick_label(25_000.0), "25k");
    }
}
