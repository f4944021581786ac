//! Runs one seed and prints the records that mention a message id, plus membership records.
//! Usage: cargo run -p ringlab-sim --example trace -- SEED DURATION_MS [MSG_ID] [NODES...]
use ringlab_ring::record::Body;
use ringlab_sim::{run, Faults, RunConfig};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let seed: u64 = a[1].parse().unwrap();
    let dur: u64 = a[2].parse().unwrap();
    let msg = a.get(3).cloned().unwrap_or_default();
    let nodes: Vec<u32> = a.iter().skip(4).map(|s| s.parse().unwrap()).collect();
    let mut c = RunConfig { seed, duration_ms: dur, faults: Faults::parse("all").unwrap(), ..RunConfig::default() };
    c.net.loss = 0.05;
    c.net.dup = 0.01;
    c.net.reorder = 0.05;
    let r = run(&c);
    for v in &r.check.violations {
        println!("VIOLATION {v}");
    }
    for rec in &r.records {
        let show = match &rec.body {
            Body::Deliver { id, .. } | Body::Send { id, .. } => id.to_string() == msg,
            Body::Fault { .. } => true,
            _ => nodes.is_empty() || nodes.contains(&rec.node),
        };
        if show {
            println!("{}", serde_json::to_string(rec).unwrap());
        }
    }
}
