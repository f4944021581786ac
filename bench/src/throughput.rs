//! Ring throughput against raw UDP on the same bridge, in the same run.
//!
//! With `[baseline] raw = true` and no `[store]`, the runner measures raw fan-outs
//! ([`crate::raw`]) before the first repetition and after each one, and reads every node's
//! counters (`stats`: messages delivered, their bytes, the latency histogram) just before
//! the load starts and just before it stops. [`RepThroughput`] is one repetition's figures:
//! deliveries per second per node from the counters (they count every message, whatever
//! records the nodes keep), and their ratio to the raw rate per receiver of the
//! experiment's own transport, the mean of the fan-outs just before and just after the
//! repetition: `ring_over_raw`, one ratio per interleaved pair, of payload bytes per second
//! (for messages up to 65,000 bytes the raw datagrams have the messages' size, and the
//! ratio is the ratio of message rates; 64 KiB messages are set against 65,000-byte
//! datagrams, UDP's largest being 65,507). [`ThroughputAggregate`]
//! gives their spread over the repetitions; [`write_csv`] writes throughput.csv; [`table`]
//! and [`plot`] set many runs (a family, see experiments/throughput/) side by side.

use crate::raw::{RawFanout, RawTransport};
use crate::summary::{RepSummary, Spread, Summary};
use anyhow::Result;
use ringlab_net::control::{LatencyStats, StatsReply};
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What [`measure`] reads of a node's `stats`: its delivery counters and latency
/// histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct Counters {
    /// Messages delivered.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Send-to-deliver latency so far, µs.
    pub latency_us: LatencyStats,
}

impl From<&StatsReply> for Counters {
    fn from(s: &StatsReply) -> Self {
        Self {
            messages: s.delivered.messages,
            bytes: s.delivered.bytes,
            latency_us: s.latency_us.clone(),
        }
    }
}

/// One node's deliveries over the measured part, from its counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeRate {
    /// The node.
    pub node: NodeId,
    /// Messages it delivered.
    pub delivered: u64,
    /// Per second.
    pub msgs_per_s: f64,
    /// Payload MB/s (10^6 bytes).
    pub mb_per_s: f64,
}

/// One repetition's throughput against the raw baseline.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RepThroughput {
    /// The send and deliver records the nodes kept: `all`, `1 in N` or `none`.
    pub records: String,
    /// Seconds between the two readings of the counters.
    pub seconds: f64,
    /// Each node's deliveries.
    pub per_node: Vec<NodeRate>,
    /// The nodes' mean deliveries per second.
    pub msgs_per_s_per_node: f64,
    /// The slowest node's.
    pub min_msgs_per_s_per_node: f64,
    /// The nodes' mean payload MB/s.
    pub mb_per_s_per_node: f64,
    /// Send-to-deliver latency of every message delivered up to the end, µs: the median
    /// over nodes of each node's p50 and p99 (its histogram), and the largest max.
    pub latency_p50_us: Option<f64>,
    /// See `latency_p50_us`.
    pub latency_p99_us: Option<f64>,
    /// See `latency_p50_us`.
    pub latency_max_us: Option<f64>,
    /// The raw fan-outs measured just before the repetition.
    pub raw_before: Vec<RawFanout>,
    /// And just after.
    pub raw_after: Vec<RawFanout>,
    /// The raw datagrams/s per receiver of the experiment's transport: the mean of before
    /// and after.
    pub raw_per_receiver_per_s: Option<f64>,
    /// The same in payload MB/s.
    pub raw_per_receiver_mb_per_s: Option<f64>,
    /// mb_per_s_per_node / raw_per_receiver_mb_per_s.
    pub ring_over_raw: Option<f64>,
}

/// What the nodes kept of their send and deliver records, in words.
pub fn records_kept(record_messages: bool, every: u64) -> String {
    match (record_messages, every) {
        (false, _) => "none".into(),
        (true, 1) => "all".into(),
        (true, n) => format!("1 in {n}"),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The mean of a figure of the fan-outs of `transport` before and after.
fn raw_mean(
    before: &[RawFanout],
    after: &[RawFanout],
    transport: RawTransport,
    g: fn(&RawFanout) -> f64,
) -> Option<f64> {
    let of = |f: &[RawFanout]| f.iter().find(|f| f.transport == transport).map(g);
    match (of(before), of(after)) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    }
}

/// One repetition's figures from the nodes' counters read at `t_before_ns` and
/// `t_after_ns` (a node missing from either reading is left out: restarted or dead) and
/// the fan-outs around it.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    transport: RawTransport,
    records: String,
    before: &BTreeMap<NodeId, Counters>,
    after: &BTreeMap<NodeId, Counters>,
    t_before_ns: u64,
    t_after_ns: u64,
    raw_before: Vec<RawFanout>,
    raw_after: Vec<RawFanout>,
) -> RepThroughput {
    let seconds = t_after_ns.saturating_sub(t_before_ns) as f64 / 1e9;
    let per_node: Vec<NodeRate> = after
        .iter()
        .filter_map(|(id, a)| {
            let b = before.get(id)?;
            let delivered = a.messages.checked_sub(b.messages)?;
            let bytes = a.bytes.saturating_sub(b.bytes);
            (seconds > 0.0).then(|| NodeRate {
                node: *id,
                delivered,
                msgs_per_s: delivered as f64 / seconds,
                mb_per_s: bytes as f64 / seconds / 1e6,
            })
        })
        .collect();
    let n = per_node.len().max(1) as f64;
    let msgs = per_node.iter().map(|r| r.msgs_per_s).sum::<f64>() / n;
    let lat = |g: &dyn Fn(&Counters) -> f64| {
        median(
            after
                .values()
                .filter(|s| s.latency_us.count > 0)
                .map(g)
                .collect(),
        )
    };
    let raw = raw_mean(&raw_before, &raw_after, transport, |f| f.per_receiver_per_s);
    let raw_mb = raw_mean(&raw_before, &raw_after, transport, |f| {
        f.per_receiver_mb_per_s
    });
    let mb = per_node.iter().map(|r| r.mb_per_s).sum::<f64>() / n;
    RepThroughput {
        records,
        seconds,
        msgs_per_s_per_node: msgs,
        min_msgs_per_s_per_node: per_node
            .iter()
            .map(|r| r.msgs_per_s)
            .reduce(f64::min)
            .unwrap_or(0.0),
        mb_per_s_per_node: mb,
        latency_p50_us: lat(&|s| s.latency_us.p50),
        latency_p99_us: lat(&|s| s.latency_us.p99),
        latency_max_us: after
            .values()
            .filter(|s| s.latency_us.count > 0)
            .map(|s| s.latency_us.max)
            .reduce(f64::max),
        raw_per_receiver_per_s: raw,
        raw_per_receiver_mb_per_s: raw_mb,
        ring_over_raw: raw_mb.filter(|r| *r > 0.0).map(|r| mb / r),
        per_node,
        raw_before,
        raw_after,
    }
}

/// Each node's deliveries (for CPU time per message), from a repetition's throughput.
pub fn delivered(t: &RepThroughput) -> BTreeMap<NodeId, u64> {
    t.per_node.iter().map(|r| (r.node, r.delivered)).collect()
}

/// The throughput of a run over its repetitions.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ThroughputAggregate {
    /// The experiment's transport, whose raw fan-out the ring is set against.
    pub transport: String,
    /// The records the nodes kept.
    pub records: String,
    /// Deliveries per second per node (each repetition's mean over nodes).
    pub msgs_per_s_per_node: Spread,
    /// Raw datagrams per second per receiver, every fan-out measured, by transport.
    pub raw_per_receiver_per_s: BTreeMap<String, Spread>,
    /// Raw loss (mean over receivers), by transport.
    pub raw_loss: BTreeMap<String, Spread>,
    /// The raw sender's CPU time per datagram, µs, by transport.
    pub raw_sender_cpu_us_per_datagram: BTreeMap<String, Spread>,
    /// The raw receivers' CPU time per datagram, µs, by transport.
    pub raw_receiver_cpu_us_per_datagram: BTreeMap<String, Spread>,
    /// Each repetition's ring/raw: its spread is the spread of the interleaved pairs.
    pub ring_over_raw: Spread,
    /// Latency p50 and p99 over repetitions, µs.
    pub latency_p50_us: Spread,
    /// See `latency_p50_us`.
    pub latency_p99_us: Spread,
}

impl ThroughputAggregate {
    /// Aggregates the repetitions that measured throughput (none: `None`).
    pub fn of(transport: &str, reps: &[RepSummary]) -> Option<Self> {
        let t: Vec<&RepThroughput> = reps.iter().filter_map(|r| r.throughput.as_ref()).collect();
        let first = t.first()?;
        // Every fan-out once: the first repetition's before, then each one's after.
        let mut fanouts: Vec<&RawFanout> = first.raw_before.iter().collect();
        fanouts.extend(t.iter().flat_map(|r| r.raw_after.iter()));
        let by = |g: &dyn Fn(&RawFanout) -> Option<f64>| {
            let mut m: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for f in &fanouts {
                if let Some(v) = g(f) {
                    m.entry(f.transport.as_str().into()).or_default().push(v);
                }
            }
            m.into_iter().map(|(k, v)| (k, Spread::of(v))).collect()
        };
        Some(Self {
            transport: transport.into(),
            records: first.records.clone(),
            msgs_per_s_per_node: Spread::of(t.iter().map(|r| r.msgs_per_s_per_node).collect()),
            raw_per_receiver_per_s: by(&|f| Some(f.per_receiver_per_s)),
            raw_loss: by(&|f| Some(f.loss)),
            raw_sender_cpu_us_per_datagram: by(&|f| f.sender_cpu_us_per_datagram),
            raw_receiver_cpu_us_per_datagram: by(&|f| f.receiver_cpu_us_per_datagram),
            ring_over_raw: Spread::of(t.iter().filter_map(|r| r.ring_over_raw).collect()),
            latency_p50_us: Spread::of(t.iter().filter_map(|r| r.latency_p50_us).collect()),
            latency_p99_us: Spread::of(t.iter().filter_map(|r| r.latency_p99_us).collect()),
        })
    }
}

/// One row of throughput.csv.
#[derive(Serialize)]
struct Row<'a> {
    label: &'a str,
    rep: u32,
    records: &'a str,
    msgs_per_s_per_node: f64,
    min_msgs_per_s_per_node: f64,
    mb_per_s_per_node: f64,
    latency_p50_us: Option<f64>,
    latency_p99_us: Option<f64>,
    raw_before_per_receiver_per_s: Option<f64>,
    raw_after_per_receiver_per_s: Option<f64>,
    ring_over_raw: Option<f64>,
    node_cpu_us_per_msg: Option<f64>,
    raw_sender_cpu_us_per_datagram: Option<f64>,
    rss_peak_kib: Option<u64>,
}

/// Writes throughput.csv: one row per repetition (nothing when no repetition measured
/// throughput).
pub fn write_csv(path: &Path, s: &Summary) -> Result<()> {
    let t = s.experiment.raw_transport();
    if s.reps.iter().all(|r| r.throughput.is_none()) {
        return Ok(());
    }
    let mut w = csv::Writer::from_path(path)?;
    for r in &s.reps {
        let Some(x) = &r.throughput else { continue };
        let own = |f: &[RawFanout]| f.iter().find(|f| f.transport == t).cloned();
        w.serialize(Row {
            label: &s.label,
            rep: r.rep,
            records: &x.records,
            msgs_per_s_per_node: x.msgs_per_s_per_node,
            min_msgs_per_s_per_node: x.min_msgs_per_s_per_node,
            mb_per_s_per_node: x.mb_per_s_per_node,
            latency_p50_us: x.latency_p50_us,
            latency_p99_us: x.latency_p99_us,
            raw_before_per_receiver_per_s: own(&x.raw_before).map(|f| f.per_receiver_per_s),
            raw_after_per_receiver_per_s: own(&x.raw_after).map(|f| f.per_receiver_per_s),
            ring_over_raw: x.ring_over_raw,
            node_cpu_us_per_msg: median(r.usage.iter().filter_map(|u| u.cpu_us_per_msg).collect()),
            raw_sender_cpu_us_per_datagram: own(&x.raw_before)
                .and_then(|f| f.sender_cpu_us_per_datagram),
            rss_peak_kib: r.usage.iter().filter_map(|u| u.rss_peak_kib).max(),
        })?;
    }
    w.flush()?;
    Ok(())
}

/// One run's line in a family table.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FamilyRow {
    /// The experiment's name.
    pub name: String,
    /// The sweep's label.
    pub label: String,
    /// Nodes.
    pub nodes: usize,
    /// Message size.
    pub size: usize,
    /// `multicast` or `unicast`.
    pub transport: String,
    /// `classic` or `accelerated`.
    pub variant: String,
    /// Senders.
    pub senders: usize,
    /// Records kept.
    pub records: String,
    /// Repetitions with a ratio.
    pub pairs: usize,
    /// Median deliveries/s per node.
    pub msgs_per_s_per_node: Option<f64>,
    /// Median MB/s per node.
    pub mb_per_s_per_node: Option<f64>,
    /// Median raw datagrams/s per receiver, own transport.
    pub raw_per_receiver_per_s: Option<f64>,
    /// Median raw payload MB/s per receiver, own transport.
    pub raw_mb_per_s: Option<f64>,
    /// Median raw loss, own transport.
    pub raw_loss: Option<f64>,
    /// ring/raw: median, smallest and largest pair.
    pub ring_over_raw: Option<f64>,
    /// Smallest pair.
    pub ring_over_raw_min: Option<f64>,
    /// Largest pair.
    pub ring_over_raw_max: Option<f64>,
    /// Median CPU µs per delivered message per node.
    pub node_cpu_us_per_msg: Option<f64>,
    /// Median CPU µs per datagram of the raw sender.
    pub raw_sender_cpu_us_per_datagram: Option<f64>,
    /// Largest peak RSS of a node, KiB.
    pub rss_peak_kib: Option<u64>,
    /// Median of the repetitions' latency p50 and p99, µs.
    pub latency_p50_us: Option<f64>,
    /// See `latency_p50_us`.
    pub latency_p99_us: Option<f64>,
    /// Checker violations over all repetitions.
    pub violations: usize,
}

/// A family row of one summary (none without throughput figures).
pub fn family_row(s: &Summary) -> Option<FamilyRow> {
    let t = s.throughput.as_ref()?;
    let e = &s.experiment;
    let own = e.raw_transport().as_str();
    // Medians over the repetitions, the middle two averaged for an even count (a family of
    // two repetitions gives the mean of its two pairs, not the better one).
    let reps: Vec<&RepThroughput> = s
        .reps
        .iter()
        .filter_map(|r| r.throughput.as_ref())
        .collect();
    let of = |g: &dyn Fn(&RepThroughput) -> Option<f64>| {
        median(reps.iter().filter_map(|r| g(r)).collect())
    };
    Some(FamilyRow {
        name: e.name.clone(),
        label: s.label.clone(),
        nodes: e.nodes,
        size: e.load.size,
        transport: own.into(),
        variant: match e.totem.variant {
            ringlab_ring::Variant::Classic => "classic",
            ringlab_ring::Variant::Accelerated => "accelerated",
        }
        .into(),
        senders: e.load.senders,
        records: t.records.clone(),
        pairs: t.ring_over_raw.n,
        msgs_per_s_per_node: of(&|r| Some(r.msgs_per_s_per_node)),
        mb_per_s_per_node: of(&|r| Some(r.mb_per_s_per_node)),
        raw_mb_per_s: of(&|r| r.raw_per_receiver_mb_per_s),
        raw_per_receiver_per_s: t.raw_per_receiver_per_s.get(own).and_then(|x| x.median),
        raw_loss: t.raw_loss.get(own).and_then(|x| x.median),
        ring_over_raw: of(&|r| r.ring_over_raw),
        ring_over_raw_min: t.ring_over_raw.min,
        ring_over_raw_max: t.ring_over_raw.max,
        node_cpu_us_per_msg: s.usage.as_ref().and_then(|u| u.cpu_us_per_msg.median),
        raw_sender_cpu_us_per_datagram: t
            .raw_sender_cpu_us_per_datagram
            .get(own)
            .and_then(|x| x.median),
        rss_peak_kib: s
            .reps
            .iter()
            .flat_map(|r| r.usage.iter().filter_map(|u| u.rss_peak_kib))
            .max(),
        latency_p50_us: of(&|r| r.latency_p50_us),
        latency_p99_us: of(&|r| r.latency_p99_us),
        violations: s.violations,
    })
}

fn f0(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.0}"))
}
fn f1(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.1}"))
}
fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{:.0}%", x * 100.0))
}

/// A Markdown table of a family: one line per run, sorted by transport, variant, senders,
/// size and nodes.
pub fn table(rows: &[FamilyRow]) -> String {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| {
        (
            &a.transport,
            &a.variant,
            a.senders,
            a.size,
            a.nodes,
            &a.records,
        )
            .cmp(&(
                &b.transport,
                &b.variant,
                b.senders,
                b.size,
                b.nodes,
                &b.records,
            ))
    });
    let mut out = String::from(
        "| transport | variant | senders | size B | nodes | records | msgs/s per node | MB/s per node | raw datagrams/s per receiver | raw MB/s | raw loss | ring/raw median (min–max, pairs) | CPU µs/msg node | CPU µs/dgram raw sender | peak RSS MiB | p50 / p99 µs | violations |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} ({}–{}, {}) | {} | {} | {} | {} / {} | {} |\n",
            r.transport,
            r.variant,
            r.senders,
            r.size,
            r.nodes,
            r.records,
            f0(r.msgs_per_s_per_node),
            f1(r.mb_per_s_per_node),
            f0(r.raw_per_receiver_per_s),
            f1(r.raw_mb_per_s),
            pct(r.raw_loss),
            pct(r.ring_over_raw),
            pct(r.ring_over_raw_min),
            pct(r.ring_over_raw_max),
            r.pairs,
            f1(r.node_cpu_us_per_msg),
            f1(r.raw_sender_cpu_us_per_datagram),
            r.rss_peak_kib
                .map_or("–".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            f0(r.latency_p50_us),
            f0(r.latency_p99_us),
            r.violations,
        ));
    }
    out
}

/// Plots ring/raw (median, with the smallest and largest pair as a bar) against node
/// count, one line per (transport, variant, senders, size), into an SVG at `path`.
pub fn plot(rows: &[FamilyRow], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let mut series: BTreeMap<String, Vec<&FamilyRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.ring_over_raw.is_some()) {
        let key = format!(
            "{} {} {} sender{} {} B{}",
            r.transport,
            r.variant,
            r.senders,
            if r.senders == 1 { "" } else { "s" },
            r.size,
            if r.records == "all" {
                String::new()
            } else {
                format!(" (records {})", r.records)
            }
        );
        series.entry(key).or_default().push(r);
    }
    if series.is_empty() {
        anyhow::bail!("no run has a ring/raw figure to plot");
    }
    let ymax = rows
        .iter()
        .filter_map(|r| r.ring_over_raw_max.or(r.ring_over_raw))
        .fold(1.0f64, f64::max)
        * 1.1;
    let xmax = rows.iter().map(|r| r.nodes).max().unwrap_or(16) as f64 + 1.0;
    let root = SVGBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Ring throughput per node / raw UDP per receiver (same bridge, interleaved)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .right_y_label_area_size(10)
        .build_cartesian_2d(1.0..xmax, 0.0..ymax)?;
    chart
        .configure_mesh()
        .x_desc("nodes")
        .y_desc("ring / raw (1 = the raw rate)")
        .draw()?;
    for (i, (key, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by_key(|r| r.nodes);
        let colour = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|r| Some((r.nodes as f64, r.ring_over_raw?)))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))?
            .label(key)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        chart.draw_series(
            line.iter()
                .map(|&(x, y)| Circle::new((x, y), 3, colour.filled())),
        )?;
        chart.draw_series(pts.iter().filter_map(|r| {
            Some(PathElement::new(
                vec![
                    (r.nodes as f64, r.ring_over_raw_min?),
                    (r.nodes as f64, r.ring_over_raw_max?),
                ],
                colour,
            ))
        }))?;
    }
    chart
        .draw_series(LineSeries::new(
            vec![(1.0, 1.0), (xmax, 1.0)],
            BLACK.mix(0.3),
        ))?
        .label("raw")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 11))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{summarise, FlowReceived, FlowSent};

    fn stats(delivered: u64, p50: f64) -> Counters {
        Counters {
            messages: delivered,
            bytes: delivered * 1000,
            latency_us: LatencyStats {
                count: delivered,
                p50,
                p90: p50 * 2.0,
                p99: p50 * 4.0,
                p999: p50 * 8.0,
                max: p50 * 10.0,
            },
        }
    }

    fn fan(t: RawTransport, per_receiver: u64) -> RawFanout {
        let sent = FlowSent {
            datagrams: per_receiver * if t == RawTransport::Unicast { 2 } else { 1 },
            seconds: 1.0,
            cpu_s: 0.5,
            calls: 10,
            errors: 0,
        };
        let got = FlowReceived {
            datagrams: per_receiver,
            bytes: per_receiver * 1000,
            cpu_s: 0.1,
        };
        summarise(t, 1000, 1, &sent, &[(2, got.clone()), (3, got)])
    }

    #[test]
    fn ring_over_raw_sets_each_node_against_the_fanouts_around_the_repetition() {
        let before: BTreeMap<NodeId, Counters> = [
            (1, stats(100, 1.0)),
            (2, stats(50, 1.0)),
            (3, stats(0, 1.0)),
        ]
        .into();
        let after: BTreeMap<NodeId, Counters> = [
            (1, stats(20_100, 300.0)),
            (2, stats(20_050, 500.0)),
            (3, stats(10_000, 700.0)),
        ]
        .into();
        let t = measure(
            RawTransport::Multicast,
            records_kept(true, 1),
            &before,
            &after,
            1_000_000_000,
            3_000_000_000,
            vec![
                fan(RawTransport::Multicast, 20_000),
                fan(RawTransport::Unicast, 9_000),
            ],
            vec![fan(RawTransport::Multicast, 30_000)],
        );
        assert_eq!(t.seconds, 2.0);
        assert_eq!(t.per_node.len(), 3);
        assert_eq!(t.per_node[0].msgs_per_s, 10_000.0);
        assert_eq!(t.per_node[2].msgs_per_s, 5_000.0);
        assert!((t.msgs_per_s_per_node - 25_000.0 / 3.0).abs() < 1e-9);
        assert_eq!(t.min_msgs_per_s_per_node, 5_000.0);
        // The multicast fan-outs before and after: (20,000 + 30,000) / 2.
        assert_eq!(t.raw_per_receiver_per_s, Some(25_000.0));
        assert!((t.ring_over_raw.unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(t.latency_p50_us, Some(500.0));
        assert_eq!(t.latency_max_us, Some(7000.0));
        assert_eq!(delivered(&t)[&3], 10_000);
    }

    #[test]
    fn a_node_missing_from_a_reading_is_left_out_and_no_fanout_gives_no_ratio() {
        let before: BTreeMap<NodeId, Counters> = [(1, stats(0, 1.0))].into();
        let after: BTreeMap<NodeId, Counters> =
            [(1, stats(1000, 1.0)), (2, stats(1000, 1.0))].into();
        let t = measure(
            RawTransport::Unicast,
            records_kept(false, 1),
            &before,
            &after,
            0,
            1_000_000_000,
            vec![fan(RawTransport::Multicast, 10)],
            vec![],
        );
        assert_eq!(t.per_node.len(), 1);
        assert_eq!(t.records, "none");
        assert_eq!(t.raw_per_receiver_per_s, None);
        assert_eq!(t.ring_over_raw, None);
        assert_eq!(records_kept(true, 10), "1 in 10");
    }

    #[test]
    fn an_even_count_has_the_mean_of_its_middle_two_as_median() {
        assert_eq!(median(vec![0.9, 0.5]), Some(0.7));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![f64::NAN]), None);
    }

    #[test]
    fn the_family_table_and_plot_show_each_run() {
        let row = |nodes, ratio: f64| FamilyRow {
            name: "throughput-mcast".into(),
            label: format!("nodes={nodes}"),
            nodes,
            size: 1024,
            transport: "multicast".into(),
            variant: "accelerated".into(),
            senders: 1,
            records: "all".into(),
            pairs: 3,
            msgs_per_s_per_node: Some(40_000.0),
            mb_per_s_per_node: Some(41.0),
            raw_per_receiver_per_s: Some(50_000.0),
            raw_mb_per_s: Some(51.2),
            raw_loss: Some(0.01),
            ring_over_raw: Some(ratio),
            ring_over_raw_min: Some(ratio - 0.1),
            ring_over_raw_max: Some(ratio + 0.1),
            node_cpu_us_per_msg: Some(5.0),
            raw_sender_cpu_us_per_datagram: Some(2.0),
            rss_peak_kib: Some(8192),
            latency_p50_us: Some(400.0),
            latency_p99_us: Some(2000.0),
            violations: 0,
        };
        let rows = vec![row(5, 0.8), row(3, 0.9)];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[2].contains("| 3 |") && lines[2].contains("90% (80%–100%, 3)"),
            "{t}"
        );
        assert!(
            lines[3].contains("| 5 |") && lines[3].contains("| 8.0 |"),
            "{t}"
        );
        let dir = std::env::temp_dir().join(format!("ringlab-tp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("ring-over-raw.svg");
        plot(&rows, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("multicast accelerated 1 sender 1024 B"));
        assert!(text.contains("nodes"));
        let mut none = rows.clone();
        for r in &mut none {
            r.ring_over_raw = None;
        }
        assert!(plot(&none, &svg).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
