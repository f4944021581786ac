//! A replica of the fileset (the tree and its history) and the three things a merge does to
//! it: undo its own records back to the fork in exactly the reverse order, catch up with the
//! permit side's records, and reintegrate another side's records record by record against
//! the state that stands.
//!
//! Reintegration of one side's records, each in turn:
//! - numbering (the seed's last received record number per origin, with the origin's
//!   incarnation): a record at or below the origin's last is a duplicate (both sides had
//!   it) and is skipped; one that is not the next number is reported as a warning and not
//!   applied (the seed's "KML record number expected"); the next one is a candidate;
//! - a candidate that touches an object a backed-out record of this side made or changed
//!   is backed out with it (the seed's hash from path to records: here, by fid);
//! - otherwise [`Fileset::check`] decides: it fits and is replayed, or it conflicts and is
//!   marked NOOP with its conflict kind;
//! - then what this side made or wrote in the backed-out records is put under
//!   `.elsewhere/<origin>/<its path>` and each is described in `.elsewhere/WARNINGS`: by
//!   records of the fileset's own (origin 0, tagged with the merge), so that they are undone
//!   and reintegrated like any other.
//!
//! Every decision depends only on the replica and the records, which every member has in the
//! same agreed order: every member ends with the same tree, history and conflict list.

use super::fileset::Fileset;
use super::history::History;
use super::record::{Attrs, ConflictKind, Noop, Op, RecId, Record, Undo};
use bytes::Bytes;
use ringlab_ring::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// Where reintegration writes what it backs out.
pub const ELSEWHERE: &str = "/.elsewhere";
/// The file that says what it backed out, and why.
pub const WARNINGS: &str = "/.elsewhere/WARNINGS";

/// One step reintegration reports (the service writes each as a `kml` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Records undone on this node, back to the fork.
    Undo {
        /// How many.
        records: u64,
    },
    /// A record backed out.
    Conflict {
        /// The record.
        id: RecId,
        /// Its kind (a record backed out with an earlier one: that one's).
        kind: ConflictKind,
        /// The path it names first.
        path: String,
        /// The earlier backed-out record it went with, if any.
        with: Option<RecId>,
    },
    /// A record not applied: its number is not the one expected from its origin.
    Warning {
        /// The record.
        id: RecId,
        /// The number expected.
        expected: u64,
    },
}

/// What reintegrating one side did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Records replayed.
    pub applied: u64,
    /// Records backed out.
    pub conflicts: u64,
    /// Duplicates skipped.
    pub duplicates: u64,
    /// Records refused for their number.
    pub warnings: u64,
}

/// A fileset with its history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The tree.
    pub fs: Fileset,
    /// Its history.
    pub hist: History,
}

impl Replica {
    /// Returns an empty replica keeping `keep` records.
    pub fn new(keep: usize) -> Self {
        Self::with_bounds(keep, usize::MAX)
    }

    /// Returns an empty replica keeping `keep` records of `keep_bytes` bytes at most.
    pub fn with_bounds(keep: usize, keep_bytes: usize) -> Self {
        Self {
            fs: Fileset::new(),
            hist: History::new(keep, keep_bytes),
        }
    }

    /// Applies an operation of `origin` (incarnation `inc`) delivered through the ring:
    /// numbered next for its origin, stamped with the next tick of the clock.
    pub fn apply_op(&mut self, origin: NodeId, inc: u32, op: &Op) -> &Record {
        let id = self.hist.next_id(origin, inc);
        let rec = self
            .fs
            .apply(id, id.recno - 1, self.hist.meta().clock + 1, op);
        self.hist.push(rec);
        self.hist.record_at(self.hist.head()).expect("just pushed")
    }

    /// Undoes records, last first, until the head is at `pos`; returns how many, or none when
    /// the history does not reach back that far (nothing is undone then).
    pub fn undo_to(&mut self, pos: u64) -> Option<u64> {
        if pos < self.hist.start() || pos > self.hist.head() {
            return None;
        }
        let mut n = 0;
        while self.hist.head() > pos {
            let rec = self.hist.pop().expect("kept back to start");
            self.fs.undo(&rec);
            n += 1;
        }
        Some(n)
    }

    /// Replays the permit side's records from the fork on (no check: this replica is at the
    /// fork, where that side applied them).
    pub fn catch_up<'a>(&mut self, recs: impl IntoIterator<Item = &'a Record>) {
        for r in recs {
            let applied = self.fs.replay(r);
            self.hist.push(applied);
        }
    }

    /// Undoes at most `budget` records, last first, toward `pos` (a position the history
    /// reaches back to: [`Replica::undo_to`] checks it); returns how many.
    pub fn undo_some(&mut self, pos: u64, budget: usize) -> u64 {
        let mut n = 0;
        while self.hist.head() > pos && (n as usize) < budget {
            let Some(rec) = self.hist.pop() else { break };
            self.fs.undo(&rec);
            n += 1;
        }
        n
    }

    /// Reintegrates one side's records (its history after the fork), tagging the fileset's
    /// own records with `tag`; reports each step into `steps`. The same as a
    /// [`Reintegration`] fed every record, then finished.
    pub fn reintegrate<'a>(
        &mut self,
        tag: u32,
        recs: impl IntoIterator<Item = &'a Record>,
        steps: &mut Vec<Step>,
    ) -> Outcome {
        let mut ri = Reintegration::new(tag);
        for r in recs {
            ri.step(self, r, steps);
        }
        let mut budget = usize::MAX;
        while !ri.finish_some(self, &mut budget) {}
        ri.outcome()
    }

    /// Applies an operation of the fileset's own.
    fn sys(&mut self, tag: u32, op: Op) -> bool {
        let id = self.hist.next_sys(tag);
        let rec = self
            .fs
            .apply(id, id.recno - 1, self.hist.meta().clock + 1, &op);
        let ok = rec.noop.is_none();
        self.hist.push(rec);
        ok
    }

    /// Makes every missing directory above `path`.
    fn ensure_parents(&mut self, tag: u32, path: &str) {
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for p in parts.iter().take(parts.len().saturating_sub(1)) {
            at.push('/');
            at.push_str(p);
            if self.fs.lookup(&at).is_none() {
                self.sys(
                    tag,
                    Op::Mkdir {
                        path: at.clone(),
                        attrs: DIR_ATTRS,
                    },
                );
            }
        }
    }

    /// Makes the plain file `path` (and its parents) if it is missing.
    fn ensure_file(&mut self, tag: u32, path: &str) {
        if self.fs.lookup(path).is_none() {
            self.ensure_parents(tag, path);
            self.sys(
                tag,
                Op::Create {
                    path: path.into(),
                    attrs: FILE_ATTRS,
                },
            );
        }
    }

    /// Puts what a backed-out record made or wrote under `.elsewhere/<origin>/`.
    fn put_elsewhere(&mut self, tag: u32, r: &Record) {
        let at = |p: &str| format!("{ELSEWHERE}/{}{p}", r.id.origin);
        let op = match &r.op {
            Op::Create { path, attrs } | Op::Mknod { path, attrs } => Op::Create {
                path: at(path),
                attrs: *attrs,
            },
            Op::Mkdir { path, attrs } => Op::Mkdir {
                path: at(path),
                attrs: *attrs,
            },
            Op::Symlink {
                path,
                target,
                attrs,
            } => Op::Symlink {
                path: at(path),
                target: target.clone(),
                attrs: *attrs,
            },
            Op::Write { path, data } => {
                self.ensure_file(tag, &at(path));
                Op::Write {
                    path: at(path),
                    data: data.clone(),
                }
            }
            Op::Append { path, data } => {
                self.ensure_file(tag, &at(path));
                Op::Append {
                    path: at(path),
                    data: data.clone(),
                }
            }
            // What only changes an object this side had: applied to its copy under
            // `.elsewhere` where there is one, else only told in WARNINGS.
            Op::Setattr {
                path,
                mode,
                uid,
                gid,
                mtime,
                size,
            } if self.fs.lookup(&at(path)).is_some() => Op::Setattr {
                path: at(path),
                mode: *mode,
                uid: *uid,
                gid: *gid,
                mtime: *mtime,
                size: *size,
            },
            Op::Rename { from, to } if self.fs.lookup(&at(from)).is_some() => {
                self.ensure_parents(tag, &at(to));
                Op::Rename {
                    from: at(from),
                    to: at(to),
                }
            }
            Op::Unlink { path } if self.fs.lookup(&at(path)).is_some() => {
                Op::Unlink { path: at(path) }
            }
            Op::Rmdir { path } if self.fs.lookup(&at(path)).is_some() => {
                Op::Rmdir { path: at(path) }
            }
            Op::Link { existing, path } if self.fs.lookup(&at(existing)).is_some() => {
                self.ensure_parents(tag, &at(path));
                Op::Link {
                    existing: at(existing),
                    path: at(path),
                }
            }
            _ => return,
        };
        if let Some(p) = op.paths().last() {
            self.ensure_parents(tag, p);
        }
        self.sys(tag, op);
    }

    /// Returns the number the origin's next record must have here.
    fn numbering_expected(&self, r: &Record) -> u64 {
        if r.id.origin == 0 {
            self.hist.last_sys(r.id.inc) + 1
        } else {
            self.hist.last_of(r.id.origin).map_or(1, |l| l.1 + 1)
        }
    }

    fn numbering(&self, r: &Record) -> Numbering {
        let id = r.id;
        if id.origin == 0 {
            let last = self.hist.last_sys(id.inc);
            return if id.recno <= last {
                Numbering::Duplicate
            } else if id.recno == last + 1 {
                Numbering::Next
            } else {
                Numbering::Unexpected(last + 1)
            };
        }
        match self.hist.last_of(id.origin) {
            Some((inc, recno)) if id.recno <= recno && id.inc <= inc => Numbering::Duplicate,
            Some((inc, recno)) if id.recno == recno + 1 && id.inc >= inc => Numbering::Next,
            Some((_, recno)) => Numbering::Unexpected(recno + 1),
            None if id.recno == 1 => Numbering::Next,
            None => Numbering::Unexpected(1),
        }
    }
}

/// One side's reintegration in progress, resumable between any two records: feed it the
/// side's records in order ([`Reintegration::step`]), then finish it
/// ([`Reintegration::finish_some`] until it says done), which puts what was backed out under
/// `.elsewhere` and writes `WARNINGS`. [`Replica::reintegrate`] does all of it in one call;
/// the `kml` service does it in slices of a bounded number of records, with exactly the same
/// outcome and steps.
#[derive(Clone, Debug)]
pub struct Reintegration {
    tag: u32,
    out: Outcome,
    /// Objects a backed-out record made (their children go with them) or changed.
    made: BTreeMap<RecId, RecId>,
    changed: BTreeMap<RecId, RecId>,
    kinds: BTreeMap<RecId, ConflictKind>,
    backed: Vec<(Record, ConflictKind)>,
    /// Incarnations with a record refused for its number: their later records in this
    /// side's history were numbered the same wrong way, even one that happens to be next.
    refused: BTreeSet<(NodeId, u32)>,
    /// The next of `backed` to put elsewhere.
    finished: usize,
}

impl Reintegration {
    /// Starts one side's reintegration, tagging the fileset's own records with `tag`.
    pub fn new(tag: u32) -> Self {
        Self {
            tag,
            out: Outcome::default(),
            made: BTreeMap::new(),
            changed: BTreeMap::new(),
            kinds: BTreeMap::new(),
            backed: Vec::new(),
            refused: BTreeSet::new(),
            finished: 0,
        }
    }

    /// Returns what it did so far.
    pub fn outcome(&self) -> Outcome {
        self.out
    }

    /// Reintegrates the side's next record into `rep`; reports its step into `steps`.
    pub fn step(&mut self, rep: &mut Replica, r: &Record, steps: &mut Vec<Step>) {
        let numbering = if self.refused.contains(&(r.id.origin, r.id.inc)) {
            Numbering::Unexpected(rep.numbering_expected(r))
        } else {
            rep.numbering(r)
        };
        if matches!(numbering, Numbering::Unexpected(_)) {
            self.refused.insert((r.id.origin, r.id.inc));
        }
        match numbering {
            Numbering::Duplicate => {
                self.out.duplicates += 1;
                return;
            }
            Numbering::Unexpected(expected) => {
                self.out.warnings += 1;
                steps.push(Step::Warning { id: r.id, expected });
                return;
            }
            Numbering::Next => {}
        }
        if r.noop.is_some() {
            // A NOOP where it was made stays one.
            rep.hist.push(r.clone());
            self.out.applied += 1;
            return;
        }
        let root = r
            .touched
            .first()
            .and_then(|t| self.changed.get(&t.fid).or_else(|| self.made.get(&t.fid)))
            .or_else(|| r.touched.iter().find_map(|t| self.made.get(&t.fid)))
            .copied();
        let verdict = match root {
            Some(root) => Err((self.kinds[&root], Some(root))),
            None => rep.fs.check(r).map_err(|k| (k, None)),
        };
        match verdict {
            Ok(()) => {
                let applied = rep.fs.replay(r);
                rep.hist.push(applied);
                self.out.applied += 1;
            }
            Err((kind, with)) => {
                let root = with.unwrap_or(r.id);
                self.kinds.insert(r.id, kind);
                if creates(&r.op) {
                    self.made.insert(r.id, root);
                } else if let Some(t) = r.touched.first() {
                    self.changed.insert(t.fid, root);
                }
                let noop = Record {
                    noop: Some(Noop::Conflict(kind)),
                    touched: vec![],
                    undo: Undo::default(),
                    ..r.clone()
                };
                rep.hist.push(noop);
                steps.push(Step::Conflict {
                    id: r.id,
                    kind,
                    path: r
                        .op
                        .paths()
                        .first()
                        .map_or_else(String::new, |p| p.to_string()),
                    with,
                });
                self.backed.push((r.clone(), kind));
                self.out.conflicts += 1;
            }
        }
    }

    /// Once every record was fed: puts what the backed-out records made or wrote under
    /// `.elsewhere` and describes each in `WARNINGS`, at most `budget` of them (each taken
    /// off `budget`); returns whether it is done.
    pub fn finish_some(&mut self, rep: &mut Replica, budget: &mut usize) -> bool {
        let tag = self.tag;
        while self.finished < self.backed.len() {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            let (r, kind) = &self.backed[self.finished];
            self.finished += 1;
            rep.put_elsewhere(tag, r);
            let line = format!(
                "{} {} {} {}\n",
                r.id,
                r.op.name(),
                r.op.paths().join(" -> "),
                kind.as_str()
            );
            rep.ensure_file(tag, WARNINGS);
            rep.sys(
                tag,
                Op::Append {
                    path: WARNINGS.into(),
                    data: Bytes::from(line),
                },
            );
        }
        true
    }
}

enum Numbering {
    Duplicate,
    Next,
    Unexpected(u64),
}

/// Returns whether an operation makes a new object.
fn creates(op: &Op) -> bool {
    matches!(
        op,
        Op::Create { .. } | Op::Mkdir { .. } | Op::Mknod { .. } | Op::Symlink { .. }
    )
}

const DIR_ATTRS: Attrs = Attrs {
    mode: 0o755,
    uid: 0,
    gid: 0,
};
const FILE_ATTRS: Attrs = Attrs {
    mode: 0o644,
    uid: 0,
    gid: 0,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kml::service::{random_op, TreeShape};
    use rand::SeedableRng;

    const SHAPE: TreeShape = TreeShape {
        dirs: 2,
        files: 3,
        data: 40,
    };

    /// Applies `n` random operations of `origins` (round robin) drawn from `seed`.
    fn run(r: &mut Replica, origins: &[NodeId], n: usize, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for i in 0..n {
            let op = random_op(&mut rng, &SHAPE);
            r.apply_op(origins[i % origins.len()], 1, &op);
        }
    }

    fn tail(r: &Replica, from: u64) -> Vec<Record> {
        r.hist.records_after(from).cloned().collect()
    }

    /// Two sides fork at `base` records, each goes on; returns (permit side after
    /// reintegrating the other, the other after undo, catch-up and reintegration).
    fn merge(base: usize, a: usize, b: usize, seed: u64) -> (Replica, Replica, Vec<Step>) {
        let mut common = Replica::new(100_000);
        run(&mut common, &[1, 2, 3, 4, 5], base, seed);
        let fork = common.hist.head();
        let mut p = common.clone();
        let mut s = common;
        run(&mut p, &[1, 2, 3], a, seed + 1);
        run(&mut s, &[4, 5], b, seed + 2);
        let p_tail = tail(&p, fork);
        let s_tail = tail(&s, fork);
        let mut steps_p = Vec::new();
        p.reintegrate(7, &s_tail, &mut steps_p);
        let mut steps_s = Vec::new();
        assert_eq!(s.undo_to(fork), Some(b as u64));
        s.catch_up(&p_tail);
        s.reintegrate(7, &s_tail, &mut steps_s);
        assert_eq!(steps_p, steps_s, "both sides decide alike");
        (p, s, steps_p)
    }

    #[test]
    fn both_sides_end_equal_with_the_same_conflicts() {
        let mut kinds = BTreeSet::new();
        for seed in 0..60 {
            let (p, s, steps) = merge(30, 25, 25, seed * 10);
            assert_eq!(p.fs.digest(), s.fs.digest(), "seed {seed}");
            assert_eq!(p.hist.head_chain(), s.hist.head_chain(), "seed {seed}");
            assert_eq!(p.hist.meta(), s.hist.meta(), "seed {seed}");
            for o in p.hist.origins().values() {
                assert_eq!(o[0], o[1], "no gap, seed {seed}");
            }
            for st in steps {
                if let Step::Conflict { kind, .. } = st {
                    kinds.insert(kind);
                }
            }
        }
        // Random traffic on few names meets every kind.
        assert!(kinds.len() >= 4, "kinds met: {kinds:?}");
    }

    #[test]
    fn reintegration_is_deterministic_and_a_second_one_changes_nothing() {
        let (a, _, _) = merge(20, 15, 15, 99);
        let (b, _, _) = merge(20, 15, 15, 99);
        assert_eq!(a, b);
        // Reintegrating the same records again: every one is a duplicate.
        let mut c = a.clone();
        let recs: Vec<Record> = a.hist.records_after(20).cloned().collect();
        let out = c.reintegrate(7, &recs, &mut vec![]);
        assert_eq!(out.applied + out.conflicts, 0);
        assert_eq!(c.fs, a.fs);
    }

    #[test]
    fn a_restarted_origin_with_new_numbers_is_warned_about_not_applied() {
        let mut p = Replica::new(1000);
        p.apply_op(
            4,
            1,
            &Op::Mkdir {
                path: "/d".into(),
                attrs: DIR_ATTRS,
            },
        );
        // Node 4 restarted empty (incarnation 2) and made a record alone.
        let mut s = Replica::new(1000);
        s.apply_op(
            4,
            2,
            &Op::Mkdir {
                path: "/e".into(),
                attrs: DIR_ATTRS,
            },
        );
        let recs = tail(&s, 0);
        let mut steps = vec![];
        let out = p.reintegrate(3, &recs, &mut steps);
        assert_eq!(out.warnings, 1);
        assert!(matches!(steps[0], Step::Warning { expected: 2, .. }));
        assert!(p.fs.lookup("/e").is_none());
    }

    #[test]
    fn a_name_name_conflict_moves_the_other_sides_object_elsewhere_and_says_so() {
        let mut common = Replica::new(1000);
        let mk = |p: &str| Op::Create {
            path: p.into(),
            attrs: FILE_ATTRS,
        };
        let wr = |p: &str, d: &'static str| Op::Write {
            path: p.into(),
            data: Bytes::from_static(d.as_bytes()),
        };
        common.apply_op(1, 1, &mk("/keep"));
        let mut p = common.clone();
        let mut s = common;
        p.apply_op(1, 1, &mk("/x"));
        p.apply_op(1, 1, &wr("/x", "permit"));
        s.apply_op(4, 1, &mk("/x"));
        s.apply_op(4, 1, &wr("/x", "minority"));
        s.apply_op(4, 1, &mk("/y"));
        let recs = tail(&s, 1);
        let mut steps = vec![];
        let out = p.reintegrate(3, &recs, &mut steps);
        assert_eq!((out.applied, out.conflicts), (1, 2));
        assert!(matches!(
            &steps[0],
            Step::Conflict { kind: ConflictKind::NameName, path, with: None, .. } if path == "/x"
        ));
        assert!(matches!(&steps[1], Step::Conflict { with: Some(_), .. }));
        let read = |r: &Replica, path: &str| match &r
            .fs
            .object(r.fs.lookup(path).unwrap())
            .unwrap()
            .body
        {
            crate::kml::fileset::Body::File { data, .. } => data.clone(),
            _ => panic!("not a file"),
        };
        assert_eq!(read(&p, "/x"), "permit");
        assert_eq!(read(&p, "/.elsewhere/4/x"), "minority");
        assert!(p.fs.lookup("/y").is_some());
        let w = read(&p, WARNINGS);
        assert!(
            String::from_utf8_lossy(&w).contains("create /x name_name"),
            "{w:?}"
        );
    }

    #[test]
    fn a_snapshot_reads_back_as_the_same_tree_and_history_and_bad_ones_are_refused() {
        let mut r = Replica::new(100_000);
        run(&mut r, &[1, 2, 3], 300, 5);
        let mut b = Vec::new();
        r.fs.put_snapshot(&mut b);
        r.hist.put_snapshot(&mut b);
        let mut rd = ringlab_ring::wire::Reader::new(&b);
        let fs = Fileset::read_snapshot(&mut rd).unwrap();
        let hist = History::read_snapshot(&mut rd, 10, usize::MAX).unwrap();
        assert_eq!(rd.remaining(), 0);
        assert_eq!(fs, r.fs);
        assert_eq!(fs.digest(), r.fs.digest());
        assert_eq!(
            (hist.head(), hist.head_chain()),
            (r.hist.head(), r.hist.head_chain())
        );
        assert_eq!(hist.origins(), r.hist.origins());
        assert_eq!(hist.meta(), r.hist.meta());
        // Adopting it through `replace_with` leaves a mirror's change stream that rebuilds
        // the new tree from the old one.
        let mut old = Replica::new(100);
        run(&mut old, &[4], 50, 9);
        old.fs.set_mirror(true);
        old.fs.replace_with(fs);
        assert_eq!(old.fs, r.fs);
        assert!(old.fs.poll_change().is_some());
        // Every truncation is an error, never a panic.
        for n in 0..b.len().min(2000) {
            let mut rd = ringlab_ring::wire::Reader::new(&b[..n]);
            let ok = Fileset::read_snapshot(&mut rd)
                .and_then(|_| History::read_snapshot(&mut rd, 10, 10))
                .is_ok();
            assert!(!ok, "a snapshot cut at {n} bytes decoded");
        }
    }
}
