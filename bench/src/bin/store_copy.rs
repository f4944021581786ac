//! A full store copy between real nodes on loopback, against raw UDP of one flow measured
//! in the same run, interleaved (raw, copy, raw, copy ...): 3 `ringlab node` processes
//! running the store; node 1 writes S bytes through the ring (1 KiB values); node 3 is
//! killed, its store file removed, and restarted: the chunk protocol (or the ring path)
//! copies the store to it while node 1 goes on writing. The copy's time is from its `start`
//! to its `finish` record (node 3's own clock); its rate is the copied keys and values over
//! that time. With `--kill-provider`, the provider is SIGKILLed once half the bytes are in:
//! the time to resume (the kill to the next chunk) and the bytes received again are
//! reported; `--no-resume` sets `resume = false` (the copy starts again from nothing after
//! the kill, as Ceph's pull design does), to measure what resuming saves. The most bytes
//! the chunk protocol held (its transport's buffers and chunks that came ahead, from `svc
//! store status`) and the largest resident memory (VmRSS, which includes redb's page
//! cache), sampled every 10 ms during the copy, of the requester and of the providers are
//! reported too, and the fill's time (through the ring, until every node has every write).
//!
//! The raw baseline: one sender thread `send`s datagrams of the copy's datagram size from
//! 127.0.0.1 to a receiver thread on 127.0.0.2 as fast as it can for one second; the rate is
//! what the receiver got (what a single flow moves on this loopback, no acknowledgements).
//!
//! `cargo build --release -p ringlab && cargo run --release -p ringlab-bench --bin store_copy
//! -- [--bytes N] [--design push|pull] [--chunk-bytes N] [--window N] [--datagram-window N]
//! [--path unicast|ring]
//! [--kill-provider] [--no-resume] [--rounds N] [--port P]`: one JSON line per round.
// A benchmark over real processes and time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_bench::experiment::StoreSetup;
use ringlab_bench::store::{self, rss_kib};
use ringlab_net::control::Request;
use ringlab_net::harness::{Cluster, Key, Spec};
use ringlab_net::{monotonic_ns, Transport};
use ringlab_records::{Body, Record};
use ringlab_ring::{Config, NodeId};
use ringlab_sync::store::service::Status;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    bytes: u64,
    design: String,
    chunk_bytes: u64,
    window: u64,
    datagram_window: u64,
    path: String,
    kill_provider: bool,
    resume: bool,
    rounds: u32,
    port: u16,
}

fn args() -> Args {
    let mut a = Args {
        bytes: 10 << 20,
        design: "pull".into(),
        chunk_bytes: 1 << 20,
        window: 1,
        datagram_window: 64,
        path: "unicast".into(),
        kill_provider: false,
        resume: true,
        rounds: 3,
        port: 9605,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = || v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--bytes" => a.bytes = next().parse().expect("--bytes N"),
            "--design" => a.design = next(),
            "--chunk-bytes" => a.chunk_bytes = next().parse().expect("--chunk-bytes N"),
            "--window" => a.window = next().parse().expect("--window N"),
            "--datagram-window" => {
                a.datagram_window = next().parse().expect("--datagram-window N");
            }
            "--path" => a.path = next(),
            "--rounds" => a.rounds = next().parse().expect("--rounds N"),
            "--port" => a.port = next().parse().expect("--port P"),
            "--kill-provider" => {
                a.kill_provider = true;
                i += 1;
                continue;
            }
            "--no-resume" => {
                a.resume = false;
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// Raw UDP of one flow on loopback: bytes/s the receiver got in `secs`, datagrams of `size`.
fn raw_flow(size: usize, secs: f64) -> f64 {
    let rx = UdpSocket::bind("127.0.0.2:0").expect("receiver");
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let to = rx.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (s2, g2) = (stop.clone(), got.clone());
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !s2.load(Ordering::Relaxed) {
            if let Ok(n) = rx.recv(&mut buf) {
                g2.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    });
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender");
    let data = vec![7u8; size];
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    // Bounded in time and count.
    while start.elapsed() < limit && sent < 50_000_000 {
        if tx.send_to(&data, to).is_ok() {
            sent += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    receiver.join().expect("receiver");
    got.load(Ordering::Relaxed) as f64 / elapsed
}

fn status(c: &Cluster, id: NodeId) -> Option<Status> {
    store::status(c, id).ok()
}

fn copy_records(records: &[Record], inc: u32) -> Vec<(u64, String, NodeId, u64, u64)> {
    records
        .iter()
        .filter(|r| r.node == 3 && r.inc == inc)
        .filter_map(|r| match &r.body {
            Body::StoreSync {
                phase,
                provider,
                bytes,
                resent_bytes,
                ..
            } => Some((
                r.t_ns,
                phase.clone(),
                *provider,
                *bytes,
                resent_bytes.unwrap_or(0),
            )),
            _ => None,
        })
        .collect()
}

fn main() {
    let a = args();
    let binary = std::env::current_exe()
        .expect("own path")
        .parent()
        .expect("target dir")
        .join("ringlab");
    for round in 0..a.rounds {
        let raw_before = raw_flow(1400, 1.0);
        let dir = std::env::temp_dir().join(format!(
            "ringlab-store-bench-{}-{round}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let section: toml::Value = toml::from_str(&format!(
            "design = \"{}\"\nchunk_bytes = {}\nchunk_window = {}\npath = \"{}\"\n\
             datagram_window = {}\nresume = {}\n",
            a.design, a.chunk_bytes, a.window, a.path, a.datagram_window, a.resume
        ))
        .expect("section");
        let mut c = Cluster::start(Spec {
            nodes: 3,
            transport: Transport::Unicast,
            totem: Config::default(),
            port: a.port + round as u16,
            group: [239, 192, 76, 19].into(),
            dir: dir.clone(),
            key: Key::None,
            record_messages: false,
            record_every: 1,
            binary: binary.clone(),
            batched_io: true,
            ipv6: false,
            services: vec!["store".into()],
            service_config: [("store".to_string(), section)].into_iter().collect(),
            netns: None,
            implementation: ringlab_net::harness::Implementation::Ringlab,
        })
        .expect("cluster");
        let ids = [1, 2, 3];
        c.wait_ring(&ids, Duration::from_secs(20)).expect("ring");
        // The fill, in requests of at most 128 MiB (a node takes up to 256 MiB of fill at
        // once), each waited for, as `ringlab run` fills; bounded (20 minutes).
        let setup = StoreSetup {
            bytes: a.bytes,
            value_size: 1024,
            fill_timeout_ms: Some(1_200_000),
        };
        let filled = store::fill(&c, &setup, &ids, &|| false).expect("the fill");
        let fill_seconds = filled.seconds;
        c.kill(3);
        std::fs::remove_file(c.state_dir(3).join("store.redb")).expect("remove the store");
        c.wait_ring(&[1, 2], Duration::from_secs(20))
            .expect("2-ring");
        c.spawn(3).expect("restart");
        let inc = c.incarnation(3);
        // Writes go on during the copy: one every 10 ms from node 1, bounded.
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut killed: Option<(NodeId, u64)> = None;
        let mut writes = 0u64;
        let (mut peak_req, mut peak_prov) = (0u64, 0u64);
        let mut held_max = [0u64; 3];
        loop {
            if writes < 60_000 {
                let put = serde_json::json!({"op": "put", "key": format!("w{}", writes % 100), "value": "v"});
                let via = killed.map_or(1, |(p, _)| if p == 1 { 2 } else { 1 });
                if c.call::<serde_json::Value>(
                    via,
                    &Request::Svc {
                        service: "store".into(),
                        request: put,
                    },
                )
                .is_ok()
                {
                    writes += 1;
                }
            }
            peak_req = peak_req.max(rss_kib(c.pid(3)).unwrap_or(0));
            for p in [1, 2] {
                peak_prov = peak_prov.max(rss_kib(c.pid(p)).unwrap_or(0));
            }
            for p in [1, 2, 3] {
                if let Some(st) = status(&c, p) {
                    let held = &mut held_max[p as usize - 1];
                    *held = (*held).max(st.transfer_held_bytes);
                }
            }
            let recs = c.records().expect("records");
            let cr = copy_records(&recs, inc);
            if cr.iter().any(|x| x.1 == "finish") {
                break;
            }
            if a.kill_provider && killed.is_none() {
                if let Some(last) = cr.iter().rev().find(|x| x.1 == "chunk") {
                    if last.3 * 2 >= a.bytes {
                        c.kill(last.2);
                        killed = Some((last.2, monotonic_ns()));
                    }
                }
            }
            assert!(Instant::now() < deadline, "the copy never finished: {cr:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        let raw_after = raw_flow(1400, 1.0);
        let s: Vec<Option<Status>> = ids
            .iter()
            .filter(|&&i| killed.is_none_or(|(p, _)| p != i))
            .map(|&i| status(&c, i))
            .collect();
        let equal = s
            .windows(2)
            .all(|w| w[0].as_ref().map(|x| &x.digest) == w[1].as_ref().map(|x| &x.digest));
        c.stop();
        let recs = c.records().expect("records");
        let cr = copy_records(&recs, inc);
        let start = cr.iter().find(|x| x.1 == "start").expect("start").0;
        let finish = cr.iter().find(|x| x.1 == "finish").expect("finish");
        let secs = (finish.0 - start) as f64 / 1e9;
        let rate = finish.3 as f64 / secs;
        let raw = (raw_before + raw_after) / 2.0;
        let resume = killed.and_then(|(_, at)| {
            cr.iter()
                .find(|x| x.0 > at && x.1 == "chunk")
                .map(|x| (x.0 - at) as f64 / 1e6)
        });
        println!(
            "{}",
            serde_json::json!({
                "round": round,
                "design": a.design,
                "path": a.path,
                "chunk_bytes": a.chunk_bytes,
                "window": a.window,
                "datagram_window": a.datagram_window,
                "store_bytes": finish.3,
                "fill_seconds": fill_seconds,
                "copy_seconds": secs,
                "copy_mb_per_s": rate / 1e6,
                "raw_before_mb_per_s": raw_before / 1e6,
                "raw_after_mb_per_s": raw_after / 1e6,
                "copy_over_raw": rate / raw,
                "killed_provider": killed.map(|k| k.0),
                "resume": a.resume,
                "resume_ms": resume,
                // Received again: chunks asked again, and what aborted copies had loaded.
                "resent_bytes": finish.4 + cr.iter().filter(|x| x.1 == "abort").map(|x| x.3).sum::<u64>(),
                "resumes": cr.iter().filter(|x| x.1 == "resume").count(),
                "aborts": cr.iter().filter(|x| x.1 == "abort").count(),
                "writes_during_copy": writes,
                "held_bytes_max_requester": held_max[2],
                "held_bytes_max_providers": held_max[0].max(held_max[1]),
                "rss_kib_max_requester": peak_req,
                "rss_kib_max_providers": peak_prov,
                "digests_equal": equal,
            })
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
