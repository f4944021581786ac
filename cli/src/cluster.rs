//! `ringlab cluster`: N nodes on loopback as child processes; waits for one ring, runs a
//! short load, prints membership, throughput and latency, checks the records, stops.

use anyhow::{Context, Result};
use ringlab_net::control::{Ack, Request, StatsReply, StopLoadReply};
use ringlab_net::harness::{Cluster, Spec};
use ringlab_net::{monotonic_ns, LoadSpec, Transport};
use ringlab_ring::{Config, NodeId};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Options of a cluster run.
pub(crate) struct Opts {
    pub nodes: usize,
    pub transport: Transport,
    pub totem: Config,
    pub size: usize,
    pub senders: usize,
    pub rate: u64,
    pub safe: bool,
    pub load_ms: u64,
    pub port: u16,
    pub key: bool,
    pub baseline: bool,
    pub keep: Option<std::path::PathBuf>,
    pub json: bool,
    pub unbatched: bool,
    pub capture: Option<std::path::PathBuf>,
    pub capture_max_bytes: u64,
}

#[derive(Serialize)]
struct NodeFigures {
    node: NodeId,
    delivered_msgs_per_s: f64,
    delivered_mb_per_s: f64,
    latency_p50_us: f64,
    latency_p99_us: f64,
    latency_max_us: f64,
    retransmissions: u64,
    rss_kib: u64,
    peak_rss_kib: u64,
    idle_rss_kib: u64,
}

#[derive(Serialize)]
struct Summary {
    nodes: usize,
    transport: String,
    variant: String,
    size: usize,
    senders: usize,
    load_seconds: f64,
    formed_ms: f64,
    ring: serde_json::Value,
    members: serde_json::Value,
    per_node: Vec<NodeFigures>,
    mean_msgs_per_s: f64,
    mean_mb_per_s: f64,
    raw: Option<crate::blast::Blast>,
    ratio_to_raw: Option<f64>,
    checker_violations: usize,
}

pub(crate) fn run(o: Opts, interrupted: Arc<AtomicBool>) -> Result<i32> {
    let raw = if o.baseline {
        Some(crate::blast::blast(
            o.nodes - 1,
            o.size,
            (o.load_ms as f64 / 1000.0).max(1.0),
            o.port + 1000,
            o.transport == Transport::Multicast,
        )?)
    } else {
        None
    };
    let dir = match &o.keep {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ringlab-cluster-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let spec = Spec {
        nodes: o.nodes,
        transport: o.transport,
        totem: o.totem.clone(),
        port: o.port,
        group: [239, 192, 76, 1].into(),
        dir: dir.clone(),
        key: o.key.into(),
        record_messages: true,
        record_every: 1,
        binary: std::env::current_exe()?,
        batched_io: !o.unbatched,
        ipv6: false,
        services: vec![],
        service_config: Default::default(),
        netns: None,
        implementation: ringlab_net::harness::Implementation::Ringlab,
    };
    let capture = match &o.capture {
        Some(f) => Some(crate::loopback_capture::LoopbackCapture::start(
            f,
            o.port,
            o.capture_max_bytes,
        )?),
        None => None,
    };
    let t0 = monotonic_ns();
    let mut cluster = Cluster::start(spec).context("starting the nodes")?;
    let ids: Vec<NodeId> = (1..=o.nodes as NodeId).collect();
    let ring = cluster
        .wait_ring(&ids, Duration::from_secs(10))
        .context("waiting for one ring")?;
    let formed_ms = (monotonic_ns() - t0) as f64 / 1e6;
    let idle: Vec<u64> = ids
        .iter()
        .map(|&i| cluster.stats(i).map(|s| s.memory_kib.rss.unwrap_or(0)))
        .collect::<Result<_, _>>()?;
    let before: Vec<StatsReply> = ids
        .iter()
        .map(|&i| cluster.stats(i))
        .collect::<Result<_, _>>()?;
    let load = Request::Load(LoadSpec {
        rate: o.rate,
        size: o.size,
        safe: o.safe,
        duration_ms: Some(o.load_ms),
        ..LoadSpec::default()
    });
    let start = monotonic_ns();
    for &i in ids.iter().take(o.senders.max(1)) {
        cluster.call::<Ack>(i, &load)?;
    }
    while monotonic_ns() < start + o.load_ms * 1_000_000 {
        if interrupted.load(Ordering::SeqCst) {
            cluster.stop();
            anyhow::bail!("interrupted; the nodes were stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = (monotonic_ns() - start) as f64 / 1e9;
    let after: Vec<StatsReply> = ids
        .iter()
        .map(|&i| cluster.stats(i))
        .collect::<Result<_, _>>()?;
    let members = serde_json::to_value(&after[0].status.members)?;
    let mut per_node = Vec::new();
    for (k, &i) in ids.iter().enumerate() {
        let (a, b) = (&after[k], &before[k]);
        per_node.push(NodeFigures {
            node: i,
            delivered_msgs_per_s: (a.delivered.messages - b.delivered.messages) as f64 / secs,
            delivered_mb_per_s: (a.delivered.bytes - b.delivered.bytes) as f64 / secs / 1e6,
            latency_p50_us: a.latency_us.p50,
            latency_p99_us: a.latency_us.p99,
            latency_max_us: a.latency_us.max,
            retransmissions: a.retransmissions,
            rss_kib: a.memory_kib.rss.unwrap_or(0),
            peak_rss_kib: a.memory_kib.peak_rss.unwrap_or(0),
            idle_rss_kib: idle[k],
        });
    }
    // Let the last messages land, then stop and check the whole history.
    for &i in &ids {
        let _ = cluster.call::<StopLoadReply>(i, &Request::StopLoad);
    }
    if !cluster.wait_quiet(Duration::from_secs(20)) {
        eprintln!("ringlab cluster: queues did not drain within 20 s; stopping anyway");
    }
    cluster.stop();
    let records = cluster.records()?;
    if let Some(c) = capture {
        c.finish(&records)?;
    }
    let report = ringlab_sim::check(&records, None);
    let n = per_node.len() as f64;
    let mean_msgs = per_node.iter().map(|p| p.delivered_msgs_per_s).sum::<f64>() / n;
    let mean_mb = per_node.iter().map(|p| p.delivered_mb_per_s).sum::<f64>() / n;
    let ratio = raw.as_ref().map(|r| mean_msgs / r.per_receiver_msgs_per_s);
    let s = Summary {
        nodes: o.nodes,
        transport: format!("{:?}", o.transport).to_lowercase(),
        variant: format!("{:?}", o.totem.variant).to_lowercase(),
        size: o.size,
        senders: o.senders,
        load_seconds: secs,
        formed_ms,
        ring: serde_json::to_value(ring)?,
        members,
        per_node,
        mean_msgs_per_s: mean_msgs,
        mean_mb_per_s: mean_mb,
        raw,
        ratio_to_raw: ratio,
        checker_violations: report.violations.len(),
    };
    if o.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "ringlab cluster: {} nodes on loopback, {} transport, {} ring; one ring {} of {} formed in {:.0} ms",
            s.nodes, s.transport, s.variant, ring, s.members, s.formed_ms
        );
        println!(
            "load: {} sender(s), {} B {} messages, {} for {:.1} s",
            s.senders,
            s.size,
            if o.safe { "safe" } else { "agreed" },
            if o.rate == 0 {
                "max rate".to_string()
            } else {
                format!("{} msg/s each", o.rate)
            },
            secs
        );
        println!("node  delivered msg/s      MB/s   p50 µs   p99 µs   max µs  retrans  RSS idle/now/peak KiB");
        for p in &s.per_node {
            println!(
                "{:>4} {:>16.0} {:>9.2} {:>8.0} {:>8.0} {:>8.0} {:>8} {:>6}/{}/{}",
                p.node,
                p.delivered_msgs_per_s,
                p.delivered_mb_per_s,
                p.latency_p50_us,
                p.latency_p99_us,
                p.latency_max_us,
                p.retransmissions,
                p.idle_rss_kib,
                p.rss_kib,
                p.peak_rss_kib
            );
        }
        if let (Some(r), Some(x)) = (&s.raw, s.ratio_to_raw) {
            println!(
                "raw UDP (ringlab blast, same run): {:.0} datagrams/s per receiver ({:.2} MB/s); ring/raw = {:.1}%",
                r.per_receiver_msgs_per_s,
                r.per_receiver_mb_per_s,
                x * 100.0
            );
        }
        println!(
            "checker over {} records: {}",
            records.len(),
            if report.violations.is_empty() {
                "no violations".to_string()
            } else {
                format!("{} violations", report.violations.len())
            }
        );
        for v in report.violations.iter().take(10) {
            println!("  {v}");
        }
    }
    if o.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(if report.violations.is_empty() { 0 } else { 1 })
}
