use ringlab_sim::{run, Faults, RunConfig};

#[test]
fn smoke_no_faults() {
    let r = run(&RunConfig { duration_ms: 8000, ..RunConfig::default() });
    for v in &r.check.violations { eprintln!("{v}"); }
    eprintln!("sent {} delivered {} installs {} maxrec {}", r.sent, r.delivered, r.check.regular_installs, r.check.max_recovery_ns/1_000_000);
    assert!(r.check.violations.is_empty());
}

#[test]
fn smoke_faults() {
    let mut bad = 0;
    for seed in 1..=10 {
        let mut c = RunConfig { seed, duration_ms: 15000, faults: Faults::parse("all").unwrap(), ..RunConfig::default() };
        c.net.loss = 0.05; c.net.dup = 0.01; c.net.reorder = 0.05;
        let r = run(&c);
        eprintln!("seed {seed}: sent {} delivered {} installs {} faults {} violations {}", r.sent, r.delivered, r.check.regular_installs, r.faults, r.check.violations.len());
        for v in r.check.violations.iter().take(5) { eprintln!("  {v}"); }
        if !r.check.violations.is_empty() { bad += 1; }
    }
    assert_eq!(bad, 0);
}
