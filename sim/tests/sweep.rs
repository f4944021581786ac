//! Seed sweeps with mixed faults: every run judged by the checker, liveness included.
//! CI runs these: 200 seeds of the classic ring and 100 of the accelerated one.

// Independent seeds run on several threads; each run is single-threaded and deterministic,
// so the simulator's ban on threads (clippy.toml) does not apply to this harness.
#![allow(clippy::disallowed_methods)]

use ringlab_ring::Variant;
use ringlab_sim::{run, Faults, RunConfig};

fn sweep(first: u64, count: u64, variant: Variant, nodes: usize, loss: f64) {
    let seeds: Vec<u64> = (first..first + count).collect();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let failing: Vec<(u64, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = seeds
            .chunks(seeds.len().div_ceil(threads))
            .map(|chunk| {
                s.spawn(move || {
                    let mut bad = vec![];
                    for &seed in chunk {
                        let mut c = RunConfig {
                            seed,
                            nodes,
                            faults: Faults::parse("partition,merge,crash,restart,pause").unwrap(),
                            ..RunConfig::default()
                        };
                        c.ring.variant = variant;
                        c.net.loss = loss;
                        c.net.dup = 0.01;
                        c.net.reorder = 0.05;
                        let r = run(&c);
                        assert!(r.delivered > 0, "seed {seed} delivered nothing");
                        if !r.check.violations.is_empty() {
                            bad.push((
                                seed,
                                r.check
                                    .violations
                                    .iter()
                                    .take(5)
                                    .map(|v| v.to_string())
                                    .collect(),
                            ));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (seed, v) in &failing {
        eprintln!("seed {seed} (replay: ringlab sim --seed {seed} --seeds 1 --nodes {nodes} --loss {loss} --dup 0.01 --reorder 0.05 --faults all):");
        for line in v {
            eprintln!("  {line}");
        }
    }
    assert!(
        failing.is_empty(),
        "{} of {count} seeds failed",
        failing.len()
    );
}

#[test]
fn sweep_200_seeds_classic_5_nodes_mixed_faults() {
    sweep(1, 200, Variant::Classic, 5, 0.05);
}

#[test]
fn sweep_100_seeds_accelerated_5_nodes_mixed_faults() {
    sweep(1001, 100, Variant::Accelerated, 5, 0.05);
}

#[test]
fn sweep_30_seeds_classic_9_nodes_mixed_faults() {
    sweep(2001, 30, Variant::Classic, 9, 0.05);
}

#[test]
fn sweep_30_seeds_accelerated_3_nodes_heavy_loss() {
    sweep(3001, 30, Variant::Accelerated, 3, 0.3);
}
