//! Start → full ring in the simulator, starts spread over 0–SPREAD_US µs (default 20 ms),
//! 400 seeds: prints p50 / p90 / p99 / max of the time from the first start to one ring of
//! all N nodes (default 5), and how many seeds took over 30 ms. A measuring program, not a
//! test: copy it to sim/tests/ and run
//! `N=5 cargo test --release -p ringlab-sim --test staggered_starts -- --ignored --nocapture`.
use rand::Rng;
use ringlab_ring::{Config, MembState, NodeId};
use ringlab_sim::{NetConfig, Sim};

const MS: u64 = 1_000_000;

fn one_ring(sim: &Sim, ids: &[NodeId]) -> bool {
    let Some(first) = sim.ring(ids[0]) else {
        return false;
    };
    ids.iter().all(|&id| {
        sim.ring(id).is_some_and(|r| {
            r.state() == MembState::Operational
                && r.ring_id() == first.ring_id()
                && r.members() == ids
        })
    })
}

#[test]
#[ignore]
fn staggered_start_distribution() {
    let n: usize = std::env::var("N").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let spread: u64 = std::env::var("SPREAD_US").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let mut times = Vec::new();
    for seed in 1..=400u64 {
        let mut sim = Sim::new(n, seed, Config::default(), NetConfig::default());
        let ids = sim.ids();
        let mut offs: Vec<(u64, NodeId)> = ids
            .iter()
            .map(|&id| (sim.rng().gen_range(0..=spread) * 1000, id))
            .collect();
        offs.sort();
        let t0 = sim.now();
        for (o, id) in offs {
            sim.run_until(t0 + o);
            sim.start(id);
        }
        assert!(sim.run_until_cond(t0 + 5_000 * MS, |s| one_ring(s, &ids)));
        times.push(((sim.now() - t0) as f64 / 1e6, seed));
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "n={n} spread={spread}us p50 {:?} p90 {:?} p99 {:?} max {:?}",
        p(0.5),
        p(0.9),
        p(0.99),
        times.last().unwrap()
    );
    let over: Vec<_> = times.iter().filter(|t| t.0 > 30.0).collect();
    println!("over 30ms: {} {:?}", over.len(), &over[..over.len().min(10)]);
}
