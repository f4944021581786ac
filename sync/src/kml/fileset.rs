//! The fileset: a tree of directories, plain files (content kept, so undo and a real mirror
//! can restore it), symlinks and hard links, with attributes and versions, in memory. Every
//! change is a [`Record`]: [`Fileset::apply`] runs an operation and returns its record,
//! [`Fileset::check`] tells whether a record from elsewhere still fits this copy (or which
//! conflict it is), [`Fileset::replay`] applies a checked record exactly as it was applied
//! where it was made, and [`Fileset::undo`] takes the last applied record back exactly.
//!
//! Objects are named by their fid (the [`RecId`] of the record that created them), not by
//! inode numbers, so two nodes that applied the same records hold equal filesets. Every
//! primitive change made to the tree (by apply, replay or undo) is also queued as a
//! [`Change`] for a host that mirrors the fileset into a real directory.

use super::record::{Attrs, ConflictKind, Kind, Op, RecId, Record, Version};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// One object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Its attributes.
    pub attrs: Attrs,
    /// Its version (for a file, `size` is its content's length; for a directory, its
    /// number of entries).
    pub version: Version,
    /// What it is, with its content.
    pub body: Body,
}

/// An object's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A directory: its entries by name, and its parent (the root is its own).
    Dir {
        /// Entries.
        entries: BTreeMap<String, RecId>,
        /// The parent directory.
        parent: RecId,
    },
    /// A plain file: its content and how many names it has.
    File {
        /// Content.
        data: Bytes,
        /// Names.
        nlink: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: String,
    },
}

/// One primitive change to the tree, for a host that mirrors the fileset into a real
/// directory, in the order made (paths are the fileset's, `/`-rooted).
pub use crate::service::FileChange as Change;

/// One entry of a tree listing: what a real directory shows of an object. The digest of a
/// listing ([`listing_digest`]) is what a node's mirror must match.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TreeEntry {
    /// Its path (`/`-rooted; the root is not listed).
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`& 0o7777`; 0 for symlinks).
    pub mode: u32,
    /// Size (files: content length; 0 otherwise).
    pub size: u64,
    /// SHA-256 of the content (files) or of the target (symlinks); zeros for directories.
    pub content: [u8; 32],
    /// For a file with more than one name: its smallest path (byte order), the same for
    /// every name; none otherwise.
    pub link: Option<String>,
}

/// Returns the digest of a listing sorted by path: SHA-256 over each entry's path, kind
/// (`d`, `f`, `l`), mode, size, content and link, each length-prefixed.
pub fn listing_digest(entries: &[TreeEntry]) -> [u8; 32] {
    let _ = entries;
    todo!("listing digest")
}

/// A fileset.
#[derive(Clone, Debug)]
pub struct Fileset {
    objects: BTreeMap<RecId, Object>,
    changes: Option<VecDeque<Change>>,
}

/// Two filesets are equal when their objects are (the change queue is not state).
impl PartialEq for Fileset {
    fn eq(&self, o: &Self) -> bool {
        self.objects == o.objects
    }
}

impl Eq for Fileset {}

impl Default for Fileset {
    fn default() -> Self {
        Self::new()
    }
}

impl Fileset {
    /// Returns an empty fileset: the root directory (mode 0o755, uid 0, gid 0, times 0).
    pub fn new() -> Self {
        todo!("new fileset")
    }

    /// Starts (or stops) queueing [`Change`]s.
    pub fn set_mirror(&mut self, on: bool) {
        self.changes = on.then(VecDeque::new);
    }

    /// Returns the next change queued for the mirror.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.as_mut()?.pop_front()
    }

    /// Returns the object `fid`.
    pub fn object(&self, fid: RecId) -> Option<&Object> {
        self.objects.get(&fid)
    }

    /// Returns the fid at `path` (none: no such object, or a component is not a directory).
    pub fn lookup(&self, path: &str) -> Option<RecId> {
        let _ = path;
        todo!("lookup")
    }

    /// Returns one path of `fid` (a file with several names: its smallest), or none when it
    /// is not in the tree.
    pub fn path_of(&self, fid: RecId) -> Option<String> {
        let _ = fid;
        todo!("path of")
    }

    /// Returns how many objects it holds (the root included) and their content bytes.
    pub fn size(&self) -> (u64, u64) {
        todo!("size")
    }

    /// Applies `op` as record `id` at `time`: returns the record, with every touched
    /// object's old and new version and what undo needs. An operation that cannot apply
    /// (a missing parent, an existing name, a non-empty directory, too much data, ...)
    /// changes nothing and returns a record marked [`super::record::Noop::Failed`].
    pub fn apply(&mut self, id: RecId, prev: u64, time: u64, op: &Op) -> Record {
        let _ = (id, prev, time, op);
        todo!("apply")
    }

    /// Checks whether `rec` (applied elsewhere) fits this fileset: each object it touches
    /// must be here at the version the record expects (directories as parents are not
    /// version-checked, as Coda; a record's own target directory is). Returns the conflict:
    /// a create or a rename's target hits an existing name (name/name); a setattr, write or
    /// append finds its object changed (update/update) or gone, or its parent gone
    /// (update/delete); an unlink or rmdir finds its object changed or a directory no longer
    /// empty (delete/update) or gone (update/delete); a rename's source is gone
    /// (rename/rename). A NOOP record always fits.
    pub fn check(&self, rec: &Record) -> Result<(), ConflictKind> {
        let _ = rec;
        todo!("check")
    }

    /// Applies a record that [`Fileset::check`] accepted, exactly as it was applied where it
    /// was made: the same fids, the same new versions (a parent directory's times move to
    /// the later of its own and the record's). A NOOP record changes nothing. Returns the
    /// record as applied here (its touches' old versions are this fileset's, so that
    /// [`Fileset::undo`] restores this fileset).
    pub fn replay(&mut self, rec: &Record) -> Record {
        let _ = rec;
        todo!("replay")
    }

    /// Takes back `rec`, the last record applied (or replayed; as it returned it): the
    /// fileset is exactly as before it. A NOOP record changes nothing.
    pub fn undo(&mut self, rec: &Record) {
        let _ = rec;
        todo!("undo")
    }

    /// Returns the listing of the tree (every object but the root, sorted by path).
    pub fn listing(&self) -> Vec<TreeEntry> {
        todo!("listing")
    }

    /// Returns the digest of everything: the listing's fields plus each object's fid, owner,
    /// group and version.
    pub fn digest(&self) -> [u8; 32] {
        todo!("digest")
    }

    /// Returns the digest of what a real directory shows ([`listing_digest`] of
    /// [`Fileset::listing`]).
    pub fn tree_digest(&self) -> [u8; 32] {
        listing_digest(&self.listing())
    }
}
