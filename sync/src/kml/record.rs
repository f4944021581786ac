//! A KML record: what one applied operation did to the fileset, with enough to check it
//! against another copy of the fileset (its versions) and to undo it exactly (its old
//! attributes, old symlink target, removed or overwritten content). Versioned, bounded,
//! decoded with the one [`Reader`] of every codec; garbage is a typed [`DecodeError`], never
//! a panic (fuzz target `kml_record`).

use bytes::Bytes;
use ringlab_ring::wire::{put_blob, DecodeError, Reader};
use ringlab_ring::NodeId;

/// The encoding's version (records and operations).
pub const KML_VERSION: u8 = 1;
/// The longest path (bytes), as Linux's PATH_MAX.
pub const MAX_PATH: usize = 4096;
/// The longest name of one path component (bytes), as NAME_MAX.
pub const MAX_NAME: usize = 255;
/// The deepest path (components).
pub const MAX_DEPTH: usize = 64;
/// The most data one write or append carries, and the largest file (bytes). With the old
/// content an undo needs, a record stays below 200 KiB, within one ring message.
pub const MAX_DATA: usize = 64 * 1024;
/// The most objects one record touches (a rename: source, two parents, and a target).
pub const MAX_TOUCHED: usize = 8;

/// A record's identity, and an object's (the record that created it: its fid). Numbers run
/// per origin from 1 in the history of the fileset; `inc` is the origin's incarnation when
/// it applied the record's operation first, so that a node restarted with nothing cannot
/// pass its new records off as old ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecId {
    /// The node whose operation it is (0: the fileset itself: the root, and what
    /// reintegration writes under `.elsewhere`).
    pub origin: NodeId,
    /// The origin's incarnation.
    pub inc: u32,
    /// Its number among the origin's records, from 1.
    pub recno: u64,
}

impl RecId {
    /// The root directory's fid.
    pub const ROOT: Self = Self {
        origin: 0,
        inc: 0,
        recno: 0,
    };
}

impl std::fmt::Display for RecId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.origin, self.inc, self.recno)
    }
}

/// An object's version (InterMezzo's `presto_version`, with Coda's store id added): its
/// times, its size (not compared for directories), and the record that last changed it. Two
/// copies of an object are the same version when all four match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Version {
    /// Modification time (ns, the fileset's clock).
    pub mtime: u64,
    /// Change time (ns).
    pub ctime: u64,
    /// Size (bytes; a directory's is its number of entries).
    pub size: u64,
    /// The record that last changed it.
    pub store: RecId,
}

/// What kind an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A plain file (mknod makes only these).
    File,
    /// A symbolic link.
    Symlink,
}

/// The attributes undo restores (InterMezzo 1.2's old mode, uid, gid; times are in the
/// version).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// An operation, as a node submits it through the ring (and as its record keeps it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Does nothing (a record marked NOOP keeps its operation; this is for padding).
    Noop,
    /// Creates an empty plain file at `path`.
    Create {
        /// Where.
        path: String,
        /// Its attributes.
        attrs: Attrs,
    },
    /// Creates a directory.
    Mkdir {
        /// Where.
        path: String,
        /// Its attributes.
        attrs: Attrs,
    },
    /// Creates a plain file (mknod of a regular file; devices are refused by the codec).
    Mknod {
        /// Where.
        path: String,
        /// Its attributes.
        attrs: Attrs,
    },
    /// Creates a symbolic link to `target` (any string, not resolved).
    Symlink {
        /// Where.
        path: String,
        /// What it points to.
        target: String,
        /// Its attributes.
        attrs: Attrs,
    },
    /// Makes `path` another name of the plain file at `existing`.
    Link {
        /// The file.
        existing: String,
        /// The new name.
        path: String,
    },
    /// Removes a name of a file or symlink (the object goes with its last name).
    Unlink {
        /// The name.
        path: String,
    },
    /// Removes an empty directory.
    Rmdir {
        /// The directory.
        path: String,
    },
    /// Renames `from` to `to`; `to` must not exist (no replacing rename), and a directory
    /// cannot move under itself.
    Rename {
        /// The source.
        from: String,
        /// The target.
        to: String,
    },
    /// Changes attributes (each one given), and with `size` truncates or zero-extends a file.
    Setattr {
        /// The object.
        path: String,
        /// New permission bits.
        mode: Option<u32>,
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
        /// New modification time (ns).
        mtime: Option<u64>,
        /// New size (plain files).
        size: Option<u64>,
    },
    /// Write and close: the file's whole new content (the close carries its size and digest,
    /// in the record's new version and `data`).
    Write {
        /// The file.
        path: String,
        /// Its new content.
        data: Bytes,
    },
    /// Appends to a file (what reintegration does to `.elsewhere/WARNINGS`).
    Append {
        /// The file.
        path: String,
        /// What to add.
        data: Bytes,
    },
}

/// One object a record touches: where, and its version before and after (none: absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The object.
    pub fid: RecId,
    /// What it is.
    pub kind: Kind,
    /// Its version before the record (none: the record created it).
    pub old: Option<Version>,
    /// Its version after (none: the record removed it).
    pub new: Option<Version>,
}

/// What undo needs beyond the versions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Undo {
    /// The object's attributes before (setattr, unlink, rmdir).
    pub old_attrs: Option<Attrs>,
    /// The removed symlink's target (unlink of a symlink).
    pub old_target: Option<String>,
    /// The content before (write, append, a truncating setattr, unlink of a file's last
    /// name).
    pub old_data: Option<Bytes>,
}

/// Why a record is a NOOP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Noop {
    /// Its operation failed where it was first applied (the errno's name: `EEXIST`,
    /// `ENOENT`, `ENOTEMPTY`, `ENOTDIR`, `EISDIR`, `EINVAL`, `EFBIG`, `EMLINK`).
    Failed(&'static str),
    /// It conflicted at reintegration (or depended on a record that did), and was backed out.
    Conflict(ConflictKind),
}

/// The seed's four conflict kinds, update/delete in both orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConflictKind {
    /// A create (or a rename's target) hits an existing name.
    NameName,
    /// A setattr or close on an object the other side also changed.
    UpdateUpdate,
    /// An update of an object (or under a directory) the other side removed.
    UpdateDelete,
    /// A removal of an object the other side changed.
    DeleteUpdate,
    /// A rename whose source is gone.
    RenameRename,
}

impl ConflictKind {
    /// Returns its name, as records spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NameName => "name_name",
            Self::UpdateUpdate => "update_update",
            Self::UpdateDelete => "update_delete",
            Self::DeleteUpdate => "delete_update",
            Self::RenameRename => "rename_rename",
        }
    }
}

/// One KML record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its identity.
    pub id: RecId,
    /// The number of the origin's previous record (`recno - 1`, 0 for the first): the
    /// seed's `prevrec`.
    pub prev: u64,
    /// When it was applied (ns, the fileset's clock): the new mtime and ctime it gives.
    pub time: u64,
    /// Set when it changed nothing (failed, or backed out as a conflict).
    pub noop: Option<Noop>,
    /// The operation.
    pub op: Op,
    /// Every object it touches (the object, its parent directories, a rename's two
    /// parents), with old and new versions; empty for a NOOP.
    pub touched: Vec<Touch>,
    /// What undo needs beyond the versions.
    pub undo: Undo,
}

impl Op {
    /// Returns the opcode's name (records, WARNINGS).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Noop => "noop",
            Self::Create { .. } => "create",
            Self::Mkdir { .. } => "mkdir",
            Self::Mknod { .. } => "mknod",
            Self::Symlink { .. } => "symlink",
            Self::Link { .. } => "link",
            Self::Unlink { .. } => "unlink",
            Self::Rmdir { .. } => "rmdir",
            Self::Rename { .. } => "rename",
            Self::Setattr { .. } => "setattr",
            Self::Write { .. } => "write",
            Self::Append { .. } => "append",
        }
    }

    /// Returns the paths it names (one, or two for link and rename).
    pub fn paths(&self) -> Vec<&str> {
        match self {
            Self::Noop => vec![],
            Self::Create { path, .. }
            | Self::Mkdir { path, .. }
            | Self::Mknod { path, .. }
            | Self::Symlink { path, .. }
            | Self::Unlink { path }
            | Self::Rmdir { path }
            | Self::Setattr { path, .. }
            | Self::Write { path, .. }
            | Self::Append { path, .. } => vec![path],
            Self::Link { existing, path } => vec![existing, path],
            Self::Rename { from, to } => vec![from, to],
        }
    }

    /// Returns its encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.push(KML_VERSION);
        self.put(&mut b);
        b
    }

    /// Decodes exactly one operation.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8("kml version")? != KML_VERSION {
            return Err(DecodeError::Invalid("kml version"));
        }
        let op = Self::read(&mut r)?;
        match r.remaining() {
            0 => Ok(op),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Appends its body (no version byte): the opcode (0 noop, 1 create, 2 mkdir, 3 mknod,
    /// 4 symlink, 5 link, 6 unlink, 7 rmdir, 8 rename, 9 setattr, 10 write, 11 append), then
    /// its fields in declaration order (strings and data as blobs, each option as a
    /// presence byte 0 or 1 and its value).
    pub fn put(&self, b: &mut Vec<u8>) {
        match self {
            Self::Noop => b.push(0),
            Self::Create { path, attrs } => {
                b.push(1);
                put_str(b, path);
                put_attrs(b, attrs);
            }
            Self::Mkdir { path, attrs } => {
                b.push(2);
                put_str(b, path);
                put_attrs(b, attrs);
            }
            Self::Mknod { path, attrs } => {
                b.push(3);
                put_str(b, path);
                put_attrs(b, attrs);
            }
            Self::Symlink {
                path,
                target,
                attrs,
            } => {
                b.push(4);
                put_str(b, path);
                put_str(b, target);
                put_attrs(b, attrs);
            }
            Self::Link { existing, path } => {
                b.push(5);
                put_str(b, existing);
                put_str(b, path);
            }
            Self::Unlink { path } => {
                b.push(6);
                put_str(b, path);
            }
            Self::Rmdir { path } => {
                b.push(7);
                put_str(b, path);
            }
            Self::Rename { from, to } => {
                b.push(8);
                put_str(b, from);
                put_str(b, to);
            }
            Self::Setattr {
                path,
                mode,
                uid,
                gid,
                mtime,
                size,
            } => {
                b.push(9);
                put_str(b, path);
                put_opt(b, mode.as_ref(), |b, x| {
                    b.extend_from_slice(&x.to_be_bytes())
                });
                put_opt(b, uid.as_ref(), |b, x| {
                    b.extend_from_slice(&x.to_be_bytes())
                });
                put_opt(b, gid.as_ref(), |b, x| {
                    b.extend_from_slice(&x.to_be_bytes())
                });
                put_opt(b, mtime.as_ref(), |b, x| {
                    b.extend_from_slice(&x.to_be_bytes())
                });
                put_opt(b, size.as_ref(), |b, x| {
                    b.extend_from_slice(&x.to_be_bytes())
                });
            }
            Self::Write { path, data } => {
                b.push(10);
                put_str(b, path);
                put_blob(b, data);
            }
            Self::Append { path, data } => {
                b.push(11);
                put_str(b, path);
                put_blob(b, data);
            }
        }
    }

    /// Reads a body written by [`Op::put`]: every path checked by [`check_path`], every
    /// length bounded.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("kml opcode")? {
            0 => Self::Noop,
            1 => Self::Create {
                path: read_path(r, "kml path")?,
                attrs: read_attrs(r)?,
            },
            2 => Self::Mkdir {
                path: read_path(r, "kml path")?,
                attrs: read_attrs(r)?,
            },
            3 => Self::Mknod {
                path: read_path(r, "kml path")?,
                attrs: read_attrs(r)?,
            },
            4 => Self::Symlink {
                path: read_path(r, "kml path")?,
                target: read_target(r)?,
                attrs: read_attrs(r)?,
            },
            5 => Self::Link {
                existing: read_path(r, "kml link existing")?,
                path: read_path(r, "kml path")?,
            },
            6 => Self::Unlink {
                path: read_path(r, "kml path")?,
            },
            7 => Self::Rmdir {
                path: read_path(r, "kml path")?,
            },
            8 => Self::Rename {
                from: read_path(r, "kml rename from")?,
                to: read_path(r, "kml rename to")?,
            },
            9 => {
                let path = read_path(r, "kml path")?;
                let mode = read_opt(r, "kml setattr mode", |r| {
                    let m = r.u32("kml setattr mode")?;
                    if m > MAX_MODE {
                        return Err(DecodeError::Invalid("kml setattr mode"));
                    }
                    Ok(m)
                })?;
                Self::Setattr {
                    path,
                    mode,
                    uid: read_opt(r, "kml setattr uid", |r| r.u32("kml setattr uid"))?,
                    gid: read_opt(r, "kml setattr gid", |r| r.u32("kml setattr gid"))?,
                    mtime: read_opt(r, "kml setattr mtime", |r| r.u64("kml setattr mtime"))?,
                    size: read_opt(r, "kml setattr size", |r| r.u64("kml setattr size"))?,
                }
            }
            10 => Self::Write {
                path: read_path(r, "kml path")?,
                data: Bytes::copy_from_slice(r.blob("kml data", MAX_DATA)?),
            },
            11 => Self::Append {
                path: read_path(r, "kml path")?,
                data: Bytes::copy_from_slice(r.blob("kml data", MAX_DATA)?),
            },
            _ => return Err(DecodeError::Invalid("kml opcode")),
        })
    }
}

impl Record {
    /// Returns its encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.push(KML_VERSION);
        self.put(&mut b);
        b
    }

    /// Decodes exactly one record.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        if r.u8("kml version")? != KML_VERSION {
            return Err(DecodeError::Invalid("kml version"));
        }
        let rec = Self::read(&mut r)?;
        match r.remaining() {
            0 => Ok(rec),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Appends its body (no version byte): id (origin u32, incarnation u32, recno u64),
    /// prev, time, the NOOP mark (0 none; 1 failed and the errno's index in the table of
    /// [`Noop::Failed`]; 2 conflict and its kind), the operation, the touches (a count, then
    /// each one's fid, kind, optional old and new versions), and the undo fields (each an
    /// option). An errno name outside the table is written as `EINVAL`.
    pub fn put(&self, b: &mut Vec<u8>) {
        put_id(b, &self.id);
        b.extend_from_slice(&self.prev.to_be_bytes());
        b.extend_from_slice(&self.time.to_be_bytes());
        match &self.noop {
            None => b.push(0),
            Some(Noop::Failed(name)) => {
                b.push(1);
                let i = ERRNOS
                    .iter()
                    .position(|e| e == name)
                    .or_else(|| ERRNOS.iter().position(|e| *e == "EINVAL"))
                    .unwrap_or(0);
                b.push(i as u8);
            }
            Some(Noop::Conflict(k)) => {
                b.push(2);
                b.push(conflict_byte(*k));
            }
        }
        self.op.put(b);
        b.extend_from_slice(&(self.touched.len() as u16).to_be_bytes());
        for t in &self.touched {
            put_id(b, &t.fid);
            b.push(kind_byte(t.kind));
            put_opt(b, t.old.as_ref(), put_version);
            put_opt(b, t.new.as_ref(), put_version);
        }
        put_opt(b, self.undo.old_attrs.as_ref(), put_attrs);
        put_opt(b, self.undo.old_target.as_ref(), |b, t| put_str(b, t));
        put_opt(b, self.undo.old_data.as_ref(), |b, d| put_blob(b, d));
    }

    /// Reads a body written by [`Record::put`] (`prev` must be `recno - 1`; at most
    /// [`MAX_TOUCHED`] touches).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let id = read_id(r, "kml record id")?;
        let prev = r.u64("kml record prev")?;
        if prev != id.recno.saturating_sub(1) {
            return Err(DecodeError::Invalid("kml record prev"));
        }
        let time = r.u64("kml record time")?;
        let noop = match r.u8("kml record noop")? {
            0 => None,
            1 => {
                let i = r.u8("kml record errno")? as usize;
                match ERRNOS.get(i) {
                    Some(name) => Some(Noop::Failed(name)),
                    None => return Err(DecodeError::Invalid("kml record errno")),
                }
            }
            2 => Some(Noop::Conflict(read_conflict(r)?)),
            _ => return Err(DecodeError::Invalid("kml record noop")),
        };
        let op = Op::read(r)?;
        let n = r.count("kml record touched", MAX_TOUCHED)?;
        let mut touched = Vec::with_capacity(n);
        for _ in 0..n {
            touched.push(Touch {
                fid: read_id(r, "kml touch fid")?,
                kind: read_kind(r)?,
                old: read_opt(r, "kml touch old", read_version)?,
                new: read_opt(r, "kml touch new", read_version)?,
            });
        }
        let undo = Undo {
            old_attrs: read_opt(r, "kml undo attrs", read_attrs)?,
            old_target: read_opt(r, "kml undo target", read_target)?,
            old_data: read_opt(r, "kml undo data", |r| {
                Ok(Bytes::copy_from_slice(r.blob("kml undo data", MAX_DATA)?))
            })?,
        };
        Ok(Self {
            id,
            prev,
            time,
            noop,
            op,
            touched,
            undo,
        })
    }
}

/// Checks a path: absolute, `/`-separated, no empty, `.` or `..` component, no NUL, at most
/// [`MAX_PATH`] bytes, [`MAX_NAME`] per component and [`MAX_DEPTH`] components; `/` alone is
/// the root. Returns its components.
pub fn check_path(path: &str) -> Result<Vec<&str>, DecodeError> {
    if path.len() > MAX_PATH {
        return Err(DecodeError::TooLong {
            field: "kml path",
            len: path.len(),
            max: MAX_PATH,
        });
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(DecodeError::Invalid("kml path: not absolute"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let mut comps = Vec::new();
    for c in rest.split('/') {
        if c.is_empty() || c == "." || c == ".." || c.contains('\0') {
            return Err(DecodeError::Invalid("kml path component"));
        }
        if c.len() > MAX_NAME {
            return Err(DecodeError::TooLong {
                field: "kml path component",
                len: c.len(),
                max: MAX_NAME,
            });
        }
        if comps.len() == MAX_DEPTH {
            return Err(DecodeError::TooLong {
                field: "kml path depth",
                len: MAX_DEPTH + 1,
                max: MAX_DEPTH,
            });
        }
        comps.push(c);
    }
    Ok(comps)
}

/// Checks a symlink's target: not empty, no NUL, at most [`MAX_PATH`] bytes (not resolved,
/// so any other string).
pub fn check_target(target: &str) -> Result<(), DecodeError> {
    if target.len() > MAX_PATH {
        return Err(DecodeError::TooLong {
            field: "kml symlink target",
            len: target.len(),
            max: MAX_PATH,
        });
    }
    if target.is_empty() || target.contains('\0') {
        return Err(DecodeError::Invalid("kml symlink target"));
    }
    Ok(())
}

/// The largest permission bits.
pub const MAX_MODE: u32 = 0o7777;

/// The errno names a failed record may carry, in their encoding's order.
const ERRNOS: [&str; 8] = [
    "EEXIST",
    "ENOENT",
    "ENOTEMPTY",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "EFBIG",
    "EMLINK",
];

pub(super) fn put_str(b: &mut Vec<u8>, s: &str) {
    put_blob(b, s.as_bytes());
}

fn put_opt<T>(b: &mut Vec<u8>, x: Option<&T>, put: impl FnOnce(&mut Vec<u8>, &T)) {
    match x {
        None => b.push(0),
        Some(x) => {
            b.push(1);
            put(b, x);
        }
    }
}

fn read_opt<'a, T>(
    r: &mut Reader<'a>,
    field: &'static str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    match r.u8(field)? {
        0 => Ok(None),
        1 => Ok(Some(read(r)?)),
        _ => Err(DecodeError::Invalid(field)),
    }
}

pub(super) fn read_str<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(r.blob(field, MAX_PATH)?).map_err(|_| DecodeError::Invalid(field))
}

fn read_path(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    let s = read_str(r, field)?;
    check_path(s)?;
    Ok(s.to_owned())
}

pub(super) fn read_target(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let s = read_str(r, "kml symlink target")?;
    check_target(s)?;
    Ok(s.to_owned())
}

pub(super) fn put_attrs(b: &mut Vec<u8>, a: &Attrs) {
    b.extend_from_slice(&a.mode.to_be_bytes());
    b.extend_from_slice(&a.uid.to_be_bytes());
    b.extend_from_slice(&a.gid.to_be_bytes());
}

pub(super) fn read_attrs(r: &mut Reader<'_>) -> Result<Attrs, DecodeError> {
    let mode = r.u32("kml attrs mode")?;
    if mode > MAX_MODE {
        return Err(DecodeError::Invalid("kml attrs mode"));
    }
    Ok(Attrs {
        mode,
        uid: r.u32("kml attrs uid")?,
        gid: r.u32("kml attrs gid")?,
    })
}

pub(super) fn put_id(b: &mut Vec<u8>, id: &RecId) {
    b.extend_from_slice(&id.origin.to_be_bytes());
    b.extend_from_slice(&id.inc.to_be_bytes());
    b.extend_from_slice(&id.recno.to_be_bytes());
}

pub(super) fn read_id(r: &mut Reader<'_>, field: &'static str) -> Result<RecId, DecodeError> {
    Ok(RecId {
        origin: r.u32(field)?,
        inc: r.u32(field)?,
        recno: r.u64(field)?,
    })
}

pub(super) fn put_version(b: &mut Vec<u8>, v: &Version) {
    b.extend_from_slice(&v.mtime.to_be_bytes());
    b.extend_from_slice(&v.ctime.to_be_bytes());
    b.extend_from_slice(&v.size.to_be_bytes());
    put_id(b, &v.store);
}

pub(super) fn read_version(r: &mut Reader<'_>) -> Result<Version, DecodeError> {
    Ok(Version {
        mtime: r.u64("kml version mtime")?,
        ctime: r.u64("kml version ctime")?,
        size: r.u64("kml version size")?,
        store: read_id(r, "kml version store")?,
    })
}

fn kind_byte(k: Kind) -> u8 {
    match k {
        Kind::Dir => 0,
        Kind::File => 1,
        Kind::Symlink => 2,
    }
}

fn read_kind(r: &mut Reader<'_>) -> Result<Kind, DecodeError> {
    match r.u8("kml touch kind")? {
        0 => Ok(Kind::Dir),
        1 => Ok(Kind::File),
        2 => Ok(Kind::Symlink),
        _ => Err(DecodeError::Invalid("kml touch kind")),
    }
}

fn conflict_byte(k: ConflictKind) -> u8 {
    match k {
        ConflictKind::NameName => 0,
        ConflictKind::UpdateUpdate => 1,
        ConflictKind::UpdateDelete => 2,
        ConflictKind::DeleteUpdate => 3,
        ConflictKind::RenameRename => 4,
    }
}

fn read_conflict(r: &mut Reader<'_>) -> Result<ConflictKind, DecodeError> {
    match r.u8("kml record conflict")? {
        0 => Ok(ConflictKind::NameName),
        1 => Ok(ConflictKind::UpdateUpdate),
        2 => Ok(ConflictKind::UpdateDelete),
        3 => Ok(ConflictKind::DeleteUpdate),
        4 => Ok(ConflictKind::RenameRename),
        _ => Err(DecodeError::Invalid("kml record conflict")),
    }
}

#[cfg(test)]
mod tests;
