//! The `kml` service: the fileset changed through the ring, and reintegrated at merges.
//!
//! Operations ([`Op`]) go through the ring agreed and are applied by every member in the
//! order delivered, in regular and transitional configurations alike (extended virtual
//! synchrony gives the members that move together the same deliveries): each becomes a record
//! of the history, numbered next for its origin.
//!
//! Sync, after every regular configuration: members whose histories have the same head
//! (the state token) form a side. One side: nothing to do. Several: the permit goes with
//! the side of the most members (a tie: the side holding the lowest node id), whose history
//! stands; every member multicasts a `Have` (head, start, recent sync points, runs held);
//! each side's representative (its lowest member) multicasts its records after the latest
//! sync point it shares with the permit side (the permit side's: after the earliest of
//! those), skipping what every member outside its side already holds from an interrupted
//! attempt. At activation every member finds each side's fork (the longest common prefix of
//! its records and the permit side's, by chain hash), undoes its own side's records back to
//! the fork in reverse order (if it is not on the permit side), replays the permit side's
//! records from there, and reintegrates every other side's records in the order of the
//! sides' lowest members ([`Replica::reintegrate`]). A configuration change first aborts it;
//! the runs received so far are kept, and the next attempt resumes after them.

use super::fileset::Fileset;
use super::history::{Chain, History};
use super::record::{check_path, Attrs, Op, Record, MAX_DATA};
use super::reint::{Reintegration, Replica, Step, ELSEWHERE, WARNINGS};
use super::sync_msg::{KmlSync, Point, RunMark, MAX_POINTS, MAX_RUNS, TAIL_BYTES};
use crate::control::{Args, Control, ControlContext, ControlError};
use crate::engine::{Outbox, Progress, SyncContext};
use crate::msg::ServiceId;
use crate::service::Workload;
use crate::service::{OpDelivery, Plugin, Service, ServiceConfig, ServiceConfigError, StateSize};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use ringlab_records::Body;
use ringlab_ring::{NodeId, RingId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The kml service's number.
pub const KML_SERVICE: ServiceId = 5;

/// `[service_config.kml]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KmlConfig {
    /// Records of history kept (undo and reintegration reach back this far; further back,
    /// the permit side sends a snapshot of its whole state).
    pub log_keep: usize,
    /// Bytes of history kept (encoded records), the other bound.
    pub log_bytes: usize,
    /// Records one `fill` may submit.
    pub max_fill: u64,
    /// Records a merge's local work (undo, replay, reintegration) handles in one slice, 1 to
    /// 1,000,000: the host runs one slice per turn, so that a big merge never stalls its
    /// ring (see the module docs of [`crate::kml`]).
    pub reint_slice: usize,
}

/// The bounds of [`KmlConfig::reint_slice`].
pub const REINT_SLICE_MAX: usize = 1_000_000;

impl Default for KmlConfig {
    fn default() -> Self {
        Self {
            log_keep: 200_000,
            log_bytes: 256 << 20,
            max_fill: 200_000,
            reint_slice: 1000,
        }
    }
}

/// A control command (`ringlab ctl SOCK svc kml VERB key=value...`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Digests, records, conflicts.
    Status,
    /// The tree (every object under `path`).
    Ls {
        /// Where (default `/`).
        path: String,
    },
    /// A file's content (lossy UTF-8) or a symlink's target.
    Cat {
        /// The object.
        path: String,
    },
    /// Submits one operation.
    Do {
        /// The operation, as the ring carries it.
        #[serde(with = "op_json")]
        record_op: Op,
    },
    /// Submits `records` random operations over a tree of `dirs` directories, drawn from
    /// `seed`.
    Fill {
        /// How many.
        records: u64,
        /// The seed.
        seed: u64,
        /// Directories of the tree.
        dirs: u32,
    },
}

/// Operations in commands travel as their encoding (hex), so one codec decides them.
mod op_json {
    use super::Op;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(op: &Op, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(&op.encode()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Op, D::Error> {
        let h = String::deserialize(d)?;
        let b = super::unhex(&h).ok_or_else(|| serde::de::Error::custom("bad hex"))?;
        Op::decode(&b).map_err(serde::de::Error::custom)
    }
}

/// The reply to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Always true.
    pub ok: bool,
    /// The fileset's digest (hex).
    pub digest: String,
    /// What a real directory must show (hex).
    pub tree: String,
    /// Records in the history.
    pub records: u64,
    /// Conflicts in the history.
    pub conflicts: u64,
    /// The conflict list's digest (hex).
    pub conflicts_digest: String,
    /// Objects (the root included).
    pub objects: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Records refused for their number (warnings) since start.
    pub warnings: u64,
    /// Reintegrations completed since start.
    pub reintegrations: u64,
    /// Whether a sync runs, a merge's local work is pending, or changes wait for the real
    /// directory: the service is not settled.
    pub syncing: bool,
    /// Records of a merge's local work still to do (0: none; added with the slices).
    #[serde(default)]
    pub work_pending: u64,
    /// Changes queued for the real directory, not applied yet (0 without a mirror).
    #[serde(default)]
    pub mirror_pending: u64,
}

/// One entry of `ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LsEntry {
    /// Path.
    pub path: String,
    /// `d`, `f` or `l`.
    pub kind: String,
    /// Permission bits (octal).
    pub mode: String,
    /// Size.
    pub size: u64,
}

/// One side of a merge: members with the same history head.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Side {
    members: Vec<NodeId>,
}

impl Side {
    fn rep(&self) -> NodeId {
        self.members[0]
    }
}

/// A run of another side's records received (kept across an abort).
#[derive(Clone, Debug, Default)]
struct Run {
    start: Point,
    records: Vec<Record>,
    /// The chain after each record.
    chains: Vec<Chain>,
}

impl Run {
    fn end(&self) -> Point {
        let n = self.records.len() as u64;
        (
            self.start.0 + n,
            self.chains.last().copied().unwrap_or(self.start.1),
        )
    }

    fn chain_at(&self, pos: u64) -> Option<Chain> {
        if pos == self.start.0 {
            return Some(self.start.1);
        }
        let i = pos.checked_sub(self.start.0 + 1)? as usize;
        self.chains.get(i).copied()
    }

    fn mark(&self) -> RunMark {
        RunMark {
            start: self.start,
            end: self.end(),
        }
    }
}

/// A sync in progress.
#[derive(Debug)]
struct Syncing {
    ring: RingId,
    members: Vec<NodeId>,
    sides: Vec<Side>,
    mine: usize,
    permit: usize,
    haves: BTreeMap<NodeId, KmlSync>,
    have_sent: bool,
    /// The representative's next position to send after (none: not computed yet).
    cursor: Option<u64>,
    /// The permit side's snapshot, as its representative sends it (in snapshot mode): the
    /// parts received (receivers) or the next part to send (the representative).
    snap: Vec<Bytes>,
    snap_total: Option<u32>,
    snap_sent: u32,
}

/// A merge's local work, run in slices of at most `reint_slice` records
/// ([`Service::do_work`]): undo back to the fork, catch-up with the permit side, then each
/// other side's reintegration, exactly as one call would, in the same order.
#[derive(Debug)]
struct Job {
    ring: RingId,
    tag: u32,
    permit: usize,
    /// Every side's records after where it was needed.
    recs: Vec<SideRecords>,
    forks: Vec<u64>,
    /// Undo back to here first (none: done, or nothing to undo).
    undo_to: Option<u64>,
    undone: u64,
    /// The next of the permit side's records to replay (none: done, or no catch-up).
    catch_up: Option<usize>,
    /// The side being reintegrated, and the index of its next record.
    side: usize,
    at: Option<usize>,
    reint: Option<Reintegration>,
    applied: u64,
    conflicts: u64,
    total: u64,
    /// Records left to handle (for `status`).
    left: u64,
    /// Operations delivered meanwhile, applied once it ends.
    deferred: VecDeque<(OpDelivery, Vec<u8>)>,
}

/// Where the service is.
#[derive(Debug, Default)]
enum Phase {
    #[default]
    Idle,
    Sync(Box<Syncing>),
}

/// The kml service of one node.
pub struct KmlService {
    me: NodeId,
    cfg: KmlConfig,
    rep: Replica,
    phase: Phase,
    runs: Vec<Run>,
    points: VecDeque<Point>,
    records: VecDeque<Body>,
    malformed: u64,
    warnings: u64,
    reintegrations: u64,
    /// A merge's local work in progress.
    job: Option<Box<Job>>,
}

impl std::fmt::Debug for KmlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmlService")
            .field("me", &self.me)
            .field("head", &self.rep.hist.head())
            .finish()
    }
}

impl KmlService {
    fn with(me: NodeId, cfg: KmlConfig) -> Self {
        Self {
            me,
            rep: Replica::with_bounds(cfg.log_keep, cfg.log_bytes),
            cfg,
            phase: Phase::Idle,
            runs: vec![],
            points: VecDeque::from([(0, [0; 32])]),
            records: VecDeque::new(),
            malformed: 0,
            warnings: 0,
            reintegrations: 0,
            job: None,
        }
    }

    /// Returns the replica (tree and history).
    pub fn replica(&self) -> &Replica {
        &self.rep
    }

    /// Returns the fileset.
    pub fn fileset(&self) -> &Fileset {
        &self.rep.fs
    }

    fn kml(&mut self, phase: &str, f: impl FnOnce(&mut KmlRec)) {
        let mut r = KmlRec::default();
        f(&mut r);
        self.records.push_back(Body::Kml {
            phase: phase.into(),
            origin: r.origin,
            recno: r.recno,
            kind: r.kind,
            path: r.path,
            records: r.records,
            conflicts: r.conflicts,
            detail: r.detail,
        });
    }

    fn fileset_record(&mut self, ring: Option<RingId>) {
        let meta = self.rep.hist.meta().clone();
        self.records.push_back(Body::Fileset {
            ring,
            digest: hex(&self.rep.fs.digest()),
            records: self.rep.hist.head(),
            tree: Some(hex(&self.rep.fs.tree_digest())),
            conflicts: Some(hex(&meta.conflict_chain)),
            conflict_count: Some(meta.conflicts),
            origins: self
                .rep
                .hist
                .origins()
                .into_iter()
                .map(|(o, v)| (o.to_string(), v))
                .collect(),
            mirror: None,
        });
    }

    fn my_have(&self) -> KmlSync {
        let h = &self.rep.hist;
        KmlSync::Have {
            head: (h.head(), h.head_chain()),
            start: h.start(),
            points: self.points.iter().copied().collect(),
            runs: self.runs.iter().take(MAX_RUNS).map(Run::mark).collect(),
        }
    }

    /// Stores records of another side: after the run that ends where they start (of several,
    /// the one that starts first: an earlier attempt's run can end at the same point as this
    /// attempt's, and continuing the later-starting one would leave neither reaching back to
    /// where the records are needed from), else as a new run.
    fn take_tail(&mut self, from: Point, records: Vec<Record>) {
        let at = self
            .runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.end() == from)
            .min_by_key(|(_, r)| r.start.0)
            .map(|(i, _)| i);
        let i = match at {
            Some(i) => i,
            None => {
                if self.runs.len() >= MAX_RUNS {
                    self.runs.remove(0);
                }
                self.runs.push(Run {
                    start: from,
                    ..Run::default()
                });
                self.runs.len() - 1
            }
        };
        let run = &mut self.runs[i];
        for r in records {
            let c = super::history::chain_next(&run.end().1, &r);
            run.records.push(r);
            run.chains.push(c);
        }
    }

    /// Returns side `x`'s records after position `from` up to its head (from this node's
    /// history if it is on that side, else from the runs it received), with the chain at
    /// each; none when it does not hold them all.
    fn side_records(
        &self,
        s: &Syncing,
        x: usize,
        from: u64,
        chain: Option<Chain>,
    ) -> Option<(Vec<Record>, Vec<Chain>)> {
        let KmlSync::Have { head, .. } = s.haves.get(&s.sides[x].rep())? else {
            return None;
        };
        let from = (from, chain.unwrap_or([0; 32]));
        let fits = |c: Option<Chain>| c.is_some() && (chain.is_none() || c == Some(from.1));
        if x == s.mine {
            let h = &self.rep.hist;
            if !fits(h.chain_at(from.0)) {
                return None;
            }
            let recs: Vec<Record> = h.records_after(from.0).cloned().collect();
            let chains = (from.0 + 1..=h.head())
                .map(|p| h.chain_at(p))
                .collect::<Option<Vec<_>>>()?;
            return Some((recs, chains));
        }
        for run in &self.runs {
            if run.start.0 <= from.0
                && fits(run.chain_at(from.0))
                && run.chain_at(head.0) == Some(head.1)
            {
                let a = (from.0 - run.start.0) as usize;
                let b = (head.0 - run.start.0) as usize;
                return Some((run.records[a..b].to_vec(), run.chains[a..b].to_vec()));
            }
        }
        if head.0 == from.0 && (chain.is_none() || *head == from) {
            return Some((vec![], vec![]));
        }
        None
    }

    /// Returns the first position a side's representative can send records from.
    fn start_of(s: &Syncing, x: usize) -> u64 {
        match s.haves.get(&s.sides[x].rep()) {
            Some(KmlSync::Have { start, .. }) => *start,
            _ => 0,
        }
    }

    /// Returns whether the permit side sends a snapshot instead of its records: its history
    /// no longer reaches back to where another side needs it, or another side's history no
    /// longer reaches back to its last common point (it could not undo to the fork).
    fn snapshot_mode(s: &Syncing) -> bool {
        (0..s.sides.len()).any(|x| Self::needed(s, x).0 < Self::start_of(s, x))
    }

    /// Encodes this node's state as a snapshot.
    fn snapshot(&self) -> Vec<u8> {
        let mut b = vec![super::record::KML_VERSION];
        self.rep.fs.put_snapshot(&mut b);
        self.rep.hist.put_snapshot(&mut b);
        b
    }

    /// Decodes a snapshot.
    fn read_snapshot(&self, b: &[u8]) -> Result<Replica, ringlab_ring::wire::DecodeError> {
        let mut r = ringlab_ring::wire::Reader::new(b);
        if r.u8("snapshot version")? != super::record::KML_VERSION {
            return Err(ringlab_ring::wire::DecodeError::Invalid("snapshot version"));
        }
        let fs = Fileset::read_snapshot(&mut r)?;
        let hist = History::read_snapshot(&mut r, self.cfg.log_keep, self.cfg.log_bytes)?;
        match r.remaining() {
            0 => Ok(Replica { fs, hist }),
            n => Err(ringlab_ring::wire::DecodeError::TrailingBytes(n)),
        }
    }

    /// Returns the latest sync point side `x` shares with the permit side.
    fn common(s: &Syncing, x: usize) -> Point {
        let pts = |i: usize| match s.haves.get(&s.sides[i].rep()) {
            Some(KmlSync::Have { points, .. }) => points.clone(),
            _ => vec![],
        };
        let p = pts(s.permit);
        pts(x)
            .into_iter()
            .filter(|q| p.contains(q))
            .max_by_key(|q| q.0)
            .unwrap_or((0, [0; 32]))
    }

    /// Returns where side `x` must send from: the permit side from the earliest point any
    /// other side shares with it, another side from its own.
    fn needed(s: &Syncing, x: usize) -> Point {
        if x == s.permit {
            (0..s.sides.len())
                .filter(|&i| i != s.permit)
                .map(|i| Self::common(s, i))
                .min_by_key(|q| q.0)
                .unwrap_or((0, [0; 32]))
        } else {
            Self::common(s, x)
        }
    }

    /// Decides a merge at activation (what every side sends, the forks, the snapshot's
    /// adoption) and returns its local work as a [`Job`]; none when it aborted (its record
    /// written).
    fn start_merge(&mut self, s: &Syncing) -> Option<Box<Job>> {
        let tag = merge_tag(s.ring);
        let snapshot = Self::snapshot_mode(s);
        let abort = |me: &mut Self, why: String| me.kml("abort", |r| r.detail = Some(why));
        // Every side's records from where it is needed (in snapshot mode: from where its
        // representative could send them, whatever the chain there).
        let mut recs: Vec<SideRecords> = vec![];
        for x in 0..s.sides.len() {
            let need = Self::needed(s, x);
            let got = if snapshot {
                if x == s.permit {
                    Some((vec![], vec![]))
                } else {
                    let from = need.0.max(Self::start_of(s, x));
                    let chain = (from == need.0).then_some(need.1);
                    self.side_records(s, x, from, chain)
                }
                .map(|(r, c)| {
                    let from = if x == s.permit {
                        0
                    } else {
                        need.0.max(Self::start_of(s, x))
                    };
                    (from, r, c)
                })
            } else {
                self.side_records(s, x, need.0, Some(need.1))
                    .map(|(r, c)| (need.0, r, c))
            };
            let Some(got) = got else {
                let who = s.sides[x].rep();
                abort(
                    self,
                    format!("the records of the side of node {who} are not all here"),
                );
                return None;
            };
            recs.push(got);
        }
        let mut forks = vec![0u64; s.sides.len()];
        let mut undo_to = None;
        let mut catch_up = None;
        if snapshot {
            // No forks: each side's records are reintegrated from where it sent them, the
            // ones the permit side has being duplicates.
            for (x, f) in forks.iter_mut().enumerate() {
                *f = recs[x].0;
            }
            if s.mine != s.permit {
                let bytes: Vec<u8> = s.snap.iter().flat_map(|p| p.iter().copied()).collect();
                if s.snap_total != Some(s.snap.len() as u32) {
                    abort(self, "the permit side's snapshot is not all here".into());
                    return None;
                }
                match self.read_snapshot(&bytes) {
                    Ok(rep) => {
                        let undone = self.rep.hist.head();
                        self.rep.fs.replace_with(rep.fs);
                        self.rep.hist = rep.hist;
                        self.points.clear();
                        self.points.push_back((0, [0; 32]));
                        let detail = format!(
                            "adopted the permit side's state at record {} ({} bytes)",
                            self.rep.hist.head(),
                            bytes.len()
                        );
                        self.kml("snapshot", |r| {
                            r.records = Some(undone);
                            r.detail = Some(detail);
                        });
                    }
                    Err(e) => {
                        abort(
                            self,
                            format!("the permit side's snapshot does not decode: {e}"),
                        );
                        return None;
                    }
                }
            }
        } else {
            let (p_from, _, p_chains) = &recs[s.permit];
            for x in 0..s.sides.len() {
                if x == s.permit {
                    continue;
                }
                let (from, _, chains) = &recs[x];
                let skip = (from - p_from) as usize;
                let same = chains
                    .iter()
                    .zip(p_chains.iter().skip(skip))
                    .take_while(|(a, b)| a == b)
                    .count();
                forks[x] = from + same as u64;
            }
            if s.mine != s.permit {
                let fork = forks[s.mine];
                let h = &self.rep.hist;
                if fork < h.start() || fork > h.head() {
                    abort(self, format!("the history does not reach back to {fork}"));
                    return None;
                }
                // Sync points past the fork named a history that is gone.
                self.points.retain(|p| p.0 <= fork);
                undo_to = Some(fork);
                catch_up = Some((fork - recs[s.permit].0) as usize);
            }
        }
        let mut total = 0;
        for (x, (from, r, _)) in recs.iter().enumerate() {
            if x != s.permit {
                total += (r.len() - (forks[x] - from) as usize) as u64;
            }
        }
        let undo_left = undo_to.map_or(0, |f| self.rep.hist.head() - f);
        let catch_left = catch_up.map_or(0, |i| (recs[s.permit].1.len() - i) as u64);
        Some(Box::new(Job {
            ring: s.ring,
            tag,
            permit: s.permit,
            recs,
            forks,
            undo_to,
            undone: 0,
            catch_up,
            side: 0,
            at: None,
            reint: None,
            applied: 0,
            conflicts: 0,
            total,
            left: undo_left + catch_left + total,
            deferred: VecDeque::new(),
        }))
    }

    /// Runs at most `budget` records of the merge's local work (undo, catch-up,
    /// reintegration, what goes elsewhere), writing its steps' records as it goes; when it
    /// is done, ends the sync as one call would have (`reint_done`, the `fileset` record)
    /// and applies the operations delivered meanwhile.
    fn work(&mut self, budget: usize) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        let mut left = budget.max(1);
        let mut steps = Vec::new();
        let done = loop {
            if left == 0 {
                break false;
            }
            if let Some(to) = job.undo_to {
                let n = self.rep.undo_some(to, left);
                job.undone += n;
                left -= n as usize;
                job.left = job.left.saturating_sub(n);
                if self.rep.hist.head() <= to {
                    job.undo_to = None;
                    steps.push(Step::Undo {
                        records: job.undone,
                    });
                }
                continue;
            }
            if let Some(i) = job.catch_up {
                let p = &job.recs[job.permit].1;
                let i = i.min(p.len());
                let n = left.min(p.len() - i);
                self.rep.catch_up(&p[i..i + n]);
                left -= n;
                job.left = job.left.saturating_sub(n as u64);
                job.catch_up = (i + n < p.len()).then_some(i + n);
                continue;
            }
            if job.side >= job.recs.len() {
                break true;
            }
            if job.side == job.permit {
                job.side += 1;
                continue;
            }
            let x = job.side;
            let (from, r, _) = &job.recs[x];
            let mut at = job.at.unwrap_or((job.forks[x] - from) as usize);
            let ri = job.reint.get_or_insert_with(|| Reintegration::new(job.tag));
            while left > 0 && at < r.len() {
                ri.step(&mut self.rep, &r[at], &mut steps);
                at += 1;
                left -= 1;
                job.left = job.left.saturating_sub(1);
            }
            job.at = Some(at);
            if at < r.len() || !ri.finish_some(&mut self.rep, &mut left) {
                continue;
            }
            let out = ri.outcome();
            job.applied += out.applied;
            job.conflicts += out.conflicts;
            self.warnings += out.warnings;
            job.reint = None;
            job.at = None;
            job.side += 1;
        };
        self.steps_records(steps);
        if !done {
            self.job = Some(job);
            return;
        }
        self.reintegrations += 1;
        let (applied, conflicts, total) = (job.applied, job.conflicts, job.total);
        self.kml("reint_done", |r| {
            r.records = Some(applied);
            r.conflicts = Some(conflicts);
            r.detail = Some(format!("{total} records after the forks"));
        });
        self.end_sync(job.ring);
        for (d, payload) in std::mem::take(&mut job.deferred) {
            self.deliver_op_in(&d, &payload);
        }
    }

    /// Runs the pending merge work to its end at once (a sync hook called meanwhile, which
    /// a [`ServiceApp`](crate::ServiceApp) never does: it holds such inputs back).
    fn finish_job(&mut self) {
        while self.job.is_some() {
            self.work(usize::MAX);
        }
    }

    /// Writes a `kml` record for each step.
    fn steps_records(&mut self, steps: Vec<Step>) {
        for st in steps {
            match st {
                Step::Undo { records } => self.kml("undo", |r| r.records = Some(records)),
                Step::Conflict {
                    id,
                    kind,
                    path,
                    with,
                } => self.kml("conflict", |r| {
                    r.origin = id.origin;
                    r.recno = id.recno;
                    r.kind = Some(kind.as_str().into());
                    r.path = Some(path);
                    r.detail = with.map(|w| format!("with {w}"));
                }),
                Step::Warning { id, expected } => self.kml("warning", |r| {
                    r.origin = id.origin;
                    r.recno = id.recno;
                    r.detail = Some(format!(
                        "KML record number {expected} expected from node {}, not {} \
                         (incarnation {}): not applied",
                        id.origin, id.recno, id.inc
                    ));
                }),
            }
        }
    }

    /// Ends a sync on ring `ring`: forgets the runs, notes the sync point, writes the
    /// `fileset` record.
    fn end_sync(&mut self, ring: RingId) {
        self.runs.clear();
        let p = (self.rep.hist.head(), self.rep.hist.head_chain());
        if self.points.back() != Some(&p) {
            self.points.push_back(p);
        }
        while self.points.len() > MAX_POINTS {
            self.points.pop_front();
        }
        self.fileset_record(Some(ring));
    }
}

/// A side's records after a position, with the chain after each.
type SideRecords = (u64, Vec<Record>, Vec<Chain>);

#[derive(Default)]
struct KmlRec {
    origin: NodeId,
    recno: u64,
    kind: Option<String>,
    path: Option<String>,
    records: Option<u64>,
    conflicts: Option<u64>,
    detail: Option<String>,
}

/// The tag of the fileset's own records written at a merge on ring `r`.
fn merge_tag(r: RingId) -> u32 {
    let h = r.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(r.rep).rotate_left(32);
    ((h >> 32) as u32 ^ h as u32) | 1
}

impl Service for KmlService {
    fn id(&self) -> ServiceId {
        KML_SERVICE
    }

    fn name(&self) -> &'static str {
        "kml"
    }

    fn sync_init(&mut self, ctx: &SyncContext) {
        self.finish_job();
        self.phase = Phase::Sync(Box::new(Syncing {
            ring: ctx.ring,
            members: ctx.members.clone(),
            sides: vec![],
            mine: 0,
            permit: 0,
            haves: BTreeMap::new(),
            have_sent: false,
            cursor: None,
            snap: vec![],
            snap_total: None,
            snap_sent: 0,
        }));
    }

    fn state_token(&self) -> u64 {
        let c = self.rep.hist.head_chain();
        u64::from_le_bytes(c[..8].try_into().expect("8 bytes")) ^ self.rep.hist.head()
    }

    fn sync_members(&mut self, tokens: &BTreeMap<NodeId, u64>) {
        let Phase::Sync(s) = &mut self.phase else {
            return;
        };
        let mut by: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for m in &s.members {
            by.entry(tokens.get(m).copied().unwrap_or(0))
                .or_default()
                .push(*m);
        }
        let mut sides: Vec<Side> = by
            .into_values()
            .map(|mut m| {
                m.sort_unstable();
                Side { members: m }
            })
            .collect();
        sides.sort_by_key(Side::rep);
        let most = sides.iter().map(|x| x.members.len()).max().unwrap_or(0);
        s.permit = sides
            .iter()
            .position(|x| x.members.len() == most)
            .unwrap_or(0);
        s.mine = sides
            .iter()
            .position(|x| x.members.contains(&self.me))
            .unwrap_or(0);
        s.sides = sides;
        if s.sides.len() > 1 {
            let detail = format!(
                "{} sides; the permit goes with the side of node {}",
                s.sides.len(),
                s.sides[s.permit].rep()
            );
            self.kml("reint_start", |r| r.detail = Some(detail));
        }
    }

    fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress {
        let have = self.my_have();
        let snapshot = match &self.phase {
            Phase::Sync(s)
                if s.sides.len() > 1
                    && s.mine == s.permit
                    && s.sides[s.mine].rep() == self.me
                    && s.snap_total.is_none()
                    && s.members.iter().all(|m| s.haves.contains_key(m))
                    && Self::snapshot_mode(s) =>
            {
                Some(self.snapshot())
            }
            _ => None,
        };
        let Phase::Sync(s) = &mut self.phase else {
            return Progress::Done;
        };
        if s.sides.len() <= 1 {
            return Progress::Done;
        }
        if !s.have_sent {
            if !out.push(Bytes::from(have.encode())) {
                return Progress::NotDone;
            }
            s.have_sent = true;
        }
        if s.sides[s.mine].rep() != self.me {
            return Progress::Done;
        }
        if s.members.iter().any(|m| !s.haves.contains_key(m)) {
            return Progress::NotDone;
        }
        if s.mine == s.permit && Self::snapshot_mode(s) {
            if let Some(all) = snapshot {
                let parts: Vec<Bytes> =
                    all.chunks(TAIL_BYTES).map(Bytes::copy_from_slice).collect();
                s.snap_total = Some(parts.len() as u32);
                s.snap = parts;
            }
            let total = s.snap_total.expect("set above");
            while s.snap_sent < total {
                let m = KmlSync::Snap {
                    index: s.snap_sent,
                    total,
                    data: s.snap[s.snap_sent as usize].clone(),
                };
                if !out.push(Bytes::from(m.encode())) {
                    return Progress::NotDone;
                }
                s.snap_sent += 1;
            }
            return Progress::Done;
        }
        let h = &self.rep.hist;
        let cursor = match s.cursor {
            Some(c) => c,
            None => {
                let need = Self::needed(s, s.mine);
                // What every member outside this side already holds.
                let mut from = u64::MAX;
                for m in &s.members {
                    if s.sides[s.mine].members.contains(m) {
                        continue;
                    }
                    let mut best = need.0;
                    if let Some(KmlSync::Have { runs, .. }) = s.haves.get(m) {
                        for r in runs {
                            if r.start.0 <= need.0
                                && r.end.0 >= need.0
                                && h.chain_at(r.start.0) == Some(r.start.1)
                                && h.chain_at(r.end.0) == Some(r.end.1)
                            {
                                best = best.max(r.end.0);
                            }
                        }
                    }
                    from = from.min(best);
                }
                let from = if from == u64::MAX { need.0 } else { from };
                from.max(h.start())
            }
        };
        let mut at = cursor;
        while at < h.head() {
            let mut batch = Vec::new();
            let mut bytes = 0;
            let start = (at, h.chain_at(at).expect("kept"));
            while at < h.head() && bytes < TAIL_BYTES && batch.len() < 4096 {
                let r = h.record_at(at + 1).expect("kept");
                bytes += r.encode().len() + 4;
                batch.push(r.clone());
                at += 1;
            }
            let msg = KmlSync::Tail {
                from: start,
                records: batch,
            };
            if !out.push(Bytes::from(msg.encode())) {
                s.cursor = Some(start.0);
                return Progress::NotDone;
            }
        }
        s.cursor = Some(at);
        Progress::Done
    }

    fn sync_deliver(&mut self, sender: NodeId, payload: &[u8]) -> Option<String> {
        let Ok(m) = KmlSync::decode(payload) else {
            self.malformed += 1;
            return None;
        };
        let Phase::Sync(s) = &mut self.phase else {
            return None;
        };
        if !s.members.contains(&sender) {
            return None;
        }
        match m {
            KmlSync::Have { .. } => {
                s.haves.insert(sender, m);
            }
            KmlSync::Snap { index, total, data } => {
                let from_permit = s.sides.get(s.permit).is_some_and(|x| x.rep() == sender);
                if from_permit && s.mine != s.permit && index as usize == s.snap.len() {
                    s.snap_total = Some(total);
                    s.snap.push(data);
                }
            }
            KmlSync::Tail { from, records } => {
                let from_rep = s.sides.iter().position(|x| x.rep() == sender);
                if from_rep.is_some_and(|x| x != s.mine) {
                    self.take_tail(from, records);
                }
            }
        }
        None
    }

    fn sync_activate(&mut self) {
        self.finish_job();
        let Phase::Sync(s) = std::mem::take(&mut self.phase) else {
            return;
        };
        if s.sides.len() > 1 {
            if let Some(job) = self.start_merge(&s) {
                // The first slice at once: a small merge ends here, in this call.
                self.job = Some(job);
                self.work(self.cfg.reint_slice);
                return;
            }
        }
        self.end_sync(s.ring);
    }

    fn sync_abort(&mut self) {
        if let Phase::Sync(s) = std::mem::take(&mut self.phase) {
            if s.sides.len() > 1 {
                let held: usize = self.runs.iter().map(|r| r.records.len()).sum();
                self.kml("abort", |r| {
                    r.records = Some(held as u64);
                    r.detail = Some("configuration change; runs kept for the next attempt".into());
                });
            }
        }
    }

    fn deliver_op(&mut self, sender: NodeId, payload: &[u8]) {
        self.deliver_op_in(
            &OpDelivery {
                sender,
                inc: 0,
                safe: false,
                regular: true,
            },
            payload,
        );
    }

    fn deliver_op_in(&mut self, d: &OpDelivery, payload: &[u8]) {
        if let Some(job) = self.job.as_mut() {
            // Applied after the merge's work, as if it had run in one call.
            job.deferred.push_back((*d, payload.to_vec()));
            return;
        }
        match Op::decode(payload) {
            Ok(op) => {
                self.rep.apply_op(d.sender, d.inc, &op);
            }
            Err(_) => self.malformed += 1,
        }
    }

    fn control(
        &mut self,
        request: &serde_json::Value,
        ctx: &ControlContext,
    ) -> Result<Control, ControlError> {
        let cmd: Command = serde_json::from_value(request.clone())
            .map_err(|e| ControlError::BadCommand(format!("svc kml: {e}")))?;
        match cmd {
            Command::Status => {
                let (objects, bytes) = self.rep.fs.size();
                let mirror_pending = self.rep.fs.pending_changes() as u64;
                let meta = self.rep.hist.meta();
                Ok(Control::new(
                    vec![],
                    &Status {
                        ok: true,
                        digest: hex(&self.rep.fs.digest()),
                        tree: hex(&self.rep.fs.tree_digest()),
                        records: self.rep.hist.head(),
                        conflicts: meta.conflicts,
                        conflicts_digest: hex(&meta.conflict_chain),
                        objects,
                        bytes,
                        warnings: self.warnings,
                        reintegrations: self.reintegrations,
                        syncing: ctx.syncing || self.job.is_some() || mirror_pending > 0,
                        work_pending: self.job.as_ref().map_or(0, |j| j.left.max(1)),
                        mirror_pending,
                    },
                ))
            }
            Command::Ls { path } => {
                let prefix = if path == "/" { String::new() } else { path };
                let list: Vec<LsEntry> = self
                    .rep
                    .fs
                    .listing()
                    .into_iter()
                    .filter(|e| e.path == prefix || e.path.starts_with(&format!("{prefix}/")))
                    .map(|e| LsEntry {
                        path: e.path,
                        kind: match e.kind {
                            super::record::Kind::Dir => "d",
                            super::record::Kind::File => "f",
                            super::record::Kind::Symlink => "l",
                        }
                        .into(),
                        mode: format!("{:o}", e.mode),
                        size: e.size,
                    })
                    .collect();
                Ok(Control::new(
                    vec![],
                    &serde_json::json!({"ok": true, "entries": list}),
                ))
            }
            Command::Cat { path } => {
                let fid = self.rep.fs.lookup(&path).ok_or_else(|| {
                    ControlError::BadCommand(format!("svc kml cat: {path}: no such object"))
                })?;
                let text = match &self.rep.fs.object(fid).expect("looked up").body {
                    super::fileset::Body::File { data, .. } => {
                        String::from_utf8_lossy(data).into_owned()
                    }
                    super::fileset::Body::Symlink { target } => target.clone(),
                    super::fileset::Body::Dir { .. } => {
                        return Err(ControlError::BadCommand(format!(
                            "svc kml cat: {path}: a directory"
                        )))
                    }
                };
                Ok(Control::new(
                    vec![],
                    &serde_json::json!({"ok": true, "data": text}),
                ))
            }
            Command::Do { record_op: op } => {
                for p in op.paths() {
                    if p == ELSEWHERE || p.starts_with(&format!("{ELSEWHERE}/")) {
                        return Err(ControlError::BadArgument {
                            cmd: "svc kml".into(),
                            arg: "path",
                            value: p.into(),
                            bound: format!("{ELSEWHERE} belongs to reintegration"),
                        });
                    }
                }
                Ok(Control::new(
                    vec![op.encode()],
                    &serde_json::json!({"ok": true}),
                ))
            }
            Command::Fill {
                records,
                seed,
                dirs,
            } => {
                if records > self.cfg.max_fill {
                    return Err(ControlError::BadArgument {
                        cmd: "svc kml fill".into(),
                        arg: "records",
                        value: records.to_string(),
                        bound: format!("at most {} (max_fill)", self.cfg.max_fill),
                    });
                }
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let w = TreeShape {
                    dirs: dirs.max(1),
                    files: 8,
                    data: 256,
                };
                let ops: Vec<Vec<u8>> = (0..records)
                    .map(|_| random_op(&mut rng, &w).encode())
                    .collect();
                let bytes: u64 = ops.iter().map(|o| o.len() as u64 + 64).sum();
                if bytes > ctx.room() {
                    return Err(ControlError::BadArgument {
                        cmd: "svc kml fill".into(),
                        arg: "records",
                        value: records.to_string(),
                        bound: format!("{bytes} bytes queued would exceed max_fill_bytes"),
                    });
                }
                Ok(Control::new(
                    ops,
                    &serde_json::json!({"ok": true, "records": records}),
                ))
            }
        }
    }

    fn digest(&self) -> [u8; 32] {
        self.rep.fs.digest()
    }

    fn size(&self) -> StateSize {
        let (items, bytes) = self.rep.fs.size();
        StateSize { items, bytes }
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }

    fn set_mirror(&mut self, on: bool) {
        self.rep.fs.set_mirror(on);
    }

    fn poll_file_change(&mut self) -> Option<crate::FileChange> {
        self.rep.fs.poll_change()
    }

    fn tree_digest(&self) -> Option<[u8; 32]> {
        Some(self.rep.fs.tree_digest())
    }

    fn poll_record(&mut self) -> Option<Body> {
        self.records.pop_front()
    }

    fn has_work(&self) -> bool {
        self.job.is_some()
    }

    fn do_work(&mut self, _now: u64) {
        self.work(self.cfg.reint_slice);
    }
}

/// The shape of a random workload's tree.
#[derive(Clone, Copy, Debug)]
pub struct TreeShape {
    /// Directories (`/d0` ...), each with a subdirectory `s`.
    pub dirs: u32,
    /// File names per directory.
    pub files: u32,
    /// Bytes of a write, at most.
    pub data: usize,
}

/// Returns one random operation on a tree of `w`'s shape: mostly writes and creates, and
/// every other kind, over few enough names that partitioned sides collide.
pub fn random_op(rng: &mut dyn rand::RngCore, w: &TreeShape) -> Op {
    let d = rng.gen_range(0..w.dirs);
    let dir = if rng.gen_ratio(1, 4) {
        format!("/d{d}/s")
    } else {
        format!("/d{d}")
    };
    let file = |rng: &mut dyn rand::RngCore| format!("{dir}/f{}", rng.gen_range(0..w.files));
    let attrs = |rng: &mut dyn rand::RngCore| Attrs {
        mode: [0o644, 0o600, 0o755][rng.gen_range(0..3)],
        uid: rng.gen_range(0..3),
        gid: rng.gen_range(0..3),
    };
    match rng.gen_range(0..100) {
        0..=9 => Op::Mkdir {
            path: if rng.gen_bool(0.5) {
                format!("/d{d}")
            } else {
                format!("/d{d}/s")
            },
            attrs: attrs(rng),
        },
        10..=29 => Op::Create {
            path: file(rng),
            attrs: attrs(rng),
        },
        30..=54 => {
            let n = rng.gen_range(0..=w.data.min(MAX_DATA));
            let mut data = vec![0u8; n];
            rng.fill_bytes(&mut data);
            Op::Write {
                path: file(rng),
                data: Bytes::from(data),
            }
        }
        55..=59 => Op::Append {
            path: file(rng),
            data: Bytes::from(format!("{}\n", rng.gen::<u32>())),
        },
        60..=69 => Op::Setattr {
            path: file(rng),
            mode: rng.gen_bool(0.5).then(|| attrs(rng).mode),
            uid: rng.gen_bool(0.3).then(|| rng.gen_range(0..3)),
            gid: None,
            mtime: rng.gen_bool(0.2).then(|| rng.gen_range(0..1_000_000)),
            size: rng.gen_bool(0.2).then(|| rng.gen_range(0..64)),
        },
        70..=77 => Op::Unlink { path: file(rng) },
        78..=82 => Op::Rename {
            from: file(rng),
            to: file(rng),
        },
        83..=86 => Op::Link {
            existing: file(rng),
            path: file(rng),
        },
        87..=90 => Op::Symlink {
            path: file(rng),
            target: file(rng),
            attrs: attrs(rng),
        },
        91..=93 => Op::Mknod {
            path: file(rng),
            attrs: attrs(rng),
        },
        _ => Op::Rmdir {
            path: if rng.gen_bool(0.5) {
                format!("/d{d}/s")
            } else {
                format!("/d{d}")
            },
        },
    }
}

impl Plugin for KmlService {
    const NAME: &'static str = "kml";
    const ID: ServiceId = KML_SERVICE;

    fn new(me: NodeId) -> Self {
        Self::with(me, KmlConfig::default())
    }

    fn configure(me: NodeId, cfg: &ServiceConfig) -> Result<Self, ServiceConfigError> {
        let bad = |reason: String| ServiceConfigError {
            service: Self::NAME,
            reason,
        };
        let parsed: KmlConfig = if cfg.section.is_null() {
            KmlConfig::default()
        } else {
            serde_json::from_value(cfg.section.clone()).map_err(|e| bad(e.to_string()))?
        };
        if parsed.log_keep == 0 {
            return Err(bad("log_keep must be at least 1".into()));
        }
        if !(1..=REINT_SLICE_MAX).contains(&parsed.reint_slice) {
            return Err(bad(format!(
                "reint_slice must be 1 to {REINT_SLICE_MAX}, not {}",
                parsed.reint_slice
            )));
        }
        Ok(Self::with(me, parsed))
    }

    fn parse_args(args: &Args<'_>) -> Result<serde_json::Value, ControlError> {
        let op = args.text("op").unwrap_or_else(|| "status".into());
        let cmd = args.cmd().to_string();
        let path = |k: &str| -> Result<String, ControlError> {
            let p = args.required(k)?;
            check_path(&p).map_err(|e| ControlError::BadArgument {
                cmd: cmd.clone(),
                arg: "path",
                value: p.clone(),
                bound: e.to_string(),
            })?;
            Ok(p)
        };
        let mode = |k: &str, default: u32| -> Result<u32, ControlError> {
            match args.text(k) {
                None => Ok(default),
                Some(m) => u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| ControlError::BadArgument {
                        cmd: cmd.clone(),
                        arg: "mode",
                        value: m,
                        bound: "octal, at most 7777".into(),
                    }),
            }
        };
        let attrs = |default: u32| -> Result<Attrs, ControlError> {
            Ok(Attrs {
                mode: mode("mode", default)?,
                uid: args.number("uid")?.unwrap_or(0),
                gid: args.number("gid")?.unwrap_or(0),
            })
        };
        let data = || -> Result<Bytes, ControlError> {
            let d = match (args.text("data"), args.number::<usize>("size")?) {
                (Some(d), None) => d.into_bytes(),
                (None, Some(n)) => (0..n).map(|i| b'a' + (i % 26) as u8).collect(),
                (None, None) => vec![],
                (Some(_), Some(_)) => {
                    return Err(ControlError::BadCommand(format!(
                        "{cmd}: data= or size=, not both"
                    )))
                }
            };
            if d.len() > MAX_DATA {
                return Err(ControlError::BadArgument {
                    cmd: cmd.clone(),
                    arg: "data",
                    value: d.len().to_string(),
                    bound: format!("at most {MAX_DATA} bytes"),
                });
            }
            Ok(Bytes::from(d))
        };
        let made = |op: Op| Command::Do { record_op: op };
        let c = match op.as_str() {
            "status" | "digest" => {
                args.allow(&["op"])?;
                Command::Status
            }
            "ls" => {
                args.allow(&["op", "path"])?;
                Command::Ls {
                    path: args.text("path").unwrap_or_else(|| "/".into()),
                }
            }
            "cat" => {
                args.allow(&["op", "path"])?;
                Command::Cat {
                    path: path("path")?,
                }
            }
            "create" | "mknod" | "mkdir" => {
                args.allow(&["op", "path", "mode", "uid", "gid"])?;
                let p = path("path")?;
                made(match op.as_str() {
                    "create" => Op::Create {
                        path: p,
                        attrs: attrs(0o644)?,
                    },
                    "mknod" => Op::Mknod {
                        path: p,
                        attrs: attrs(0o644)?,
                    },
                    _ => Op::Mkdir {
                        path: p,
                        attrs: attrs(0o755)?,
                    },
                })
            }
            "symlink" => {
                args.allow(&["op", "path", "target", "uid", "gid"])?;
                made(Op::Symlink {
                    path: path("path")?,
                    target: args.required("target")?,
                    attrs: attrs(0o777)?,
                })
            }
            "link" => {
                args.allow(&["op", "existing", "path"])?;
                made(Op::Link {
                    existing: path("existing")?,
                    path: path("path")?,
                })
            }
            "unlink" => {
                args.allow(&["op", "path"])?;
                made(Op::Unlink {
                    path: path("path")?,
                })
            }
            "rmdir" => {
                args.allow(&["op", "path"])?;
                made(Op::Rmdir {
                    path: path("path")?,
                })
            }
            "rename" => {
                args.allow(&["op", "from", "to"])?;
                made(Op::Rename {
                    from: path("from")?,
                    to: path("to")?,
                })
            }
            "setattr" => {
                args.allow(&["op", "path", "mode", "uid", "gid", "mtime", "size"])?;
                made(Op::Setattr {
                    path: path("path")?,
                    mode: args.text("mode").map(|_| mode("mode", 0)).transpose()?,
                    uid: args.number("uid")?,
                    gid: args.number("gid")?,
                    mtime: args.number("mtime")?,
                    size: args.number("size")?,
                })
            }
            "write" | "append" => {
                args.allow(&["op", "path", "data", "size"])?;
                let p = path("path")?;
                let d = data()?;
                made(if op == "write" {
                    Op::Write { path: p, data: d }
                } else {
                    Op::Append { path: p, data: d }
                })
            }
            "fill" => {
                args.allow(&["op", "records", "seed", "dirs"])?;
                Command::Fill {
                    records: args.number("records")?.unwrap_or(100),
                    seed: args.number("seed")?.unwrap_or(1),
                    dirs: args.number("dirs")?.unwrap_or(4),
                }
            }
            "warnings" => {
                args.allow(&["op"])?;
                Command::Cat {
                    path: WARNINGS.into(),
                }
            }
            other => {
                return Err(ControlError::BadCommand(format!(
                    "svc kml: unknown command {other:?} (known: status, digest, ls, cat, \
                     warnings, create, mknod, mkdir, symlink, link, unlink, rmdir, rename, \
                     setattr, write, append, fill)"
                )))
            }
        };
        Ok(serde_json::to_value(c).expect("a command serialises"))
    }

    fn workload_op(rng: &mut dyn rand::RngCore, w: &Workload) -> Bytes {
        let shape = TreeShape {
            dirs: 3,
            files: 4,
            data: (w.state_bytes / 64).clamp(16, 4096),
        };
        Bytes::from(random_op(rng, &shape).encode())
    }
}

/// Returns `b` in lower-case hex.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(2 * b.len()), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

fn unhex(h: &str) -> Option<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(section: serde_json::Value) -> Result<KmlService, ServiceConfigError> {
        KmlService::configure(
            1,
            &ServiceConfig {
                section,
                ..ServiceConfig::default()
            },
        )
    }

    #[test]
    fn reint_slice_defaults_to_1000_and_is_bounded() {
        assert_eq!(KmlConfig::default().reint_slice, 1000);
        assert!(configure(serde_json::json!({ "reint_slice": 1 })).is_ok());
        assert!(configure(serde_json::json!({ "reint_slice": 1_000_000 })).is_ok());
        for bad in [0u64, 1_000_001] {
            let e = configure(serde_json::json!({ "reint_slice": bad })).unwrap_err();
            assert!(e.reason.contains("reint_slice"), "{e}");
        }
    }

    #[test]
    fn a_tail_continues_the_run_that_reaches_back_furthest() {
        let mut rep = Replica::new(10_000);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let shape = TreeShape {
            dirs: 2,
            files: 3,
            data: 16,
        };
        for i in 0..60 {
            rep.apply_op(1 + i % 3, 1, &random_op(&mut rng, &shape));
        }
        let h = &rep.hist;
        let part = |a: u64, b: u64| -> (Point, Vec<Record>) {
            let recs = h.records_after(a).take((b - a) as usize).cloned().collect();
            ((a, h.chain_at(a).unwrap()), recs)
        };
        let mut s = KmlService::new(5);
        // An earlier attempt's run from 2 to 40; this attempt's from 0 to 40, then on.
        for (a, b) in [(2, 40), (0, 40), (40, 60)] {
            let (from, recs) = part(a, b);
            s.take_tail(from, recs);
        }
        let marks: Vec<(u64, u64)> = s.runs.iter().map(|r| (r.start.0, r.end().0)).collect();
        assert!(marks.contains(&(0, 60)), "{marks:?}");
        assert_eq!(
            s.runs.iter().find(|r| r.start.0 == 0).unwrap().end(),
            (60, h.head_chain())
        );
    }

    #[test]
    fn an_idle_service_has_no_work() {
        let mut s = KmlService::new(1);
        assert!(!s.has_work());
        s.do_work(0);
        assert!(!s.has_work());
        assert!(s.poll_record().is_none());
    }
}
