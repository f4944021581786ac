//! Resource failover, from the records of the resources service (`resource` records: a
//! command's beginning, `starting`, and its end, `start` with `cmd_us`; `stop`), the ring's
//! (`state`, `config`) and the sync engine's (`sync` `done`), all on the shared clock.
//!
//! For every fault and every group, over the fault's interval (its timestamp `t0` up to the
//! next fault or the end of the measured part): the nodes holding the group at `t0`; the
//! first node not among them that completes a start of it (the new holder); and, from `t0`:
//! - **detection**: the first node leaves OPERATIONAL;
//! - **membership**: the new holder installs the regular configuration it placed the group
//!   in (its last before the `starting` record);
//! - **sync**: the new holder's sync after that configuration is done;
//! - **placement**: its start command begins (`starting`): the placement's wait, which with
//!   policy `primary` is the takeover delay (`takeover_ms`) for a group whose holder was lost;
//! - **start**: its start command ends well (`start`): the failover; `cmd_ms` is the command's
//!   own time and `beyond_ring_ms` = start − membership − cmd, what the failover costs past
//!   the new ring and the command (the takeover delay, with policy `primary`).
//!
//! And over the interval: `double_ms`, how long two nodes or more held the group at once
//! (a node holds a group from its `starting` to its `stop`; a crash ends it): the seed's
//! hazard (policy `heartbeat2000`) after a split and, on the heal, for good.

use ringlab_records::{Body, Record};
use ringlab_ring::event::ConfigKind;
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One group over one fault's interval.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Failover {
    /// The fault's index among the repetition's faults (as [`FaultRecovery::index`]).
    ///
    /// [`FaultRecovery::index`]: crate::summary::FaultRecovery::index
    pub fault: usize,
    /// The fault's action.
    pub action: String,
    /// The group.
    pub group: String,
    /// Who held it at the fault.
    pub from: Vec<NodeId>,
    /// Who started it next, if anyone did in the interval.
    pub to: Option<NodeId>,
    /// ms from the fault to the first node leaving OPERATIONAL.
    pub detection_ms: Option<f64>,
    /// ms to the regular configuration the new holder placed the group in.
    pub membership_ms: Option<f64>,
    /// ms to the new holder's sync done in that configuration.
    pub sync_ms: Option<f64>,
    /// ms to the new holder's start command beginning.
    pub placement_ms: Option<f64>,
    /// ms to its start command ending well: the failover.
    pub start_ms: Option<f64>,
    /// The start command's own time, ms.
    pub cmd_ms: Option<f64>,
    /// start − membership − cmd, ms: what the failover costs beyond the new ring's
    /// installation and the command.
    pub beyond_ring_ms: Option<f64>,
    /// ms in the interval during which two nodes or more held the group.
    pub double_ms: f64,
}

fn ms(d: u64) -> f64 {
    d as f64 / 1e6
}

/// Returns every group's failover over every fault interval: `faults` are the faults'
/// (timestamp, action), in order; `end` the end of the measured part (ns).
pub fn failovers(records: &[Record], faults: &[(u64, String)], end: u64) -> Vec<Failover> {
    let mut recs: Vec<&Record> = records.iter().filter(|r| r.node != 0).collect();
    recs.sort_by_key(|r| r.t_ns);
    let groups: BTreeSet<&str> = recs
        .iter()
        .filter_map(|r| match &r.body {
            Body::Resource { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for (i, (t0, action)) in faults.iter().enumerate() {
        let t0 = *t0;
        let t1 = faults.get(i + 1).map_or(end, |f| f.0).max(t0);
        let detection = crate::analysis::detection_ms(&recs, t0, t1);
        for &g in &groups {
            let from: Vec<NodeId> = holders_at(&recs, g, t0).into_iter().collect();
            let mut f = Failover {
                fault: i,
                action: action.clone(),
                group: g.into(),
                from: from.clone(),
                detection_ms: detection,
                double_ms: ms(double_ns(&recs, g, t0, t1)),
                ..Failover::default()
            };
            let started = recs.iter().find(|r| {
                r.t_ns > t0
                    && r.t_ns <= t1
                    && !from.contains(&r.node)
                    && matches!(&r.body, Body::Resource { action, name, .. } if action == "start" && name == g)
            });
            if let Some(s) = started {
                let to = s.node;
                f.to = Some(to);
                f.start_ms = Some(ms(s.t_ns - t0));
                let cmd_us = match &s.body {
                    Body::Resource { cmd_us, .. } => *cmd_us,
                    _ => None,
                };
                f.cmd_ms = cmd_us.map(|us| us as f64 / 1e3);
                let mine = |r: &&&Record| r.node == to && r.t_ns > t0 && r.t_ns <= s.t_ns;
                let starting = recs
                    .iter()
                    .filter(mine)
                    .rfind(|r| matches!(&r.body, Body::Resource { action, name, .. } if action == "starting" && name == g))
                    .map(|r| r.t_ns);
                f.placement_ms = starting.map(|t| ms(t - t0));
                let placed_by = starting.unwrap_or(s.t_ns);
                let config = recs
                    .iter()
                    .filter(mine)
                    .rfind(|r| {
                        r.t_ns <= placed_by
                            && matches!(
                                r.body,
                                Body::Config {
                                    kind: ConfigKind::Regular,
                                    ..
                                }
                            )
                    })
                    .map(|r| r.t_ns);
                f.membership_ms = config.map(|t| ms(t - t0));
                if let Some(c) = config {
                    f.sync_ms = recs
                        .iter()
                        .filter(mine)
                        .filter(|r| r.t_ns >= c && r.t_ns <= placed_by)
                        .find(|r| matches!(&r.body, Body::Sync { phase, .. } if phase == "done"))
                        .map(|r| ms(r.t_ns - t0));
                    f.beyond_ring_ms = Some(ms(s.t_ns - c) - f.cmd_ms.unwrap_or(0.0));
                }
            }
            out.push(f);
        }
    }
    out
}

/// Whether `r` changes node `r.node`'s holding of group `g`: Some(true) it holds from now
/// (`starting`, or a `start` without one), Some(false) it no longer does (`stop`, a crash).
fn holding_change(r: &Record, g: &str) -> Option<bool> {
    match &r.body {
        Body::Resource { action, name, .. } if name == g => match action.as_str() {
            "starting" | "start" => Some(true),
            "stop" => Some(false),
            _ => None,
        },
        Body::Crash { .. } => Some(false),
        _ => None,
    }
}

/// The nodes holding `g` at `t`.
fn holders_at(recs: &[&Record], g: &str, t: u64) -> BTreeSet<NodeId> {
    let mut h = BTreeSet::new();
    for r in recs.iter().take_while(|r| r.t_ns <= t) {
        match holding_change(r, g) {
            Some(true) => {
                h.insert(r.node);
            }
            Some(false) => {
                h.remove(&r.node);
            }
            None => {}
        }
    }
    h
}

/// How long (ns) in `[t0, t1)` two nodes or more held `g`.
fn double_ns(recs: &[&Record], g: &str, t0: u64, t1: u64) -> u64 {
    let mut h = holders_at(recs, g, t0);
    let mut total = 0;
    let mut since = (h.len() >= 2).then_some(t0);
    for r in recs.iter().filter(|r| r.t_ns > t0 && r.t_ns < t1) {
        match holding_change(r, g) {
            Some(true) => {
                h.insert(r.node);
            }
            Some(false) => {
                h.remove(&r.node);
            }
            None => continue,
        }
        match (since, h.len() >= 2) {
            (None, true) => since = Some(r.t_ns),
            (Some(s), false) => {
                total += r.t_ns - s;
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since {
        total += t1.saturating_sub(s);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringlab_ring::event::{MembState, Reason};
    use ringlab_ring::RingId;

    fn rec(t_ms: u64, node: NodeId, body: Body) -> Record {
        Record {
            t_ns: t_ms * 1_000_000,
            node,
            inc: 1,
            body,
        }
    }

    fn res(action: &str, cmd_us: Option<u64>) -> Body {
        Body::Resource {
            action: action.into(),
            name: "web".into(),
            ring: RingId { rep: 1, seq: 4 },
            home: Some(5),
            reason: None,
            resource: Some("web".into()),
            cmd_us,
            exit: None,
            error: None,
        }
    }

    #[test]
    fn phases_of_a_failover_and_double_ownership_after_a_heal() {
        let config = Body::Config {
            kind: ConfigKind::Regular,
            ring: RingId { rep: 1, seq: 8 },
            members: vec![1, 2, 3, 4],
            left: vec![5],
            joined: vec![],
        };
        let records = vec![
            rec(100, 5, res("starting", None)),
            rec(150, 5, res("start", Some(50_000))),
            // The fault at 1000 isolates node 5.
            rec(
                2000,
                2,
                Body::State {
                    from: MembState::Operational,
                    to: MembState::Gather,
                    reason: Reason::TokenLoss,
                },
            ),
            rec(3200, 1, config),
            rec(
                3210,
                1,
                Body::Sync {
                    phase: "done".into(),
                    ring: RingId { rep: 1, seq: 8 },
                    service: None,
                    bytes: 0,
                    detail: None,
                },
            ),
            rec(5200, 1, res("starting", None)),
            rec(5260, 1, res("start", Some(60_000))),
            // The heal at 8000: node 5 never stopped; both hold it to the end (10000).
        ];
        let faults = vec![
            (1_000_000_000, "isolate".into()),
            (8_000_000_000, "heal".into()),
        ];
        let f = failovers(&records, &faults, 10_000_000_000);
        assert_eq!(f.len(), 2);
        let a = &f[0];
        assert_eq!((a.from.clone(), a.to), (vec![5], Some(1)));
        assert_eq!(a.detection_ms, Some(1000.0));
        assert_eq!(a.membership_ms, Some(2200.0));
        assert_eq!(a.sync_ms, Some(2210.0));
        assert_eq!(a.placement_ms, Some(4200.0));
        assert_eq!(a.start_ms, Some(4260.0));
        assert_eq!(a.cmd_ms, Some(60.0));
        assert_eq!(a.beyond_ring_ms, Some(2000.0));
        assert_eq!(a.double_ms, 8000.0 - 5200.0);
        let h = &f[1];
        assert_eq!((h.from.clone(), h.to), (vec![1, 5], None));
        assert_eq!(h.double_ms, 2000.0);
    }
}
