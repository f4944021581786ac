//! The checker: reads event records (from the simulator or from real nodes: the same
//! format) and verifies the ring's guarantees.
//!
//! A node *incarnation* `(node, inc)` is the unit: it fails when a `crash` record names it,
//! when it enters state `left`, or when a later incarnation of the same node appears. A `stop`
//! record (the node quit with its own messages undelivered) counts as a failure for self
//! delivery only. The properties:
//!
//! 1. **integrity**: no incarnation delivers a message twice, and every delivered id was sent
//!    (has a `send` record) — checked when send records are present;
//! 2. **total order**: the union of every incarnation's delivery sequence is acyclic, so one
//!    order exists that all of them follow;
//! 3. **membership agreement**: every incarnation that installs regular configuration R
//!    reports the same members, and it is among them;
//! 4. **virtual synchrony**: incarnations that install regular C and then regular C' as the
//!    next regular configuration delivered the same set of messages in between;
//! 5. **safe delivery**: a message delivered as safe in configuration X (regular, or the
//!    transitional configuration delivered before it) is delivered by every member of X that
//!    installed X and did not fail;
//! 6. **self delivery**: every message sent by an incarnation that did not fail (or stop) is
//!    delivered to it;
//! 7. **order agreement**: every message is delivered at one position `(ring, seq)` by every
//!    incarnation that delivers it, and no two incarnations deliver different messages at the
//!    same position. A frame carries several packed messages, and a node that missed the
//!    start of a message fragmented into it does not deliver that one, so every node's set
//!    at a position must be part of the largest set delivered there (they all come from one
//!    frame); this catches two token holders giving one seq to two frames directly, where
//!    total order may see nothing;
//! 8. **liveness** (when asked): after the faults stop at `faults_end`, every live node's
//!    last regular configuration is one ring whose members are exactly the live nodes,
//!    installed by `faults_end + bound`; and every message a live node sent after that ring
//!    was installed is delivered by every live node.
//!
//! With resource records (the resources service: `resource` and `quorum`), the properties
//! of heartbeat's CTS resource audit, judged over the shared clock (see [`resources`] for
//! how records make a resource active on a node):
//!
//! 9. **two holders** ("served too many times"): one resource of a group is never active on
//!    two different nodes at once;
//! 10. **active without quorum**: no resource starts on a node whose last `quorum` record
//!     says not primary, and a node whose component stops being primary has begun stopping
//!     every started group (one of its resources) by its next record other than a
//!     `resource` one;
//! 11. **not served once**: once every member of a primary configuration has completed its
//!     sync and the configuration has then lasted the `settle_ms` its `quorum` records give
//!     (the takeover delay, the start and stop timeouts and a margin: a bound from the
//!     knobs), every group is active on exactly one node, one of its members; and (with
//!     liveness) at the end, with a live primary component that has had its settle bound
//!     (or gives none), every configured group is held by exactly one live node, by none
//!     without one. A group whose start failed on every
//!     member, or a stop of which failed, is excused (nothing safer is owed);
//! 12. **needless move**: a group stopped for a placement (reason `move`) on a node that
//!     stays in a primary component which only gained members (a join) starts next on its
//!     home node (`auto_failback`), never elsewhere;
//! 13. **group split**: two resources of one group are never active on two different nodes
//!     at once (a group's members stay together).
//!
//! With the store service's `store` records:
//!
//! 14. **store divergence**: two nodes that report the same store version report the same
//!     digest;
//! 15. **served early**: a node whose full transfer started (`store_sync` `start`) writes no
//!     `store` record (it serves) before that transfer's `finish`.
//!
//! With the modification log's `fileset` records (the `kml` service; see [`kml`]):
//!
//! 16. **fileset divergence**: all `fileset` records that name the same ring report the same
//!     digest, history length, conflict-list digest and tree digest;
//! 17. **record gap**: in every `fileset` record, each origin's last record number equals
//!     the number of its records held (no gap in an origin's numbers).

pub mod kml;
pub mod resources;

use ringlab_records::{Body, Record};
use ringlab_ring::{ConfigKind, MembState, MsgId, NodeId, RingId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

/// Which guarantee a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Duplicate delivery or delivery of a message never sent.
    Integrity,
    /// No single order fits every delivery sequence.
    TotalOrder,
    /// Two members list a regular configuration differently.
    MembershipAgreement,
    /// Two members moved between the same configurations with different deliveries.
    VirtualSynchrony,
    /// A safe message missing at a member that did not fail.
    SafeDelivery,
    /// A member that did not fail never delivered its own message.
    SelfDelivery,
    /// Two nodes delivered different messages at the same (ring, seq), or one message at two
    /// positions.
    OrderAgreement,
    /// No single ring of all live nodes in time, or messages never delivered after it.
    Liveness,
    /// One resource group held by two nodes at once.
    TwoHolders,
    /// A resource group held outside a primary component.
    ActiveWithoutQuorum,
    /// A resource group held by no live node, or by several, once a primary component has
    /// been stable long enough, or at the end.
    NotServedOnce,
    /// A join moved a resource group elsewhere than to its home.
    NeedlessMove,
    /// Two resources of one group active on two nodes at once.
    GroupSplit,
    /// Two nodes report the same store version with different digests.
    StoreDivergence,
    /// A node served its store before its full transfer finished.
    StoreServedEarly,
    /// Two members of one ring report different filesets after its sync.
    FilesetDivergence,
    /// A fileset's history lacks some record numbers of an origin.
    RecordGap,
}

/// One broken guarantee, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// The guarantee.
    pub property: Property,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.property, self.detail)
    }
}

/// What liveness must hold.
#[derive(Clone, Debug)]
pub struct Liveness {
    /// When the last fault stopped (ns).
    pub faults_end: u64,
    /// How long after that one ring of all live nodes must be installed (ns).
    pub bound: u64,
    /// The nodes that run at the end (their last incarnation).
    pub live: Vec<NodeId>,
    /// When the run ended: the nodes ran until then, recording or not (0: unknown, taken as
    /// the later of the last record and `faults_end + bound`).
    pub end: u64,
}

/// What the checker found, with figures derived from the same records.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Every violation (capped at 50 per property).
    pub violations: Vec<Violation>,
    /// Deliveries seen.
    pub deliveries: u64,
    /// Regular configurations installed, over all incarnations.
    pub regular_installs: u64,
    /// Longest time from leaving OPERATIONAL to the next regular install, ns.
    pub max_recovery_ns: u64,
    /// Time from `faults_end` to the final ring's last install, ns (with liveness).
    pub final_ring_ns: Option<u64>,
    /// Stable primary configurations whose resource placement was judged after their
    /// settle bound (property 11 while the run goes on).
    pub settled_judged: u64,
}

type Inc = (NodeId, u32);

#[derive(Default)]
struct IncLog {
    deliveries: Vec<(MsgId, bool)>,
    /// Per delivery: the ring and seq it was ordered at.
    positions: Vec<Position>,
    /// Per delivery: index into `configs` of the configuration it happened in, if any.
    delivery_conf: Vec<Option<usize>>,
    /// (kind, ring, members, t_ns, delivery index at install)
    configs: Vec<(ConfigKind, RingId, Vec<NodeId>, u64, usize)>,
    sends: Vec<(MsgId, u64)>,
    failed: bool,
    /// Quit with its own messages undelivered (a `stop` record).
    stopped: bool,
    left_operational_at: Option<u64>,
    max_recovery: u64,
}

/// Checks the records; `liveness` adds property 7.
pub fn check(records: &[Record], liveness: Option<&Liveness>) -> Report {
    let mut report = Report::default();
    let mut logs: BTreeMap<Inc, IncLog> = BTreeMap::new();
    let mut order: Vec<&Record> = records.iter().filter(|r| r.node != 0).collect();
    order.sort_by_key(|r| r.t_ns); // stable: keeps each node's own order at equal times
    let mut sent: HashMap<MsgId, Inc> = HashMap::new();
    let mut any_send = false;
    for r in &order {
        let key = (r.node, r.inc);
        let log = logs.entry(key).or_default();
        match &r.body {
            Body::State { from, to, .. } => {
                if *from == MembState::Operational && *to != MembState::Operational {
                    log.left_operational_at = Some(r.t_ns);
                }
                if *to == MembState::Left {
                    log.failed = true;
                }
            }
            Body::Config {
                kind,
                ring,
                members,
                ..
            } => {
                let at = log.deliveries.len();
                log.configs
                    .push((*kind, *ring, members.clone(), r.t_ns, at));
                if *kind == ConfigKind::Regular {
                    report.regular_installs += 1;
                    if let Some(t) = log.left_operational_at.take() {
                        log.max_recovery = log.max_recovery.max(r.t_ns - t);
                    }
                }
            }
            Body::Send { id, .. } => {
                any_send = true;
                sent.insert(*id, key);
                log.sends.push((*id, r.t_ns));
            }
            Body::Deliver {
                id,
                safe,
                ring,
                seq,
                ..
            } => {
                report.deliveries += 1;
                let conf = log.configs.len().checked_sub(1);
                log.deliveries.push((*id, *safe));
                log.positions.push((*ring, *seq));
                log.delivery_conf.push(conf);
            }
            Body::Crash {} => log.failed = true,
            Body::Stop { .. } => log.stopped = true,
            Body::Fault { .. }
            | Body::Sync { .. }
            | Body::Resource { .. }
            | Body::Store { .. }
            | Body::StoreSync { .. }
            | Body::Quorum { .. }
            | Body::Kml { .. }
            | Body::Fileset { .. } => {}
        }
    }
    // A later incarnation of the same node means the earlier one failed.
    let keys: Vec<Inc> = logs.keys().copied().collect();
    for w in keys.windows(2) {
        if w[0].0 == w[1].0 {
            logs.get_mut(&w[0]).expect("key").failed = true;
        }
    }
    report.max_recovery_ns = logs.values().map(|l| l.max_recovery).max().unwrap_or(0);

    let mut v = Violations::default();
    integrity(&logs, &sent, any_send, &mut v);
    total_order(&logs, &mut v);
    order_agreement(&logs, &mut v);
    membership(&logs, &mut v);
    virtual_synchrony(&logs, &mut v);
    safe_delivery(&logs, &mut v);
    if any_send {
        self_delivery(&logs, &mut v);
    }
    if let Some(l) = liveness {
        report.final_ring_ns = live(&logs, l, &mut v);
    }
    let pauses: Vec<(u64, Vec<NodeId>)> = records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Fault {
                action, targets, ..
            } if action == "pause" => Some((r.t_ns, targets.clone())),
            _ => None,
        })
        .collect();
    report.settled_judged = resources::check(&order, &pauses, liveness, &mut v);
    store(&order, &mut v);
    kml::check(&order, &mut v);
    report.violations = v.list;
    report
}

/// Properties 14 and 15: two nodes that report the same store version report the same
/// digest; a node whose full transfer started serves (a `store` record) only after its
/// `finish`.
fn store(order: &[&Record], v: &mut Violations) {
    let mut seen: HashMap<u64, (&str, NodeId)> = HashMap::new();
    let mut copying: HashSet<Inc> = HashSet::new();
    for r in order {
        if let Body::StoreSync { phase, .. } = &r.body {
            match phase.as_str() {
                "start" => {
                    copying.insert((r.node, r.inc));
                }
                "finish" | "abort" => {
                    copying.remove(&(r.node, r.inc));
                }
                _ => {}
            }
        }
        if let Body::Store { version, .. } = &r.body {
            if copying.contains(&(r.node, r.inc)) {
                v.add(
                    Property::StoreServedEarly,
                    format!(
                        "node {} inc {} serves store version {version} at {} ns before its \
                         transfer finished",
                        r.node, r.inc, r.t_ns
                    ),
                );
            }
        }
        if let Body::Store { version, digest } = &r.body {
            match seen.get(version) {
                Some((d, n)) if *d != digest.as_str() => v.add(
                    Property::StoreDivergence,
                    format!(
                        "store version {version}: node {n} digest {d}, node {} digest {digest}",
                        r.node
                    ),
                ),
                Some(_) => {}
                None => {
                    seen.insert(*version, (digest.as_str(), r.node));
                }
            }
        }
    }
}

#[derive(Default)]
struct Violations {
    list: Vec<Violation>,
    per: HashMap<Property, usize>,
}

impl Violations {
    fn add(&mut self, property: Property, detail: String) {
        let c = self.per.entry(property).or_insert(0);
        *c += 1;
        if *c <= 50 {
            self.list.push(Violation { property, detail });
        }
    }
}

fn integrity(
    logs: &BTreeMap<Inc, IncLog>,
    sent: &HashMap<MsgId, Inc>,
    any_send: bool,
    v: &mut Violations,
) {
    for (k, log) in logs {
        let mut seen = HashSet::with_capacity(log.deliveries.len());
        for (id, _) in &log.deliveries {
            if !seen.insert(*id) {
                v.add(
                    Property::Integrity,
                    format!("{}.{} delivered {id} twice", k.0, k.1),
                );
            }
            if any_send && !sent.contains_key(id) {
                v.add(
                    Property::Integrity,
                    format!("{}.{} delivered {id}, never sent", k.0, k.1),
                );
            }
        }
    }
}

fn total_order(logs: &BTreeMap<Inc, IncLog>, v: &mut Violations) {
    let mut index: HashMap<MsgId, usize> = HashMap::new();
    let mut ids: Vec<MsgId> = Vec::new();
    let mut edges: Vec<HashSet<usize>> = Vec::new();
    let mut id_of = |m: MsgId, edges: &mut Vec<HashSet<usize>>| -> usize {
        *index.entry(m).or_insert_with(|| {
            ids.push(m);
            edges.push(HashSet::new());
            ids.len() - 1
        })
    };
    for log in logs.values() {
        let mut prev: Option<usize> = None;
        for (m, _) in &log.deliveries {
            let cur = id_of(*m, &mut edges);
            if let Some(p) = prev {
                if p != cur {
                    edges[p].insert(cur);
                }
            }
            prev = Some(cur);
        }
    }
    let n = edges.len();
    let mut indeg = vec![0usize; n];
    for e in &edges {
        for &t in e {
            indeg[t] += 1;
        }
    }
    let mut q: VecDeque<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = q.pop_front() {
        done += 1;
        for &t in &edges[i] {
            indeg[t] -= 1;
            if indeg[t] == 0 {
                q.push_back(t);
            }
        }
    }
    if done < n {
        let stuck: Vec<String> = (0..n)
            .filter(|&i| indeg[i] > 0)
            .take(6)
            .map(|i| ids[i].to_string())
            .collect();
        v.add(
            Property::TotalOrder,
            format!(
                "delivery orders form a cycle among {} messages, e.g. {}",
                n - done,
                stuck.join(", ")
            ),
        );
    }
}

/// A position in a ring's total order: (ring, seq).
type Position = (RingId, u64);

fn order_agreement(logs: &BTreeMap<Inc, IncLog>, v: &mut Violations) {
    // Where each message was delivered, and what each incarnation delivered at each position.
    let mut position_of: HashMap<MsgId, (Position, Inc)> = HashMap::new();
    let mut at: BTreeMap<Position, Vec<(Inc, BTreeSet<MsgId>)>> = BTreeMap::new();
    for (k, log) in logs {
        let mut mine: BTreeMap<Position, BTreeSet<MsgId>> = BTreeMap::new();
        for ((id, _), pos) in log.deliveries.iter().zip(&log.positions) {
            match position_of.get(id) {
                Some((p, other)) if p != pos => v.add(
                    Property::OrderAgreement,
                    format!(
                        "{id}: {}.{} delivered it at {}:{}, {}.{} at {}:{}",
                        k.0, k.1, pos.0, pos.1, other.0, other.1, p.0, p.1
                    ),
                ),
                Some(_) => {}
                None => {
                    position_of.insert(*id, (*pos, *k));
                }
            }
            mine.entry(*pos).or_default().insert(*id);
        }
        for (pos, ids) in mine {
            at.entry(pos).or_default().push((*k, ids));
        }
    }
    for ((ring, seq), sets) in &at {
        let Some((first, widest)) = sets.iter().max_by_key(|(_, s)| s.len()) else {
            continue;
        };
        for (k, ids) in sets {
            if !ids.is_subset(widest) {
                let theirs: Vec<String> = widest.iter().map(|m| m.to_string()).collect();
                let ours: Vec<String> = ids.iter().map(|m| m.to_string()).collect();
                v.add(
                    Property::OrderAgreement,
                    format!(
                        "at {ring}:{seq} {}.{} delivered {}, {}.{} delivered {}",
                        k.0,
                        k.1,
                        ours.join(" "),
                        first.0,
                        first.1,
                        theirs.join(" ")
                    ),
                );
            }
        }
    }
}

fn membership(logs: &BTreeMap<Inc, IncLog>, v: &mut Violations) {
    let mut rings: HashMap<RingId, (Vec<NodeId>, Inc)> = HashMap::new();
    for (k, log) in logs {
        for (kind, ring, members, _, _) in &log.configs {
            if !members.contains(&k.0) {
                v.add(
                    Property::MembershipAgreement,
                    format!(
                        "{}.{} installed {kind:?} {ring} without itself: {members:?}",
                        k.0, k.1
                    ),
                );
            }
            if *kind != ConfigKind::Regular {
                continue;
            }
            match rings.get(ring) {
                Some((m, other)) if m != members => v.add(
                    Property::MembershipAgreement,
                    format!(
                        "ring {ring}: {}.{} has {members:?}, {}.{} has {m:?}",
                        k.0, k.1, other.0, other.1
                    ),
                ),
                Some(_) => {}
                None => {
                    rings.insert(*ring, (members.clone(), *k));
                }
            }
        }
    }
}

/// Returns, per incarnation, the segments between consecutive regular configurations:
/// (C, C') -> messages delivered after installing C and before installing C'.
fn segments(log: &IncLog) -> Vec<(RingId, RingId, BTreeSet<MsgId>)> {
    let regular: Vec<(RingId, usize)> = log
        .configs
        .iter()
        .filter(|c| c.0 == ConfigKind::Regular)
        .map(|c| (c.1, c.4))
        .collect();
    regular
        .windows(2)
        .map(|w| {
            let set = log.deliveries[w[0].1..w[1].1]
                .iter()
                .map(|(m, _)| *m)
                .collect();
            (w[0].0, w[1].0, set)
        })
        .collect()
}

fn virtual_synchrony(logs: &BTreeMap<Inc, IncLog>, v: &mut Violations) {
    let mut seen: HashMap<(RingId, RingId), (BTreeSet<MsgId>, Inc)> = HashMap::new();
    for (k, log) in logs {
        for (c, c2, set) in segments(log) {
            match seen.get(&(c, c2)) {
                Some((other, ok)) if *other != set => {
                    let only_a: Vec<String> = set
                        .difference(other)
                        .take(4)
                        .map(|m| m.to_string())
                        .collect();
                    let only_b: Vec<String> = other
                        .difference(&set)
                        .take(4)
                        .map(|m| m.to_string())
                        .collect();
                    v.add(
                        Property::VirtualSynchrony,
                        format!(
                            "{c} -> {c2}: {}.{} and {}.{} differ ({} vs {} messages; only first: [{}], only second: [{}])",
                            k.0,
                            k.1,
                            ok.0,
                            ok.1,
                            set.len(),
                            other.len(),
                            only_a.join(", "),
                            only_b.join(", ")
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert((c, c2), (set, *k));
                }
            }
        }
    }
}

fn safe_delivery(logs: &BTreeMap<Inc, IncLog>, v: &mut Violations) {
    // Who installed which configuration: (kind, ring, members) -> incarnations.
    let mut installed: HashMap<(ConfigKind, RingId, &[NodeId]), Vec<Inc>> = HashMap::new();
    for (k, log) in logs {
        for (kind, ring, members, _, _) in &log.configs {
            installed
                .entry((*kind, *ring, members.as_slice()))
                .or_default()
                .push(*k);
        }
    }
    let delivered: HashMap<Inc, HashSet<MsgId>> = logs
        .iter()
        .map(|(k, l)| (*k, l.deliveries.iter().map(|(m, _)| *m).collect()))
        .collect();
    for (k, log) in logs {
        for (i, (m, safe)) in log.deliveries.iter().enumerate() {
            if !safe {
                continue;
            }
            let Some(ci) = log.delivery_conf[i] else {
                continue;
            };
            let (kind, ring, members, _, _) = &log.configs[ci];
            let Some(incs) = installed.get(&(*kind, *ring, members.as_slice())) else {
                continue;
            };
            for q in incs {
                if q == k || logs[q].failed {
                    continue;
                }
                if !delivered[q].contains(m) {
                    v.add(
                        Property::SafeDelivery,
                        format!(
                            "{m} delivered safe by {}.{} in {kind:?} {ring} {members:?}, never by {}.{}",
                            k.0, k.1, q.0, q.1
                        ),
                    );
                }
            }
        }
    }
}

fn self_delivery(logs: &BTreeMap<Inc, IncLog>, v: &mut Violations) {
    for (k, log) in logs {
        if log.failed || log.stopped {
            continue;
        }
        let got: HashSet<MsgId> = log.deliveries.iter().map(|(m, _)| *m).collect();
        for (m, _) in &log.sends {
            if !got.contains(m) {
                v.add(
                    Property::SelfDelivery,
                    format!("{}.{} never delivered its own {m}", k.0, k.1),
                );
            }
        }
    }
}

fn live(logs: &BTreeMap<Inc, IncLog>, l: &Liveness, v: &mut Violations) -> Option<u64> {
    let mut live_sorted = l.live.clone();
    live_sorted.sort_unstable();
    let mut finals: Vec<(Inc, RingId, u64)> = Vec::new();
    for &n in &live_sorted {
        let Some((k, log)) = logs.range((n, 0)..=(n, u32::MAX)).next_back() else {
            v.add(
                Property::Liveness,
                format!("live node {n} wrote no records"),
            );
            continue;
        };
        let Some((_, ring, members, t, _)) = log
            .configs
            .iter()
            .rev()
            .find(|c| c.0 == ConfigKind::Regular)
        else {
            v.add(
                Property::Liveness,
                format!("live node {n} never installed a ring"),
            );
            continue;
        };
        if *members != live_sorted {
            v.add(
                Property::Liveness,
                format!(
                    "node {n}'s last ring {ring} has {members:?}, live nodes are {live_sorted:?}"
                ),
            );
        }
        finals.push((*k, *ring, *t));
    }
    let rings: BTreeSet<RingId> = finals.iter().map(|f| f.1).collect();
    if rings.len() > 1 {
        v.add(
            Property::Liveness,
            format!("live nodes end on different rings: {rings:?}"),
        );
        return None;
    }
    let last_install = finals.iter().map(|f| f.2).max()?;
    let took = last_install.saturating_sub(l.faults_end);
    if last_install > l.faults_end + l.bound {
        v.add(
            Property::Liveness,
            format!(
                "final ring installed {} ms after the faults stopped, bound {} ms",
                took / 1_000_000,
                l.bound / 1_000_000
            ),
        );
    }
    // Messages sent on the final ring reach every live node.
    for (k, _, t) in &finals {
        for (m, st) in &logs[k].sends {
            if st < t {
                continue;
            }
            for (q, _, _) in &finals {
                if !logs[q].deliveries.iter().any(|(d, _)| d == m) {
                    v.add(
                        Property::Liveness,
                        format!(
                            "{m}, sent on the final ring, never delivered by {}.{}",
                            q.0, q.1
                        ),
                    );
                }
            }
        }
    }
    Some(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: u64, node: NodeId, body: Body) -> Record {
        Record {
            t_ns: t,
            node,
            inc: 1,
            body,
        }
    }

    fn deliver(id: &str, safe: bool) -> Body {
        Body::Deliver {
            id: id.parse().unwrap(),
            ring: RingId { rep: 1, seq: 4 },
            seq: 1,
            len: 1,
            safe,
            sent_t_ns: 0,
        }
    }

    fn regular(seq: u64, members: Vec<NodeId>) -> Body {
        Body::Config {
            kind: ConfigKind::Regular,
            ring: RingId { rep: 1, seq },
            members,
            left: vec![],
            joined: vec![],
        }
    }

    fn send(id: &str) -> Body {
        Body::Send {
            id: id.parse().unwrap(),
            len: 1,
            safe: false,
        }
    }

    fn props(r: &Report) -> Vec<Property> {
        r.violations.iter().map(|v| v.property).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let mut rs = vec![];
        for n in [1, 2] {
            rs.push(rec(1, n, regular(4, vec![1, 2])));
        }
        rs.push(rec(2, 1, send("1.1.1")));
        for n in [1, 2] {
            rs.push(rec(3, n, deliver("1.1.1", false)));
        }
        assert!(check(&rs, None).violations.is_empty());
    }

    #[test]
    fn each_property_can_fail() {
        // Duplicate and unsent.
        let rs = vec![
            rec(0, 1, send("1.1.1")),
            rec(1, 1, deliver("1.1.1", false)),
            rec(2, 1, deliver("1.1.1", false)),
            rec(3, 1, deliver("9.1.1", false)),
        ];
        assert_eq!(
            props(&check(&rs, None)),
            vec![Property::Integrity, Property::Integrity]
        );
        // Two orders.
        let rs = vec![
            rec(1, 1, deliver("1.1.1", false)),
            rec(2, 1, deliver("1.1.2", false)),
            rec(1, 2, deliver("1.1.2", false)),
            rec(2, 2, deliver("1.1.1", false)),
        ];
        assert_eq!(props(&check(&rs, None)), vec![Property::TotalOrder]);
        // Disagreeing membership.
        let rs = vec![
            rec(1, 1, regular(4, vec![1, 2])),
            rec(1, 2, regular(4, vec![1, 2, 3])),
        ];
        assert_eq!(
            props(&check(&rs, None)),
            vec![Property::MembershipAgreement]
        );
        // Same C -> C', different messages.
        let rs = vec![
            rec(1, 1, regular(4, vec![1, 2])),
            rec(1, 2, regular(4, vec![1, 2])),
            rec(2, 1, deliver("1.1.1", false)),
            rec(3, 1, regular(8, vec![1, 2])),
            rec(3, 2, regular(8, vec![1, 2])),
        ];
        assert_eq!(props(&check(&rs, None)), vec![Property::VirtualSynchrony]);
        // Safe at 1, never at 2 which did not fail.
        let rs = vec![
            rec(1, 1, regular(4, vec![1, 2])),
            rec(1, 2, regular(4, vec![1, 2])),
            rec(2, 1, deliver("1.1.1", true)),
        ];
        assert_eq!(props(&check(&rs, None)), vec![Property::SafeDelivery]);
        // ... unless 2 crashed.
        let mut rs2 = rs.clone();
        rs2.push(rec(3, 2, Body::Crash {}));
        assert!(check(&rs2, None).violations.is_empty());
        // Own message never delivered.
        let rs = vec![rec(1, 1, send("1.1.1"))];
        assert_eq!(props(&check(&rs, None)), vec![Property::SelfDelivery]);
        // ... unless the node stopped with it undelivered (quit), which says so.
        let mut stopped = rs.clone();
        stopped.push(rec(2, 1, Body::Stop { undelivered: 1 }));
        assert!(check(&stopped, None).violations.is_empty());
        // A stop excuses self delivery only: a safe message it never delivered is still a
        // violation where the other member delivered it.
        let rs = vec![
            rec(1, 1, regular(4, vec![1, 2])),
            rec(1, 2, regular(4, vec![1, 2])),
            rec(2, 1, deliver("1.1.1", true)),
            rec(3, 2, Body::Stop { undelivered: 0 }),
        ];
        assert_eq!(props(&check(&rs, None)), vec![Property::SafeDelivery]);
        // Liveness: two rings at the end.
        let rs = vec![
            rec(1, 1, regular(4, vec![1])),
            rec(1, 2, regular(8, vec![2])),
        ];
        let l = Liveness {
            faults_end: 0,
            bound: 10,
            live: vec![1, 2],
            end: 0,
        };
        let p = props(&check(&rs, Some(&l)));
        assert!(p.iter().all(|p| *p == Property::Liveness) && !p.is_empty());
    }

    fn deliver_at(id: &str, seq: u64) -> Body {
        Body::Deliver {
            id: id.parse().unwrap(),
            ring: RingId { rep: 1, seq: 8 },
            seq,
            len: 1,
            safe: false,
            sent_t_ns: 0,
        }
    }

    #[test]
    fn order_agreement_catches_one_seq_given_to_two_frames() {
        // The replayed-token divergence: nodes 1 and 3 delivered 3.1.207 at 1.8:615, node 2
        // delivered 1.1.207 there. Every node's own order is consistent.
        let rs = vec![
            rec(1, 1, deliver_at("3.1.207", 615)),
            rec(1, 3, deliver_at("3.1.207", 615)),
            rec(1, 2, deliver_at("1.1.207", 615)),
        ];
        assert_eq!(props(&check(&rs, None)), vec![Property::OrderAgreement]);
        // One message at two positions.
        let rs = vec![
            rec(1, 1, deliver_at("1.1.1", 5)),
            rec(1, 2, deliver_at("1.1.1", 6)),
        ];
        assert_eq!(props(&check(&rs, None)), vec![Property::OrderAgreement]);
        // Nested sets at one position are fine: node 2 missed the first fragments of 2.1.9,
        // which completes in the frame at seq 7.
        let rs = vec![
            rec(1, 1, deliver_at("2.1.9", 7)),
            rec(2, 1, deliver_at("2.1.10", 7)),
            rec(1, 2, deliver_at("2.1.10", 7)),
        ];
        assert!(check(&rs, None).violations.is_empty());
    }

    fn quorum(primary: bool, members: Vec<NodeId>) -> Body {
        Body::Quorum {
            primary,
            ring: RingId { rep: 1, seq: 4 },
            members,
            groups: vec!["web".into()],
            settle_ms: None,
        }
    }

    fn res(action: &str, reason: Option<&str>) -> Body {
        Body::Resource {
            action: action.into(),
            name: "web".into(),
            ring: RingId { rep: 1, seq: 4 },
            home: Some(2),
            reason: reason.map(String::from),
            resource: None,
            cmd_us: None,
            exit: None,
            error: None,
        }
    }

    fn live(nodes: Vec<NodeId>) -> Liveness {
        Liveness {
            faults_end: 0,
            bound: 1_000,
            live: nodes,
            end: 0,
        }
    }

    /// The properties but ring liveness (these histories have no ring records).
    fn rprops(r: &Report) -> Vec<Property> {
        let mut p = props(r);
        p.retain(|p| *p != Property::Liveness);
        p
    }

    #[test]
    fn each_resource_property_can_fail() {
        let q = |t, n, p, m: &[NodeId]| rec(t, n, quorum(p, m.to_vec()));
        // A clean move: stop delivered on 1, then start on 2.
        let ok = vec![
            q(1, 1, true, &[1, 2, 3]),
            q(1, 2, true, &[1, 2, 3]),
            rec(2, 1, res("start", None)),
            rec(5, 1, res("stop", Some("fence"))),
            rec(6, 2, res("start", None)),
        ];
        let r = check(&ok, Some(&live(vec![1, 2])));
        assert!(rprops(&r).is_empty(), "{:?}", r.violations);
        // Two holders: 2 starts before 1 stopped.
        let mut two = ok.clone();
        two[4].t_ns = 4;
        two.sort_by_key(|r| r.t_ns);
        assert_eq!(
            props(&check(&two, None)),
            vec![Property::TwoHolders],
            "{:?}",
            check(&two, None).violations
        );
        // A crash ends the holdings: no overlap.
        let crashed = vec![
            q(1, 1, true, &[1, 2, 3]),
            q(1, 2, true, &[1, 2, 3]),
            rec(2, 1, res("start", None)),
            rec(3, 1, Body::Crash {}),
            rec(4, 2, res("start", None)),
        ];
        assert!(check(&crashed, None).violations.is_empty());
        // Active without quorum: a start outside a primary component, and holdings kept
        // past the loss of it.
        let noq = vec![q(1, 1, false, &[1]), rec(2, 1, res("start", None))];
        assert_eq!(
            props(&check(&noq, None)),
            vec![Property::ActiveWithoutQuorum]
        );
        let kept = vec![
            q(1, 1, true, &[1, 2, 3]),
            rec(2, 1, res("start", None)),
            q(3, 1, false, &[1]),
            rec(
                4,
                1,
                Body::Fault {
                    action: "x".into(),
                    targets: vec![],
                    groups: vec![],
                },
            ),
        ];
        assert!(props(&check(&kept, None)).contains(&Property::ActiveWithoutQuorum));
        // Not served once: nobody holds web at the end of a primary component, then two do.
        let none = vec![q(1, 1, true, &[1, 2, 3])];
        assert_eq!(
            rprops(&check(&none, Some(&live(vec![1])))),
            vec![Property::NotServedOnce]
        );
        // (Two holders also break property 9.)
        let r = check(&two, Some(&live(vec![1, 2])));
        assert!(rprops(&r).contains(&Property::TwoHolders));
        // A needless move: a join (3 comes) moves web from 1 to 3, not its home (2).
        let join = vec![
            q(1, 1, true, &[1, 2]),
            q(1, 3, true, &[1, 2, 3]),
            rec(2, 1, res("start", None)),
            q(3, 1, true, &[1, 2, 3]),
            rec(4, 1, res("stop", Some("move"))),
            rec(5, 3, res("start", None)),
        ];
        assert_eq!(props(&check(&join, None)), vec![Property::NeedlessMove]);
        // To its home it is a failback, fine.
        let mut home = join.clone();
        home[5].node = 2;
        home[1].node = 2;
        assert!(check(&home, None).violations.is_empty());
    }

    /// Ring 1.4 of nodes 1, 2 and 3, primary with a settle bound of 1 ms, its sync done
    /// everywhere at 10 ns (the checker orders records by time).
    fn settled_ring() -> Vec<Record> {
        let mut rs = vec![];
        for n in [1, 2, 3] {
            let mut b = quorum(true, vec![1, 2, 3]);
            if let Body::Quorum { settle_ms, .. } = &mut b {
                *settle_ms = Some(1);
            }
            rs.push(rec(1, n, b));
            rs.push(rec(
                10,
                n,
                Body::Sync {
                    phase: "done".into(),
                    ring: RingId { rep: 1, seq: 4 },
                    service: None,
                    bytes: 0,
                    detail: None,
                },
            ));
        }
        rs
    }

    /// A record that changes nothing, to make a history last.
    fn later() -> Body {
        Body::Fault {
            action: "note".into(),
            targets: vec![],
            groups: vec![],
        }
    }

    #[test]
    fn a_group_split_and_an_unsettled_placement_are_found() {
        let q = |t, n, p, m: &[NodeId]| rec(t, n, quorum(p, m.to_vec()));
        let part = |action: &str, r: &str| Body::Resource {
            action: action.into(),
            name: "web".into(),
            ring: RingId { rep: 1, seq: 4 },
            home: Some(2),
            reason: None,
            resource: Some(r.into()),
            cmd_us: None,
            exit: None,
            error: None,
        };
        // ip on 1 while httpd starts on 2: the group is split (no resource on two nodes).
        let split = vec![
            q(1, 1, true, &[1, 2, 3]),
            q(1, 2, true, &[1, 2, 3]),
            rec(2, 1, part("starting", "ip")),
            rec(3, 1, part("start", "ip")),
            rec(4, 2, part("starting", "httpd")),
            rec(5, 2, part("start", "httpd")),
        ];
        assert_eq!(props(&check(&split, None)), vec![Property::GroupSplit]);
        // In order, after ip stopped on 1: fine.
        let mut whole = split.clone();
        whole.insert(4, rec(4, 1, part("stop", "ip")));
        assert!(check(&whole, None).violations.is_empty());
        // A failed start leaves the resource active until its clean-up stop.
        let failed = vec![
            q(1, 1, true, &[1, 2, 3]),
            q(1, 2, true, &[1, 2, 3]),
            rec(2, 1, part("starting", "ip")),
            rec(3, 1, part("start_failed", "ip")),
            rec(4, 2, part("starting", "ip")),
        ];
        assert_eq!(props(&check(&failed, None)), vec![Property::TwoHolders]);
        // Settling: ring 1.4 of 1, 2, 3 synchronised at 10 with a settle bound of 1 ms,
        // lasting to 5 ms; nobody holds web at 1_000_010: not served.
        let settle = |held: bool| {
            let mut rs = settled_ring();
            if held {
                rs.push(rec(20, 2, part("starting", "web")));
            }
            rs.push(rec(5_000_000, 1, later()));
            rs
        };
        let r = check(&settle(false), None);
        assert_eq!(props(&r), vec![Property::NotServedOnce]);
        assert_eq!(r.settled_judged, 1);
        let r = check(&settle(true), None);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        // A configuration that breaks before its bound is not judged.
        let mut short = settle(false);
        short.pop();
        short.push(rec(
            500_000,
            3,
            Body::State {
                from: MembState::Operational,
                to: MembState::Gather,
                reason: ringlab_ring::Reason::TokenLoss,
            },
        ));
        short.push(rec(5_000_000, 1, later()));
        let r = check(&short, None);
        assert_eq!(r.settled_judged, 0);
        assert!(!props(&r).contains(&Property::NotServedOnce));
    }

    #[test]
    fn a_start_while_the_ring_is_down_and_a_stale_excuse_are_found() {
        let q = |t, n, p, m: &[NodeId]| rec(t, n, quorum(p, m.to_vec()));
        let state = |from, to| Body::State {
            from,
            to,
            reason: ringlab_ring::Reason::TokenLoss,
        };
        // Node 1 starts web after leaving OPERATIONAL, before its next configuration.
        let down = vec![
            q(1, 1, true, &[1, 2, 3]),
            rec(2, 1, state(MembState::Recovery, MembState::Operational)),
            rec(3, 1, state(MembState::Operational, MembState::Gather)),
            rec(4, 1, res("starting", None)),
        ];
        assert_eq!(
            props(&check(&down, None)),
            vec![Property::ActiveWithoutQuorum]
        );
        let mut up = down.clone();
        up.remove(2);
        assert!(check(&up, None).violations.is_empty());
        // Every member's start of web failed: excused; a cleanup on one of them, a settle
        // bound before the judged instant, ends the excuse.
        let settle = |cleanup_at: Option<u64>| {
            let mut rs = settled_ring();
            for n in [1, 2, 3] {
                rs.push(rec(5, n, res("start_failed", None)));
            }
            if let Some(t) = cleanup_at {
                rs.push(rec(t, 2, res("cleanup", None)));
            }
            rs.push(rec(5_000_000, 1, later()));
            rs.sort_by_key(|r| r.t_ns);
            rs
        };
        assert!(check(&settle(None), None).violations.is_empty());
        // A cleanup just before the judged instant (1_000_010): not judged yet.
        assert!(check(&settle(Some(900_000)), None).violations.is_empty());
        // A cleanup a settle bound before it: node 2 no longer refuses, web is owed.
        assert_eq!(
            props(&check(&settle(Some(6)), None)),
            vec![Property::NotServedOnce]
        );
        // A member paused inside the window: not judged.
        let mut paused = settle(Some(6));
        paused.push(Record {
            t_ns: 500_000,
            node: 0,
            inc: 0,
            body: Body::Fault {
                action: "pause".into(),
                targets: vec![3],
                groups: vec![],
            },
        });
        let r = check(&paused, None);
        assert_eq!(r.settled_judged, 0);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
    }

    #[test]
    fn two_digests_at_one_store_version_are_found() {
        let st = |version, digest: &str| Body::Store {
            version,
            digest: digest.into(),
        };
        let ok = vec![
            rec(1, 1, st(5, "aa")),
            rec(2, 2, st(5, "aa")),
            rec(3, 3, st(6, "bb")),
        ];
        assert!(check(&ok, None).violations.is_empty());
        let bad = vec![rec(1, 1, st(5, "aa")), rec(2, 2, st(5, "ab"))];
        assert_eq!(props(&check(&bad, None)), vec![Property::StoreDivergence]);
        let copy = |phase: &str| Body::StoreSync {
            phase: phase.into(),
            path: "ring".into(),
            design: None,
            last_key: None,
            chunks: None,
            resent_bytes: None,
            provider: 2,
            version: 5,
            bytes: 0,
            keys: 0,
        };
        let early = vec![rec(1, 1, copy("start")), rec(2, 1, st(5, "aa"))];
        assert_eq!(
            props(&check(&early, None)),
            vec![Property::StoreServedEarly]
        );
        let fine = vec![
            rec(1, 1, copy("start")),
            rec(2, 1, copy("finish")),
            rec(3, 1, st(5, "aa")),
        ];
        assert!(check(&fine, None).violations.is_empty());
    }
}
