//! The refactoring guard: a fixed set of seeds must give byte-identical event records.
//!
//! Each seed's records (every record the simulator wrote, as the JSON lines `--events-dir`
//! writes, in the order it wrote them) are hashed with SHA-256 and compared with
//! `tests/record_digests.txt`. A restructuring must leave every digest as it is. A change of
//! behaviour that is meant (a protocol fix) refreshes the file on purpose, in its own commit
//! that says why:
//!
//! ```sh
//! RINGLAB_REFRESH_DIGESTS=1 cargo test -p ringlab-sim --test record_digest
//! ```

// Independent seeds run on several threads; each run is single-threaded and deterministic,
// so the simulator's ban on threads (clippy.toml) does not apply to this harness.
#![allow(clippy::disallowed_methods)]

use ringlab_ring::Variant;
use ringlab_sim::{run, Faults, RunConfig};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/record_digests.txt");

/// One set of seeds run with the same flags.
struct Set {
    name: &'static str,
    /// The `ringlab sim` flags that replay a seed of this set.
    flags: &'static str,
    first: u64,
    count: u64,
    nodes: usize,
    variant: Variant,
    /// `--services` and `--state-bytes`.
    services: Option<(&'static str, usize)>,
}

const SETS: [Set; 5] = [
    Set {
        name: "classic-5",
        flags: "--nodes 5",
        first: 1,
        count: 200,
        nodes: 5,
        variant: Variant::Classic,
        services: None,
    },
    Set {
        name: "accelerated-5",
        flags: "--nodes 5 --variant accelerated",
        first: 5001,
        count: 100,
        nodes: 5,
        variant: Variant::Accelerated,
        services: None,
    },
    Set {
        name: "checkpoint-5",
        flags: "--nodes 5 --services checkpoint --state-bytes 262144",
        first: 7001,
        count: 50,
        nodes: 5,
        variant: Variant::Classic,
        services: Some(("checkpoint", 262_144)),
    },
    Set {
        name: "classic-9",
        flags: "--nodes 9",
        first: 9001,
        count: 25,
        nodes: 9,
        variant: Variant::Classic,
        services: None,
    },
    Set {
        name: "accelerated-3",
        flags: "--nodes 3 --variant accelerated",
        first: 3001,
        count: 25,
        nodes: 3,
        variant: Variant::Accelerated,
        services: None,
    },
];

/// The flags every set shares (the README's main job).
const COMMON: &str =
    "--loss 0.05 --dup 0.01 --reorder 0.05 --faults partition,merge,crash,restart,pause --duration-ms 20000";

/// Returns the hex SHA-256 of one seed's records.
fn seed_digest(set: &Set, seed: u64) -> String {
    let mut c = RunConfig {
        seed,
        nodes: set.nodes,
        faults: Faults::parse("partition,merge,crash,restart,pause").expect("known faults"),
        services: set.services.map_or(vec![], |(s, _)| {
            ringlab_sync::registry::parse_list(s).expect("known services")
        }),
        workload: ringlab_sync::Workload {
            state_bytes: set.services.map_or(0, |(_, b)| b),
        },
        ..RunConfig::default()
    };
    c.ring.variant = set.variant;
    c.net.loss = 0.05;
    c.net.dup = 0.01;
    c.net.reorder = 0.05;
    let report = run(&c);
    assert!(
        !report.records.is_empty(),
        "seed {seed} of {} wrote no records",
        set.name
    );
    let mut h = Sha256::new();
    let mut line = Vec::new();
    for r in &report.records {
        line.clear();
        ringlab_records::encode_line(r, &mut line);
        h.update(&line);
    }
    h.finalize().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Returns every line of the digest file: `set seed digest`.
fn compute() -> Vec<String> {
    let jobs: Vec<(&Set, u64)> = SETS
        .iter()
        .flat_map(|s| (s.first..s.first + s.count).map(move |seed| (s, seed)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                sc.spawn(move || {
                    part.iter()
                        .map(|(set, seed)| {
                            format!("{} {seed} {}", set.name, seed_digest(set, *seed))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a digest thread"))
            .collect()
    })
}

#[test]
fn fixed_seeds_give_the_recorded_event_records() {
    let lines = compute();
    assert_eq!(lines.len(), 400, "the seed sets changed size");
    if std::env::var_os("RINGLAB_REFRESH_DIGESTS").is_some() {
        let mut text = String::from(
            "# SHA-256 of each seed's simulator event records (sim/tests/record_digest.rs).\n\
             # Refreshed on purpose only, in a commit that says why the records changed:\n\
             # RINGLAB_REFRESH_DIGESTS=1 cargo test -p ringlab-sim --test record_digest\n",
        );
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        std::fs::write(FILE, text).expect("writing the digest file");
        eprintln!("record digests REFRESHED in {FILE}: commit it with the reason");
        return;
    }
    let stored = std::fs::read_to_string(FILE).expect("reading tests/record_digests.txt");
    let stored: Vec<&str> = stored
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        stored.len(),
        lines.len(),
        "tests/record_digests.txt has {} digests, the seed sets {}",
        stored.len(),
        lines.len()
    );
    let mut moved = Vec::new();
    for (now, then) in lines.iter().zip(&stored) {
        if now != then {
            let mut f = now.split(' ');
            let (name, seed) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
            let set = SETS.iter().find(|s| s.name == name).expect("a known set");
            moved.push(format!(
                "{name} seed {seed}: replay with `ringlab sim {} {COMMON} --seed {seed} --seeds 1 --events-dir DIR`",
                set.flags
            ));
        }
    }
    assert!(
        moved.is_empty(),
        "{} of {} seeds gave different event records than the recorded digests: behaviour changed.\n\
         A restructuring must not change them; a deliberate behaviour change refreshes the digests in a\n\
         commit of its own that says why (RINGLAB_REFRESH_DIGESTS=1 cargo test -p ringlab-sim --test record_digest).\n{}",
        moved.len(),
        lines.len(),
        moved.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
