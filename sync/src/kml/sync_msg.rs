//! The kml service's sync messages: `Have` (every member: where its history stands, its
//! recent sync points, and the runs of another side's records it already holds from an
//! interrupted reintegration) and `Tail` (a side's representative: its records after a
//! position). Versioned, bounded, read with the one [`Reader`].

use super::history::Chain;
use super::record::{Record, KML_VERSION};
use bytes::{BufMut, Bytes};
use ringlab_ring::pack::MESSAGE_MAX;
use ringlab_ring::wire::{put_blob, DecodeError, Reader};

/// The most sync points a `Have` carries.
pub const MAX_POINTS: usize = 64;
/// The most runs a `Have` carries.
pub const MAX_RUNS: usize = 64;
/// The most records a `Tail` carries.
pub const MAX_TAIL_RECORDS: usize = 4096;
/// The largest record in a `Tail` (bytes).
pub const MAX_RECORD: usize = 256 * 1024;
/// The most record bytes a sender puts in one `Tail`.
pub const TAIL_BYTES: usize = MESSAGE_MAX / 2;

const HAVE: u8 = 1;
const TAIL: u8 = 2;
const SNAP: u8 = 3;
/// The most parts of a snapshot (4 GiB in parts of half a ring message).
pub const MAX_SNAP_PARTS: u32 = 8192;

/// A position of a history and its chain there.
pub type Point = (u64, Chain);

/// A run of another side's records held from an interrupted reintegration: from `start` to
/// `end`, with the chains there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunMark {
    /// Where it starts.
    pub start: Point,
    /// Where it ends.
    pub end: Point,
}

/// One sync message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KmlSync {
    /// Where a member stands.
    Have {
        /// Its history's head.
        head: Point,
        /// The first position it can send records from.
        start: u64,
        /// Its recent sync points (positions where a whole configuration agreed), oldest
        /// first.
        points: Vec<Point>,
        /// Runs it holds.
        runs: Vec<RunMark>,
    },
    /// One part of the permit side's snapshot (its whole state), when its history no longer
    /// reaches back far enough.
    Snap {
        /// Which part, from 0.
        index: u32,
        /// How many.
        total: u32,
        /// Its bytes.
        data: Bytes,
    },
    /// Records of the sender's side after `from`.
    Tail {
        /// Where they start.
        from: Point,
        /// The records.
        records: Vec<Record>,
    },
}

fn put_point(b: &mut Vec<u8>, p: &Point) {
    b.put_u64(p.0);
    b.extend_from_slice(&p.1);
}

fn read_point(r: &mut Reader<'_>, field: &'static str) -> Result<Point, DecodeError> {
    let pos = r.u64(field)?;
    let chain: Chain = r.take(32, field)?.try_into().expect("32 bytes");
    Ok((pos, chain))
}

impl KmlSync {
    /// Returns its encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![KML_VERSION];
        match self {
            Self::Have {
                head,
                start,
                points,
                runs,
            } => {
                b.push(HAVE);
                put_point(&mut b, head);
                b.put_u64(*start);
                b.put_u16(points.len() as u16);
                for p in points {
                    put_point(&mut b, p);
                }
                b.put_u16(runs.len() as u16);
                for r in runs {
                    put_point(&mut b, &r.start);
                    put_point(&mut b, &r.end);
                }
            }
            Self::Snap { index, total, data } => {
                b.push(SNAP);
                b.put_u32(*index);
                b.put_u32(*total);
                put_blob(&mut b, data);
            }
            Self::Tail { from, records } => {
                b.push(TAIL);
                put_point(&mut b, from);
                b.put_u16(records.len() as u16);
                for r in records {
                    put_blob(&mut b, &r.encode());
                }
            }
        }
        b
    }

    /// Decodes exactly one message.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8("kml sync version")? != KML_VERSION {
            return Err(DecodeError::Invalid("kml sync version"));
        }
        let m = match r.u8("kml sync kind")? {
            HAVE => {
                let head = read_point(&mut r, "have head")?;
                let start = r.u64("have start")?;
                if start > head.0 {
                    return Err(DecodeError::Invalid("have start"));
                }
                let n = r.count("have points", MAX_POINTS)?;
                let points = (0..n)
                    .map(|_| read_point(&mut r, "have point"))
                    .collect::<Result<Vec<_>, _>>()?;
                let n = r.count("have runs", MAX_RUNS)?;
                let mut runs = Vec::with_capacity(n);
                for _ in 0..n {
                    let start = read_point(&mut r, "run start")?;
                    let end = read_point(&mut r, "run end")?;
                    if end.0 < start.0 {
                        return Err(DecodeError::Invalid("run end"));
                    }
                    runs.push(RunMark { start, end });
                }
                Self::Have {
                    head,
                    start,
                    points,
                    runs,
                }
            }
            SNAP => {
                let index = r.u32("snap index")?;
                let total = r.u32("snap total")?;
                if total == 0 || total > MAX_SNAP_PARTS || index >= total {
                    return Err(DecodeError::Invalid("snap part"));
                }
                let data = Bytes::copy_from_slice(r.blob("snap data", TAIL_BYTES)?);
                Self::Snap { index, total, data }
            }
            TAIL => {
                let from = read_point(&mut r, "tail from")?;
                let n = r.count("tail records", MAX_TAIL_RECORDS)?;
                let mut records = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    records.push(Record::decode(r.blob("tail record", MAX_RECORD)?)?);
                }
                Self::Tail { from, records }
            }
            _ => return Err(DecodeError::Invalid("kml sync kind")),
        };
        match r.remaining() {
            0 => Ok(m),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}
