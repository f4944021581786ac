//! What one repetition of an experiment measured, computed from its event records alone (the
//! nodes' records and the runner's `fault` records share CLOCK_MONOTONIC, namespaces or not).
//!
//! For every fault, from the fault's own timestamp `t0` up to the next fault (or the end):
//! - **detection**: the first node that leaves OPERATIONAL;
//! - **membership**: every node that runs has installed its last regular configuration of
//!   the interval (the membership the cluster settles on);
//! - **sync**: every such node has finished the sync that follows (with services);
//! - **first delivery**: the first message delivered on a settled ring.
//!
//! A heal is measured the same way, so its membership phase is the merge. Throughput and
//! delivery latency are cut into phases around each fault: `before` (from the previous
//! boundary), `during` (until membership settled) and `after` (until the next fault).
//!
//! **Churn** ([`Churn`]): over the same window, every regular configuration (ring id) first
//! installed in it is one change; the figures are the changes, their rate, the time to the
//! last install, and whether the window settled within token + consensus + 500 ms and then
//! stayed quiet. The repetition's own churn is the window after its last fault record (a
//! heal counts) to the end, or, without faults, after the first full ring.

use crate::summary::{Churn, FaultRecovery, Percentiles, PhaseStats, RepSummary};
use hdrhistogram::Histogram;
use ringlab_records::{Body, Record};
use ringlab_ring::event::{ConfigKind, MembState};
use ringlab_ring::{NodeId, RingId};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What the runner knows about the schedule and the start, for [`analyse`].
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// All node ids.
    pub nodes: Vec<NodeId>,
    /// When each node's process started (first start), ns.
    pub starts: Vec<u64>,
    /// Recovery bound per fault, ns.
    pub bound_ns: u64,
    /// End of the measured part, ns.
    pub end_ns: u64,
    /// The settle window of a fault, ns: token + consensus + 500 ms (see [`settle_ns`]).
    pub settle_ns: u64,
}

/// Returns the settle window the knobs imply, ns: token + consensus + 500 ms, the time issue
/// 16 gives a fault to settle before its configuration must stay put.
pub fn settle_ns(c: &ringlab_ring::Config) -> u64 {
    (c.token + c.consensus_ms() + 500) * 1_000_000
}

const MS: f64 = 1e6;

/// A fault as the runner recorded it.
#[derive(Clone, Debug)]
struct Fault {
    t: u64,
    action: String,
    targets: Vec<NodeId>,
    groups: Vec<Vec<NodeId>>,
}

/// Nodes whose process runs and is not stopped, and nodes cut off by the schedule, over time.
#[derive(Clone, Debug, Default)]
struct Reach {
    down: BTreeSet<NodeId>,
    cut: BTreeSet<NodeId>,
}

impl Reach {
    fn apply(&mut self, f: &Fault) {
        match f.action.as_str() {
            "kill" | "crash" | "pause" | "leave" => self.down.extend(&f.targets),
            "restart" | "resume" => {
                for t in &f.targets {
                    self.down.remove(t);
                }
            }
            "isolate" | "cut" | "cut-oneway" => self.cut.extend(&f.targets),
            "split" | "trunk-down" => {
                // Every node not in the largest group counts as cut off.
                let mut gs = f.groups.clone();
                gs.sort_by_key(|g| std::cmp::Reverse(g.len()));
                for g in gs.iter().skip(1) {
                    self.cut.extend(g);
                }
            }
            "heal" | "clear" | "trunk-up" => self.cut.clear(),
            _ => {}
        }
    }
    fn running(&self, all: &[NodeId]) -> Vec<NodeId> {
        all.iter()
            .copied()
            .filter(|n| !self.down.contains(n))
            .collect()
    }
}

fn ms(d: u64) -> f64 {
    d as f64 / MS
}

/// Returns a fault's detection: how long (ms) after `t0` the first node left OPERATIONAL,
/// within `(t0, t1]` (`recs` in time order).
pub(crate) fn detection_ms(recs: &[&Record], t0: u64, t1: u64) -> Option<f64> {
    recs.iter()
        .filter(|r| r.t_ns > t0 && r.t_ns <= t1)
        .find(|r| {
            matches!(
                r.body,
                Body::State {
                    from: MembState::Operational,
                    ..
                }
            )
        })
        .map(|r| ms(r.t_ns - t0))
}

/// Returns the configuration changes of the window `(t0, t1]`. `first_install` holds each
/// ring id's first regular install anywhere; `running` the nodes whose process runs in the
/// window (each must install within the settle window when anything changes).
fn churn(
    recs: &[&Record],
    first_install: &BTreeMap<RingId, u64>,
    t0: u64,
    t1: u64,
    running: &[NodeId],
    settle_ns: u64,
) -> Churn {
    let settle_end = t0.saturating_add(settle_ns);
    let mut installs = 0u64;
    let mut last: Option<u64> = None;
    let mut installed_in_time: BTreeSet<NodeId> = BTreeSet::new();
    for r in recs.iter().filter(|r| r.t_ns > t0 && r.t_ns <= t1) {
        if let Body::Config {
            kind: ConfigKind::Regular,
            ..
        } = &r.body
        {
            installs += 1;
            last = Some(r.t_ns);
            if r.t_ns <= settle_end {
                installed_in_time.insert(r.node);
            }
        }
    }
    let in_window = |t: &&u64| **t > t0 && **t <= t1;
    let changes = first_install.values().filter(in_window).count() as u64;
    let after = first_install
        .values()
        .filter(in_window)
        .filter(|&&t| t > settle_end)
        .count() as u64;
    let window_s = (t1.saturating_sub(t0)) as f64 / 1e9;
    Churn {
        window_ms: ms(t1.saturating_sub(t0)),
        changes,
        installs,
        changes_per_s: if window_s > 0.0 {
            changes as f64 / window_s
        } else {
            0.0
        },
        last_change_ms: last.map(|t| ms(t - t0)),
        settle_ms: ms(settle_ns),
        changes_after_settle: after,
        settled: after == 0
            && (installs == 0 || running.iter().all(|n| installed_in_time.contains(n))),
    }
}

/// Computes a repetition's summary from its records.
pub fn analyse(rep: u32, records: &[Record], facts: &RunFacts) -> RepSummary {
    let mut recs: Vec<&Record> = records.iter().collect();
    recs.sort_by_key(|r| r.t_ns);
    let faults: Vec<Fault> = recs
        .iter()
        .filter_map(|r| match &r.body {
            Body::Fault {
                action,
                targets,
                groups,
            } if r.node == 0 && action != "start" => Some(Fault {
                t: r.t_ns,
                action: action.clone(),
                targets: targets.clone(),
                groups: groups.clone(),
            }),
            _ => None,
        })
        .collect();
    let all = &facts.nodes;
    let full: Vec<NodeId> = all.clone();

    // Formation: the first time every node has installed a regular config of all nodes.
    let mut formed_at: BTreeMap<NodeId, u64> = BTreeMap::new();
    for r in &recs {
        if let Body::Config {
            kind: ConfigKind::Regular,
            members,
            ..
        } = &r.body
        {
            if *members == full {
                formed_at.entry(r.node).or_insert(r.t_ns);
            }
        }
    }
    let formed = (formed_at.len() == all.len()).then(|| *formed_at.values().max().expect("nodes"));
    let last_start = facts.starts.iter().copied().max().unwrap_or(0);
    let first_start = facts.starts.iter().copied().min().unwrap_or(0);
    let t_begin = formed.unwrap_or(last_start);
    let end = facts.end_ns;
    // Each ring id's first regular install anywhere: a change, once.
    let mut first_install: BTreeMap<RingId, u64> = BTreeMap::new();
    for r in &recs {
        if let Body::Config {
            kind: ConfigKind::Regular,
            ring,
            ..
        } = &r.body
        {
            first_install.entry(*ring).or_insert(r.t_ns);
        }
    }

    // Deliveries: first delivery time of each message anywhere, and every latency.
    let mut first_deliver: BTreeMap<(NodeId, u32, u64), u64> = BTreeMap::new();
    let mut lat: Vec<(u64, u64)> = Vec::new();
    for r in &recs {
        if let Body::Deliver { id, sent_t_ns, .. } = &r.body {
            first_deliver
                .entry((id.node, id.inc, id.counter))
                .or_insert(r.t_ns);
            lat.push((r.t_ns, r.t_ns.saturating_sub(*sent_t_ns)));
        }
    }
    let mut first_times: Vec<u64> = first_deliver.values().copied().collect();
    first_times.sort_unstable();
    let phase = |a: u64, b: u64| -> PhaseStats {
        if b <= a {
            return PhaseStats::default();
        }
        let lo = first_times.partition_point(|&t| t < a);
        let hi = first_times.partition_point(|&t| t < b);
        let mut h = Histogram::<u64>::new(3).expect("sigfig 3");
        for &(t, l) in &lat {
            if t >= a && t < b {
                let _ = h.record((l / 1000).max(1));
            }
        }
        PhaseStats {
            ms: ms(b - a),
            msgs_per_s: (hi - lo) as f64 / ((b - a) as f64 / 1e9),
            latency_ms: Percentiles::of_us(&h),
        }
    };

    // Faults.
    let mut reach = Reach::default();
    let mut out_faults = Vec::new();
    let mut prev_boundary = t_begin;
    for (i, f) in faults.iter().enumerate() {
        reach.apply(f);
        let t0 = f.t;
        let t1 = faults.get(i + 1).map(|n| n.t).unwrap_or(end).max(t0);
        let running = reach.running(all);
        let in_iv = |r: &&&Record| r.t_ns > t0 && r.t_ns <= t1;
        let detection = detection_ms(&recs, t0, t1);
        // Each running node's last regular configuration of the interval.
        let mut last_cfg: BTreeMap<NodeId, (u64, RingId, Vec<NodeId>)> = BTreeMap::new();
        let mut last_sync: BTreeMap<NodeId, u64> = BTreeMap::new();
        for r in recs.iter().filter(in_iv) {
            match &r.body {
                Body::Config {
                    kind: ConfigKind::Regular,
                    ring,
                    members,
                    ..
                } => {
                    last_cfg.insert(r.node, (r.t_ns, *ring, members.clone()));
                    last_sync.remove(&r.node);
                }
                Body::Sync { phase, .. } if phase == "done" => {
                    last_sync.insert(r.node, r.t_ns);
                }
                _ => {}
            }
        }
        let all_changed = running.iter().all(|n| last_cfg.contains_key(n));
        let membership_t = all_changed
            .then(|| running.iter().map(|n| last_cfg[n].0).max())
            .flatten();
        let sync_t = (all_changed
            && !last_sync.is_empty()
            && running.iter().all(|n| last_sync.contains_key(n)))
        .then(|| running.iter().map(|n| last_sync[n]).max())
        .flatten();
        let settled_rings: HashSet<RingId> = running
            .iter()
            .filter_map(|n| last_cfg.get(n).map(|c| c.1))
            .collect();
        let first_delivery = recs
            .iter()
            .filter(in_iv)
            .find(|r| matches!(&r.body, Body::Deliver { ring, .. } if settled_rings.contains(ring)))
            .map(|r| ms(r.t_ns - t0));
        let mut settled: Vec<Vec<NodeId>> = running
            .iter()
            .filter_map(|n| last_cfg.get(n).map(|c| c.2.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        settled.sort();
        let mem_ms = membership_t.map(|t| ms(t - t0));
        // No configuration change at all: nothing to wait for, the whole interval is "after".
        let settled_at = membership_t.unwrap_or(if last_cfg.is_empty() { t0 } else { t1 });
        out_faults.push(FaultRecovery {
            index: i,
            action: f.action.clone(),
            targets: f.targets.clone(),
            t_ns: t0,
            detection_ms: detection,
            membership_ms: mem_ms,
            sync_ms: sync_t.map(|t| ms(t - t0)),
            first_delivery_ms: first_delivery,
            settled,
            // A fault that moved nobody off the ring (a delay, a light loss) has nothing to
            // recover; one that did must settle every running node within the bound.
            within_bound: if last_cfg.is_empty() && detection.is_none() {
                true
            } else {
                mem_ms.is_some_and(|m| m <= ms(facts.bound_ns))
            },
            before: phase(prev_boundary, t0),
            during: phase(t0, settled_at),
            after: phase(settled_at, t1),
            churn: Some(churn(
                &recs,
                &first_install,
                t0,
                t1,
                &running,
                facts.settle_ns,
            )),
        });
        prev_boundary = settled_at;
    }

    // Rings formed after the first full ring, and live reachable nodes they left out.
    let mut reach = Reach::default();
    let mut fi = 0;
    let mut seen: HashSet<RingId> = HashSet::new();
    let mut wrongly = 0u64;
    for r in &recs {
        while fi < faults.len() && faults[fi].t <= r.t_ns {
            reach.apply(&faults[fi]);
            fi += 1;
        }
        if let Body::Config {
            kind: ConfigKind::Regular,
            ring,
            members,
            ..
        } = &r.body
        {
            // Rings of the measured part only: the runner's stop (the nodes quitting one by
            // one, a resource holder last) is no fault of the ring.
            if formed.is_some_and(|f| r.t_ns > f)
                && r.t_ns <= end
                && seen.insert(*ring)
                && !reach.cut.contains(&r.node)
                && !reach.down.contains(&r.node)
            {
                wrongly += reach
                    .running(all)
                    .iter()
                    .filter(|n| !reach.cut.contains(n) && !members.contains(n))
                    .count() as u64;
            }
        }
    }

    let mut h = Histogram::<u64>::new(3).expect("sigfig 3");
    for &(t, l) in &lat {
        if t >= t_begin {
            let _ = h.record((l / 1000).max(1));
        }
    }
    let loaded_end = first_times.last().copied().unwrap_or(end).min(end);
    let delivered = first_times.iter().filter(|&&t| t >= t_begin).count() as u64;
    let mut timeline = Vec::new();
    let win = 100_000_000u64;
    let mut t = t_begin;
    while t < end {
        let lo = first_times.partition_point(|&x| x < t);
        let hi = first_times.partition_point(|&x| x < t + win);
        timeline.push((ms(t - t_begin), (hi - lo) as f64 * 10.0));
        t += win;
    }
    // After the last fault (its window runs to the end), or after the first full ring.
    let rep_churn = match out_faults.last() {
        Some(f) => f.churn.clone(),
        None => Some(churn(
            &recs,
            &first_install,
            t_begin,
            end.max(t_begin),
            all,
            facts.settle_ns,
        )),
    };
    RepSummary {
        rep,
        formation_ms: formed.map(|f| ms(f.saturating_sub(last_start))),
        formation_from_first_ms: formed.map(|f| ms(f.saturating_sub(first_start))),
        faults: out_faults,
        msgs_per_s: if loaded_end > t_begin {
            delivered as f64 / ((loaded_end - t_begin) as f64 / 1e9)
        } else {
            0.0
        },
        latency_ms: Percentiles::of_us(&h),
        delivered,
        rings_formed: seen.len() as u64,
        wrongly_excluded: wrongly,
        violations: vec![],
        timeline,
        failover: crate::failover::failovers(
            records,
            &faults
                .iter()
                .map(|f| (f.t, f.action.clone()))
                .collect::<Vec<_>>(),
            end,
        ),
        store: None,
        kml: None,
        peer_findings: vec![],
        throughput: None,
        usage: vec![],
        churn: rep_churn,
        hosts: vec![],
        clock_uncertainty_ms: None,
        capture: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringlab_ring::event::Reason;

    fn rec(t_ms: u64, node: NodeId, body: Body) -> Record {
        Record {
            t_ns: t_ms * 1_000_000,
            node,
            inc: 0,
            body,
        }
    }
    fn cfg(members: &[NodeId], seq: u64) -> Body {
        Body::Config {
            kind: ConfigKind::Regular,
            ring: RingId {
                rep: members[0],
                seq,
            },
            members: members.to_vec(),
            left: vec![],
            joined: vec![],
        }
    }

    #[test]
    fn isolate_then_heal_phases() {
        let mut r = vec![];
        for n in 1..=3 {
            r.push(rec(100 + n as u64, n, cfg(&[1, 2, 3], 4)));
        }
        r.push(rec(
            1000,
            0,
            Body::Fault {
                action: "isolate".into(),
                targets: vec![3],
                groups: vec![],
            },
        ));
        r.push(rec(
            2010,
            1,
            Body::State {
                from: MembState::Operational,
                to: MembState::Gather,
                reason: Reason::TokenLoss,
            },
        ));
        r.push(rec(2005, 3, cfg(&[3], 8)));
        r.push(rec(3200, 1, cfg(&[1, 2], 8)));
        r.push(rec(3210, 2, cfg(&[1, 2], 8)));
        r.push(rec(
            5000,
            0,
            Body::Fault {
                action: "heal".into(),
                targets: vec![],
                groups: vec![],
            },
        ));
        for n in 1..=3 {
            r.push(rec(5030 + n as u64, n, cfg(&[1, 2, 3], 12)));
        }
        let facts = RunFacts {
            nodes: vec![1, 2, 3],
            starts: vec![0, 10_000_000, 20_000_000],
            bound_ns: 5_000_000_000,
            end_ns: 8_000_000_000,
            settle_ns: 2_700_000_000,
        };
        let s = analyse(1, &r, &facts);
        assert_eq!(s.formation_ms, Some(83.0));
        let iso = &s.faults[0];
        assert_eq!(iso.detection_ms, Some(1010.0));
        assert_eq!(iso.membership_ms, Some(2210.0));
        assert_eq!(iso.settled, vec![vec![1, 2], vec![3]]);
        assert!(iso.within_bound);
        let heal = &s.faults[1];
        assert_eq!(heal.membership_ms, Some(33.0));
        assert_eq!(heal.settled, vec![vec![1, 2, 3]]);
        // Rings 8 (twice, counted once: node 3's singleton has rep 3, a different id) and 12.
        assert_eq!(s.rings_formed, 3);
        // Node 3 was isolated by the schedule: leaving it out is not wrong.
        assert_eq!(s.wrongly_excluded, 0);
    }

    #[test]
    fn a_live_node_left_out_without_a_fault_is_counted() {
        let mut r = vec![];
        for n in 1..=3 {
            r.push(rec(100, n, cfg(&[1, 2, 3], 4)));
        }
        r.push(rec(900, 1, cfg(&[1, 2], 8)));
        r.push(rec(900, 2, cfg(&[1, 2], 8)));
        let facts = RunFacts {
            nodes: vec![1, 2, 3],
            starts: vec![0, 0, 0],
            bound_ns: 1,
            end_ns: 2_000_000_000,
            settle_ns: 1,
        };
        let s = analyse(1, &r, &facts);
        assert_eq!(s.wrongly_excluded, 1);
    }

    fn fault(t_ms: u64, action: &str, targets: &[NodeId]) -> Record {
        rec(
            t_ms,
            0,
            Body::Fault {
                action: action.into(),
                targets: targets.to_vec(),
                groups: vec![],
            },
        )
    }

    fn facts5(end_ms: u64) -> RunFacts {
        RunFacts {
            nodes: vec![1, 2, 3, 4, 5],
            starts: vec![0; 5],
            bound_ns: 5_000_000_000,
            end_ns: end_ms * 1_000_000,
            // token 1000 + consensus 1200 + 500.
            settle_ns: 2_700_000_000,
        }
    }

    /// Every node of `members` installs ring `(members[0], seq)` at `t_ms` (+ its index).
    fn install(r: &mut Vec<Record>, t_ms: u64, members: &[NodeId], seq: u64) {
        for (i, &n) in members.iter().enumerate() {
            r.push(rec(t_ms + i as u64, n, cfg(members, seq)));
        }
    }

    /// A one-way cut that churns: the four re-form again and again while the fault lasts,
    /// node 1 never installs; after the heal one merge, then quiet.
    #[test]
    fn churn_while_a_cut_lasts_and_after_the_last_fault() {
        let mut r = vec![];
        install(&mut r, 100, &[1, 2, 3, 4, 5], 4);
        r.push(fault(1000, "cut", &[1, 2]));
        // Settles within the window (2700 ms) ...
        install(&mut r, 2500, &[2, 3, 4, 5], 8);
        // ... then re-forms twice more, past it.
        install(&mut r, 4000, &[2, 3, 4, 5], 12);
        install(&mut r, 5500, &[2, 3, 4, 5], 16);
        r.push(fault(6000, "heal", &[]));
        install(&mut r, 6100, &[1, 2, 3, 4, 5], 20);
        let s = analyse(1, &r, &facts5(11_000));
        let cut = s.faults[0].churn.as_ref().unwrap();
        // Three rings, each installed by four nodes: three changes, twelve installs.
        assert_eq!((cut.changes, cut.installs), (3, 12));
        assert_eq!(cut.window_ms, 5000.0);
        assert_eq!(cut.changes_per_s, 3.0 / 5.0);
        assert_eq!(cut.last_change_ms, Some(4503.0));
        assert_eq!(cut.settle_ms, 2700.0);
        assert_eq!(cut.changes_after_settle, 2);
        assert!(!cut.settled);
        let heal = s.faults[1].churn.as_ref().unwrap();
        assert_eq!((heal.changes, heal.installs), (1, 5));
        assert_eq!(heal.last_change_ms, Some(104.0));
        assert_eq!(heal.changes_after_settle, 0);
        assert!(heal.settled);
        // The repetition's churn is the window after its last fault: the heal's.
        let after = s.churn.as_ref().unwrap();
        assert_eq!(after, heal);
        assert_eq!(after.window_ms, 5000.0);
        assert_eq!(after.changes_per_s, 1.0 / 5.0);
    }

    /// Settled in time but a running node never installed: not settled. Settled in time
    /// and every node installed, nothing after: settled. A straggler's install of a ring
    /// another node formed before the fault is no change of the window.
    #[test]
    fn settled_needs_every_running_node_in_time_and_nothing_after() {
        let mut r = vec![];
        install(&mut r, 100, &[1, 2, 3, 4, 5], 4);
        r.push(fault(1000, "cut", &[1, 2]));
        install(&mut r, 2000, &[2, 3, 4, 5], 8);
        let s = analyse(1, &r, &facts5(9_000));
        let c = s.churn.as_ref().unwrap();
        assert_eq!((c.changes, c.changes_after_settle), (1, 0));
        // Node 1 runs and installed nothing.
        assert!(!c.settled);
        // Node 1 installs its own ring within the window: settled.
        r.push(rec(3600, 1, cfg(&[1], 9)));
        let s = analyse(1, &r, &facts5(9_000));
        let c = s.churn.as_ref().unwrap();
        assert_eq!((c.changes, c.installs), (2, 5));
        assert_eq!(c.last_change_ms, Some(2600.0));
        assert!(c.settled);
        // A killed node is not running: it need not install.
        let mut k = vec![];
        install(&mut k, 100, &[1, 2, 3, 4, 5], 4);
        k.push(fault(1000, "kill", &[1]));
        install(&mut k, 2200, &[2, 3, 4, 5], 8);
        // Node 5 installs ring 4 late (a straggler): not a change, but an install.
        k.push(rec(2300, 5, cfg(&[1, 2, 3, 4, 5], 4)));
        let c = analyse(1, &k, &facts5(9_000)).churn.unwrap();
        assert_eq!((c.changes, c.installs), (1, 5));
        assert!(c.settled);
        // Past the settle window the same install is a change after it.
        let mut late = vec![];
        install(&mut late, 100, &[1, 2, 3, 4, 5], 4);
        late.push(fault(1000, "kill", &[1]));
        install(&mut late, 3800, &[2, 3, 4, 5], 8);
        let c = analyse(1, &late, &facts5(9_000)).churn.unwrap();
        assert_eq!((c.changes, c.changes_after_settle), (1, 1));
        assert!(!c.settled);
        // A ring formed in time but installed by one of its members only after the settle
        // window: no change after it, yet that node was not settled in time.
        let mut slow = vec![];
        install(&mut slow, 100, &[1, 2, 3, 4, 5], 4);
        slow.push(fault(1000, "kill", &[1]));
        for n in 2..=4 {
            slow.push(rec(2200, n, cfg(&[2, 3, 4, 5], 8)));
        }
        slow.push(rec(3800, 5, cfg(&[2, 3, 4, 5], 8)));
        let c = analyse(1, &slow, &facts5(9_000)).churn.unwrap();
        assert_eq!((c.changes, c.installs, c.changes_after_settle), (1, 4, 0));
        assert_eq!(c.last_change_ms, Some(2800.0));
        assert!(!c.settled);
    }

    /// Without faults, the window runs from the first full ring to the end.
    #[test]
    fn without_faults_churn_counts_from_the_first_full_ring() {
        let mut r = vec![];
        install(&mut r, 10, &[1, 2], 4);
        install(&mut r, 30, &[1, 2, 3, 4, 5], 8);
        let s = analyse(1, &r, &facts5(2_034));
        let c = s.churn.as_ref().unwrap();
        // The formation itself (ring 8, first installed at 30 ms) is before the window.
        assert_eq!(s.formation_ms, Some(34.0));
        assert_eq!((c.changes, c.installs, c.last_change_ms), (0, 0, None));
        assert_eq!(c.window_ms, 2000.0);
        assert!(c.settled);
        install(&mut r, 1034, &[1, 2, 3, 4], 12);
        let c = analyse(1, &r, &facts5(2_034)).churn.unwrap();
        assert_eq!((c.changes, c.installs), (1, 4));
        assert_eq!(c.changes_per_s, 0.5);
        assert_eq!(c.last_change_ms, Some(1003.0));
    }
}
