//! A fileset's history: the records that made it, in the order applied, each with the chain
//! hash of the history up to it, and what undo must restore beside the tree (the origin's
//! last record number, the clock, the conflict list). Two nodes whose heads have the same
//! position and chain hold the same history, hence the same fileset.
//!
//! The history keeps its last `keep` records; older ones are dropped (their chain stays as
//! the start's), so a node can undo back to, and send records from, its start only.

use super::record::{ConflictKind, Noop, RecId, Record};
use ringlab_ring::NodeId;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};

/// A chain hash: SHA-256 over the previous chain and the record's encoding.
pub type Chain = [u8; 32];

/// Returns the chain after `rec` follows `prev`.
pub fn chain_next(prev: &Chain, rec: &Record) -> Chain {
    chain_over(prev, &rec.encode())
}

fn chain_over(prev: &Chain, encoded: &[u8]) -> Chain {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(encoded);
    h.finalize().into()
}

/// Where an origin's records stand: the incarnation and number of its last record.
pub type Last = (u32, u64);

/// What the history knows beside its records, restored by undo.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The fileset's clock (the last record's time).
    pub clock: u64,
    /// Conflicts in the history.
    pub conflicts: u64,
    /// A chain over the conflicts, in the order found.
    pub conflict_chain: Chain,
}

/// One record of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The record, as applied here.
    pub rec: Record,
    /// The chain after it.
    pub chain: Chain,
    /// The origin's last before it (none: the origin had no record).
    prev_last: Option<Last>,
    /// The meta before it.
    prev_meta: Meta,
    /// Its encoded size.
    bytes: usize,
}

/// The history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    start: u64,
    start_chain: Chain,
    entries: VecDeque<Entry>,
    last: BTreeMap<(NodeId, u32), u64>,
    origin_last: BTreeMap<NodeId, Last>,
    counts: BTreeMap<NodeId, u64>,
    meta: Meta,
    keep: usize,
    keep_bytes: usize,
    bytes: usize,
}

impl History {
    /// Returns an empty history keeping at most `keep` records of at most `keep_bytes` bytes
    /// in all (encoded).
    pub fn new(keep: usize, keep_bytes: usize) -> Self {
        Self {
            start: 0,
            start_chain: [0; 32],
            entries: VecDeque::new(),
            last: BTreeMap::new(),
            origin_last: BTreeMap::new(),
            counts: BTreeMap::new(),
            meta: Meta::default(),
            keep,
            keep_bytes,
            bytes: 0,
        }
    }

    /// Returns the head's position (records ever applied).
    pub fn head(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// Returns the head's chain.
    pub fn head_chain(&self) -> Chain {
        self.entries.back().map_or(self.start_chain, |e| e.chain)
    }

    /// Returns the first position it can undo to and send records from.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Returns the chain at position `pos` (after `pos` records), if kept.
    pub fn chain_at(&self, pos: u64) -> Option<Chain> {
        if pos == self.start {
            return Some(self.start_chain);
        }
        let i = pos.checked_sub(self.start + 1)?;
        self.entries.get(usize::try_from(i).ok()?).map(|e| e.chain)
    }

    /// Returns the record at position `pos` (the `pos`-th applied, from 1), if kept.
    pub fn record_at(&self, pos: u64) -> Option<&Record> {
        let i = pos.checked_sub(self.start + 1)?;
        self.entries.get(usize::try_from(i).ok()?).map(|e| &e.rec)
    }

    /// Returns the records after position `from` (as many as are kept).
    pub fn records_after(&self, from: u64) -> impl Iterator<Item = &Record> {
        let skip = from.saturating_sub(self.start) as usize;
        self.entries.iter().skip(skip).map(|e| &e.rec)
    }

    /// Returns the meta.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Returns the last record of `origin` (none: none yet).
    pub fn last_of(&self, origin: NodeId) -> Option<Last> {
        self.origin_last.get(&origin).copied()
    }

    /// Returns the last number of the fileset's own records tagged `inc` (origin 0).
    pub fn last_sys(&self, inc: u32) -> u64 {
        self.last.get(&(0, inc)).copied().unwrap_or(0)
    }

    /// Per origin, its last record number and how many of its records the history counts
    /// (equal where its numbers have no gap; origin 0 is the sum over its tags).
    pub fn origins(&self) -> BTreeMap<NodeId, [u64; 2]> {
        let mut out = BTreeMap::new();
        for (o, c) in &self.counts {
            let last = if *o == 0 {
                self.last
                    .iter()
                    .filter(|((n, _), _)| *n == 0)
                    .map(|(_, r)| *r)
                    .sum()
            } else {
                self.origin_last.get(o).map_or(0, |l| l.1)
            };
            out.insert(*o, [last, *c]);
        }
        out
    }

    /// Returns the next id for an operation of `origin` (incarnation `inc`).
    pub fn next_id(&self, origin: NodeId, inc: u32) -> RecId {
        let recno = self.origin_last.get(&origin).map_or(0, |l| l.1) + 1;
        RecId { origin, inc, recno }
    }

    /// Returns the next id of a record of the fileset's own, tagged `inc`.
    pub fn next_sys(&self, inc: u32) -> RecId {
        RecId {
            origin: 0,
            inc,
            recno: self.last_sys(inc) + 1,
        }
    }

    /// Appends an applied record (`conflict`: it was backed out as one, at `path`).
    pub fn push(&mut self, rec: Record) {
        let prev_meta = self.meta.clone();
        let o = rec.id.origin;
        let prev_last = self.origin_last.get(&o).copied();
        if o == 0 {
            self.last.insert((0, rec.id.inc), rec.id.recno);
        } else {
            self.origin_last.insert(o, (rec.id.inc, rec.id.recno));
        }
        *self.counts.entry(o).or_default() += 1;
        self.meta.clock = self.meta.clock.max(rec.time);
        if let Some(Noop::Conflict(k)) = &rec.noop {
            self.meta.conflicts += 1;
            self.meta.conflict_chain = conflict_next(&self.meta.conflict_chain, rec.id, *k);
        }
        let enc = rec.encode();
        let chain = chain_over(&self.head_chain(), &enc);
        self.bytes += enc.len();
        self.entries.push_back(Entry {
            rec,
            chain,
            prev_last,
            prev_meta,
            bytes: enc.len(),
        });
        while self.entries.len() > self.keep || self.bytes > self.keep_bytes {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= e.bytes;
            self.start += 1;
            self.start_chain = e.chain;
        }
    }

    /// Takes the last record off and returns it (none: nothing kept to take).
    pub fn pop(&mut self) -> Option<Record> {
        let e = self.entries.pop_back()?;
        self.bytes -= e.bytes;
        let o = e.rec.id.origin;
        if o == 0 {
            let k = (0, e.rec.id.inc);
            if e.rec.id.recno <= 1 {
                self.last.remove(&k);
            } else {
                self.last.insert(k, e.rec.id.recno - 1);
            }
        } else {
            match e.prev_last {
                Some(l) => self.origin_last.insert(o, l),
                None => self.origin_last.remove(&o),
            };
        }
        if let Some(c) = self.counts.get_mut(&o) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&o);
            }
        }
        self.meta = e.prev_meta;
        Some(e.rec)
    }
}

impl History {
    /// Appends what a node adopting a snapshot needs of this history (no records): the
    /// head, its chain, the origins' last numbers and counts, the meta.
    pub fn put_snapshot(&self, b: &mut Vec<u8>) {
        use bytes::BufMut;
        b.put_u64(self.head());
        b.extend_from_slice(&self.head_chain());
        b.put_u16(self.origin_last.len() as u16);
        for (o, (inc, recno)) in &self.origin_last {
            b.put_u32(*o);
            b.put_u32(*inc);
            b.put_u64(*recno);
        }
        b.put_u16(self.last.len() as u16);
        for ((o, inc), recno) in &self.last {
            b.put_u32(*o);
            b.put_u32(*inc);
            b.put_u64(*recno);
        }
        b.put_u16(self.counts.len() as u16);
        for (o, c) in &self.counts {
            b.put_u32(*o);
            b.put_u64(*c);
        }
        b.put_u64(self.meta.clock);
        b.put_u64(self.meta.conflicts);
        b.extend_from_slice(&self.meta.conflict_chain);
    }

    /// Reads what [`History::put_snapshot`] wrote: a history at that head with no records
    /// kept, keeping `keep` records and `keep_bytes` from now on.
    pub fn read_snapshot(
        r: &mut ringlab_ring::wire::Reader<'_>,
        keep: usize,
        keep_bytes: usize,
    ) -> Result<Self, ringlab_ring::wire::DecodeError> {
        const MAX_ORIGINS: usize = 4096;
        let start = r.u64("snapshot head")?;
        let start_chain: Chain = r.take(32, "snapshot chain")?.try_into().expect("32 bytes");
        let mut h = Self::new(keep, keep_bytes);
        h.start = start;
        h.start_chain = start_chain;
        for _ in 0..r.count("snapshot origins", MAX_ORIGINS)? {
            let o = r.u32("snapshot origin")?;
            let inc = r.u32("snapshot inc")?;
            h.origin_last.insert(o, (inc, r.u64("snapshot recno")?));
        }
        for _ in 0..r.count("snapshot tags", MAX_ORIGINS)? {
            let o = r.u32("snapshot origin")?;
            let inc = r.u32("snapshot inc")?;
            h.last.insert((o, inc), r.u64("snapshot recno")?);
        }
        for _ in 0..r.count("snapshot counts", MAX_ORIGINS)? {
            let o = r.u32("snapshot origin")?;
            h.counts.insert(o, r.u64("snapshot count")?);
        }
        h.meta.clock = r.u64("snapshot clock")?;
        h.meta.conflicts = r.u64("snapshot conflicts")?;
        h.meta.conflict_chain = r
            .take(32, "snapshot conflict chain")?
            .try_into()
            .expect("32");
        Ok(h)
    }
}

/// Returns the conflict chain after one more conflict.
fn conflict_next(prev: &Chain, id: RecId, kind: ConflictKind) -> Chain {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(id.origin.to_le_bytes());
    h.update(id.inc.to_le_bytes());
    h.update(id.recno.to_le_bytes());
    h.update(kind.as_str());
    h.finalize().into()
}
