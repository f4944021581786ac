//! The store's full copies in `ringlab run`: the fill before the faults, the watch over the
//! copy while it runs (its records, the half-way trigger and the provider, peak memory), the
//! raw single-flow baseline, and the copy's analysis ([`analyse_copy`]) from the requester's
//! `store_sync` records.
//!
//! What it guarantees:
//! - every wait is bounded: the fill by `store.fill_timeout_ms`, the half-way trigger and
//!   the copy by the repetition's end, the raw flow by its own 1 s of sending (at most
//!   [`FLOW_MAX_DATAGRAMS`](crate::raw::FLOW_MAX_DATAGRAMS)) and the receiver's deadline; a wait that runs out fails the
//!   repetition with a message that says what was awaited and what was seen;
//! - a trigger or a target that finds no record fails, never passes: [`copy_half`] and
//!   [`provider`] return `None` without a `chunk` record;
//! - the raw flow runs only between two of the run's own namespaces (`<prefix>-n<i>`, on the
//!   topology's bridge), its processes are the runner's children, waited for by PID.
//!
//! The copy's figures (all from the requester's records of the incarnation that started
//! with the empty store, its own clock):
//! - **copy seconds**: the first `start` to the `finish`; **MB/s**: the `finish` record's
//!   bytes (keys and values copied) over that time (10^6 bytes);
//! - **copy/raw**: the copy's MB/s over the mean of the raw flow before and after it;
//! - **resume ms**: the half-way step's fault record to the next `chunk` record that comes
//!   from another provider than the one the step targeted, or after a `start` or `resume`
//!   record that follows the fault (a chunk of the old provider applied just after the fault
//!   was on its way before it);
//! - **half after finish**: whether the half-way step fired after the copy's `finish` (the
//!   whole copy quicker than the trigger's poll and the fault's own delay);
//! - **bytes sent again**: the `finish` record's `resent_bytes` plus the bytes every
//!   `abort` record had loaded (they are fetched again from nothing);
//! - **peak memory**: the largest VmRSS (which includes redb's page cache) sampled every
//!   ~10 ms from the restart to the finish, of the requester and of the providers its
//!   records name; the transfer's most held bytes (`transfer_held_bytes` of `svc store
//!   status`, sampled every ~10 ms too) likewise.

use crate::experiment::StoreSetup;
use crate::summary::StoreCopy;
use anyhow::{bail, Context, Result};
use ringlab_net::control::Request;
use ringlab_net::harness::Cluster;
use ringlab_net::monotonic_ns;
use ringlab_records::{Body, Record};
use ringlab_ring::NodeId;
use ringlab_sync::store::service::Status;
use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most bytes one fill request writes (a node takes up to `max_fill_bytes`, 256 MiB by
/// default, of fill at once).
pub const FILL_REQUEST_BYTES: u64 = 128 << 20;

const MS: u64 = 1_000_000;

/// Returns node `id`'s `svc store status`.
pub fn status(c: &Cluster, id: NodeId) -> Result<Status> {
    Ok(c.call::<Status>(
        id,
        &Request::Svc {
            service: "store".into(),
            request: serde_json::json!({"op": "status"}),
        },
    )?)
}

/// What the fill made.
#[derive(Clone, Debug, Default)]
pub struct Filled {
    /// Keys written.
    pub keys: u64,
    /// Bytes of keys and values in node 1's store after the fill (its `status`).
    pub bytes: u64,
    /// Seconds from the first request to every node at the fill's version.
    pub seconds: f64,
}

/// Fills the store through node 1 (`svc store fill`, requests of at most
/// [`FILL_REQUEST_BYTES`], each waited for) until every node in `nodes` shows a version of
/// at least the number of keys; fails past `setup.fill_timeout_ms` or when `interrupted`.
pub fn fill(
    c: &Cluster,
    setup: &StoreSetup,
    nodes: &[NodeId],
    interrupted: &dyn Fn() -> bool,
) -> Result<Filled> {
    let keys = setup.keys();
    let per = (FILL_REQUEST_BYTES / setup.value_size as u64).max(1);
    let t0 = monotonic_ns();
    let deadline = t0 + setup.fill_timeout_ms() * MS;
    let mut from = 0u64;
    while from < keys {
        let n = per.min(keys - from);
        c.call::<serde_json::Value>(
            1,
            &Request::Svc {
                service: "store".into(),
                request: serde_json::json!({
                    "op": "fill", "keys": n, "size": setup.value_size, "from": from
                }),
            },
        )
        .with_context(|| format!("svc store fill of keys {from}..{}", from + n))?;
        from += n;
        loop {
            let versions: Vec<(NodeId, Option<u64>)> = nodes
                .iter()
                .map(|&i| (i, status(c, i).ok().map(|s| s.version)))
                .collect();
            if versions.iter().all(|(_, v)| v.is_some_and(|v| v >= from)) {
                break;
            }
            if interrupted() {
                bail!("interrupted");
            }
            if monotonic_ns() >= deadline {
                bail!(
                    "the store's fill of {keys} keys did not reach every node within {} ms \
                     (store.fill_timeout_ms): versions {versions:?}, waiting for {from}",
                    setup.fill_timeout_ms()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let seconds = (monotonic_ns() - t0) as f64 / 1e9;
    let bytes = status(c, 1)?.bytes;
    Ok(Filled {
        keys,
        bytes,
        seconds,
    })
}

/// Returns the provider and bytes of the latest `chunk` record among `recs` (the
/// requester's `store_sync` records, in order).
fn latest_chunk(recs: &[Record]) -> Option<(NodeId, u64)> {
    recs.iter().rev().find_map(|r| match &r.body {
        Body::StoreSync {
            phase,
            provider,
            bytes,
            ..
        } if phase == "chunk" => Some((*provider, *bytes)),
        _ => None,
    })
}

/// Returns the copy's provider now: the latest `chunk` record's (none before the first).
pub fn provider(recs: &[Record]) -> Option<NodeId> {
    latest_chunk(recs).map(|(p, _)| p)
}

/// The half-way trigger: returns the provider of the latest `chunk` record when that record
/// shows at least half of `store_bytes`; none otherwise (no chunk record yet included).
pub fn copy_half(recs: &[Record], store_bytes: u64) -> Option<NodeId> {
    latest_chunk(recs)
        .filter(|&(_, b)| b.saturating_mul(2) >= store_bytes)
        .map(|(p, _)| p)
}

/// Watches the copy to one requester while the schedule runs: reads its record file as it
/// grows, and samples memory.
#[derive(Debug)]
pub struct CopyWatch {
    /// The requester.
    pub requester: NodeId,
    /// Its incarnation since the restart with the empty store.
    pub inc: u32,
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// Its `store_sync` records of that incarnation, in order.
    pub records: Vec<Record>,
    /// Largest VmRSS seen per node, KiB.
    pub rss_kib: BTreeMap<NodeId, u64>,
    /// Largest `transfer_held_bytes` seen per node.
    pub held_bytes: BTreeMap<NodeId, u64>,
    last_status_ns: u64,
}

impl CopyWatch {
    /// Starts watching the copy to `requester` (incarnation `inc`), whose records go to
    /// `path`; the records written before are skipped by their incarnation.
    pub fn new(requester: NodeId, inc: u32, path: PathBuf) -> Self {
        Self {
            requester,
            inc,
            path,
            offset: 0,
            partial: Vec::new(),
            records: Vec::new(),
            rss_kib: BTreeMap::new(),
            held_bytes: BTreeMap::new(),
            last_status_ns: 0,
        }
    }

    /// Returns whether the copy's `finish` record is in.
    pub fn finished(&self) -> bool {
        self.records
            .iter()
            .any(|r| matches!(&r.body, Body::StoreSync { phase, .. } if phase == "finish"))
    }

    /// Reads what the requester wrote since the last call, and, until the copy finished,
    /// samples every running node's VmRSS and its held bytes.
    pub fn poll(&mut self, c: &mut Cluster, nodes: &[NodeId]) -> Result<()> {
        self.read_new()?;
        if self.finished() {
            return Ok(());
        }
        let now = monotonic_ns();
        let statuses = now >= self.last_status_ns + 10 * MS;
        if statuses {
            self.last_status_ns = now;
        }
        for &n in nodes {
            if !c.is_running(n) {
                continue;
            }
            if let Some(kib) = rss_kib(c.pid(n)) {
                let e = self.rss_kib.entry(n).or_default();
                *e = (*e).max(kib);
            }
            if statuses {
                if let Ok(s) = status(c, n) {
                    let e = self.held_bytes.entry(n).or_default();
                    *e = (*e).max(s.transfer_held_bytes);
                }
            }
        }
        Ok(())
    }

    /// Reads the complete lines appended to the record file since the last read, keeping
    /// the requester's `store_sync` records of its incarnation.
    fn read_new(&mut self) -> Result<()> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(64 << 20).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let rest = self.partial.split_off(end + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        for line in whole.split(|&b| b == b'\n') {
            if !line.windows(12).any(|w| w == b"\"store_sync\"") {
                continue;
            }
            if let Ok(r) = serde_json::from_slice::<Record>(line) {
                if r.node == self.requester && r.inc == self.inc {
                    self.records.push(r);
                }
            }
        }
        Ok(())
    }
}

/// Returns process `pid`'s resident memory now, KiB.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    ringlab_net::control::MemoryKib::of(&pid?.to_string()).rss
}

/// What the runner knows of one repetition's copy, beside the records, for
/// [`analyse_copy`].
#[derive(Clone, Debug, Default)]
pub struct CopyFacts {
    /// The requester.
    pub requester: NodeId,
    /// Its incarnation since the restart with the empty store.
    pub inc: u32,
    /// The fill.
    pub keys: u64,
    /// Bytes of node 1's store after the fill.
    pub store_bytes: u64,
    /// The fill's seconds.
    pub fill_seconds: f64,
    /// The half-way step's fault record time, if a step fired half-way.
    pub half_ns: Option<u64>,
    /// The provider that step targeted, if it named one.
    pub half_provider: Option<NodeId>,
    /// Raw single flow before and after the repetition, bytes/s.
    pub raw_before: Option<f64>,
    /// After.
    pub raw_after: Option<f64>,
    /// Largest VmRSS per node, KiB.
    pub rss_kib: BTreeMap<NodeId, u64>,
    /// Largest held bytes per node.
    pub held_bytes: BTreeMap<NodeId, u64>,
    /// Whether every live node's store digest and version were equal at the end (none: not
    /// read).
    pub digests_equal: Option<bool>,
}

/// One `store_sync` record of the requester, as the analysis reads it.
struct SyncRec<'a> {
    t: u64,
    phase: &'a str,
    provider: NodeId,
    bytes: u64,
    resent: u64,
    design: Option<&'a str>,
    path: &'a str,
}

/// Computes the copy's figures (see the module docs) from the run's records.
pub fn analyse_copy(records: &[Record], f: &CopyFacts) -> StoreCopy {
    let mut recs: Vec<SyncRec> = records
        .iter()
        .filter(|r| r.node == f.requester && r.inc == f.inc)
        .filter_map(|r| match &r.body {
            Body::StoreSync {
                phase,
                provider,
                bytes,
                resent_bytes,
                design,
                path,
                ..
            } => Some(SyncRec {
                t: r.t_ns,
                phase,
                provider: *provider,
                bytes: *bytes,
                resent: resent_bytes.unwrap_or(0),
                design: design.as_deref(),
                path,
            }),
            _ => None,
        })
        .collect();
    recs.sort_by_key(|x| x.t);
    let start = recs.iter().find(|x| x.phase == "start");
    let finish = recs.iter().find(|x| x.phase == "finish");
    let copy_s = match (start, finish) {
        (Some(s), Some(e)) if e.t > s.t => Some((e.t - s.t) as f64 / 1e9),
        _ => None,
    };
    let copied_bytes = finish.map_or(0, |x| x.bytes);
    let copy_mb_per_s = copy_s.map(|s| copied_bytes as f64 / s / 1e6);
    let raw = match (f.raw_before, f.raw_after) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    };
    let mut providers: Vec<NodeId> = Vec::new();
    for x in &recs {
        if x.provider != 0 && !providers.contains(&x.provider) {
            providers.push(x.provider);
        }
    }
    // The copy going on after the half-way fault: the first chunk from another provider
    // than the one the fault targeted, or any chunk of a piece started or resumed after it
    // (chunks of the old provider still in flight at the fault do not count).
    let resume_ms = f.half_ns.and_then(|h| {
        let mut again = false;
        recs.iter().filter(|x| x.t > h).find_map(|x| {
            again |= x.phase == "start" || x.phase == "resume";
            let other = f.half_provider != Some(x.provider);
            (x.phase == "chunk" && (again || other)).then(|| (x.t - h) as f64 / 1e6)
        })
    });
    let of = |m: &BTreeMap<NodeId, u64>| {
        providers
            .iter()
            .filter_map(|p| m.get(p))
            .copied()
            .max()
            .unwrap_or(0)
    };
    let (rss_providers, held_providers) = (of(&f.rss_kib), of(&f.held_bytes));
    StoreCopy {
        requester: f.requester,
        path: recs.first().map_or(String::new(), |x| x.path.to_string()),
        design: recs.iter().find_map(|x| x.design.map(String::from)),
        keys: f.keys,
        store_bytes: f.store_bytes,
        fill_s: f.fill_seconds,
        finished: finish.is_some(),
        copy_s,
        copied_bytes,
        copy_mb_per_s,
        raw_before_mb_per_s: f.raw_before.map(|r| r / 1e6),
        raw_after_mb_per_s: f.raw_after.map(|r| r / 1e6),
        copy_over_raw: copy_mb_per_s.zip(raw).map(|(c, r)| c * 1e6 / r),
        providers,
        resume_ms,
        half_after_finish: f.half_ns.map(|h| finish.is_some_and(|x| x.t < h)),
        resent_bytes: finish.map_or(0, |x| x.resent)
            + recs
                .iter()
                .filter(|x| x.phase == "abort")
                .map(|x| x.bytes)
                .sum::<u64>(),
        resumes: recs.iter().filter(|x| x.phase == "resume").count() as u64,
        aborts: recs.iter().filter(|x| x.phase == "abort").count() as u64,
        rss_kib_max_requester: f.rss_kib.get(&f.requester).copied().unwrap_or(0),
        rss_kib_max_providers: rss_providers,
        held_bytes_max_requester: f.held_bytes.get(&f.requester).copied().unwrap_or(0),
        held_bytes_max_providers: held_providers,
        digests_equal: f.digests_equal,
    }
}

/// Returns whether every status (of the live nodes) has one version and one digest; none
/// for an empty list.
pub fn digests_equal(statuses: &[Status]) -> Option<bool> {
    let first = statuses.first()?;
    Some(
        statuses
            .iter()
            .all(|s| s.version == first.version && s.digest == first.digest),
    )
}

/// Measures raw UDP of one flow from node `from`'s namespace to node `to`'s (the run's
/// topology of `prefix`), datagrams of `size` bytes for 1 s: a fan-out to one receiver
/// ([`crate::raw::fanout`]); returns the receiver's bytes over the sender's seconds.
pub fn raw_flow(binary: &Path, prefix: &str, from: NodeId, to: NodeId, size: usize) -> Result<f64> {
    let f = crate::raw::fanout(
        binary,
        prefix,
        from,
        &[to],
        size,
        crate::raw::RawTransport::Unicast,
        1.0,
    )?;
    Ok(f.per_receiver_mb_per_s * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(t: u64, inc: u32, phase: &str, provider: NodeId, bytes: u64, resent: u64) -> Record {
        Record {
            t_ns: t,
            node: 5,
            inc,
            body: Body::StoreSync {
                phase: phase.into(),
                path: "unicast".into(),
                design: Some("pull".into()),
                last_key: None,
                chunks: None,
                resent_bytes: Some(resent),
                provider,
                version: 100,
                bytes,
                keys: bytes / 1000,
            },
        }
    }

    #[test]
    fn the_half_way_trigger_and_the_provider_come_from_the_latest_chunk() {
        // No record, or only a start: nothing fires and no provider is named.
        assert_eq!(copy_half(&[], 1000), None);
        assert_eq!(provider(&[]), None);
        let start = sync(1, 2, "start", 2, 0, 0);
        assert_eq!(copy_half(std::slice::from_ref(&start), 1000), None);
        assert_eq!(provider(std::slice::from_ref(&start)), None);
        let mut recs = vec![start, sync(2, 2, "chunk", 2, 400, 0)];
        assert_eq!(provider(&recs), Some(2));
        assert_eq!(copy_half(&recs, 1000), None, "400 of 1000 is not half");
        recs.push(sync(3, 2, "chunk", 3, 500, 0));
        assert_eq!(copy_half(&recs, 1000), Some(3), "exactly half fires");
        assert_eq!(copy_half(&recs, 1001), None);
        // A later resume record does not hide the chunk before it.
        recs.push(sync(4, 2, "resume", 4, 500, 0));
        assert_eq!(provider(&recs), Some(3));
    }

    #[test]
    fn the_copy_is_analysed_from_the_requesters_records() {
        let ms = 1_000_000;
        let records = vec![
            // The previous incarnation's copy and another node's records are not this copy.
            sync(0, 1, "start", 9, 0, 0),
            Record {
                node: 4,
                ..sync(10 * ms, 2, "finish", 1, 1, 0)
            },
            sync(100 * ms, 2, "start", 2, 0, 0),
            sync(300 * ms, 2, "chunk", 2, 2_000_000, 0),
            sync(500 * ms, 2, "chunk", 2, 5_000_000, 0),
            // The provider is killed at 600 ms; a chunk it sent before is applied after;
            // then an abort that had loaded 6 MB, and a restart elsewhere.
            sync(610 * ms, 2, "chunk", 2, 6_000_000, 0),
            sync(1_600 * ms, 2, "abort", 2, 6_000_000, 0),
            sync(1_700 * ms, 2, "start", 3, 0, 0),
            sync(1_900 * ms, 2, "chunk", 3, 1_000_000, 0),
            sync(2_000 * ms, 2, "resume", 1, 1_000_000, 0),
            sync(3_100 * ms, 2, "finish", 1, 10_000_000, 300_000),
        ];
        let facts = CopyFacts {
            requester: 5,
            inc: 2,
            keys: 10_000,
            store_bytes: 10_000_000,
            fill_seconds: 4.0,
            half_ns: Some(600 * ms),
            half_provider: Some(2),
            raw_before: Some(90e6),
            raw_after: Some(110e6),
            rss_kib: [
                (1, 30_000),
                (2, 20_000),
                (3, 25_000),
                (4, 99_000),
                (5, 40_000),
            ]
            .into(),
            held_bytes: [(2, 7), (3, 9), (5, 11)].into(),
            digests_equal: Some(true),
        };
        let c = analyse_copy(&records, &facts);
        assert_eq!(c.copy_s, Some(3.0));
        assert_eq!(c.copied_bytes, 10_000_000);
        let mbs = c.copy_mb_per_s.unwrap();
        assert!((mbs - 10.0 / 3.0).abs() < 1e-9, "{mbs}");
        assert_eq!(c.raw_before_mb_per_s, Some(90.0));
        assert_eq!(c.raw_after_mb_per_s, Some(110.0));
        assert!((c.copy_over_raw.unwrap() - mbs / 100.0).abs() < 1e-12);
        assert_eq!(c.providers, [2, 3, 1]);
        assert_eq!(
            c.resume_ms,
            Some(1_300.0),
            "the kill to the next chunk elsewhere"
        );
        assert_eq!(c.resent_bytes, 6_300_000);
        assert_eq!((c.resumes, c.aborts), (1, 1));
        assert_eq!(c.rss_kib_max_requester, 40_000);
        assert_eq!(c.rss_kib_max_providers, 30_000, "node 4 provided nothing");
        assert_eq!(
            (c.held_bytes_max_requester, c.held_bytes_max_providers),
            (11, 9)
        );
        assert_eq!(c.design.as_deref(), Some("pull"));
        assert_eq!(c.path, "unicast");
        assert!(c.finished);
        assert_eq!(c.digests_equal, Some(true));
        // Without the target, the next chunk at all; a resume at the same provider counts.
        let any = analyse_copy(
            &records,
            &CopyFacts {
                half_provider: None,
                ..facts.clone()
            },
        );
        assert_eq!(any.resume_ms, Some(10.0));
        let same = [
            sync(100 * ms, 2, "start", 2, 0, 0),
            sync(700 * ms, 2, "chunk", 2, 6_000_000, 0),
            sync(2_500 * ms, 2, "resume", 2, 6_000_000, 0),
            sync(2_600 * ms, 2, "chunk", 2, 7_000_000, 0),
        ];
        let c = analyse_copy(&same, &facts);
        assert_eq!(c.resume_ms, Some(2_000.0), "the chunk after the resume");
    }

    #[test]
    fn a_copy_without_its_records_is_unfinished_with_no_rate() {
        let facts = CopyFacts {
            requester: 5,
            inc: 2,
            half_ns: Some(5),
            raw_before: Some(1e6),
            ..Default::default()
        };
        let c = analyse_copy(&[], &facts);
        assert!(!c.finished);
        assert_eq!(
            (c.copy_s, c.copy_mb_per_s, c.copy_over_raw),
            (None, None, None)
        );
        assert_eq!(
            c.resume_ms, None,
            "no chunk after the fault: no resume time"
        );
        // A start without a finish is no copy either.
        let c = analyse_copy(&[sync(1, 2, "start", 2, 0, 0)], &facts);
        assert!(!c.finished);
        assert_eq!(c.copy_s, None);
    }

    #[test]
    fn digests_are_equal_only_when_every_version_and_digest_is() {
        let st = |v: u64, d: &str| Status {
            ok: true,
            version: v,
            digest: d.into(),
            keys: 0,
            bytes: 0,
            standing: "serving".into(),
            primary: true,
            not_applied: 0,
            transfer: Default::default(),
            transfer_held_bytes: 0,
        };
        assert_eq!(digests_equal(&[]), None);
        assert_eq!(digests_equal(&[st(3, "a"), st(3, "a")]), Some(true));
        assert_eq!(digests_equal(&[st(3, "a"), st(3, "b")]), Some(false));
        assert_eq!(digests_equal(&[st(3, "a"), st(4, "a")]), Some(false));
    }

    #[test]
    fn the_watch_reads_only_whole_lines_of_the_requesters_incarnation() {
        use std::io::Write as _;
        let path = std::env::temp_dir().join(format!("ringlab-watch-{}.jsonl", std::process::id()));
        let line = |r: &Record| {
            let mut b = Vec::new();
            ringlab_records::encode_line(r, &mut b);
            b
        };
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&line(&sync(1, 1, "chunk", 2, 9, 0))).unwrap();
        let torn = line(&sync(2, 2, "chunk", 3, 700, 0));
        f.write_all(&torn[..torn.len() / 2]).unwrap();
        let mut w = CopyWatch::new(5, 2, path.clone());
        w.read_new().unwrap();
        assert!(w.records.is_empty(), "an old incarnation and half a line");
        f.write_all(&torn[torn.len() / 2..]).unwrap();
        f.write_all(&line(&sync(3, 2, "finish", 3, 1000, 0)))
            .unwrap();
        w.read_new().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(w.records.len(), 2);
        assert_eq!(copy_half(&w.records, 1400), Some(3));
        assert!(w.finished());
    }
}
