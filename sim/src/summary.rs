//! The summary of many seeded runs, as `ringlab sim` prints it: [`SimSummary`] folds
//! [`RunReport`]s into totals (its JSON is `ringlab sim --json`), and [`SimSummary::render`]
//! writes the human-readable text.

use crate::run::{liveness_bound, RunConfig, RunReport};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How many violations the summary quotes.
const QUOTED_VIOLATIONS: usize = 10;

/// Totals over the runs of many seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SimSummary {
    /// Runs.
    pub runs: u64,
    /// Checker violations plus state mismatches, all runs together.
    pub violations: u64,
    /// Messages delivered, all nodes of all runs together.
    pub delivered: u64,
    /// Messages submitted and accepted.
    pub sent: u64,
    /// Faults injected.
    pub faults: u64,
    /// Regular configurations installed.
    pub config_changes: u64,
    /// Longest time from leaving OPERATIONAL to the next regular install, ms.
    pub max_recovery_ms: f64,
    /// Longest time from the end of the faults to the final ring, ms.
    pub max_final_ring_ms: f64,
    /// Seeds whose run broke a guarantee (a seed may repeat).
    pub failing_seeds: Vec<u64>,
    /// Violations per property (state mismatches as `StateMismatch`).
    pub violations_by_property: BTreeMap<String, u64>,
    /// The first few violations, each with its seed.
    pub first_violations: Vec<String>,
    /// With services: syncs that completed.
    pub syncs_completed: u64,
    /// With services: syncs aborted by a configuration change.
    pub syncs_aborted: u64,
    /// With services: state mismatches.
    pub state_mismatches: u64,
    /// With a key: datagrams the authenticators refused (absent without a key).
    #[serde(skip_serializing_if = "is_zero")]
    pub auth_refused: u64,
    /// With a hostile node: datagrams it injected (absent without one).
    #[serde(skip_serializing_if = "is_zero")]
    pub hostile_injected: u64,
    /// With the resources service: its `resource` records by action (absent without).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_actions: BTreeMap<String, u64>,
    /// With the resources service: stable primary configurations whose placement the
    /// checker judged after their settle bound (absent without).
    #[serde(skip_serializing_if = "is_zero")]
    pub settled_judged: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SimSummary {
    /// Folds the reports of many runs, in the order given, into one summary.
    pub fn of(reports: &[RunReport]) -> Self {
        let mut s = Self {
            runs: reports.len() as u64,
            ..Self::default()
        };
        for r in reports {
            s.add(r);
        }
        s
    }

    /// Adds one run's report (but not to the run count).
    fn add(&mut self, r: &RunReport) {
        for (action, n) in &r.resource_actions {
            *self.resource_actions.entry(action.clone()).or_default() += n;
        }
        self.settled_judged += r.check.settled_judged;
        self.syncs_completed += r.syncs_completed;
        self.syncs_aborted += r.syncs_aborted;
        self.state_mismatches += r.state_mismatches;
        self.auth_refused += r.auth_refused;
        self.hostile_injected += r.adversary.replayed + r.adversary.flipped + r.adversary.forged;
        if r.state_mismatches > 0 {
            // A state mismatch is a violation of the run.
            self.violations += r.state_mismatches;
            *self
                .violations_by_property
                .entry("StateMismatch".into())
                .or_default() += r.state_mismatches;
            for d in &r.state_details {
                if self.first_violations.len() < QUOTED_VIOLATIONS {
                    self.first_violations
                        .push(format!("seed {}: StateMismatch: {d}", r.seed));
                }
            }
            if !r.check.violations.is_empty() || !self.failing_seeds.contains(&r.seed) {
                self.failing_seeds.push(r.seed);
            }
        }
        self.violations += r.check.violations.len() as u64;
        self.delivered += r.delivered;
        self.sent += r.sent;
        self.faults += r.faults;
        self.config_changes += r.check.regular_installs;
        self.max_recovery_ms = self
            .max_recovery_ms
            .max(r.check.max_recovery_ns as f64 / 1e6);
        self.max_final_ring_ms = self
            .max_final_ring_ms
            .max(r.check.final_ring_ns.unwrap_or(0) as f64 / 1e6);
        if !r.check.violations.is_empty() {
            self.failing_seeds.push(r.seed);
        }
        for v in &r.check.violations {
            *self
                .violations_by_property
                .entry(format!("{:?}", v.property))
                .or_default() += 1;
            if self.first_violations.len() < QUOTED_VIOLATIONS {
                self.first_violations.push(format!("seed {}: {v}", r.seed));
            }
        }
    }

    /// Renders the human-readable summary of runs made with `cfg` (any seed), `faults`
    /// being the fault list as given on the command line; every line ends in a newline.
    pub fn render(&self, cfg: &RunConfig, faults: &str) -> String {
        let mut t = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            t,
            "ringlab sim: {} runs of {} nodes, {} ms of virtual time each, faults [{}], loss {}{} dup {} reorder {}, {:?}",
            self.runs,
            cfg.nodes,
            cfg.duration_ms,
            faults,
            cfg.net.loss,
            if cfg.net.loss_burst > 1.0 {
                format!(" in bursts of {}", cfg.net.loss_burst)
            } else {
                String::new()
            },
            cfg.net.dup,
            cfg.net.reorder,
            cfg.ring.variant
        );
        let _ = writeln!(
            t,
            "  sent {}  delivered {} (each node's deliveries counted)  faults injected {}  regular configurations {}",
            self.sent, self.delivered, self.faults, self.config_changes
        );
        let _ = writeln!(
            t,
            "  longest recovery while faults ran (left operational -> next ring) {:.1} ms, not bounded; final ring formed at most {:.1} ms after faults stopped (the liveness bound, {} ms, applies to this)",
            self.max_recovery_ms,
            self.max_final_ring_ms,
            liveness_bound(&cfg.ring) / 1_000_000
        );
        if !cfg.services.is_empty() {
            let names: Vec<&str> = cfg.services.iter().map(|e| e.name).collect();
            let _ = writeln!(
                t,
                "  services {}: {} syncs completed, {} aborted, {} state mismatches",
                names.join(","),
                self.syncs_completed,
                self.syncs_aborted,
                self.state_mismatches
            );
        }
        if !self.resource_actions.is_empty() {
            let acts: Vec<String> = self
                .resource_actions
                .iter()
                .map(|(a, n)| format!("{n} {a}"))
                .collect();
            let _ = writeln!(
                t,
                "  resources: {}; {} stable primary configurations judged after their settle bound",
                acts.join(", "),
                self.settled_judged
            );
        }
        if cfg.key || cfg.faults.hostile {
            let _ = writeln!(
                t,
                "  authentication: {}; hostile node: {} datagrams injected; {} refused by the authenticators",
                if cfg.key { "key" } else { "NO KEY (anyone on the segment can forge any member)" },
                self.hostile_injected,
                self.auth_refused
            );
        }
        if self.violations == 0 {
            t.push_str("  checker: no violations\n");
        } else {
            let _ = writeln!(
                t,
                "  checker: {} violations in seeds {:?}",
                self.violations, self.failing_seeds
            );
            for v in &self.first_violations {
                let _ = writeln!(t, "    {v}");
            }
            t.push_str(
                "  replay one with: ringlab sim --seed N --seeds 1 (same flags) --events-dir DIR\n",
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{Property, Report, Violation};

    fn report(seed: u64, violations: &[Property], mismatches: &[&str]) -> RunReport {
        RunReport {
            seed,
            check: Report {
                violations: violations
                    .iter()
                    .map(|&property| Violation {
                        property,
                        detail: format!("bad {seed}"),
                    })
                    .collect(),
                deliveries: 0,
                regular_installs: 10 * seed,
                max_recovery_ns: 1_500_000 * seed,
                final_ring_ns: (seed != 2).then_some(2_000_000 * seed),
                settled_judged: 0,
            },
            sent: 100,
            delivered: 400,
            faults: seed,
            records: vec![],
            syncs_completed: 3,
            syncs_aborted: 1,
            state_mismatches: mismatches.len() as u64,
            state_bytes: 0,
            state_details: mismatches.iter().map(|d| d.to_string()).collect(),
            auth_refused: 0,
            resource_actions: BTreeMap::new(),
            adversary: Default::default(),
            capture: None,
        }
    }

    #[test]
    fn clean_runs_add_up() {
        let s = SimSummary::of(&[report(1, &[], &[]), report(2, &[], &[])]);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            "{\"runs\":2,\"violations\":0,\"delivered\":800,\"sent\":200,\"faults\":3,\
             \"config_changes\":30,\"max_recovery_ms\":3.0,\"max_final_ring_ms\":2.0,\
             \"failing_seeds\":[],\"violations_by_property\":{},\"first_violations\":[],\
             \"syncs_completed\":6,\"syncs_aborted\":2,\"state_mismatches\":0}"
        );
        let cfg = RunConfig {
            nodes: 4,
            duration_ms: 9000,
            ..RunConfig::default()
        };
        assert_eq!(
            s.render(&cfg, "partition,merge"),
            format!(
                "ringlab sim: 2 runs of 4 nodes, 9000 ms of virtual time each, faults [partition,merge], loss 0 dup 0 reorder 0, Classic\n\
                 \x20 sent 200  delivered 800 (each node's deliveries counted)  faults injected 3  regular configurations 30\n\
                 \x20 longest recovery while faults ran (left operational -> next ring) 3.0 ms, not bounded; final ring formed at most 2.0 ms after faults stopped (the liveness bound, {} ms, applies to this)\n\
                 \x20 checker: no violations\n",
                liveness_bound(&cfg.ring) / 1_000_000
            )
        );
    }

    #[test]
    fn violations_and_state_mismatches_are_counted_by_property_and_seed() {
        let s = SimSummary::of(&[
            report(1, &[], &[]),
            report(2, &[Property::TotalOrder, Property::Liveness], &[]),
            report(3, &[], &["digest differs at 2", "refcount at 4"]),
            report(4, &[Property::TotalOrder], &["digest differs at 1"]),
        ]);
        assert_eq!(s.runs, 4);
        assert_eq!(s.violations, 2 + 2 + 1 + 1);
        assert_eq!(s.state_mismatches, 3);
        // A seed with both kinds is listed twice, as ringlab sim always has.
        assert_eq!(s.failing_seeds, [2, 3, 4, 4]);
        assert_eq!(
            s.violations_by_property,
            BTreeMap::from([
                ("Liveness".to_string(), 1),
                ("StateMismatch".to_string(), 3),
                ("TotalOrder".to_string(), 2),
            ])
        );
        assert_eq!(
            s.first_violations,
            [
                "seed 2: TotalOrder: bad 2",
                "seed 2: Liveness: bad 2",
                "seed 3: StateMismatch: digest differs at 2",
                "seed 3: StateMismatch: refcount at 4",
                "seed 4: StateMismatch: digest differs at 1",
                "seed 4: TotalOrder: bad 4",
            ]
        );
        assert_eq!(s.max_final_ring_ms, 8.0);
        let cfg = RunConfig {
            services: ringlab_sync::registry::SERVICES.iter().collect(),
            ..RunConfig::default()
        };
        let text = s.render(&cfg, "all");
        assert!(text.contains(&format!(
            "\n  services {}: 12 syncs completed, 4 aborted, 3 state mismatches\n",
            ringlab_sync::registry::names().join(",")
        )));
        assert!(text.ends_with(
            "  checker: 6 violations in seeds [2, 3, 4, 4]\n\
             \x20   seed 2: TotalOrder: bad 2\n\
             \x20   seed 2: Liveness: bad 2\n\
             \x20   seed 3: StateMismatch: digest differs at 2\n\
             \x20   seed 3: StateMismatch: refcount at 4\n\
             \x20   seed 4: StateMismatch: digest differs at 1\n\
             \x20   seed 4: TotalOrder: bad 4\n\
             \x20 replay one with: ringlab sim --seed N --seeds 1 (same flags) --events-dir DIR\n"
        ));
    }

    #[test]
    fn at_most_ten_violations_are_quoted() {
        let reports: Vec<RunReport> = (1..=6)
            .map(|seed| report(seed, &[Property::Integrity, Property::SelfDelivery], &[]))
            .collect();
        let s = SimSummary::of(&reports);
        assert_eq!(s.violations, 12);
        assert_eq!(s.first_violations.len(), 10);
        assert_eq!(s.first_violations[9], "seed 5: SelfDelivery: bad 5");
        assert_eq!(s.failing_seeds, [1, 2, 3, 4, 5, 6]);
    }
}
