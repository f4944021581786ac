//! Isolate under loss in the simulator (the namespace experiments loss/uniform-10 and
//! loss/burst-10, simulated): 5 nodes, every link losing LOSS (default 0.1) of its copies,
//! uniformly or in bursts of BURST copies (Gilbert-Elliott), each node sending 1 KiB every
//! 5 ms; node 5 isolated 0.5 s after the loss starts, healed 5 s later. Prints per seed
//! ("SETTLE") the last regular configuration nodes 1-4 installed between the isolate and the
//! heal (ms after the isolate), and counts configurations other than the expected ones. A
//! measuring program, not a test: copy it to sim/tests/ and run
//! `SEEDS=40 cargo test --release -p ringlab-sim --test loss_scratch -- --ignored --nocapture`
//! (`SEED=S` starts at seed S and prints that seed's records; `V=1` prints every wrong
//! configuration).
use ringlab_records::Body;
use ringlab_ring::{Config, ConfigKind, Guarantee, NodeId};
use ringlab_sim::{NetConfig, Sim};

const MS: u64 = 1_000_000;

#[test]
#[ignore]
fn loss_isolate_exclusions() {
    let loss: f64 = std::env::var("LOSS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let burst: f64 = std::env::var("BURST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let seeds: u64 = std::env::var("SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let verbose = std::env::var("V").is_ok();
    let (mut bad_iso, mut bad_heal, mut reps_bad) = (0, 0, 0);
    let first: u64 = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for seed in first..=seeds {
        let net = NetConfig {
            loss: 0.0,
            ..NetConfig::default()
        };
        let mut sim = Sim::new(5, seed, Config::default(), net);
        sim.start_all();
        let ids = sim.ids();
        sim.run_for(500 * MS);
        for a in 1..=5u32 {
            for b in 1..=5u32 {
                if a != b {
                    sim.set_link(
                        a as NodeId,
                        b as NodeId,
                        NetConfig {
                            loss,
                            loss_burst: burst,
                            ..NetConfig::default()
                        },
                    );
                }
            }
        }
        let t0 = sim.now();
        let mut k = 0u64;
        while sim.now() < t0 + 9_500 * MS {
            let t = sim.now() - t0;
            if t >= 500 * MS && t < 501 * MS {
                sim.isolate(5);
            }
            if t >= 5_500 * MS && t < 5_501 * MS {
                sim.heal();
                for a in 1..=5u32 {
                    for b in 1..=5u32 {
                        if a != b {
                            sim.set_link(
                                a as NodeId,
                                b as NodeId,
                                NetConfig {
                                    loss,
                                    loss_burst: burst,
                                    ..NetConfig::default()
                                },
                            );
                        }
                    }
                }
            }
            for &id in &ids {
                let _ = sim.submit(id, &[k as u8; 1024], Guarantee::Agreed);
            }
            k += 1;
            sim.run_for(5 * MS);
            let _ = &mut k;
        }
        if let Ok(only) = std::env::var("SEED") {
            if only.parse::<u64>().unwrap() == seed {
                for r in sim.records() {
                    if r.t_ns < t0 + 500 * MS {
                        continue;
                    }
                    let mut b = Vec::new();
                    ringlab_records::encode_line(r, &mut b);
                    let s = String::from_utf8_lossy(&b);
                    if s.contains("\"state\"") || s.contains("\"config\"") || s.contains("fault") {
                        print!("t={} {}", (r.t_ns - t0) / MS, s);
                    }
                }
            }
        }
        let last = sim.records().iter().filter(|r| r.node != 5 && r.t_ns >= t0 + 500 * MS && r.t_ns < t0 + 5_500 * MS).filter_map(|r| match &r.body { Body::Config { kind, .. } if *kind == ConfigKind::Regular => Some((r.t_ns - t0 - 500 * MS) / MS), _ => None }).max();
        println!("SETTLE seed {seed} {:?}", last);
        let mut bad = 0;
        for r in sim.records() {
            if r.t_ns < t0 + 500 * MS {
                continue;
            }
            if let Body::Config { kind, members, .. } = &r.body {
                if *kind != ConfigKind::Regular {
                    continue;
                }
                let t = (r.t_ns - t0) / MS;
                let exp: Vec<NodeId> = if t < 5_500 {
                    if r.node == 5 {
                        vec![5]
                    } else {
                        vec![1, 2, 3, 4]
                    }
                } else {
                    vec![1, 2, 3, 4, 5]
                };
                if *members != exp && !(t >= 5_500 && t < 5_510) {
                    bad += 1;
                    if t < 5_500 {
                        bad_iso += 1
                    } else {
                        bad_heal += 1
                    }
                    if verbose {
                        println!("seed {seed} t={t} node {} members {:?}", r.node, members);
                    }
                }
            }
        }
        if bad > 0 {
            reps_bad += 1;
        }
    }
    println!("loss {loss} burst {burst}: seeds {seeds}, reps with a wrong config {reps_bad}, wrong configs during isolate {bad_iso}, after heal {bad_heal}");
}
