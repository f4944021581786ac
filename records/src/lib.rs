//! Event records: the JSON-lines contract every node writes, simulated or real, and that the
//! checker, the analysis and outside tools read. This crate is the one place that defines,
//! writes and reads them.
//!
//! Every record has `t_ns` (monotonic ns), `node`, `inc` (incarnation) and `ev`, the kind.
//! Kinds: `state`, `config`, `send`, `deliver` (from the ring's events), `sync` (the sync
//! engine), `crash` (written by a simulator or runner when it kills a node; a killed process
//! cannot write it itself), `stop` (written by a node that quits with some of its own
//! messages undelivered), and `fault` (a fault applied by a simulator or runner, with
//! `node` 0). Fields are added freely; none is ever renamed or dropped.
//!
//! - [`Writer`]: one record per line, buffered; every failure is counted and the first one
//!   logged with its cause ([`WriterStats`]). Opening a file to append cuts off a torn last
//!   line a killed writer left, so a torn line is only ever a file's last.
//! - [`read_file`] / [`read_paths`]: the one rule for a torn last line: a last line without
//!   its newline that does not parse is the end of the record (reported as torn, never an
//!   error); any other line that does not parse is an error naming the file and line.
//! - [`find_runs`]: the runs under a path, each a directory of record files (a simulator
//!   seed, a runner repetition), to be judged one by one; a run directory without records is
//!   returned empty so that a reader can refuse it.
//! - [`write_run`]: a simulated run's records, one file per node incarnation.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use ringlab_ring::event::{ConfigChange, ConfigKind, Delivery, Event, MembState, Reason};
use ringlab_ring::pack::MsgId;
use ringlab_ring::wire::{NodeId, RingId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One line of a node's event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Monotonic time, ns.
    pub t_ns: u64,
    /// Node id (0 for records of the harness).
    pub node: NodeId,
    /// Incarnation of the node.
    pub inc: u32,
    /// What happened.
    #[serde(flatten)]
    pub body: Body,
}

/// The kind-specific part of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Body {
    /// A membership state change.
    State {
        /// Previous state.
        from: MembState,
        /// New state.
        to: MembState,
        /// Why.
        reason: Reason,
    },
    /// A configuration delivered to the application.
    Config {
        /// Transitional or regular.
        kind: ConfigKind,
        /// The ring.
        ring: RingId,
        /// Members.
        members: Vec<NodeId>,
        /// Members of the previous configuration not in this one.
        left: Vec<NodeId>,
        /// Members not in the transitional configuration before it.
        joined: Vec<NodeId>,
    },
    /// The application submitted a message.
    Send {
        /// Its id.
        id: MsgId,
        /// Its length.
        len: usize,
        /// Safe or agreed.
        safe: bool,
    },
    /// A message delivered in total order.
    Deliver {
        /// Its id.
        id: MsgId,
        /// The ring that ordered it.
        ring: RingId,
        /// Its seq there.
        seq: u64,
        /// Its length.
        len: usize,
        /// Delivered as safe.
        safe: bool,
        /// Submit time at the sender.
        sent_t_ns: u64,
    },
    /// A step of the sync engine: phase `start`, `service_done`, `conflict`, `done` or `abort`.
    Sync {
        /// The phase.
        phase: String,
        /// The ring the sync is for.
        ring: RingId,
        /// The service, where the phase concerns one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<u16>,
        /// Sync bytes delivered (for `service_done` and `done`).
        #[serde(default)]
        bytes: u64,
        /// What a service decided (for `conflict`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The node's process was killed; its state is lost.
    Crash {},
    /// The node stopped on request (`quit`) while some of its own messages were still not
    /// delivered to it (written by the node itself, its last record): for self delivery
    /// the checker treats the incarnation as failed, as after a crash.
    Stop {
        /// Its own messages sent and not delivered to it when it stopped.
        #[serde(default)]
        undelivered: u64,
    },
    /// A fault applied by the harness.
    Fault {
        /// What was done: isolate, split, heal, crash, restart, pause, resume, ...
        action: String,
        /// The nodes it targeted.
        targets: Vec<NodeId>,
        /// For a split: the groups, each of which can reach only itself.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<Vec<NodeId>>,
    },
    /// A resource of a group being started or stopped on this node (the resources service),
    /// in the configuration `ring`. `starting` and `stopping` when its command begins;
    /// `start`, `start_failed`, `stop` or `stop_failed` when it ends. The group is held from
    /// its first `starting` to its last `stop`.
    Resource {
        /// `starting`, `start`, `start_failed`, `stopping`, `stop` or `stop_failed`.
        action: String,
        /// The group.
        name: String,
        /// The ring this node was in when it acted.
        ring: RingId,
        /// The group's home node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        home: Option<NodeId>,
        /// Why a stop: `move` (placement), `quorum` (left the primary component), `fence`
        /// (out of any ring too long), `conflict` (two holders met), `start_failed` (clean-up
        /// after a failed start), `quit` (the node leaves).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The resource of the group the command is for (a group starts its resources in
        /// order and stops them in reverse).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
        /// How long the command took (µs), on `start`, `stop` and their failures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cmd_us: Option<u64>,
        /// A failed command's exit status (none: killed, timed out or could not run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit: Option<i32>,
        /// Why a command failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A full transfer of the store to this node (the store service): `start` when it
    /// begins, `chunk` for a chunk applied (sampled), `resume` when it goes on from its last
    /// key at another provider, `finish` when the copy is whole and caught up, `abort` when
    /// it is given up (it starts again from nothing).
    StoreSync {
        /// `start`, `chunk`, `resume`, `finish` or `abort`.
        phase: String,
        /// How it travels: `unicast` (the chunk protocol, point to point) or `ring`
        /// (multicast during the sync).
        path: String,
        /// The chunk protocol's design, `push` or `pull` (the unicast path).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        design: Option<String>,
        /// The last key received so far (lossy UTF-8), where a resume goes on from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_key: Option<String>,
        /// Chunks received so far (the unicast path).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chunks: Option<u64>,
        /// Bytes received again: chunks or parts of chunks that had arrived before
        /// (a CRC failure, a restart), so far (the unicast path).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resent_bytes: Option<u64>,
        /// The node it comes from.
        provider: NodeId,
        /// The version it brings the store to.
        version: u64,
        /// Bytes of keys and values received so far.
        bytes: u64,
        /// Keys received so far.
        keys: u64,
    },
    /// The store's version and digest (the store service), at every completed sync where
    /// the node serves.
    Store {
        /// The version: writes applied.
        version: u64,
        /// The digest of the contents (hex).
        digest: String,
    },
    /// A step of the modification log's reintegration (the `kml` service).
    Kml {
        /// `reint_start`, `conflict`, `undo`, `reint_done`, `abort`, or `warning` (a record
        /// whose number is not the one expected from its origin: reported, not applied).
        phase: String,
        /// The origin of the record concerned (0 where none).
        origin: NodeId,
        /// Its number (0 where none).
        recno: u64,
        /// The conflict's kind (`name_name`, `update_update`, `update_delete`,
        /// `delete_update`, `rename_rename`), on `conflict` records.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        /// The path concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// Records concerned: on `reint_start` those to reintegrate, on `reint_done` those
        /// applied, on `undo` those undone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        records: Option<u64>,
        /// Conflicts found (`reint_done`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conflicts: Option<u64>,
        /// What happened, in words (`warning`, `abort`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The fileset after each completed sync (the `kml` service).
    Fileset {
        /// The ring whose sync completed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ring: Option<RingId>,
        /// The digest of the whole fileset (hex).
        digest: String,
        /// Records in its history.
        records: u64,
        /// The digest of what a real directory shows of it (hex): names, kinds, contents,
        /// links, permission bits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree: Option<String>,
        /// The digest of its conflict list (hex): every conflict in the order found.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conflicts: Option<String>,
        /// Conflicts in its history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        conflict_count: Option<u64>,
        /// Per origin (as a string key), `[recno, count]`: its last record number and how
        /// many of its records the history holds (equal: no gap).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        origins: BTreeMap<String, [u64; 2]>,
        /// The digest of the node's real directory (hex), where a real node mirrors it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mirror: Option<String>,
    },
    /// Whether this node's component is primary (the resources service), at every regular
    /// configuration.
    Quorum {
        /// Whether the component may hold resources.
        primary: bool,
        /// The ring.
        ring: RingId,
        /// Its members.
        members: Vec<NodeId>,
        /// Every configured resource group (what the checker expects to be held).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<String>,
        /// How long (ms) after its sync completes a primary component must have placed every
        /// group it can (the takeover delay plus the start and stop timeouts and a margin);
        /// absent where the policy promises none (`heartbeat2000`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settle_ms: Option<u64>,
    },
}

impl Body {
    /// Returns the record body for a ring event.
    pub fn from_event(e: &Event) -> Self {
        match e {
            Event::State { from, to, reason } => Self::State {
                from: *from,
                to: *to,
                reason: *reason,
            },
            Event::Config(ConfigChange {
                kind,
                ring_id,
                members,
                left,
                joined,
            }) => Self::Config {
                kind: *kind,
                ring: *ring_id,
                members: members.clone(),
                left: left.clone(),
                joined: joined.clone(),
            },
            Event::Deliver(Delivery {
                id,
                ring_id,
                seq,
                safe,
                sent_t_ns,
                data,
            }) => Self::Deliver {
                id: *id,
                ring: *ring_id,
                seq: *seq,
                len: data.len(),
                safe: *safe,
                sent_t_ns: *sent_t_ns,
            },
        }
    }
}

/// Appends `r` as one JSON line (with its newline) to `buf`: the bytes every writer writes.
pub fn encode_line(r: &Record, buf: &mut Vec<u8>) {
    serde_json::to_writer(&mut *buf, r).expect("a record always serialises");
    buf.push(b'\n');
}

/// Why a record could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Opening or preparing the file failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing or flushing failed.
    #[error("writing event records: {0}")]
    Io(#[from] std::io::Error),
}

/// What a writer did: records written, writes that failed, and the first failure's cause.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterStats {
    /// Records handed to the file (buffered or written).
    pub written: u64,
    /// Writes and flushes that failed.
    pub failed: u64,
    /// The first failure, as it was logged.
    pub first_error: Option<String>,
}

/// Writes records, one JSON line each, through a buffer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: BufWriter<W>,
    line: Vec<u8>,
    stats: WriterStats,
}

impl Writer<File> {
    /// Opens `path` for appending, creating it; a torn last line (no newline: its writer was
    /// killed mid-write) is cut off first, and said in the log.
    pub fn append(path: &Path) -> Result<Self, WriteError> {
        let open = |source| WriteError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut f = File::options()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(open)?;
        let whole = whole_lines_len(&mut f).map_err(open)?;
        let len = f.metadata().map_err(open)?.len();
        if whole < len {
            tracing::warn!(
                file = %path.display(),
                bytes = len - whole,
                "cut off a torn last event record before appending"
            );
            f.set_len(whole).map_err(open)?;
        }
        Ok(Self::new(f))
    }

    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, WriteError> {
        File::create(path)
            .map(Self::new)
            .map_err(|source| WriteError::Open {
                path: path.to_path_buf(),
                source,
            })
    }
}

/// Returns the length of `f` up to and including its last newline.
fn whole_lines_len(f: &mut File) -> std::io::Result<u64> {
    let len = f.metadata()?.len();
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl<W: Write> Writer<W> {
    /// Wraps `w` in a 64 KiB buffer.
    pub fn new(w: W) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 16, w),
            line: Vec::with_capacity(256),
            stats: WriterStats::default(),
        }
    }

    /// Writes one record; a failure is counted (and the first one logged) before it is
    /// returned.
    pub fn write(&mut self, r: &Record) -> Result<(), WriteError> {
        self.line.clear();
        encode_line(r, &mut self.line);
        let res = self.out.write_all(&self.line);
        self.note(res)?;
        self.stats.written += 1;
        Ok(())
    }

    /// Flushes the buffer to the file; a failure is counted as [`Writer::write`] counts it.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        let res = self.out.flush();
        self.note(res)
    }

    /// Returns what this writer did.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    fn note(&mut self, res: std::io::Result<()>) -> Result<(), WriteError> {
        if let Err(e) = res {
            self.stats.failed += 1;
            if self.stats.first_error.is_none() {
                tracing::warn!(error = %e, "writing event records failed; counting further failures");
                self.stats.first_error = Some(e.to_string());
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// Writes a simulated run's records into `dir`: `node-N-inc-I.jsonl` per node incarnation
/// and `faults.jsonl` for the records of node 0 (the simulator's faults).
pub fn write_run(dir: &Path, records: &[Record]) -> Result<(), WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Open {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: BTreeMap<(NodeId, u32), Writer<File>> = BTreeMap::new();
    for r in records {
        let w = match files.entry((r.node, r.inc)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let name = if r.node == 0 {
                    "faults.jsonl".to_string()
                } else {
                    format!("node-{}-inc-{}.jsonl", r.node, r.inc)
                };
                e.insert(Writer::create(&dir.join(name))?)
            }
        };
        w.write(r)?;
    }
    for w in files.values_mut() {
        w.flush()?;
    }
    Ok(())
}

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line that is not a record (and not a torn last line).
    #[error("{path}:{line}: not an event record: {source}")]
    NotARecord {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
}

/// What reading one file found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileRead {
    /// Records read.
    pub records: usize,
    /// Its last line was torn (no newline, not a record) and was read as the end.
    pub torn: bool,
}

/// Reads the records of one file into `out` (the torn-line rule in the crate docs).
pub fn read_file(path: &Path, out: &mut Vec<Record>) -> Result<FileRead, ReadError> {
    let f = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_from(path, BufReader::new(f), out)
}

/// Reads records from `r` into `out`; `name` names the source in errors.
pub fn read_from(
    name: &Path,
    mut r: impl BufRead,
    out: &mut Vec<Record>,
) -> Result<FileRead, ReadError> {
    let mut read = FileRead::default();
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let got = r
            .read_until(b'\n', &mut line)
            .map_err(|source| ReadError::Io {
                path: name.to_path_buf(),
                source,
            })?;
        if got == 0 {
            return Ok(read);
        }
        n += 1;
        let whole = line.last() == Some(&b'\n');
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(rec) => {
                out.push(rec);
                read.records += 1;
            }
            Err(_) if !whole => {
                read.torn = true;
                return Ok(read);
            }
            Err(source) => {
                return Err(ReadError::NotARecord {
                    path: name.to_path_buf(),
                    line: n,
                    source,
                })
            }
        }
    }
}

/// Records read from several files.
#[derive(Debug, Default)]
pub struct RecordSet {
    /// Every record, file by file in path order.
    pub records: Vec<Record>,
    /// The files read.
    pub files: Vec<PathBuf>,
    /// The files whose last line was torn.
    pub torn: Vec<PathBuf>,
}

/// Reads record files, and the `*.jsonl` files of directories, in path order.
pub fn read_paths(paths: &[PathBuf]) -> Result<RecordSet, ReadError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|source| ReadError::Io {
                path: p.clone(),
                source,
            })?;
            for e in entries {
                let e = e
                    .map_err(|source| ReadError::Io {
                        path: p.clone(),
                        source,
                    })?
                    .path();
                if e.extension().is_some_and(|x| x == "jsonl") {
                    files.push(e);
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    let mut set = RecordSet::default();
    for f in files {
        if read_file(&f, &mut set.records)?.torn {
            set.torn.push(f.clone());
        }
        set.files.push(f);
    }
    Ok(set)
}

/// The record files of one run: a directory that holds record files (`*.jsonl`), as a
/// simulator seed (`seed-N/`) or a runner repetition (`records/rep-N/`) does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunFiles {
    /// The run's directory.
    pub dir: PathBuf,
    /// Its record files, in path order; empty for a run directory that holds none.
    pub files: Vec<PathBuf>,
}

/// Finds the runs under `paths`, each to be judged on its own, in natural path order
/// (`seed-2` before `seed-10`).
///
/// - A file named on its own belongs to the run of its directory (files of one directory
///   named together are one run).
/// - A directory is searched all the way down: every directory that holds record files is one
///   run (its subdirectories are searched too, as runs of their own).
/// - A directory that holds no record files anywhere beneath it is returned as a run with no
///   files when it is a named path, or when a sibling directory is a run (a repetition or a
///   seed that wrote nothing), so that the caller can refuse it. Other directories without
///   records (a node's `state/`) are not runs.
///
/// Directory symlinks met on the way down are not followed.
pub fn find_runs(paths: &[PathBuf]) -> Result<Vec<RunFiles>, ReadError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReadError::Io { path, source }
    };
    let mut runs: BTreeMap<Vec<NameChunk>, RunFiles> = BTreeMap::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(io(p))?;
        if meta.is_dir() {
            if !walk_runs(p, &mut runs)? {
                add_run(&mut runs, p, None);
            }
        } else {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            add_run(&mut runs, &dir, Some(p.clone()));
        }
    }
    let mut out: Vec<RunFiles> = runs.into_values().collect();
    for r in &mut out {
        r.files.sort_by_key(|f| natural_key(f));
        r.files.dedup();
    }
    Ok(out)
}

/// Adds `file` (or, with none, an empty entry) to the run of `dir`.
fn add_run(runs: &mut BTreeMap<Vec<NameChunk>, RunFiles>, dir: &Path, file: Option<PathBuf>) {
    let run = runs.entry(natural_key(dir)).or_insert_with(|| RunFiles {
        dir: dir.to_path_buf(),
        files: Vec::new(),
    });
    run.files.extend(file);
}

/// Adds the runs under `dir` to `runs`; returns whether it found any record file.
fn walk_runs(dir: &Path, runs: &mut BTreeMap<Vec<NameChunk>, RunFiles>) -> Result<bool, ReadError> {
    let io = |source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let kind = e.file_type().map_err(io)?;
        let path = e.path();
        if kind.is_dir() {
            subdirs.push(path);
        } else if path.extension().is_some_and(|x| x == "jsonl") {
            // A file or a symlink to one (a symlink to a directory fails to read, loudly).
            files.push(path);
        }
    }
    let mut found = !files.is_empty();
    for f in files {
        add_run(runs, dir, Some(f));
    }
    let mut empty = Vec::new();
    let mut sibling_is_run = false;
    for s in subdirs {
        let holds_records = std::fs::read_dir(&s)
            .map_err(|source| ReadError::Io {
                path: s.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .any(|e| {
                e.path().extension().is_some_and(|x| x == "jsonl")
                    && e.file_type().is_ok_and(|t| !t.is_dir())
            });
        sibling_is_run |= holds_records;
        if walk_runs(&s, runs)? {
            found = true;
        } else {
            empty.push(s);
        }
    }
    if sibling_is_run {
        for s in &empty {
            add_run(runs, s, None);
        }
    }
    Ok(found)
}

/// A piece of a path for natural ordering: a run of digits compares as a number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NameChunk {
    /// A run of digits (as a number, then as written, so that "01" and "1" differ).
    Number(u128, String),
    /// Anything else.
    Text(String),
}

/// Returns `p`'s natural sort key: `seed-2` before `seed-10`.
fn natural_key(p: &Path) -> Vec<NameChunk> {
    let s = p.to_string_lossy();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut digits = false;
    for c in s.chars() {
        if c.is_ascii_digit() != digits && !cur.is_empty() {
            out.push(chunk(std::mem::take(&mut cur), digits));
        }
        digits = c.is_ascii_digit();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(chunk(cur, digits));
    }
    out
}

fn chunk(s: String, digits: bool) -> NameChunk {
    if digits {
        NameChunk::Number(s.parse().unwrap_or(u128::MAX), s)
    } else {
        NameChunk::Text(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_documented_shape() {
        let r = Record {
            t_ns: 5,
            node: 3,
            inc: 1,
            body: Body::Deliver {
                id: "3.1.42".parse().unwrap(),
                ring: RingId { rep: 1, seq: 8 },
                seq: 1234,
                len: 100,
                safe: false,
                sent_t_ns: 123,
            },
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"t_ns":5,"node":3,"inc":1,"ev":"deliver","id":"3.1.42","ring":{"rep":1,"seq":8},"seq":1234,"len":100,"safe":false,"sent_t_ns":123}"#
        );
        assert_eq!(serde_json::from_str::<Record>(&s).unwrap(), r);
        let st = r#"{"t_ns":1,"node":2,"inc":0,"ev":"state","from":"operational","to":"gather","reason":"token_loss"}"#;
        let r: Record = serde_json::from_str(st).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), st);
        let c = r#"{"t_ns":1,"node":2,"inc":0,"ev":"config","kind":"transitional","ring":{"rep":1,"seq":8},"members":[1,2,3],"left":[4],"joined":[]}"#;
        let r: Record = serde_json::from_str(c).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), c);
        let stop = r#"{"t_ns":9,"node":2,"inc":3,"ev":"stop","undelivered":7}"#;
        let r: Record = serde_json::from_str(stop).unwrap();
        assert_eq!(r.body, Body::Stop { undelivered: 7 });
        assert_eq!(serde_json::to_string(&r).unwrap(), stop);
        let bare: Record =
            serde_json::from_str(r#"{"t_ns":9,"node":2,"inc":3,"ev":"stop"}"#).unwrap();
        assert_eq!(bare.body, Body::Stop { undelivered: 0 });
    }

    fn state(t: u64) -> Record {
        Record {
            t_ns: t,
            node: 2,
            inc: 1,
            body: Body::State {
                from: MembState::Gather,
                to: MembState::Commit,
                reason: Reason::Consensus,
            },
        }
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringlab-records-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads() {
        let d = temp("round-trip");
        let f = d.join("a.jsonl");
        let mut w = Writer::create(&f).unwrap();
        for t in 0..100 {
            w.write(&state(t)).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(w.stats().written, 100);
        let mut out = Vec::new();
        let read = read_file(&f, &mut out).unwrap();
        assert_eq!(
            read,
            FileRead {
                records: 100,
                torn: false
            }
        );
        assert_eq!(out[99], state(99));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_the_end_and_anything_else_that_does_not_parse_is_an_error() {
        let mut whole = Vec::new();
        encode_line(&state(1), &mut whole);
        encode_line(&state(2), &mut whole);
        let torn = [&whole[..], br#"{"t_ns":3,"node":2,"in"#].concat();
        let mut out = Vec::new();
        let r = read_from(Path::new("x"), &torn[..], &mut out).unwrap();
        assert_eq!(
            r,
            FileRead {
                records: 2,
                torn: true
            }
        );
        // The same fragment followed by a newline is not torn: it is garbage.
        let bad = [&torn[..], b"\n"].concat();
        let e = read_from(Path::new("x"), &bad[..], &mut Vec::new()).unwrap_err();
        assert!(e.to_string().starts_with("x:3: not an event record"), "{e}");
        // A whole last record without its newline is a record.
        let last = &whole[..whole.len() - 1];
        let r = read_from(Path::new("x"), last, &mut Vec::new()).unwrap();
        assert_eq!(
            r,
            FileRead {
                records: 2,
                torn: false
            }
        );
    }

    #[test]
    fn appending_cuts_off_a_torn_tail_first() {
        let d = temp("append");
        let f = d.join("node-1.jsonl");
        let mut bytes = Vec::new();
        encode_line(&state(1), &mut bytes);
        bytes.extend_from_slice(br#"{"t_ns":2,"no"#);
        std::fs::write(&f, &bytes).unwrap();
        let mut w = Writer::append(&f).unwrap();
        w.write(&state(3)).unwrap();
        w.flush().unwrap();
        let mut out = Vec::new();
        assert_eq!(
            read_file(&f, &mut out).unwrap(),
            FileRead {
                records: 2,
                torn: false
            }
        );
        assert_eq!(out, vec![state(1), state(3)]);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_run_is_written_one_file_per_node_incarnation() {
        let d = temp("run");
        let fault = Record {
            t_ns: 5,
            node: 0,
            inc: 0,
            body: Body::Fault {
                action: "crash".into(),
                targets: vec![2],
                groups: vec![],
            },
        };
        let mut second = state(6);
        second.inc = 2;
        write_run(&d, &[state(1), fault, second]).unwrap();
        let set = read_paths(std::slice::from_ref(&d)).unwrap();
        let names: Vec<String> = set
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["faults.jsonl", "node-2-inc-1.jsonl", "node-2-inc-2.jsonl"]
        );
        assert_eq!(set.records.len(), 3);
        assert!(set.torn.is_empty());
        std::fs::remove_dir_all(d).unwrap();
    }

    fn names(runs: &[RunFiles], root: &Path) -> Vec<(String, usize)> {
        runs.iter()
            .map(|r| {
                let d = r.dir.strip_prefix(root).unwrap_or(&r.dir);
                (d.to_string_lossy().into_owned(), r.files.len())
            })
            .collect()
    }

    #[test]
    fn runs_are_found_in_simulator_seeds_in_natural_order() {
        let d = temp("find-seeds");
        for seed in [1, 2, 10] {
            write_run(&d.join(format!("seed-{seed}")), &[state(1), state(2)]).unwrap();
        }
        let runs = find_runs(std::slice::from_ref(&d)).unwrap();
        assert_eq!(
            names(&runs, &d),
            [
                ("seed-1".into(), 1),
                ("seed-2".into(), 1),
                ("seed-10".into(), 1)
            ]
        );
        // Files named one by one belong to the run of their directory.
        let files: Vec<PathBuf> = runs.iter().flat_map(|r| r.files.clone()).collect();
        let again = find_runs(&files).unwrap();
        assert_eq!(again, runs);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn runs_are_found_in_runner_repetitions_and_a_repetition_without_records_is_one() {
        let d = temp("find-reps");
        let records = d.join("records");
        for rep in [1, 2] {
            let r = records.join(format!("rep-{rep}"));
            write_run(&r, &[state(1)]).unwrap();
            // What else a repetition holds: logs, configs, stats, the nodes' stable state.
            std::fs::write(r.join("node-2.log"), "log").unwrap();
            std::fs::write(r.join("stats.json"), "{}").unwrap();
            std::fs::create_dir_all(r.join("state")).unwrap();
            std::fs::write(r.join("state").join("node-2.state"), "{}").unwrap();
        }
        std::fs::create_dir_all(records.join("rep-3")).unwrap();
        let runs = find_runs(std::slice::from_ref(&d)).unwrap();
        assert_eq!(
            names(&runs, &d),
            [
                ("records/rep-1".into(), 1),
                ("records/rep-2".into(), 1),
                ("records/rep-3".into(), 0)
            ]
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_directory_without_records_is_one_empty_run_and_a_missing_path_an_error() {
        let d = temp("find-empty");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        assert_eq!(
            find_runs(std::slice::from_ref(&d)).unwrap(),
            [RunFiles {
                dir: d.clone(),
                files: vec![]
            }]
        );
        let e = find_runs(&[d.join("nothing")]).unwrap_err();
        assert!(e.to_string().starts_with("reading "), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_write_failure_is_counted_and_kept() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("no space left"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = Writer::new(Full);
        w.write(&state(1)).unwrap(); // buffered
        assert!(w.flush().is_err());
        assert!(w.flush().is_err());
        assert_eq!(w.stats().failed, 2);
        assert_eq!(w.stats().first_error.as_deref(), Some("no space left"));
    }
}
