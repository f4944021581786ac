//! The resource properties (9 to 13 of the [checker](super)), judged over the shared clock
//! on the records of the resources service: `quorum` at every regular configuration, and
//! `resource` when a start or stop command begins (`starting`, `stopping`) and ends
//! (`start`, `start_failed`, `stop`, `stop_failed`). A resource of a group is *active* on a
//! node from its `starting` to its successful `stop` (a failed start or stop leaves it
//! active: its state is unknown); records that carry only `start` and `stop` (no `starting`)
//! are read as a start at `start`. A crash, a `stop` record of the node, its leaving, or a
//! later incarnation ends everything the incarnation held (a crash is a host's).

use super::{Inc, Liveness, Property, Violations};
use ringlab_records::{Body, Record};
use ringlab_ring::{MembState, NodeId, RingId};
use std::collections::{BTreeMap, BTreeSet};

/// Where one resource stands on one incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Its start command runs.
    Starting,
    /// Started, no stop begun.
    Active,
    /// Its stop command runs (or a start failed and its clean-up stop follows).
    Stopping,
}

/// One resource active on one incarnation: (group, resource, incarnation, from, to).
#[derive(Clone, Debug)]
struct Interval {
    group: String,
    resource: String,
    inc: Inc,
    from: u64,
    to: Option<u64>,
}

impl Interval {
    fn overlaps(&self, o: &Self) -> bool {
        self.from < o.to.unwrap_or(u64::MAX) && o.from < self.to.unwrap_or(u64::MAX)
    }

    fn covers(&self, t: u64) -> bool {
        self.from <= t && self.to.is_none_or(|e| t < e)
    }
}

/// One incarnation's resources, as its records tell them.
#[derive(Default)]
struct Holdings {
    /// (group, resource) → its state and the index of its open interval.
    res: BTreeMap<(String, String), (St, usize)>,
    primary: bool,
    members: Vec<NodeId>,
    /// The ring of its last `quorum` record.
    ring: Option<RingId>,
    /// The members of the primary configuration before, if the last one was primary.
    prev_primary: Option<Vec<NodeId>>,
    /// Not primary and already reported for holding a started resource.
    reported: bool,
    /// Whether its ring is operational (from its `state` records; none: no such record).
    in_ring: Option<bool>,
    /// Failures and what ends their excuse, by group, in time order.
    marks: BTreeMap<String, Vec<(u64, Mark)>>,
}

/// What a group's history on one incarnation says about excusing it from being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mark {
    /// A start failed (the node may refuse the group).
    StartFailed,
    /// A stop failed (the group is blocked there).
    StopFailed,
    /// A stop succeeded (a block ends).
    Stopped,
    /// A cleanup (refusals and blocks end).
    Cleanup,
}

impl Holdings {
    /// Returns whether a failure of `g` here ended (a cleanup, a stop after a block) within
    /// `(from, to]`: the group's placement started again then.
    fn cleared_within(&self, g: &str, from: u64, to: u64) -> bool {
        self.marks.get(g).is_some_and(|ms| {
            ms.iter()
                .any(|&(at, m)| at > from && at <= to && matches!(m, Mark::Cleanup))
        })
    }

    /// Returns whether, at `t`, this incarnation's last start failure of `g` (a refusal)
    /// or stop failure (a block) still stands: no cleanup, nor for a block a stop, since.
    fn stands(&self, g: &str, t: u64, failure: Mark) -> bool {
        let mut on = false;
        for &(at, m) in self.marks.get(g).map_or(&[][..], Vec::as_slice) {
            if at > t {
                break;
            }
            match m {
                m if m == failure => on = true,
                Mark::Cleanup => on = false,
                Mark::Stopped if failure == Mark::StopFailed => on = false,
                _ => {}
            }
        }
        on
    }
}

/// A primary configuration: its ring, members (the incarnations that recorded it) and
/// settle bound.
struct Primary {
    ring: RingId,
    members: Vec<NodeId>,
    incs: Vec<Inc>,
    /// When its first member recorded it.
    installed: u64,
    settle_ns: u64,
}

fn mark(h: &mut Holdings, g: &str, t: u64, m: Mark) {
    h.marks.entry(g.to_string()).or_default().push((t, m));
}

/// Properties 9 to 13 (see the [checker](super)); nothing without resource records.
/// Returns how many stable primary configurations property 11 judged.
pub(super) fn check(
    order: &[&Record],
    pauses: &[(u64, Vec<NodeId>)],
    liveness: Option<&Liveness>,
    v: &mut Violations,
) -> u64 {
    if !order
        .iter()
        .any(|r| matches!(r.body, Body::Resource { .. } | Body::Quorum { .. }))
    {
        return 0;
    }
    let mut incs: BTreeMap<Inc, Holdings> = BTreeMap::new();
    let mut iv: Vec<Interval> = Vec::new();
    let mut groups: BTreeSet<String> = BTreeSet::new();
    // Group → (node it left, home, t) of a stop on a join, judged at the group's next start.
    // (A placement after another configuration change is a new decision: not judged.)
    let mut moves: BTreeMap<String, (NodeId, Option<NodeId>, u64, Option<RingId>)> =
        BTreeMap::new();
    let mut last_inc: BTreeMap<NodeId, u32> = BTreeMap::new();
    // Primary configurations seen, and when each member installed and synchronised them,
    // and when each member's view of them ended.
    let mut primaries: BTreeMap<RingId, Primary> = BTreeMap::new();
    let mut synced: BTreeMap<RingId, BTreeMap<NodeId, u64>> = BTreeMap::new();
    let mut current: BTreeMap<NodeId, RingId> = BTreeMap::new();
    let mut broken: BTreeMap<RingId, u64> = BTreeMap::new();
    // The run lasted to its last record, and with liveness at least to the bound by which
    // it demands the final ring (the nodes were running then).
    let end_t = order
        .last()
        .map_or(0, |r| r.t_ns)
        .max(liveness.map_or(0, |l| l.faults_end.saturating_add(l.bound).max(l.end)));
    let close = |h: &mut Holdings, t: u64, iv: &mut Vec<Interval>| {
        for (_, (_, i)) in std::mem::take(&mut h.res) {
            iv[i].to = Some(t);
        }
    };
    for r in order {
        let key = (r.node, r.inc);
        // A later incarnation ends the earlier one's holdings.
        if let Some(&prev) = last_inc.get(&r.node) {
            if prev != r.inc {
                if let Some(h) = incs.get_mut(&(r.node, prev)) {
                    close(h, r.t_ns, &mut iv);
                }
                if let Some(ring) = current.remove(&r.node) {
                    broken.entry(ring).or_insert(r.t_ns);
                }
            }
        }
        last_inc.insert(r.node, r.inc);
        // What ends a member's view of its configuration: leaving OPERATIONAL, another
        // configuration, a crash or stop.
        let ends_view = match &r.body {
            Body::State { from, to, .. } => {
                let h = incs.entry(key).or_default();
                h.in_ring = Some(*to == MembState::Operational);
                *from == MembState::Operational
            }
            Body::Quorum { ring, .. } | Body::Config { ring, .. } => {
                current.get(&r.node).is_some_and(|c| c != ring)
            }
            Body::Crash {} | Body::Stop { .. } => true,
            _ => false,
        };
        if ends_view {
            if let Some(ring) = current.remove(&r.node) {
                broken.entry(ring).or_insert(r.t_ns);
            }
        }
        let h = incs.entry(key).or_default();
        let is_resource = matches!(r.body, Body::Resource { .. });
        if !is_resource && !h.primary && !h.reported {
            let started: Vec<String> = idle_started(h).into_iter().map(String::from).collect();
            if !started.is_empty() {
                h.reported = true;
                v.add(
                    Property::ActiveWithoutQuorum,
                    format!(
                        "node {} inc {} still runs {started:?} at {} ns outside a primary \
                         component, no stop begun",
                        r.node, r.inc, r.t_ns
                    ),
                );
            }
        }
        match &r.body {
            Body::Quorum {
                primary,
                ring,
                members,
                groups: gs,
                settle_ms,
            } => {
                groups.extend(gs.iter().cloned());
                h.prev_primary = h.primary.then(|| std::mem::take(&mut h.members));
                h.primary = *primary;
                h.members = members.clone();
                h.ring = Some(*ring);
                h.reported = false;
                current.insert(r.node, *ring);
                if let (true, Some(ms)) = (*primary, settle_ms) {
                    primaries
                        .entry(*ring)
                        .or_insert(Primary {
                            ring: *ring,
                            members: members.clone(),
                            incs: vec![],
                            installed: r.t_ns,
                            settle_ns: ms.saturating_mul(1_000_000),
                        })
                        .incs
                        .push(key);
                }
            }
            Body::Sync { phase, ring, .. } if phase == "done" => {
                synced.entry(*ring).or_default().insert(r.node, r.t_ns);
            }
            Body::Resource {
                action,
                name,
                home,
                reason,
                resource,
                ..
            } => {
                let res = resource.clone().unwrap_or_else(|| name.clone());
                let k = (name.clone(), res.clone());
                let state = h.res.get(&k).map(|x| x.0);
                let begins = match action.as_str() {
                    "starting" => state.is_none(),
                    "start" => state.is_none(),
                    _ => false,
                };
                if begins {
                    if !h.primary {
                        h.reported = true;
                        v.add(
                            Property::ActiveWithoutQuorum,
                            format!(
                                "node {} starts {name}/{res} at {} ns outside a primary \
                                 component",
                                r.node, r.t_ns
                            ),
                        );
                    } else if h.in_ring == Some(false)
                        && action == "starting"
                        && !h.res.keys().any(|(g, _)| g == name)
                    {
                        v.add(
                            Property::ActiveWithoutQuorum,
                            format!(
                                "node {} starts {name}/{res} at {} ns while its ring is not \
                                 operational (it may be landing in a minority)",
                                r.node, r.t_ns
                            ),
                        );
                    }
                    let first_of_group = !h.res.keys().any(|(g, _)| g == name);
                    if first_of_group {
                        if let Some((from, home, t, ring)) = moves.remove(name) {
                            if home != Some(r.node) && ring == h.ring {
                                v.add(
                                    Property::NeedlessMove,
                                    format!(
                                        "{name} stopped on node {from} at {t} ns on a join \
                                         and started on node {} (home {home:?})",
                                        r.node
                                    ),
                                );
                            }
                        }
                    }
                    iv.push(Interval {
                        group: name.clone(),
                        resource: res.clone(),
                        inc: key,
                        from: r.t_ns,
                        to: None,
                    });
                    h.res.insert(k.clone(), (St::Starting, iv.len() - 1));
                }
                match action.as_str() {
                    "start" => {
                        if let Some(x) = h.res.get_mut(&k) {
                            x.0 = St::Active;
                        }
                    }
                    "start_failed" => {
                        mark(h, name, r.t_ns, Mark::StartFailed);
                        if let Some(x) = h.res.get_mut(&k) {
                            x.0 = St::Stopping;
                        }
                    }
                    "stopping" => {
                        // A move is judged as decided: on the membership of its decision.
                        let join = h.primary
                            && reason.as_deref() == Some("move")
                            && h.prev_primary
                                .as_ref()
                                .is_some_and(|p| p.iter().all(|m| h.members.contains(m)));
                        let first = h
                            .res
                            .iter()
                            .filter(|((g, _), _)| g == name)
                            .all(|(_, (st, _))| *st != St::Stopping);
                        if join && first && h.res.contains_key(&k) {
                            moves.insert(name.clone(), (r.node, *home, r.t_ns, h.ring));
                        }
                        if let Some(x) = h.res.get_mut(&k) {
                            x.0 = St::Stopping;
                        }
                    }
                    "stop_failed" => mark(h, name, r.t_ns, Mark::StopFailed),
                    "cleanup" => mark(h, name, r.t_ns, Mark::Cleanup),
                    "stop" => {
                        mark(h, name, r.t_ns, Mark::Stopped);
                        // A history without `stopping` records: the move is judged here.
                        let join = h.primary
                            && reason.as_deref() == Some("move")
                            && h.prev_primary
                                .as_ref()
                                .is_some_and(|p| p.iter().all(|m| h.members.contains(m)));
                        if join && state == Some(St::Active) {
                            moves.insert(name.clone(), (r.node, *home, r.t_ns, h.ring));
                        }
                        if let Some((_, i)) = h.res.remove(&k) {
                            iv[i].to = Some(r.t_ns);
                        }
                    }
                    _ => {}
                }
            }
            Body::Crash {} | Body::Stop { .. } => close(h, r.t_ns, &mut iv),
            Body::State { to, .. } if *to == MembState::Left => close(h, r.t_ns, &mut iv),
            _ => {}
        }
    }
    for ((n, i), h) in &incs {
        let started = idle_started(h);
        if !h.primary && !h.reported && !started.is_empty() {
            v.add(
                Property::ActiveWithoutQuorum,
                format!(
                    "node {n} inc {i}: {started:?} still started at the end outside a \
                     primary component"
                ),
            );
        }
    }
    overlaps(&iv, v);
    let judged = settled(
        &primaries, &synced, &broken, pauses, end_t, &groups, &iv, &incs, v,
    );
    if let Some(l) = liveness {
        // Owed at the end only once the final configuration has had its settle bound.
        let last_ring = l.live.iter().find_map(|n| {
            let h = last_inc.get(n).and_then(|&i| incs.get(&(*n, i)))?;
            h.primary.then_some(h.ring).flatten()
        });
        let owed = last_ring.and_then(|r| primaries.get(&r)).is_none_or(|p| {
            let done = synced.get(&p.ring);
            let t0 = p
                .members
                .iter()
                .map(|m| done.and_then(|d| d.get(m)).copied())
                .collect::<Option<Vec<u64>>>()
                .and_then(|ts| ts.into_iter().max());
            t0.is_some_and(|t0| t0.saturating_add(p.settle_ns) <= end_t)
        });
        if owed {
            at_the_end(l, &groups, &last_inc, &incs, v);
        }
    }
    judged
}

/// Returns the groups an incarnation runs with no command under way: started, no stop begun
/// (a group stops one resource at a time, so a stop begun on any of its resources counts).
fn idle_started(h: &Holdings) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for ((g, _), (st, _)) in &h.res {
        let busy = h
            .res
            .iter()
            .any(|((x, _), (s, _))| x == g && *s != St::Active);
        if *st == St::Active && !busy && !out.contains(&g.as_str()) {
            out.push(g);
        }
    }
    out
}

/// Properties 9 and 13: one resource active on two nodes at once (two holders); two
/// resources of one group active on two nodes at once (the group split).
fn overlaps(iv: &[Interval], v: &mut Violations) {
    let mut by_group: BTreeMap<&str, Vec<&Interval>> = BTreeMap::new();
    for i in iv {
        by_group.entry(i.group.as_str()).or_default().push(i);
    }
    for (g, ivs) in &by_group {
        for (x, a) in ivs.iter().enumerate() {
            for b in &ivs[x + 1..] {
                if a.inc.0 == b.inc.0 || !a.overlaps(b) {
                    continue;
                }
                let (property, what) = if a.resource == b.resource {
                    (Property::TwoHolders, format!("{g}/{}", a.resource))
                } else {
                    (
                        Property::GroupSplit,
                        format!("{g} ({} and {})", a.resource, b.resource),
                    )
                };
                v.add(
                    property,
                    format!(
                        "{what} active on node {} [{}, {:?}) and node {} [{}, {:?})",
                        a.inc.0, a.from, a.to, b.inc.0, b.from, b.to
                    ),
                );
            }
        }
    }
}

/// Property 11, while the run goes on: once every member of a primary configuration has
/// completed its sync and `settle_ms` more have passed with no member leaving it, every
/// group is active on exactly one node, a member; unless every member's start of it failed
/// or a stop of it failed somewhere (then nothing safer is owed).
#[allow(clippy::too_many_arguments)]
fn settled(
    primaries: &BTreeMap<RingId, Primary>,
    synced: &BTreeMap<RingId, BTreeMap<NodeId, u64>>,
    broken: &BTreeMap<RingId, u64>,
    pauses: &[(u64, Vec<NodeId>)],
    end_t: u64,
    groups: &BTreeSet<String>,
    iv: &[Interval],
    incs: &BTreeMap<Inc, Holdings>,
    v: &mut Violations,
) -> u64 {
    let mut judged = 0;
    for p in primaries.values() {
        let Some(done) = synced.get(&p.ring) else {
            continue;
        };
        if !p.members.iter().all(|m| done.contains_key(m)) {
            continue; // Never synchronised everywhere: not stable.
        }
        let t0 = p.members.iter().map(|m| done[m]).max().unwrap_or(0);
        let t = t0.saturating_add(p.settle_ns);
        let until = broken.get(&p.ring).copied().unwrap_or(end_t);
        // A member paused (SIGSTOP) ends the configuration's stability too, though its ring
        // notices only a token timeout later.
        let paused = pauses.iter().any(|(tp, who)| {
            *tp >= p.installed && *tp <= t && who.iter().any(|n| p.members.contains(n))
        });
        if t >= until || t > end_t || paused {
            continue;
        }
        judged += 1;
        for g in groups {
            // Owed nothing safer: a block standing anywhere, or every member refusing it.
            // A cleanup restarts the group's placement: judged a settle bound after it.
            let excused = incs.values().any(|h| h.stands(g, t, Mark::StopFailed))
                || incs
                    .values()
                    .any(|h| h.cleared_within(g, t.saturating_sub(p.settle_ns), t))
                || p.incs.iter().all(|i| {
                    incs.get(i)
                        .is_some_and(|h| h.stands(g, t, Mark::StartFailed))
                });
            if excused {
                continue;
            }
            let nodes: BTreeSet<NodeId> = iv
                .iter()
                .filter(|i| &i.group == g && i.covers(t))
                .map(|i| i.inc.0)
                .collect();
            let ok = nodes.len() == 1 && nodes.iter().all(|n| p.members.contains(n));
            if !ok {
                v.add(
                    Property::NotServedOnce,
                    format!(
                        "{g} active on {nodes:?} at {t} ns, {} ms after ring {}.{} (members \
                         {:?}) completed its sync: expected one member",
                        p.settle_ns / 1_000_000,
                        p.ring.rep,
                        p.ring.seq,
                        p.members
                    ),
                );
            }
        }
    }
    judged
}

/// Property 11 at the end (with liveness): with a live primary component, every configured
/// group is held by exactly one live node, and by none without one.
fn at_the_end(
    l: &Liveness,
    groups: &BTreeSet<String>,
    last_inc: &BTreeMap<NodeId, u32>,
    incs: &BTreeMap<Inc, Holdings>,
    v: &mut Violations,
) {
    let last = |n: &NodeId| last_inc.get(n).and_then(|&i| incs.get(&(*n, i)));
    let live_primary = l.live.iter().any(|n| last(n).is_some_and(|h| h.primary));
    let end = u64::MAX;
    for g in groups {
        if incs.values().any(|h| h.stands(g, end, Mark::StopFailed))
            || l.live
                .iter()
                .all(|n| last(n).is_some_and(|h| h.stands(g, end, Mark::StartFailed)))
        {
            continue;
        }
        let holders: Vec<NodeId> = l
            .live
            .iter()
            .copied()
            .filter(|n| last(n).is_some_and(|h| h.res.keys().any(|(x, _)| x == g)))
            .collect();
        let want = usize::from(live_primary);
        if holders.len() != want {
            v.add(
                Property::NotServedOnce,
                format!("{g} held at the end by {holders:?}, expected {want} holder"),
            );
        }
    }
}
