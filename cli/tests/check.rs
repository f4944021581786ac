//! `ringlab check` over the layouts that hold records: a simulator's `--events-dir` (one
//! `seed-N/` per run), a namespace run's `records/` (one `rep-N/` per repetition), an empty
//! directory, and a violation in one run of several. Each run is judged on its own.
// A test that runs the binary, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn ringlab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringlab"))
        .args(args)
        .output()
        .expect("the ringlab binary runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringlab-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Simulates `seeds` short runs into `dir/seed-N/`.
fn simulate(dir: &Path, seeds: u64) {
    let o = ringlab(&[
        "sim",
        "--nodes",
        "3",
        "--seeds",
        &seeds.to_string(),
        "--duration-ms",
        "3000",
        "--events-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
}

/// The per-run lines `check` printed: (run directory, records, violations).
fn run_lines(stdout: &str) -> Vec<(String, u64, u64)> {
    stdout
        .lines()
        .filter(|l| !l.starts_with("total:") && !l.starts_with("  "))
        .map(|l| {
            let (dir, rest) = l.split_once(": ").unwrap_or_else(|| panic!("{l}"));
            let words: Vec<&str> = rest.split_whitespace().collect();
            let records = words[0].parse().unwrap_or_else(|_| panic!("{l}"));
            let violations = words[words.len() - 2]
                .parse()
                .unwrap_or_else(|_| panic!("{l}"));
            (dir.to_string(), records, violations)
        })
        .collect()
}

#[test]
fn a_simulator_events_dir_is_checked_seed_by_seed() {
    let d = temp("sim");
    let ev = d.join("ev");
    simulate(&ev, 3);
    let o = ringlab(&["check", ev.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let runs = run_lines(&out);
    let dirs: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    let want: Vec<String> = (1..=3)
        .map(|s| ev.join(format!("seed-{s}")).display().to_string())
        .collect();
    assert_eq!(dirs, want, "{out}");
    assert!(runs.iter().all(|r| r.1 > 0 && r.2 == 0), "{out}");
    assert!(out.contains("total: 3 runs, "), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_run_s_records_are_checked_repetition_by_repetition_and_an_empty_one_refused() {
    let d = temp("reps");
    simulate(&d.join("sim"), 2);
    // The layout `ringlab run` writes: records/rep-N/ with node records, the runner's own,
    // logs, configs, stats and the nodes' stable state.
    let records = d.join("run").join("records");
    std::fs::create_dir_all(&records).unwrap();
    for rep in 1..=2 {
        let r = records.join(format!("rep-{rep}"));
        std::fs::rename(d.join("sim").join(format!("seed-{rep}")), &r).unwrap();
        std::fs::rename(r.join("faults.jsonl"), r.join("harness.jsonl")).unwrap_or(());
        std::fs::write(r.join("node-1.log"), "a log line\n").unwrap();
        std::fs::write(r.join("node-1.toml"), "node_id = 1\n").unwrap();
        std::fs::write(r.join("stats.json"), "{}").unwrap();
        std::fs::create_dir_all(r.join("state")).unwrap();
        std::fs::write(r.join("state").join("node-1.state"), "{}").unwrap();
    }
    for path in [d.join("run"), records.clone()] {
        let o = ringlab(&["check", path.to_str().unwrap()]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{err}");
        let runs = run_lines(&out);
        assert_eq!(runs.len(), 2, "{out}");
        assert!(
            runs[0].0.ends_with("rep-1") && runs[1].0.ends_with("rep-2"),
            "{out}"
        );
        assert!(runs.iter().all(|r| r.1 > 0 && r.2 == 0), "{out}");
    }
    // A repetition that wrote nothing is refused, by name; the others are still judged.
    std::fs::create_dir_all(records.join("rep-3")).unwrap();
    let o = ringlab(&["check", records.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert_eq!(run_lines(&out).len(), 2, "{out}");
    assert!(
        err.contains(&format!(
            "{}: a run directory with no event records",
            records.join("rep-3").display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn nothing_to_check_is_an_error() {
    let d = temp("empty");
    let o = ringlab(&["check", d.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("no event records in"), "{err}");
    // Record files that hold no record are no better.
    std::fs::write(d.join("node-1.jsonl"), "").unwrap();
    let o = ringlab(&["check", d.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("no event records"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_violation_in_one_run_of_several_fails_the_check_and_names_the_run() {
    let d = temp("violation");
    let ev = d.join("ev");
    simulate(&ev, 3);
    // Seed 2's node 1 delivers one message twice.
    let f = ev.join("seed-2").join("node-1-inc-1.jsonl");
    let text_of = std::fs::read_to_string(&f).unwrap();
    let deliver = text_of
        .lines()
        .find(|l| l.contains(r#""ev":"deliver""#))
        .expect("node 1 delivered something")
        .to_string();
    std::fs::write(&f, format!("{text_of}{deliver}\n")).unwrap();
    let o = ringlab(&["check", ev.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let runs = run_lines(&out);
    let bad: Vec<&str> = runs
        .iter()
        .filter(|r| r.2 > 0)
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(bad, [ev.join("seed-2").display().to_string()], "{out}");
    assert_eq!(runs.len(), 3, "{out}");
    assert!(out.contains(" in 1 of 3 runs"), "{out}");
    // The JSON form says the same.
    let o = ringlab(&["check", "--json", ev.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 3, "{v}");
    let violations = v["violations"].as_array().unwrap();
    assert!(!violations.is_empty(), "{v}");
    assert!(
        violations
            .iter()
            .all(|x| x["dir"] == ev.join("seed-2").display().to_string()),
        "{v}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
