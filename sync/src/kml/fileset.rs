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

use super::record::{
    check_path, check_target, Attrs, ConflictKind, Kind, Noop, Op, RecId, Record, Touch, Undo,
    Version, MAX_DATA, MAX_MODE,
};
use bytes::{Bytes, BytesMut};
use ringlab_ring::wire::DecodeError;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The most names one file may have (`EMLINK` beyond).
pub const MAX_NLINK: u32 = 65_000;

impl Object {
    /// Returns what kind it is.
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Dir { .. } => Kind::Dir,
            Body::File { .. } => Kind::File,
            Body::Symlink { .. } => Kind::Symlink,
        }
    }

    /// Returns its size as its version counts it (file: content bytes; directory: entries;
    /// symlink: target bytes).
    fn real_size(&self) -> u64 {
        match &self.body {
            Body::Dir { entries, .. } => entries.len() as u64,
            Body::File { data, .. } => data.len() as u64,
            Body::Symlink { target } => target.len() as u64,
        }
    }
}

/// How an operation runs: applied here first, or replayed from a record made elsewhere.
struct Ctx<'a> {
    id: RecId,
    time: u64,
    rec: Option<&'a Record>,
}

type Errno = &'static str;

/// Where a name is: its directory and the name in it (none: the root).
type Place<'p> = Option<(RecId, &'p str)>;

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

/// Returns the digest of a listing: [`crate::service::listing_digest`] of its entries, what
/// a host computes from the real directory.
pub fn listing_digest(entries: &[TreeEntry]) -> [u8; 32] {
    let files: Vec<crate::service::FileEntry> = entries
        .iter()
        .map(|e| crate::service::FileEntry {
            path: e.path.clone(),
            kind: kind_letter(e.kind),
            mode: e.mode,
            size: e.size,
            content: e.content,
            link: e.link.clone(),
        })
        .collect();
    crate::service::listing_digest(&files)
}

fn hash_str(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn hash_id(h: &mut Sha256, id: RecId) {
    h.update(u64::from(id.origin).to_le_bytes());
    h.update(u64::from(id.inc).to_le_bytes());
    h.update(id.recno.to_le_bytes());
}

fn kind_letter(k: Kind) -> u8 {
    match k {
        Kind::Dir => b'd',
        Kind::File => b'f',
        Kind::Symlink => b'l',
    }
}

/// Returns whether `o` is at version `v` (a directory's size is not compared).
fn same_version(o: &Object, v: Option<Version>) -> bool {
    v.is_some_and(|v| match o.body {
        Body::Dir { .. } => {
            Version { size: 0, ..v }
                == Version {
                    size: 0,
                    ..o.version
                }
        }
        _ => v == o.version,
    })
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
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
        let mut objects = BTreeMap::new();
        objects.insert(
            RecId::ROOT,
            Object {
                attrs: Attrs {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
                version: Version::default(),
                body: Body::Dir {
                    entries: BTreeMap::new(),
                    parent: RecId::ROOT,
                },
            },
        );
        Self {
            objects,
            changes: None,
        }
    }

    /// Appends the whole tree (a snapshot a far-behind node adopts): the objects in fid
    /// order, each with its fid, attributes, version and body.
    pub fn put_snapshot(&self, b: &mut Vec<u8>) {
        use super::record::{put_attrs, put_id, put_str, put_version};
        use bytes::BufMut;
        b.put_u64(self.objects.len() as u64);
        for (fid, o) in &self.objects {
            put_id(b, fid);
            put_attrs(b, &o.attrs);
            put_version(b, &o.version);
            match &o.body {
                Body::Dir { entries, parent } => {
                    b.push(0);
                    put_id(b, parent);
                    b.put_u64(entries.len() as u64);
                    for (name, f) in entries {
                        put_str(b, name);
                        put_id(b, f);
                    }
                }
                Body::File { data, nlink } => {
                    b.push(1);
                    b.put_u32(*nlink);
                    ringlab_ring::wire::put_blob(b, data);
                }
                Body::Symlink { target } => {
                    b.push(2);
                    put_str(b, target);
                }
            }
        }
    }

    /// Reads a snapshot written by [`Fileset::put_snapshot`], checking that it is one tree:
    /// a root directory, every entry naming an object, every directory named once (by its
    /// parent) and reached from the root, every file named `nlink` times, every symlink once,
    /// names that are path components, contents within the bounds. The mirror queue is off.
    pub fn read_snapshot(r: &mut ringlab_ring::wire::Reader<'_>) -> Result<Self, DecodeError> {
        use super::record::{
            read_attrs, read_id, read_str, read_target, read_version, MAX_DATA, MAX_NAME,
        };
        let bad = DecodeError::Invalid;
        let n = r.u64("snapshot objects")?;
        // An object takes at least 60 bytes: no count beyond what the bytes can hold.
        if n == 0 || n > (r.remaining() / 60) as u64 {
            return Err(bad("snapshot objects"));
        }
        let mut objects = BTreeMap::new();
        let mut prev: Option<RecId> = None;
        for _ in 0..n {
            let fid = read_id(r, "snapshot fid")?;
            if prev.is_some_and(|p| p >= fid) {
                return Err(DecodeError::NotSorted("snapshot fids"));
            }
            prev = Some(fid);
            let attrs = read_attrs(r)?;
            let version = read_version(r)?;
            let body = match r.u8("snapshot kind")? {
                0 => {
                    let parent = read_id(r, "snapshot parent")?;
                    let k = r.u64("snapshot entries")?;
                    if k > (r.remaining() / 20) as u64 {
                        return Err(bad("snapshot entries"));
                    }
                    let mut entries = BTreeMap::new();
                    for _ in 0..k {
                        let name = read_str(r, "snapshot name")?;
                        if name.is_empty()
                            || name.len() > MAX_NAME
                            || name == "."
                            || name == ".."
                            || name.contains(['/', '\0'])
                        {
                            return Err(bad("snapshot name"));
                        }
                        let f = read_id(r, "snapshot entry")?;
                        if entries.insert(name.to_owned(), f).is_some() {
                            return Err(bad("snapshot name twice"));
                        }
                    }
                    Body::Dir { entries, parent }
                }
                1 => {
                    let nlink = r.u32("snapshot nlink")?;
                    let data = Bytes::copy_from_slice(r.blob("snapshot data", MAX_DATA)?);
                    Body::File { data, nlink }
                }
                2 => Body::Symlink {
                    target: read_target(r)?,
                },
                _ => return Err(bad("snapshot kind")),
            };
            objects.insert(
                fid,
                Object {
                    attrs,
                    version,
                    body,
                },
            );
        }
        // One tree: walk it from the root.
        match objects.get(&RecId::ROOT).map(|o| &o.body) {
            Some(Body::Dir { parent, .. }) if *parent == RecId::ROOT => {}
            _ => return Err(bad("snapshot root")),
        }
        let mut named: BTreeMap<RecId, u32> = BTreeMap::new();
        let mut stack = vec![RecId::ROOT];
        let mut seen_dirs = std::collections::BTreeSet::from([RecId::ROOT]);
        while let Some(d) = stack.pop() {
            let Some(Object {
                body: Body::Dir { entries, .. },
                ..
            }) = objects.get(&d)
            else {
                return Err(bad("snapshot directory"));
            };
            for f in entries.values() {
                match objects.get(f).map(|o| &o.body) {
                    None => return Err(bad("snapshot entry names no object")),
                    Some(Body::Dir { parent, .. }) => {
                        if *parent != d || !seen_dirs.insert(*f) {
                            return Err(bad("snapshot directory named twice"));
                        }
                        stack.push(*f);
                    }
                    Some(_) => *named.entry(*f).or_default() += 1,
                }
            }
        }
        for (fid, o) in &objects {
            let ok = match &o.body {
                Body::Dir { .. } => seen_dirs.contains(fid),
                Body::File { nlink, .. } => named.get(fid) == Some(nlink),
                Body::Symlink { .. } => named.get(fid) == Some(&1),
            };
            if !ok {
                return Err(bad("snapshot object not in the tree"));
            }
        }
        Ok(Self {
            objects,
            changes: None,
        })
    }

    /// Replaces this tree with `other`, queueing the changes that turn a mirror of this one
    /// into a mirror of the other (remove everything, then make the other's tree).
    pub fn replace_with(&mut self, other: Self) {
        let mirror = self.changes.take();
        let old = self.listing();
        self.objects = other.objects;
        self.changes = mirror;
        if self.changes.is_none() {
            return;
        }
        let new = self.listing();
        let q = self.changes.as_mut().expect("mirror on");
        for e in old.iter().rev() {
            q.push_back(match e.kind {
                Kind::Dir => Change::Rmdir {
                    path: e.path.clone(),
                },
                _ => Change::Unlink {
                    path: e.path.clone(),
                },
            });
        }
        let mut written: BTreeMap<String, String> = BTreeMap::new();
        for e in &new {
            let Some(fid) = self.lookup(&e.path) else {
                continue;
            };
            let o = &self.objects[&fid];
            let q = self.changes.as_mut().expect("mirror on");
            match &o.body {
                Body::Dir { .. } => q.push_back(Change::Mkdir {
                    path: e.path.clone(),
                    mode: o.attrs.mode,
                }),
                Body::Symlink { target } => q.push_back(Change::Symlink {
                    path: e.path.clone(),
                    target: target.clone(),
                }),
                Body::File { data, .. } => {
                    let key = e.link.clone().unwrap_or_else(|| e.path.clone());
                    match written.get(&key) {
                        Some(first) => q.push_back(Change::Link {
                            existing: first.clone(),
                            path: e.path.clone(),
                        }),
                        None => {
                            written.insert(key, e.path.clone());
                            q.push_back(Change::Write {
                                path: e.path.clone(),
                                data: data.clone(),
                                mode: o.attrs.mode,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Starts (or stops) queueing [`Change`]s.
    pub fn set_mirror(&mut self, on: bool) {
        self.changes = on.then(VecDeque::new);
    }

    /// Returns the next change queued for the mirror.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.as_mut()?.pop_front()
    }

    /// Returns how many changes wait for the real directory (0 without a mirror).
    pub fn pending_changes(&self) -> usize {
        self.changes.as_ref().map_or(0, VecDeque::len)
    }

    /// Returns the object `fid`.
    pub fn object(&self, fid: RecId) -> Option<&Object> {
        self.objects.get(&fid)
    }

    /// Returns the fid at `path` (none: no such object, or a component is not a directory).
    pub fn lookup(&self, path: &str) -> Option<RecId> {
        let comps = check_path(path).ok()?;
        let mut cur = RecId::ROOT;
        for c in comps {
            cur = self.entry(cur, c)?;
        }
        Some(cur)
    }

    /// Returns one path of `fid` (a file with several names: its smallest), or none when it
    /// is not in the tree.
    pub fn path_of(&self, fid: RecId) -> Option<String> {
        if fid == RecId::ROOT {
            return Some("/".to_owned());
        }
        self.walk()
            .into_iter()
            .filter(|(_, f)| *f == fid)
            .map(|(p, _)| p)
            .min()
    }

    /// Returns how many objects it holds (the root included) and their content bytes.
    pub fn size(&self) -> (u64, u64) {
        let bytes = self
            .objects
            .values()
            .map(|o| match &o.body {
                Body::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum();
        (self.objects.len() as u64, bytes)
    }

    /// Applies `op` as record `id` at `time`: returns the record, with every touched
    /// object's old and new version and what undo needs. An operation that cannot apply
    /// (a missing parent, an existing name, a non-empty directory, too much data, ...)
    /// changes nothing and returns a record marked [`super::record::Noop::Failed`].
    pub fn apply(&mut self, id: RecId, prev: u64, time: u64, op: &Op) -> Record {
        let ctx = Ctx {
            id,
            time,
            rec: None,
        };
        let (noop, touched, undo) = match self.exec(&ctx, op) {
            Ok((t, u)) => (None, t, u),
            Err(e) => (Some(Noop::Failed(e)), Vec::new(), Undo::default()),
        };
        Record {
            id,
            prev,
            time,
            noop,
            op: op.clone(),
            touched,
            undo,
        }
    }

    /// Checks whether `rec` (applied elsewhere) fits this fileset: each object it touches
    /// must be here at the version the record expects (directories as parents are not
    /// version-checked, as Coda; a record's own target directory is). Returns the conflict:
    /// a create or a rename's target hits an existing name (name/name); a setattr, write or
    /// append finds its object changed (update/update) or gone, or its parent gone
    /// (update/delete); an unlink or rmdir finds its object changed or a directory no longer
    /// empty (delete/update) or gone (update/delete); a rename's source is gone
    /// (rename/rename). A NOOP record always fits.
    ///
    /// A record with no touch for its object (malformed) is taken as expecting another
    /// version; a rename that would move a directory under itself here is rename/rename.
    pub fn check(&self, rec: &Record) -> Result<(), ConflictKind> {
        if rec.noop.is_some() {
            return Ok(());
        }
        let main = rec.touched.first();
        match &rec.op {
            Op::Noop => Ok(()),
            Op::Create { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Mknod { path, .. }
            | Op::Symlink { path, .. } => self.check_create(path),
            Op::Link { existing, path } => {
                self.check_update(existing, main)?;
                self.check_create(path)
            }
            Op::Setattr { path, .. } | Op::Write { path, .. } | Op::Append { path, .. } => {
                self.check_update(path, main)
            }
            Op::Unlink { path } | Op::Rmdir { path } => {
                let fid = self.lookup(path).ok_or(ConflictKind::UpdateDelete)?;
                let o = self.objects.get(&fid).ok_or(ConflictKind::UpdateDelete)?;
                let same = main.is_some_and(|t| t.fid == fid && same_version(o, t.old));
                let full = matches!(&o.body, Body::Dir { entries, .. } if !entries.is_empty());
                if !same || full {
                    return Err(ConflictKind::DeleteUpdate);
                }
                Ok(())
            }
            Op::Rename { from, to } => {
                let fid = self.lookup(from).ok_or(ConflictKind::RenameRename)?;
                let o = self.objects.get(&fid).ok_or(ConflictKind::RenameRename)?;
                let Some(t) = main.filter(|t| t.fid == fid) else {
                    return Err(ConflictKind::RenameRename);
                };
                if !same_version(o, t.old) {
                    return Err(ConflictKind::UpdateUpdate);
                }
                self.check_create(to)?;
                let (dir, _) = self
                    .split(to)
                    .ok()
                    .flatten()
                    .ok_or(ConflictKind::UpdateDelete)?;
                if self.is_under(dir, fid) {
                    return Err(ConflictKind::RenameRename);
                }
                Ok(())
            }
        }
    }

    /// Applies a record that [`Fileset::check`] accepted, exactly as it was applied where it
    /// was made: the same fids, the same new versions (a parent directory's times move to
    /// the later of its own and the record's). A NOOP record changes nothing. Returns the
    /// record as applied here (its touches' old versions are this fileset's, so that
    /// [`Fileset::undo`] restores this fileset).
    ///
    /// A parent directory found at the record's old version takes the record's new version
    /// (so equal filesets stay equal); another one takes the later times, its real size and
    /// the record as its store. A record that does not fit (a caller's bug: not checked, or
    /// malformed) changes nothing and comes back marked failed with `EINVAL`.
    pub fn replay(&mut self, rec: &Record) -> Record {
        if rec.noop.is_some() {
            return rec.clone();
        }
        let ctx = Ctx {
            id: rec.id,
            time: rec.time,
            rec: Some(rec),
        };
        let (noop, touched, undo) = match self.exec(&ctx, &rec.op) {
            Ok((t, u)) => (None, t, u),
            Err(_) => (Some(Noop::Failed("EINVAL")), Vec::new(), Undo::default()),
        };
        Record {
            id: rec.id,
            prev: rec.prev,
            time: rec.time,
            noop,
            op: rec.op.clone(),
            touched,
            undo,
        }
    }

    /// Takes back `rec`, the last record applied (or replayed; as it returned it): the
    /// fileset is exactly as before it. A NOOP record changes nothing. A record that does
    /// not fit this fileset (not the last one applied, or malformed) changes nothing: every
    /// condition is checked before anything is changed.
    pub fn undo(&mut self, rec: &Record) {
        if rec.noop.is_some() {
            return;
        }
        let _ = self.try_undo(rec);
    }

    /// Returns the listing of the tree (every object but the root, sorted by path).
    pub fn listing(&self) -> Vec<TreeEntry> {
        let names = self.walk();
        let mut first: BTreeMap<RecId, String> = BTreeMap::new();
        for (p, f) in &names {
            first.entry(*f).or_insert_with(|| p.clone());
        }
        let mut out = Vec::new();
        for (path, fid) in names {
            if fid == RecId::ROOT {
                continue;
            }
            let Some(o) = self.objects.get(&fid) else {
                continue;
            };
            let (mode, size, content, link) = match &o.body {
                Body::Dir { .. } => (o.attrs.mode & MAX_MODE, 0, [0; 32], None),
                Body::File { data, nlink } => (
                    o.attrs.mode & MAX_MODE,
                    data.len() as u64,
                    sha(data),
                    (*nlink > 1).then(|| first.get(&fid).cloned()).flatten(),
                ),
                Body::Symlink { target } => (0, 0, sha(target.as_bytes()), None),
            };
            out.push(TreeEntry {
                path,
                kind: o.kind(),
                mode,
                size,
                content,
                link,
            });
        }
        out
    }

    /// Returns the digest of everything: the listing's fields plus each object's fid, owner,
    /// group and version.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"kml fileset 1");
        for (path, fid) in self.walk() {
            let Some(o) = self.objects.get(&fid) else {
                continue;
            };
            hash_str(&mut h, &path);
            hash_id(&mut h, fid);
            h.update([kind_letter(o.kind())]);
            h.update(u64::from(o.attrs.mode).to_le_bytes());
            h.update(u64::from(o.attrs.uid).to_le_bytes());
            h.update(u64::from(o.attrs.gid).to_le_bytes());
            h.update(o.version.mtime.to_le_bytes());
            h.update(o.version.ctime.to_le_bytes());
            h.update(o.version.size.to_le_bytes());
            hash_id(&mut h, o.version.store);
            match &o.body {
                Body::Dir { entries, parent } => {
                    hash_id(&mut h, *parent);
                    h.update((entries.len() as u64).to_le_bytes());
                }
                Body::File { data, nlink } => {
                    h.update(u64::from(*nlink).to_le_bytes());
                    h.update((data.len() as u64).to_le_bytes());
                    h.update(data);
                }
                Body::Symlink { target } => hash_str(&mut h, target),
            }
        }
        h.update((self.objects.len() as u64).to_le_bytes());
        h.finalize().into()
    }

    /// Returns the digest of what a real directory shows ([`listing_digest`] of
    /// [`Fileset::listing`]).
    pub fn tree_digest(&self) -> [u8; 32] {
        listing_digest(&self.listing())
    }

    // ---- check ----

    /// Checks a name a record creates: absent (else name/name), in a directory (else
    /// update/delete).
    fn check_create(&self, path: &str) -> Result<(), ConflictKind> {
        if self.lookup(path).is_some() {
            return Err(ConflictKind::NameName);
        }
        match self.split(path) {
            Ok(Some((dir, name))) if self.entry(dir, name).is_none() => Ok(()),
            Ok(Some(_)) | Ok(None) => Err(ConflictKind::NameName),
            Err(_) => Err(ConflictKind::UpdateDelete),
        }
    }

    /// Checks an object a record updates: here (else update/delete), the same object at the
    /// version the record expects (else update/update).
    fn check_update(&self, path: &str, main: Option<&Touch>) -> Result<(), ConflictKind> {
        let fid = self.lookup(path).ok_or(ConflictKind::UpdateDelete)?;
        let o = self.objects.get(&fid).ok_or(ConflictKind::UpdateDelete)?;
        match main {
            Some(t) if t.fid == fid && same_version(o, t.old) => Ok(()),
            _ => Err(ConflictKind::UpdateUpdate),
        }
    }

    // ---- the tree ----

    /// Returns every name in the tree with its fid, the root (`/`) included, sorted by path.
    fn walk(&self) -> Vec<(String, RecId)> {
        let mut out = vec![("/".to_owned(), RecId::ROOT)];
        let mut seen = BTreeSet::from([RecId::ROOT]);
        let mut stack = vec![(String::new(), RecId::ROOT)];
        while let Some((prefix, dir)) = stack.pop() {
            let Some(Object {
                body: Body::Dir { entries, .. },
                ..
            }) = self.objects.get(&dir)
            else {
                continue;
            };
            for (name, fid) in entries {
                let p = format!("{prefix}/{name}");
                out.push((p.clone(), *fid));
                if matches!(self.objects.get(fid), Some(o) if o.kind() == Kind::Dir)
                    && seen.insert(*fid)
                {
                    stack.push((p, *fid));
                }
            }
        }
        out.sort();
        out
    }

    /// Returns the entry `name` of directory `dir`.
    fn entry(&self, dir: RecId, name: &str) -> Option<RecId> {
        match &self.objects.get(&dir)?.body {
            Body::Dir { entries, .. } => entries.get(name).copied(),
            _ => None,
        }
    }

    /// Returns the directory that holds `path`'s last component, and that component (none:
    /// `path` is the root). Errors: `EINVAL` (a bad path), `ENOENT` (a missing directory on
    /// the way), `ENOTDIR` (something else on the way).
    fn split<'p>(&self, path: &'p str) -> Result<Place<'p>, Errno> {
        let comps = check_path(path).map_err(|_| "EINVAL")?;
        let Some((last, dirs)) = comps.split_last() else {
            return Ok(None);
        };
        let mut cur = RecId::ROOT;
        for c in dirs {
            match self.objects.get(&cur) {
                Some(o) if o.kind() == Kind::Dir => {}
                Some(_) => return Err("ENOTDIR"),
                None => return Err("ENOENT"),
            }
            cur = self.entry(cur, c).ok_or("ENOENT")?;
        }
        match self.objects.get(&cur) {
            Some(o) if o.kind() == Kind::Dir => Ok(Some((cur, *last))),
            Some(_) => Err("ENOTDIR"),
            None => Err("ENOENT"),
        }
    }

    /// Returns the object at `path`, with the directory holding it and its name (none for
    /// the root).
    fn find<'p>(&self, path: &'p str) -> Result<(RecId, Place<'p>), Errno> {
        match self.split(path)? {
            None => Ok((RecId::ROOT, None)),
            Some((dir, name)) => {
                let fid = self.entry(dir, name).ok_or("ENOENT")?;
                Ok((fid, Some((dir, name))))
            }
        }
    }

    /// Returns whether `dir` is `top` or lies under it.
    fn is_under(&self, dir: RecId, top: RecId) -> bool {
        let mut cur = dir;
        for _ in 0..=self.objects.len() {
            if cur == top {
                return true;
            }
            match self.objects.get(&cur).map(|o| &o.body) {
                Some(Body::Dir { parent, .. }) if cur != RecId::ROOT => cur = *parent,
                _ => return false,
            }
        }
        true
    }

    fn entries_mut(&mut self, dir: RecId) -> Option<&mut BTreeMap<String, RecId>> {
        match &mut self.objects.get_mut(&dir)?.body {
            Body::Dir { entries, .. } => Some(entries),
            _ => None,
        }
    }

    fn push(&mut self, c: Change) {
        if let Some(q) = &mut self.changes {
            q.push_back(c);
        }
    }

    // ---- apply and replay ----

    /// Returns `(fid, kind, version)` of each object, before a change.
    fn olds(&self, fids: &[RecId]) -> Vec<(RecId, Option<(Kind, Version)>)> {
        let mut out: Vec<(RecId, Option<(Kind, Version)>)> = Vec::new();
        for f in fids {
            if out.iter().any(|(g, _)| g == f) {
                continue;
            }
            out.push((*f, self.objects.get(f).map(|o| (o.kind(), o.version))));
        }
        out
    }

    /// Returns the touches of a change, from the versions before it (`olds`) and now.
    fn touches(&self, olds: &[(RecId, Option<(Kind, Version)>)], created: Kind) -> Vec<Touch> {
        olds.iter()
            .map(|(fid, old)| {
                let now = self.objects.get(fid);
                Touch {
                    fid: *fid,
                    kind: old
                        .map(|(k, _)| k)
                        .or_else(|| now.map(Object::kind))
                        .unwrap_or(created),
                    old: old.map(|(_, v)| v),
                    new: now.map(|o| o.version),
                }
            })
            .collect()
    }

    /// Sets the main object's new version: `applied` when applying; when replaying, the
    /// record's new version for it, with its real size.
    fn set_main(&mut self, ctx: &Ctx<'_>, fid: RecId, applied: Version) {
        let v = match ctx.rec.and_then(|r| r.touched.first()) {
            Some(t) if t.fid == fid => t.new.map_or(applied, |n| Version {
                size: applied.size,
                ..n
            }),
            _ => applied,
        };
        if let Some(o) = self.objects.get_mut(&fid) {
            o.version = v;
        }
    }

    /// Gives a parent directory whose entries changed its new version (`old`: its version
    /// before).
    fn bump_dir(&mut self, ctx: &Ctx<'_>, dir: RecId, old: Version) {
        let Some(o) = self.objects.get_mut(&dir) else {
            return;
        };
        let count = o.real_size();
        o.version = match ctx.rec {
            None => Version {
                mtime: ctx.time,
                ctime: ctx.time,
                size: count,
                store: ctx.id,
            },
            Some(rec) => {
                let t = rec.touched.iter().find(|t| t.fid == dir);
                match t.and_then(|t| t.new.filter(|n| t.old == Some(old) && n.size == count)) {
                    Some(n) => n,
                    None => {
                        let n = t.and_then(|t| t.new);
                        Version {
                            mtime: old.mtime.max(n.map_or(rec.time, |n| n.mtime)),
                            ctime: old.ctime.max(n.map_or(rec.time, |n| n.ctime)),
                            size: count,
                            store: rec.id,
                        }
                    }
                }
            }
        };
    }

    /// When replaying, refuses a record whose first touch is not `fid`.
    fn expect_main(ctx: &Ctx<'_>, fid: RecId) -> Result<(), Errno> {
        match ctx.rec {
            None => Ok(()),
            Some(r) if r.touched.first().is_some_and(|t| t.fid == fid) => Ok(()),
            Some(_) => Err("EINVAL"),
        }
    }

    /// Runs `op`; on error nothing has changed.
    fn exec(&mut self, ctx: &Ctx<'_>, op: &Op) -> Result<(Vec<Touch>, Undo), Errno> {
        match op {
            Op::Noop => Ok((Vec::new(), Undo::default())),
            Op::Create { path, attrs } | Op::Mknod { path, attrs } => self.make(
                ctx,
                path,
                *attrs,
                Body::File {
                    data: Bytes::new(),
                    nlink: 1,
                },
            ),
            Op::Mkdir { path, attrs } => self.make(
                ctx,
                path,
                *attrs,
                Body::Dir {
                    entries: BTreeMap::new(),
                    parent: RecId::ROOT,
                },
            ),
            Op::Symlink {
                path,
                target,
                attrs,
            } => {
                check_target(target).map_err(|_| "EINVAL")?;
                self.make(
                    ctx,
                    path,
                    *attrs,
                    Body::Symlink {
                        target: target.clone(),
                    },
                )
            }
            Op::Link { existing, path } => self.link(ctx, existing, path),
            Op::Unlink { path } => self.unlink(ctx, path),
            Op::Rmdir { path } => self.rmdir(ctx, path),
            Op::Rename { from, to } => self.rename(ctx, from, to),
            Op::Setattr {
                path,
                mode,
                uid,
                gid,
                mtime,
                size,
            } => self.setattr(ctx, path, *mode, *uid, *gid, *mtime, *size),
            Op::Write { path, data } => self.write(ctx, path, data, false),
            Op::Append { path, data } => self.write(ctx, path, data, true),
        }
    }

    fn make(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        attrs: Attrs,
        mut body: Body,
    ) -> Result<(Vec<Touch>, Undo), Errno> {
        if attrs.mode > MAX_MODE {
            return Err("EINVAL");
        }
        let (dir, name) = self.split(path)?.ok_or("EEXIST")?;
        if self.entry(dir, name).is_some() {
            return Err("EEXIST");
        }
        let fid = ctx.id;
        if self.objects.contains_key(&fid) {
            return Err("EINVAL");
        }
        Self::expect_main(ctx, fid)?;
        if let Body::Dir { parent, .. } = &mut body {
            *parent = dir;
        }
        let olds = self.olds(&[fid, dir]);
        let change = match &body {
            Body::Dir { .. } => Change::Mkdir {
                path: path.to_owned(),
                mode: attrs.mode,
            },
            Body::File { data, .. } => Change::Write {
                path: path.to_owned(),
                data: data.clone(),
                mode: attrs.mode,
            },
            Body::Symlink { target } => Change::Symlink {
                path: path.to_owned(),
                target: target.clone(),
            },
        };
        let o = Object {
            attrs,
            version: Version::default(),
            body,
        };
        let applied = Version {
            mtime: ctx.time,
            ctime: ctx.time,
            size: o.real_size(),
            store: ctx.id,
        };
        let kind = o.kind();
        self.objects.insert(fid, o);
        if let Some(e) = self.entries_mut(dir) {
            e.insert(name.to_owned(), fid);
        }
        self.set_main(ctx, fid, applied);
        self.bump_dir(
            ctx,
            dir,
            olds.get(1)
                .and_then(|x| x.1)
                .map(|(_, v)| v)
                .unwrap_or_default(),
        );
        self.push(change);
        Ok((self.touches(&olds, kind), Undo::default()))
    }

    fn link(
        &mut self,
        ctx: &Ctx<'_>,
        existing: &str,
        path: &str,
    ) -> Result<(Vec<Touch>, Undo), Errno> {
        let (fid, _) = self.find(existing)?;
        let o = self.objects.get(&fid).ok_or("ENOENT")?;
        let nlink = match &o.body {
            Body::File { nlink, .. } => *nlink,
            Body::Dir { .. } => return Err("EISDIR"),
            Body::Symlink { .. } => return Err("EINVAL"),
        };
        let (dir, name) = self.split(path)?.ok_or("EEXIST")?;
        if self.entry(dir, name).is_some() {
            return Err("EEXIST");
        }
        if nlink >= MAX_NLINK {
            return Err("EMLINK");
        }
        Self::expect_main(ctx, fid)?;
        let olds = self.olds(&[fid, dir]);
        let Some(o) = self.objects.get_mut(&fid) else {
            return Err("ENOENT");
        };
        if let Body::File { nlink, .. } = &mut o.body {
            *nlink += 1;
        }
        let applied = Version {
            ctime: ctx.time,
            store: ctx.id,
            ..o.version
        };
        if let Some(e) = self.entries_mut(dir) {
            e.insert(name.to_owned(), fid);
        }
        self.set_main(ctx, fid, applied);
        self.bump_dir(
            ctx,
            dir,
            olds.get(1)
                .and_then(|x| x.1)
                .map(|(_, v)| v)
                .unwrap_or_default(),
        );
        self.push(Change::Link {
            existing: existing.to_owned(),
            path: path.to_owned(),
        });
        Ok((self.touches(&olds, Kind::File), Undo::default()))
    }

    fn unlink(&mut self, ctx: &Ctx<'_>, path: &str) -> Result<(Vec<Touch>, Undo), Errno> {
        let (fid, at) = self.find(path)?;
        let Some((dir, name)) = at else {
            return Err("EISDIR");
        };
        let o = self.objects.get(&fid).ok_or("ENOENT")?;
        let mut undo = Undo {
            old_attrs: Some(o.attrs),
            ..Undo::default()
        };
        let last = match &o.body {
            Body::Dir { .. } => return Err("EISDIR"),
            Body::File { data, nlink } => {
                undo.old_data = Some(data.clone());
                *nlink <= 1
            }
            Body::Symlink { target } => {
                undo.old_target = Some(target.clone());
                true
            }
        };
        Self::expect_main(ctx, fid)?;
        let olds = self.olds(&[fid, dir]);
        if let Some(e) = self.entries_mut(dir) {
            e.remove(name);
        }
        if last {
            self.objects.remove(&fid);
        } else if let Some(o) = self.objects.get_mut(&fid) {
            if let Body::File { nlink, .. } = &mut o.body {
                *nlink -= 1;
            }
            let applied = Version {
                ctime: ctx.time,
                store: ctx.id,
                ..o.version
            };
            self.set_main(ctx, fid, applied);
        }
        self.bump_dir(
            ctx,
            dir,
            olds.get(1)
                .and_then(|x| x.1)
                .map(|(_, v)| v)
                .unwrap_or_default(),
        );
        self.push(Change::Unlink {
            path: path.to_owned(),
        });
        Ok((self.touches(&olds, Kind::File), undo))
    }

    fn rmdir(&mut self, ctx: &Ctx<'_>, path: &str) -> Result<(Vec<Touch>, Undo), Errno> {
        let (fid, at) = self.find(path)?;
        let Some((dir, name)) = at else {
            return Err("EINVAL");
        };
        let o = self.objects.get(&fid).ok_or("ENOENT")?;
        match &o.body {
            Body::Dir { entries, .. } if entries.is_empty() => {}
            Body::Dir { .. } => return Err("ENOTEMPTY"),
            _ => return Err("ENOTDIR"),
        }
        let undo = Undo {
            old_attrs: Some(o.attrs),
            ..Undo::default()
        };
        Self::expect_main(ctx, fid)?;
        let olds = self.olds(&[fid, dir]);
        if let Some(e) = self.entries_mut(dir) {
            e.remove(name);
        }
        self.objects.remove(&fid);
        self.bump_dir(
            ctx,
            dir,
            olds.get(1)
                .and_then(|x| x.1)
                .map(|(_, v)| v)
                .unwrap_or_default(),
        );
        self.push(Change::Rmdir {
            path: path.to_owned(),
        });
        Ok((self.touches(&olds, Kind::Dir), undo))
    }

    fn rename(&mut self, ctx: &Ctx<'_>, from: &str, to: &str) -> Result<(Vec<Touch>, Undo), Errno> {
        let (fid, at) = self.find(from)?;
        let Some((fdir, fname)) = at else {
            return Err("EINVAL");
        };
        let (tdir, tname) = self.split(to)?.ok_or("EEXIST")?;
        if self.entry(tdir, tname).is_some() {
            return Err("EEXIST");
        }
        let o = self.objects.get(&fid).ok_or("ENOENT")?;
        let is_dir = o.kind() == Kind::Dir;
        if is_dir && self.is_under(tdir, fid) {
            return Err("EINVAL");
        }
        Self::expect_main(ctx, fid)?;
        let olds = self.olds(&[fid, fdir, tdir]);
        if let Some(e) = self.entries_mut(fdir) {
            e.remove(fname);
        }
        if let Some(e) = self.entries_mut(tdir) {
            e.insert(tname.to_owned(), fid);
        }
        let Some(o) = self.objects.get_mut(&fid) else {
            return Err("ENOENT");
        };
        if let Body::Dir { parent, .. } = &mut o.body {
            *parent = tdir;
        }
        let applied = Version {
            ctime: ctx.time,
            store: ctx.id,
            ..o.version
        };
        let kind = o.kind();
        self.set_main(ctx, fid, applied);
        for (d, old) in olds.iter().skip(1) {
            self.bump_dir(ctx, *d, old.map(|(_, v)| v).unwrap_or_default());
        }
        self.push(Change::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        });
        Ok((self.touches(&olds, kind), Undo::default()))
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        mtime: Option<u64>,
        size: Option<u64>,
    ) -> Result<(Vec<Touch>, Undo), Errno> {
        let (fid, _) = self.find(path)?;
        let o = self.objects.get(&fid).ok_or("ENOENT")?;
        if mode.is_some_and(|m| m > MAX_MODE) {
            return Err("EINVAL");
        }
        let mut undo = Undo {
            old_attrs: Some(o.attrs),
            ..Undo::default()
        };
        let mut new_data = None;
        if let Some(size) = size {
            let Body::File { data, .. } = &o.body else {
                return Err("EISDIR");
            };
            if size > MAX_DATA as u64 {
                return Err("EFBIG");
            }
            undo.old_data = Some(data.clone());
            if size != data.len() as u64 {
                let mut d = BytesMut::from(&data[..data.len().min(size as usize)]);
                d.resize(size as usize, 0);
                new_data = Some(d.freeze());
            }
        }
        Self::expect_main(ctx, fid)?;
        let olds = self.olds(&[fid]);
        let Some(o) = self.objects.get_mut(&fid) else {
            return Err("ENOENT");
        };
        let old_mode = o.attrs.mode;
        if let Some(m) = mode {
            o.attrs.mode = m;
        }
        if let Some(u) = uid {
            o.attrs.uid = u;
        }
        if let Some(g) = gid {
            o.attrs.gid = g;
        }
        let resized = new_data.is_some();
        if let (Some(nd), Body::File { data, .. }) = (&new_data, &mut o.body) {
            *data = nd.clone();
        }
        let applied = Version {
            mtime: mtime.unwrap_or(if resized { ctx.time } else { o.version.mtime }),
            ctime: ctx.time,
            size: o.real_size(),
            store: ctx.id,
        };
        let kind = o.kind();
        let new_mode = o.attrs.mode;
        self.set_main(ctx, fid, applied);
        if let Some(data) = new_data {
            self.push(Change::Write {
                path: path.to_owned(),
                data,
                mode: new_mode,
            });
        }
        if new_mode != old_mode && kind != Kind::Symlink {
            self.push(Change::Chmod {
                path: path.to_owned(),
                mode: new_mode,
            });
        }
        Ok((self.touches(&olds, kind), undo))
    }

    fn write(
        &mut self,
        ctx: &Ctx<'_>,
        path: &str,
        more: &Bytes,
        append: bool,
    ) -> Result<(Vec<Touch>, Undo), Errno> {
        let (fid, _) = self.find(path)?;
        let o = self.objects.get(&fid).ok_or("ENOENT")?;
        let old = match &o.body {
            Body::File { data, .. } => data.clone(),
            Body::Dir { .. } => return Err("EISDIR"),
            Body::Symlink { .. } => return Err("EINVAL"),
        };
        let new = if append {
            if old.len() + more.len() > MAX_DATA {
                return Err("EFBIG");
            }
            let mut d = BytesMut::from(&old[..]);
            d.extend_from_slice(more);
            d.freeze()
        } else {
            if more.len() > MAX_DATA {
                return Err("EFBIG");
            }
            more.clone()
        };
        Self::expect_main(ctx, fid)?;
        let olds = self.olds(&[fid]);
        let Some(o) = self.objects.get_mut(&fid) else {
            return Err("ENOENT");
        };
        if let Body::File { data, .. } = &mut o.body {
            *data = new.clone();
        }
        let applied = Version {
            mtime: ctx.time,
            ctime: ctx.time,
            size: new.len() as u64,
            store: ctx.id,
        };
        let mode = o.attrs.mode;
        self.set_main(ctx, fid, applied);
        self.push(Change::Write {
            path: path.to_owned(),
            data: new,
            mode,
        });
        let undo = Undo {
            old_data: Some(old),
            ..Undo::default()
        };
        Ok((self.touches(&olds, Kind::File), undo))
    }

    // ---- undo ----

    /// Takes `rec` back; none (and nothing changed) when it does not fit.
    fn try_undo(&mut self, rec: &Record) -> Option<()> {
        if matches!(rec.op, Op::Noop) {
            return Some(());
        }
        let main = rec.touched.first()?;
        // Every touch but a created main object must be here at the end (and all but the
        // main one are here now).
        let created = main.old.is_none();
        if rec.touched[1..]
            .iter()
            .any(|t| t.old.is_none() || !self.objects.contains_key(&t.fid) || t.fid == main.fid)
        {
            return None;
        }
        match &rec.op {
            Op::Noop => {}
            Op::Create { path, .. }
            | Op::Mknod { path, .. }
            | Op::Mkdir { path, .. }
            | Op::Symlink { path, .. } => {
                let (dir, name) = self.split(path).ok()??;
                let o = self.objects.get(&main.fid)?;
                let empty = !matches!(&o.body, Body::Dir { entries, .. } if !entries.is_empty());
                if !created || self.entry(dir, name)? != main.fid || !empty {
                    return None;
                }
                let kind = o.kind();
                self.entries_mut(dir)?.remove(name);
                self.objects.remove(&main.fid);
                let path = path.clone();
                self.push(match kind {
                    Kind::Dir => Change::Rmdir { path },
                    _ => Change::Unlink { path },
                });
            }
            Op::Link { path, .. } => {
                let (dir, name) = self.split(path).ok()??;
                let o = self.objects.get(&main.fid)?;
                let ok = matches!(o.body, Body::File { nlink, .. } if nlink >= 2);
                if created || self.entry(dir, name)? != main.fid || !ok {
                    return None;
                }
                self.entries_mut(dir)?.remove(name);
                if let Some(Body::File { nlink, .. }) =
                    self.objects.get_mut(&main.fid).map(|o| &mut o.body)
                {
                    *nlink -= 1;
                }
                self.push(Change::Unlink { path: path.clone() });
            }
            Op::Unlink { path } => {
                let (dir, name) = self.split(path).ok()??;
                if created || self.entry(dir, name).is_some() {
                    return None;
                }
                let old = main.old?;
                let attrs = rec.undo.old_attrs?;
                match (main.new, main.kind) {
                    (None, Kind::File) => {
                        let data = rec.undo.old_data.clone()?;
                        if self.objects.contains_key(&main.fid) {
                            return None;
                        }
                        self.objects.insert(
                            main.fid,
                            Object {
                                attrs,
                                version: old,
                                body: Body::File {
                                    data: data.clone(),
                                    nlink: 1,
                                },
                            },
                        );
                        self.push(Change::Write {
                            path: path.clone(),
                            data,
                            mode: attrs.mode,
                        });
                    }
                    (None, Kind::Symlink) => {
                        let target = rec.undo.old_target.clone()?;
                        if self.objects.contains_key(&main.fid) {
                            return None;
                        }
                        self.objects.insert(
                            main.fid,
                            Object {
                                attrs,
                                version: old,
                                body: Body::Symlink {
                                    target: target.clone(),
                                },
                            },
                        );
                        self.push(Change::Symlink {
                            path: path.clone(),
                            target,
                        });
                    }
                    (Some(_), Kind::File) => {
                        let existing = self.path_of(main.fid)?;
                        let o = self.objects.get_mut(&main.fid)?;
                        let Body::File { nlink, .. } = &mut o.body else {
                            return None;
                        };
                        *nlink = nlink.saturating_add(1);
                        self.push(Change::Link {
                            existing,
                            path: path.clone(),
                        });
                    }
                    _ => return None,
                }
                self.entries_mut(dir)?.insert(name.to_owned(), main.fid);
            }
            Op::Rmdir { path } => {
                let (dir, name) = self.split(path).ok()??;
                let old = main.old?;
                let attrs = rec.undo.old_attrs?;
                if self.entry(dir, name).is_some()
                    || self.objects.contains_key(&main.fid)
                    || main.kind != Kind::Dir
                {
                    return None;
                }
                self.objects.insert(
                    main.fid,
                    Object {
                        attrs,
                        version: old,
                        body: Body::Dir {
                            entries: BTreeMap::new(),
                            parent: dir,
                        },
                    },
                );
                self.entries_mut(dir)?.insert(name.to_owned(), main.fid);
                self.push(Change::Mkdir {
                    path: path.clone(),
                    mode: attrs.mode,
                });
            }
            Op::Rename { from, to } => {
                let (tdir, tname) = self.split(to).ok()??;
                if created || self.entry(tdir, tname)? != main.fid {
                    return None;
                }
                let (fdir, fname) = self.split(from).ok()??;
                let is_dir = self.objects.get(&main.fid)?.kind() == Kind::Dir;
                if self.entry(fdir, fname).is_some() || (is_dir && self.is_under(fdir, main.fid)) {
                    return None;
                }
                self.entries_mut(tdir)?.remove(tname);
                self.entries_mut(fdir)?.insert(fname.to_owned(), main.fid);
                if let Some(Body::Dir { parent, .. }) =
                    self.objects.get_mut(&main.fid).map(|o| &mut o.body)
                {
                    *parent = fdir;
                }
                self.push(Change::Rename {
                    from: to.clone(),
                    to: from.clone(),
                });
            }
            Op::Setattr { path, size, .. } => {
                let (fid, _) = self.find(path).ok()?;
                let attrs = rec.undo.old_attrs?;
                let o = self.objects.get(&fid)?;
                let restore = match (&o.body, size) {
                    (Body::File { data, .. }, Some(_)) => {
                        let old = rec.undo.old_data.clone()?;
                        (old != *data).then_some(old)
                    }
                    (_, Some(_)) => return None,
                    (_, None) => None,
                };
                if fid != main.fid || created {
                    return None;
                }
                let o = self.objects.get_mut(&fid)?;
                let old_mode = o.attrs.mode;
                let kind = o.kind();
                o.attrs = attrs;
                if let (Some(nd), Body::File { data, .. }) = (&restore, &mut o.body) {
                    *data = nd.clone();
                }
                if let Some(data) = restore {
                    self.push(Change::Write {
                        path: path.clone(),
                        data,
                        mode: attrs.mode,
                    });
                }
                if old_mode != attrs.mode && kind != Kind::Symlink {
                    self.push(Change::Chmod {
                        path: path.clone(),
                        mode: attrs.mode,
                    });
                }
            }
            Op::Write { path, .. } | Op::Append { path, .. } => {
                let (fid, _) = self.find(path).ok()?;
                let old = rec.undo.old_data.clone()?;
                if fid != main.fid || created {
                    return None;
                }
                let o = self.objects.get_mut(&fid)?;
                let Body::File { data, .. } = &mut o.body else {
                    return None;
                };
                *data = old.clone();
                let mode = o.attrs.mode;
                self.push(Change::Write {
                    path: path.clone(),
                    data: old,
                    mode,
                });
            }
        }
        for t in &rec.touched {
            if let (Some(old), Some(o)) = (t.old, self.objects.get_mut(&t.fid)) {
                o.version = old;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests;
