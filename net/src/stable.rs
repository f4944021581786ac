//! A node's stable storage: the incarnation and the highest ring seq, in one small JSON file
//! per node (`<state_dir>/node-<id>.state`) that survives restarts.
//!
//! Guarantees: every start gets an incarnation one above the last one written (a missing or
//! unreadable file counts as incarnation 0, ring seq 0); every write goes to a temporary file
//! first and is renamed over the state file, so a node killed mid-write leaves either the old
//! state or the new one, never a torn file.

use ringlab_ring::auth::Mark;
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

/// Returns the path of node `node`'s state file in `state_dir`.
pub fn path(state_dir: &Path, node: NodeId) -> PathBuf {
    state_dir.join(format!("node-{node}.state"))
}

/// Reads a state file; `None` when it is missing or does not parse.
pub fn read(path: &Path) -> Option<StableState> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// Writes a state file: a temporary file first, renamed over the old one.
pub fn write(path: &Path, s: &StableState) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(s).expect("serialisable"))?;
    std::fs::rename(tmp, path)
}

/// A running node's stable storage.
#[derive(Debug)]
pub struct Stable {
    path: PathBuf,
    state: StableState,
}

impl Stable {
    /// Opens node `node`'s storage in `state_dir` for a new start: reads the last state,
    /// takes the next incarnation and writes it before returning.
    pub fn open(state_dir: &Path, node: NodeId) -> std::io::Result<Self> {
        let path = path(state_dir, node);
        let mut state = read(&path).unwrap_or_default();
        state.incarnation += 1;
        write(&path, &state)?;
        Ok(Self { path, state })
    }

    /// Returns the state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns this start's incarnation.
    pub fn incarnation(&self) -> u32 {
        self.state.incarnation
    }

    /// Returns the ring seq last written.
    pub fn ring_seq(&self) -> u64 {
        self.state.ring_seq
    }

    /// Returns the authentication envelope's replay marks.
    pub fn auth_marks(&self) -> &BTreeMap<NodeId, Mark> {
        &self.state.auth_marks
    }

    /// Records the authentication envelope's replay marks: writes the file.
    pub fn set_auth_marks(&mut self, marks: &BTreeMap<NodeId, Mark>) -> std::io::Result<()> {
        self.state.auth_marks.clone_from(marks);
        write(&self.path, &self.state)
    }

    /// Records the highest ring seq: writes the file when it changed. A failed write is not
    /// retried for the same seq (the next change writes again).
    pub fn set_ring_seq(&mut self, seq: u64) -> std::io::Result<()> {
        if seq == self.state.ring_seq {
            return Ok(());
        }
        self.state.ring_seq = seq;
        write(&self.path, &self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_open_takes_the_next_incarnation_and_keeps_the_ring_seq() {
        let dir = std::env::temp_dir().join(format!("ringlab-stable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Stable::open(&dir, 7).unwrap();
        assert_eq!((s.incarnation(), s.ring_seq()), (1, 0));
        s.set_ring_seq(12).unwrap();
        let s = Stable::open(&dir, 7).unwrap();
        assert_eq!((s.incarnation(), s.ring_seq()), (2, 12));
        assert_eq!(
            read(&path(&dir, 7)),
            Some(StableState {
                incarnation: 2,
                ring_seq: 12,
                auth_marks: Default::default(),
            })
        );
        assert!(!s.path().with_extension("tmp").exists());
        // A torn or foreign file counts as a first start.
        std::fs::write(path(&dir, 7), "{\"incarn").unwrap();
        assert_eq!(Stable::open(&dir, 7).unwrap().incarnation(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
