//! A node's stable storage: the incarnation and the highest ring seq, in one small JSON file
//! per node (`<state_dir>/node-<id>.state`) that survives restarts.
//!
//! Guarantees:
//! - every start gets an incarnation one above the last one written; a missing file is a
//!   first start (incarnation 1, ring seq 0);
//! - a file that is there but cannot be read, or does not parse as a state (empty, torn,
//!   not UTF-8, a field of the wrong type), is a [`StableError`] naming the file and saying
//!   what to do, and the file is left as it was: never a silent reset to incarnation 1;
//! - the incarnation never wraps: a start after incarnation `u32::MAX` is refused;
//! - every write goes to a temporary file created with mode 0600, which is fsynced, renamed
//!   over the state file, and the directory fsynced: a node killed (or a machine that loses
//!   power) mid-write leaves either the old state or the new one, never a torn file;
//! - a state directory the node creates is created with mode 0700;
//! - every write is counted and every failure too, the first one logged with its cause
//!   ([`StableStats`], in the `stable` object of the `stats` reply).

use ringlab_ring::auth::Mark;
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What stable storage holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableState {
    /// The incarnation the node last started with.
    pub incarnation: u32,
    /// The highest ring seq the node has taken part in (see `Ring::stable_ring_seq`).
    pub ring_seq: u64,
    /// The replay marks of the authentication envelope, per transmitter (see
    /// `ringlab_ring::auth`): absent in files of nodes that never ran with a key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub auth_marks: BTreeMap<NodeId, Mark>,
}

/// Why stable storage could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StableError {
    /// The state directory could not be created.
    #[error("creating the state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is there but could not be read.
    #[error("reading the state file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file does not parse: the node cannot know its last incarnation.
    #[error(
        "the state file {path} is damaged ({why}), so this node's last incarnation is unknown \
         and it will not start: restore the file, or write {{\"incarnation\":N,\"ring_seq\":S}} \
         with N above any incarnation it ever ran, or remove the file to start it as a new \
         node at incarnation 1 (safe only while no other node remembers it)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The state file holds the last incarnation there is.
    #[error(
        "the state file {path} holds incarnation {}, the last one: stop the whole cluster and \
         remove the file to start this node again at incarnation 1",
        u32::MAX
    )]
    Exhausted {
        /// The file.
        path: PathBuf,
    },
    /// Writing the state file failed.
    #[error("writing the state file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a node's stable storage did: writes, failed writes, and the first failure's cause.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableStats {
    /// State files written (temporary file, fsync, rename, directory fsync all done).
    pub written: u64,
    /// Writes that failed (the state on disk is then the one before).
    pub failed: u64,
    /// The first failure, as it was logged.
    pub first_error: Option<String>,
}

/// Returns the path of node `node`'s state file in `state_dir`.
pub fn path(state_dir: &Path, node: NodeId) -> PathBuf {
    state_dir.join(format!("node-{node}.state"))
}

/// Reads a state file; `Ok(None)` when it is missing, an error when it is there but cannot
/// be read or does not parse.
pub fn read(path: &Path) -> Result<Option<StableState>, StableError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StableError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let damaged = |why: String| StableError::Damaged {
        path: path.to_path_buf(),
        why,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(damaged("it is empty".into()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| damaged(format!("not UTF-8: {e}")))?;
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| damaged(format!("not a state: {e}")))
}

/// Writes a state file: a temporary file created 0600 and fsynced, renamed over the old one,
/// then the directory fsynced. A failure leaves the old file in place.
pub fn write(path: &Path, s: &StableState) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let res = write_tmp_and_rename(&tmp, path, s);
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn write_tmp_and_rename(tmp: &Path, path: &Path, s: &StableState) -> std::io::Result<()> {
    // A temporary file a killed writer left may have other permissions: start afresh.
    match std::fs::remove_file(tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    f.write_all(&serde_json::to_vec(s).expect("serialisable"))?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Creates directory `dir` (and missing parents) with mode 0700 unless it exists.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A running node's stable storage.
#[derive(Debug)]
pub struct Stable {
    path: PathBuf,
    state: StableState,
    stats: StableStats,
}

impl Stable {
    /// Opens node `node`'s storage in `state_dir` (created 0700 when missing) for a new
    /// start: reads the last state, takes the next incarnation and writes it before
    /// returning. A damaged file or an exhausted incarnation is an error and is left as it is.
    pub fn open(state_dir: &Path, node: NodeId) -> Result<Self, StableError> {
        create_private_dir(state_dir).map_err(|source| StableError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = path(state_dir, node);
        let mut state = read(&path)?.unwrap_or_default();
        state.incarnation = state
            .incarnation
            .checked_add(1)
            .ok_or_else(|| StableError::Exhausted { path: path.clone() })?;
        write(&path, &state).map_err(|source| StableError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(Self {
            path,
            state,
            stats: StableStats {
                written: 1,
                ..StableStats::default()
            },
        })
    }

    /// Returns the state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns this start's incarnation.
    pub fn incarnation(&self) -> u32 {
        self.state.incarnation
    }

    /// Returns the ring seq last recorded (written, or attempted).
    pub fn ring_seq(&self) -> u64 {
        self.state.ring_seq
    }

    /// Returns the writes and failures so far.
    pub fn stats(&self) -> &StableStats {
        &self.stats
    }

    /// Returns the authentication envelope's replay marks.
    pub fn auth_marks(&self) -> &BTreeMap<NodeId, Mark> {
        &self.state.auth_marks
    }

    /// Records the authentication envelope's replay marks: writes the file (counted as
    /// [`Stable::set_ring_seq`] counts).
    pub fn set_auth_marks(&mut self, marks: &BTreeMap<NodeId, Mark>) -> std::io::Result<()> {
        self.state.auth_marks.clone_from(marks);
        self.save()
    }

    /// Records the highest ring seq: writes the file when it changed. A failure is counted
    /// (the first one logged with its cause) before it is returned; it is not retried for
    /// the same seq (the next change writes again).
    pub fn set_ring_seq(&mut self, seq: u64) -> std::io::Result<()> {
        if seq == self.state.ring_seq {
            return Ok(());
        }
        self.state.ring_seq = seq;
        self.save()
    }

    /// Writes the state file, counting a failure and logging the first.
    fn save(&mut self) -> std::io::Result<()> {
        match write(&self.path, &self.state) {
            Ok(()) => {
                self.stats.written += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.failed += 1;
                if self.stats.first_error.is_none() {
                    tracing::warn!(
                        file = %self.path.display(),
                        error = %e,
                        "writing stable storage failed; counting further failures (stats: stable)"
                    );
                    self.stats.first_error = Some(e.to_string());
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ringlab-stable-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn each_open_takes_the_next_incarnation_and_keeps_the_ring_seq() {
        let dir = temp("next");
        let mut s = Stable::open(&dir, 7).unwrap();
        assert_eq!((s.incarnation(), s.ring_seq()), (1, 0));
        s.set_ring_seq(12).unwrap();
        assert_eq!(s.stats().written, 2);
        let s = Stable::open(&dir, 7).unwrap();
        assert_eq!((s.incarnation(), s.ring_seq()), (2, 12));
        assert_eq!(
            read(&path(&dir, 7)).unwrap(),
            Some(StableState {
                incarnation: 2,
                ring_seq: 12,
                auth_marks: Default::default(),
            })
        );
        assert!(!s.path().with_extension("tmp").exists());
        // The directory the node made, and the file, are its own.
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(s.path()), 0o600);
        // A torn file is an error naming it, not a first start; the file stays as it was.
        let torn = "{\"incarnation\":41,";
        std::fs::write(path(&dir, 7), torn).unwrap();
        let e = Stable::open(&dir, 7).unwrap_err();
        assert!(matches!(e, StableError::Damaged { .. }), "{e}");
        assert!(
            e.to_string().contains(&path(&dir, 7).display().to_string()),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(path(&dir, 7)).unwrap(), torn);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_damaged_file_refuses_to_start_and_names_the_file() {
        let dir = temp("damaged");
        let cases: [(&str, &[u8], &str); 6] = [
            ("empty", b"", "empty"),
            ("blank", b" \n", "empty"),
            ("truncated", b"{\"incarnation\":41,", "EOF"),
            ("not UTF-8", b"{\"incarnation\":4\xff\xfe}", "UTF-8"),
            (
                "wrong type",
                b"{\"incarnation\":\"41\",\"ring_seq\":3}",
                "invalid type",
            ),
            (
                "negative",
                b"{\"incarnation\":-1,\"ring_seq\":3}",
                "invalid value",
            ),
        ];
        for (what, bytes, why) in cases {
            std::fs::create_dir_all(&dir).unwrap();
            let p = path(&dir, 3);
            std::fs::write(&p, bytes).unwrap();
            let e = Stable::open(&dir, 3).expect_err(what).to_string();
            assert!(e.contains(&p.display().to_string()), "{what}: {e}");
            assert!(e.contains(why), "{what}: {e}");
            assert!(e.contains("remove the file"), "{what}: {e}");
            assert_eq!(std::fs::read(&p).unwrap(), bytes, "{what}: left as it was");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_last_incarnation_is_refused_not_wrapped() {
        let dir = temp("max");
        std::fs::create_dir_all(&dir).unwrap();
        let p = path(&dir, 1);
        let last = StableState {
            incarnation: u32::MAX - 1,
            ring_seq: 5,
            auth_marks: Default::default(),
        };
        write(&p, &last).unwrap();
        assert_eq!(Stable::open(&dir, 1).unwrap().incarnation(), u32::MAX);
        let e = Stable::open(&dir, 1).unwrap_err();
        assert!(matches!(e, StableError::Exhausted { .. }), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        assert_eq!(read(&p).unwrap().unwrap().incarnation, u32::MAX);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_is_counted_and_kept() {
        let dir = temp("fail");
        let mut s = Stable::open(&dir, 2).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(s.set_ring_seq(4).is_err());
        assert!(s.set_ring_seq(8).is_err());
        assert_eq!(s.stats().written, 1);
        assert_eq!(s.stats().failed, 2);
        assert!(s.stats().first_error.is_some());
        // The same seq again writes nothing.
        assert!(s.set_ring_seq(8).is_ok());
        assert_eq!(s.stats().failed, 2);
    }

    #[test]
    fn a_missing_file_is_a_first_start_and_a_directory_is_not_a_file() {
        let dir = temp("missing");
        assert_eq!(read(&path(&dir, 1)).unwrap(), None);
        std::fs::create_dir_all(path(&dir, 1)).unwrap();
        let e = Stable::open(&dir, 1).unwrap_err();
        assert!(matches!(e, StableError::Read { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
