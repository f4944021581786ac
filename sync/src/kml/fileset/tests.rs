//! The fileset: each operation's success and failure, undo and replay as exact inverses and
//! copies (property-tested over random trees), conflicts, and the mirror's change stream.

use super::*;
use crate::kml::record::{Noop, MAX_DATA};
use proptest::prelude::*;

fn id(recno: u64) -> RecId {
    RecId {
        origin: 1,
        inc: 1,
        recno,
    }
}

fn a(mode: u32) -> Attrs {
    Attrs {
        mode,
        uid: 1,
        gid: 2,
    }
}

/// A fileset and the number of its next record.
struct T {
    fs: Fileset,
    n: u64,
}

impl T {
    fn new() -> Self {
        let mut fs = Fileset::new();
        fs.set_mirror(true);
        Self { fs, n: 0 }
    }

    fn run(&mut self, op: Op) -> Record {
        self.n += 1;
        let rec = self.fs.apply(id(self.n), self.n - 1, self.n * 10, &op);
        let op = rec.op.clone();
        if Op::decode(&op.encode()).is_ok() {
            assert_eq!(Record::decode(&rec.encode()).unwrap(), rec);
        }
        rec
    }

    fn ok(&mut self, op: Op) -> Record {
        let rec = self.run(op);
        assert_eq!(rec.noop, None, "{:?}", rec.op);
        rec
    }

    fn err(&mut self, op: Op, errno: &str) {
        let before = self.fs.clone();
        let rec = self.run(op);
        assert_eq!(
            rec.noop,
            Some(Noop::Failed(errno_static(errno))),
            "{:?}",
            rec.op
        );
        assert!(rec.touched.is_empty());
        assert_eq!(rec.undo, Undo::default());
        assert_eq!(self.fs, before);
    }
}

fn errno_static(e: &str) -> &'static str {
    [
        "EEXIST",
        "ENOENT",
        "ENOTEMPTY",
        "ENOTDIR",
        "EISDIR",
        "EINVAL",
        "EFBIG",
        "EMLINK",
    ]
    .into_iter()
    .find(|x| *x == e)
    .unwrap()
}

fn create(p: &str) -> Op {
    Op::Create {
        path: p.into(),
        attrs: a(0o644),
    }
}

fn mkdir(p: &str) -> Op {
    Op::Mkdir {
        path: p.into(),
        attrs: a(0o755),
    }
}

fn symlink(p: &str, t: &str) -> Op {
    Op::Symlink {
        path: p.into(),
        target: t.into(),
        attrs: a(0o777),
    }
}

fn write(p: &str, d: &[u8]) -> Op {
    Op::Write {
        path: p.into(),
        data: Bytes::copy_from_slice(d),
    }
}

fn append(p: &str, d: &[u8]) -> Op {
    Op::Append {
        path: p.into(),
        data: Bytes::copy_from_slice(d),
    }
}

fn link(e: &str, p: &str) -> Op {
    Op::Link {
        existing: e.into(),
        path: p.into(),
    }
}

fn unlink(p: &str) -> Op {
    Op::Unlink { path: p.into() }
}

fn rmdir(p: &str) -> Op {
    Op::Rmdir { path: p.into() }
}

fn rename(f: &str, t: &str) -> Op {
    Op::Rename {
        from: f.into(),
        to: t.into(),
    }
}

fn setattr(p: &str, mode: Option<u32>, size: Option<u64>) -> Op {
    Op::Setattr {
        path: p.into(),
        mode,
        uid: None,
        gid: None,
        mtime: None,
        size,
    }
}

fn data_of(fs: &Fileset, p: &str) -> Bytes {
    match &fs.object(fs.lookup(p).unwrap()).unwrap().body {
        Body::File { data, .. } => data.clone(),
        b => panic!("not a file: {b:?}"),
    }
}

fn nlink_of(fs: &Fileset, p: &str) -> u32 {
    match &fs.object(fs.lookup(p).unwrap()).unwrap().body {
        Body::File { nlink, .. } => *nlink,
        b => panic!("not a file: {b:?}"),
    }
}

/// Undoes `rec` on a copy and checks it gives `before` back.
fn undo_gives(after: &Fileset, rec: &Record, before: &Fileset) {
    let mut u = after.clone();
    u.undo(rec);
    assert_eq!(&u, before, "undo of {:?}", rec.op);
    assert_eq!(u.digest(), before.digest());
}

#[test]
fn a_new_fileset_is_the_root() {
    let fs = Fileset::new();
    assert_eq!(fs.lookup("/"), Some(RecId::ROOT));
    assert_eq!(fs.path_of(RecId::ROOT).as_deref(), Some("/"));
    assert_eq!(fs.size(), (1, 0));
    assert!(fs.listing().is_empty());
    let root = fs.object(RecId::ROOT).unwrap();
    assert_eq!(root.attrs.mode, 0o755);
    assert_eq!(root.version, Version::default());
    assert_eq!(Fileset::default(), fs);
}

#[test]
fn creates_and_their_failures() {
    let mut t = T::new();
    let r = t.ok(create("/f"));
    let f = t.fs.lookup("/f").unwrap();
    assert_eq!(f, id(1));
    assert_eq!(r.touched.len(), 2);
    assert_eq!(r.touched[0].fid, f);
    assert_eq!(r.touched[0].old, None);
    let v = Version {
        mtime: 10,
        ctime: 10,
        size: 0,
        store: id(1),
    };
    assert_eq!(r.touched[0].new, Some(v));
    assert_eq!(r.touched[1].fid, RecId::ROOT);
    assert_eq!(r.touched[1].new, Some(Version { size: 1, ..v }));
    t.ok(mkdir("/d"));
    t.ok(Op::Mknod {
        path: "/d/n".into(),
        attrs: a(0o600),
    });
    let r = t.ok(symlink("/d/s", "../f"));
    assert_eq!(r.touched[0].new.unwrap().size, 4);
    assert_eq!(
        t.fs.object(t.fs.lookup("/d").unwrap())
            .unwrap()
            .version
            .size,
        2
    );
    t.err(create("/f"), "EEXIST");
    t.err(mkdir("/d"), "EEXIST");
    t.err(mkdir("/"), "EEXIST");
    t.err(create("/x/y"), "ENOENT");
    t.err(create("/f/y"), "ENOTDIR");
    t.err(create("/f/y/z"), "ENOTDIR");
    t.err(create("/d/s/y"), "ENOTDIR");
    t.err(create("relative"), "EINVAL");
    t.err(
        Op::Create {
            path: "/m".into(),
            attrs: a(0o10000),
        },
        "EINVAL",
    );
    t.err(symlink("/t", ""), "EINVAL");
    assert_eq!(t.fs.size(), (5, 0));
    assert_eq!(t.fs.path_of(id(4)).as_deref(), Some("/d/s"));
}

#[test]
fn links_count_names() {
    let mut t = T::new();
    t.ok(create("/f"));
    t.ok(write("/f", b"hello"));
    t.ok(mkdir("/d"));
    t.ok(symlink("/s", "f"));
    let before = t.fs.clone();
    let r = t.ok(link("/f", "/d/g"));
    assert_eq!(nlink_of(&t.fs, "/f"), 2);
    assert_eq!(t.fs.lookup("/d/g"), t.fs.lookup("/f"));
    assert_eq!(r.touched[0].fid, id(1));
    assert_eq!(r.touched[0].new.unwrap().ctime, 50);
    assert_eq!(r.touched[0].new.unwrap().mtime, 20);
    undo_gives(&t.fs, &r, &before);
    t.err(link("/d", "/e"), "EISDIR");
    t.err(link("/s", "/e"), "EINVAL");
    t.err(link("/nope", "/e"), "ENOENT");
    t.err(link("/f", "/d"), "EEXIST");
    t.err(link("/f", "/x/e"), "ENOENT");
    // The listing names the smallest path of a linked file on every name.
    let l = t.fs.listing();
    let g = l.iter().find(|e| e.path == "/d/g").unwrap();
    let f = l.iter().find(|e| e.path == "/f").unwrap();
    assert_eq!(g.link.as_deref(), Some("/d/g"));
    assert_eq!(f.link.as_deref(), Some("/d/g"));
    assert_eq!(t.fs.path_of(id(1)).as_deref(), Some("/d/g"));
    // Unlinking one name keeps the object; the last name takes it.
    let before = t.fs.clone();
    let r = t.ok(unlink("/f"));
    assert_eq!(nlink_of(&t.fs, "/d/g"), 1);
    assert_eq!(r.touched[0].new.map(|v| v.ctime), Some(t.n * 10));
    assert_eq!(r.undo.old_data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(r.undo.old_attrs, Some(a(0o644)));
    undo_gives(&t.fs, &r, &before);
    let before = t.fs.clone();
    let r = t.ok(unlink("/d/g"));
    assert_eq!(t.fs.object(id(1)), None);
    assert_eq!(r.touched[0].new, None);
    assert_eq!(r.undo.old_data.as_deref(), Some(&b"hello"[..]));
    undo_gives(&t.fs, &r, &before);
}

#[test]
fn unlink_and_rmdir() {
    let mut t = T::new();
    t.ok(mkdir("/d"));
    t.ok(create("/d/f"));
    t.ok(symlink("/s", "/d/f"));
    t.err(unlink("/d"), "EISDIR");
    t.err(unlink("/"), "EISDIR");
    t.err(unlink("/x"), "ENOENT");
    t.err(unlink("/d/f/x"), "ENOTDIR");
    t.err(rmdir("/d"), "ENOTEMPTY");
    t.err(rmdir("/s"), "ENOTDIR");
    t.err(rmdir("/"), "EINVAL");
    t.err(rmdir("/nope"), "ENOENT");
    let before = t.fs.clone();
    let r = t.ok(unlink("/s"));
    assert_eq!(r.undo.old_target.as_deref(), Some("/d/f"));
    assert_eq!(r.undo.old_attrs, Some(a(0o777)));
    undo_gives(&t.fs, &r, &before);
    t.ok(unlink("/d/f"));
    let before = t.fs.clone();
    let r = t.ok(rmdir("/d"));
    assert_eq!(r.undo.old_attrs, Some(a(0o755)));
    assert_eq!(t.fs.size(), (1, 0));
    undo_gives(&t.fs, &r, &before);
}

#[test]
fn renames_move_directories_with_their_contents() {
    let mut t = T::new();
    t.ok(mkdir("/d"));
    t.ok(mkdir("/d/e"));
    t.ok(create("/d/e/f"));
    t.ok(write("/d/e/f", b"x"));
    t.ok(mkdir("/g"));
    let before = t.fs.clone();
    let r = t.ok(rename("/d", "/g/h"));
    assert_eq!(t.fs.lookup("/g/h/e/f"), Some(id(3)));
    assert_eq!(t.fs.lookup("/d"), None);
    assert_eq!(t.fs.path_of(id(3)).as_deref(), Some("/g/h/e/f"));
    match &t.fs.object(id(1)).unwrap().body {
        Body::Dir { parent, .. } => assert_eq!(*parent, id(5)),
        b => panic!("{b:?}"),
    }
    // The moved directory and both parents.
    let fids: Vec<RecId> = r.touched.iter().map(|x| x.fid).collect();
    assert_eq!(fids, vec![id(1), RecId::ROOT, id(5)]);
    assert_eq!(r.touched[0].new.unwrap().ctime, 60);
    undo_gives(&t.fs, &r, &before);
    // Under itself.
    t.err(rename("/g/h", "/g/h/e/x"), "EINVAL");
    t.err(rename("/g", "/g/h/x"), "EINVAL");
    t.err(rename("/g/h", "/g/h/x"), "EINVAL");
    t.err(rename("/", "/x"), "EINVAL");
    t.err(rename("/nope", "/x"), "ENOENT");
    t.err(rename("/g", "/g"), "EEXIST");
    t.err(rename("/g/h/e/f", "/g/h/e"), "EEXIST");
    t.err(rename("/g", "/nope/x"), "ENOENT");
    t.err(rename("/g", "/g/h/e/f/x"), "ENOTDIR");
    // Within one directory: its parent is touched once.
    let before = t.fs.clone();
    let r = t.ok(rename("/g/h/e/f", "/g/h/e/f2"));
    assert_eq!(r.touched.len(), 2);
    undo_gives(&t.fs, &r, &before);
}

#[test]
fn setattr_write_append() {
    let mut t = T::new();
    t.ok(create("/f"));
    t.ok(mkdir("/d"));
    t.ok(symlink("/s", "f"));
    let before = t.fs.clone();
    let r = t.ok(write("/f", b"abc"));
    assert_eq!(r.undo.old_data.as_deref(), Some(&b""[..]));
    assert_eq!(
        r.touched[0].new,
        Some(Version {
            mtime: 40,
            ctime: 40,
            size: 3,
            store: id(4)
        })
    );
    assert_eq!(r.touched.len(), 1);
    undo_gives(&t.fs, &r, &before);
    let before = t.fs.clone();
    let r = t.ok(append("/f", b"de"));
    assert_eq!(data_of(&t.fs, "/f"), Bytes::from_static(b"abcde"));
    assert_eq!(r.undo.old_data.as_deref(), Some(&b"abc"[..]));
    undo_gives(&t.fs, &r, &before);
    // Truncate, extend with zeros.
    let before = t.fs.clone();
    let r = t.ok(setattr("/f", None, Some(2)));
    assert_eq!(data_of(&t.fs, "/f"), Bytes::from_static(b"ab"));
    assert_eq!(r.touched[0].new.unwrap().mtime, t.n * 10);
    assert_eq!(r.undo.old_data.as_deref(), Some(&b"abcde"[..]));
    undo_gives(&t.fs, &r, &before);
    t.ok(setattr("/f", None, Some(4)));
    assert_eq!(data_of(&t.fs, "/f"), Bytes::from_static(b"ab\0\0"));
    // Mode only: mtime stays, ctime moves.
    let mtime = t.fs.object(id(1)).unwrap().version.mtime;
    let before = t.fs.clone();
    let r = t.ok(setattr("/f", Some(0o600), None));
    assert_eq!(t.fs.object(id(1)).unwrap().attrs.mode, 0o600);
    assert_eq!(r.touched[0].new.unwrap().mtime, mtime);
    assert_eq!(r.touched[0].new.unwrap().ctime, t.n * 10);
    assert_eq!(r.undo.old_attrs, Some(a(0o644)));
    assert_eq!(r.undo.old_data, None);
    undo_gives(&t.fs, &r, &before);
    let r = t.ok(Op::Setattr {
        path: "/d".into(),
        mode: Some(0o700),
        uid: Some(7),
        gid: Some(8),
        mtime: Some(5),
        size: None,
    });
    let d = t.fs.object(id(2)).unwrap();
    assert_eq!(
        d.attrs,
        Attrs {
            mode: 0o700,
            uid: 7,
            gid: 8
        }
    );
    assert_eq!(d.version.mtime, 5);
    assert_eq!(r.touched[0].new.unwrap().mtime, 5);
    t.err(setattr("/d", None, Some(1)), "EISDIR");
    t.err(setattr("/f", None, Some(MAX_DATA as u64 + 1)), "EFBIG");
    t.err(setattr("/f", Some(0o10000), None), "EINVAL");
    t.err(setattr("/nope", Some(0), None), "ENOENT");
    t.err(write("/d", b"x"), "EISDIR");
    t.err(write("/s", b"x"), "EINVAL");
    t.err(write("/nope", b"x"), "ENOENT");
    t.err(write("/f", &vec![0; MAX_DATA + 1]), "EFBIG");
    t.err(append("/d", b"x"), "EISDIR");
    t.err(append("/s", b"x"), "EINVAL");
    t.ok(write("/f", &vec![1; MAX_DATA]));
    t.err(append("/f", b"x"), "EFBIG");
    assert_eq!(t.fs.size(), (4, MAX_DATA as u64));
    let n = t.fs.object(RecId::ROOT).unwrap().version;
    let r = t.ok(Op::Noop);
    assert!(r.touched.is_empty());
    assert_eq!(t.fs.object(RecId::ROOT).unwrap().version, n);
}

/// Two copies of one tree: `a` changes, then `b` changes, then a record of `a` is checked
/// against `b`.
fn diverge(base: &[Op], on_a: Op, on_b: Op) -> Result<(), ConflictKind> {
    diverge_more(base, on_a, &[on_b])
}

fn diverge_more(base: &[Op], on_a: Op, on_b: &[Op]) -> Result<(), ConflictKind> {
    let mut t = T::new();
    for op in base {
        t.ok(op.clone());
    }
    let mut b = t.fs.clone();
    let rec = t.ok(on_a);
    // The record fits the tree it was made on.
    assert_eq!(b.check(&rec), Ok(()));
    for (i, op) in on_b.iter().enumerate() {
        let rb = b.apply(
            RecId {
                origin: 2,
                inc: 1,
                recno: i as u64 + 1,
            },
            i as u64,
            1000,
            op,
        );
        assert_eq!(rb.noop, None, "{op:?}");
    }
    b.check(&rec)
}

#[test]
fn each_conflict_kind() {
    let base = [create("/f"), mkdir("/d"), create("/d/g"), mkdir("/e")];
    use ConflictKind::*;
    // name/name: both create one name; a rename's target; a link's new name.
    assert_eq!(diverge(&base, create("/x"), mkdir("/x")), Err(NameName));
    assert_eq!(
        diverge(&base, rename("/f", "/x"), create("/x")),
        Err(NameName)
    );
    assert_eq!(
        diverge(&base, link("/f", "/x"), create("/x")),
        Err(NameName)
    );
    // update/update: both change one file.
    assert_eq!(
        diverge(&base, write("/f", b"a"), write("/f", b"b")),
        Err(UpdateUpdate)
    );
    assert_eq!(
        diverge(&base, setattr("/f", Some(0), None), append("/f", b"b")),
        Err(UpdateUpdate)
    );
    assert_eq!(
        diverge(&base, rename("/f", "/x"), write("/f", b"b")),
        Err(UpdateUpdate)
    );
    // update/delete: an update of a removed object, a create under a removed directory.
    assert_eq!(
        diverge(&base, write("/f", b"a"), unlink("/f")),
        Err(UpdateDelete)
    );
    assert_eq!(
        diverge(&base, create("/e/x"), rmdir("/e")),
        Err(UpdateDelete)
    );
    assert_eq!(
        diverge(&base, unlink("/f"), unlink("/f")),
        Err(UpdateDelete)
    );
    assert_eq!(
        diverge(&base, rename("/f", "/e/x"), rmdir("/e")),
        Err(UpdateDelete)
    );
    // delete/update: a removal of a changed object, or of a directory no longer empty.
    assert_eq!(
        diverge(&base, unlink("/f"), write("/f", b"b")),
        Err(DeleteUpdate)
    );
    assert_eq!(
        diverge(&base, rmdir("/e"), create("/e/x")),
        Err(DeleteUpdate)
    );
    assert_eq!(
        diverge(&base, rmdir("/e"), setattr("/e", Some(0), None)),
        Err(DeleteUpdate)
    );
    // rename/rename: the source gone or another object.
    assert_eq!(
        diverge(&base, rename("/f", "/x"), rename("/f", "/y")),
        Err(RenameRename)
    );
    assert_eq!(
        diverge_more(&base, rename("/f", "/x"), &[unlink("/f"), create("/f")]),
        Err(RenameRename)
    );
    // A moved source changed is update/update.
    assert_eq!(
        diverge(&base, rename("/d", "/x"), rename("/e", "/d/e")),
        Err(UpdateUpdate)
    );
    // Parents are not version-checked: other changes in one directory fit.
    assert_eq!(diverge(&base, create("/d/x"), create("/d/y")), Ok(()));
    assert_eq!(
        diverge(&base, write("/f", b"a"), write("/d/g", b"b")),
        Ok(())
    );
    // A NOOP record fits anything.
    let mut t = T::new();
    let rec = t.run(unlink("/nope"));
    assert!(rec.noop.is_some());
    assert_eq!(Fileset::new().check(&rec), Ok(()));
}

#[test]
fn replay_of_a_record_that_does_not_fit_changes_nothing() {
    let mut t = T::new();
    t.ok(create("/f"));
    let rec = t.ok(write("/f", b"a"));
    let mut empty = Fileset::new();
    let r = empty.replay(&rec);
    assert_eq!(r.noop, Some(Noop::Failed("EINVAL")));
    assert_eq!(empty, Fileset::new());
    // Undo of a record that does not fit changes nothing either.
    empty.undo(&rec);
    assert_eq!(empty, Fileset::new());
    let mut bad = rec.clone();
    bad.touched.clear();
    let before = t.fs.clone();
    t.fs.undo(&bad);
    assert_eq!(t.fs, before);
    let mut c = before.clone();
    assert_eq!(c.replay(&bad).noop, Some(Noop::Failed("EINVAL")));
    assert_eq!(c, before);
}

#[test]
fn replayed_parents_take_the_later_time() {
    let mut t = T::new();
    t.ok(mkdir("/d"));
    let mut b = t.fs.clone();
    let rec = t.ok(create("/d/x"));
    // b changes /d later than the record.
    b.apply(
        RecId {
            origin: 2,
            inc: 1,
            recno: 1,
        },
        0,
        1000,
        &create("/d/y"),
    );
    let before = b.clone();
    assert_eq!(b.check(&rec), Ok(()));
    let r = b.replay(&rec);
    assert_eq!(r.noop, None);
    let d = b.object(id(1)).unwrap().version;
    assert_eq!(d.mtime, 1000);
    assert_eq!(d.size, 2);
    assert_eq!(d.store, rec.id);
    assert_eq!(
        b.object(rec.id).unwrap().version,
        rec.touched[0].new.unwrap()
    );
    b.undo(&r);
    assert_eq!(b, before);
}

// ---- properties over random trees ----

const NAMES: [&str; 12] = [
    "/a", "/b", "/c", "/d", "/d/x", "/d/y", "/d/e", "/d/e/z", "/e", "/e/x", "/a/x", "/l",
];

fn arb_op() -> impl Strategy<Value = Op> {
    let p = || (0..NAMES.len()).prop_map(|i| NAMES[i].to_owned());
    let data = prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from);
    let mode = 0u32..0o1000;
    prop_oneof![
        3 => (p(), mode.clone()).prop_map(|(path, m)| Op::Create { path, attrs: a(m) }),
        4 => (p(), mode.clone()).prop_map(|(path, m)| Op::Mkdir { path, attrs: a(m) }),
        1 => (p(), mode.clone()).prop_map(|(path, m)| Op::Mknod { path, attrs: a(m) }),
        1 => (p(), p()).prop_map(|(path, target)| Op::Symlink {
            path,
            target,
            attrs: a(0o777)
        }),
        1 => (p(), p()).prop_map(|(existing, path)| Op::Link { existing, path }),
        1 => p().prop_map(|path| Op::Unlink { path }),
        1 => p().prop_map(|path| Op::Rmdir { path }),
        1 => (p(), p()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (
            p(),
            prop::option::of(mode),
            prop::option::of(0u32..3),
            prop::option::of(0u64..100),
            prop::option::of(0u64..12),
        )
            .prop_map(|(path, mode, uid, mtime, size)| Op::Setattr {
                path,
                mode,
                uid,
                gid: uid,
                mtime,
                size
            }),
        1 => (p(), data.clone()).prop_map(|(path, data)| Op::Write { path, data }),
        1 => (p(), data).prop_map(|(path, data)| Op::Append { path, data }),
        1 => Just(Op::Noop),
    ]
}

/// Builds a tree with `ops` (the failing ones change nothing), from a mirrored fileset.
fn build(ops: &[Op]) -> (Fileset, Vec<Record>) {
    let mut fs = Fileset::new();
    let mut recs = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let n = i as u64 + 1;
        recs.push(fs.apply(id(n), n - 1, n * 7 % 50, op));
    }
    (fs, recs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn undo_takes_apply_and_replay_back(
        ops in prop::collection::vec(arb_op(), 0..40),
        last in arb_op(),
    ) {
        let (before, _) = build(&ops);
        let mut s = before.clone();
        let rec = s.apply(id(1000), 999, 25, &last);
        let after = s.clone();
        if rec.noop.is_some() {
            prop_assert_eq!(&s, &before);
        }
        prop_assert!(rec.touched.len() <= crate::kml::record::MAX_TOUCHED);
        prop_assert_eq!(Record::decode(&rec.encode()).unwrap(), rec.clone());
        s.undo(&rec);
        prop_assert_eq!(&s, &before);
        prop_assert_eq!(s.digest(), before.digest());
        // The record fits the tree it was made on; replayed there it gives the same tree,
        // and undone, the tree before.
        let mut t = before.clone();
        prop_assert_eq!(t.check(&rec), Ok(()));
        let r = t.replay(&rec);
        prop_assert_eq!(&t, &after);
        prop_assert_eq!(t.digest(), after.digest());
        prop_assert_eq!(&r.touched, &rec.touched);
        prop_assert_eq!(&r.undo, &rec.undo);
        t.undo(&r);
        prop_assert_eq!(&t, &before);
    }

    #[test]
    fn replaying_the_records_of_apply_gives_the_same_fileset(
        ops in prop::collection::vec(arb_op(), 0..60),
    ) {
        let (fs, recs) = build(&ops);
        let mut copy = Fileset::new();
        for rec in &recs {
            prop_assert_eq!(copy.check(rec), Ok(()));
            let r = copy.replay(rec);
            prop_assert_eq!(&r.noop, &rec.noop);
        }
        prop_assert_eq!(&copy, &fs);
        prop_assert_eq!(copy.digest(), fs.digest());
        prop_assert_eq!(copy.tree_digest(), fs.tree_digest());
        // Undone in reverse, every record takes the fileset back to the root.
        let mut u = fs.clone();
        for rec in recs.iter().rev() {
            u.undo(rec);
        }
        prop_assert_eq!(&u, &Fileset::new());
    }

    #[test]
    fn records_fit_or_conflict_but_never_break_a_diverged_copy(
        base in prop::collection::vec(arb_op(), 0..30),
        on_a in prop::collection::vec(arb_op(), 0..6),
        on_b in prop::collection::vec(arb_op(), 0..6),
    ) {
        let (a0, _) = build(&base);
        let mut a = a0.clone();
        let mut b = a0;
        let mut recs = Vec::new();
        for (i, op) in on_a.iter().enumerate() {
            recs.push(a.apply(RecId { origin: 3, inc: 1, recno: i as u64 + 1 }, i as u64, 60 + i as u64, op));
        }
        for (i, op) in on_b.iter().enumerate() {
            b.apply(RecId { origin: 4, inc: 1, recno: i as u64 + 1 }, i as u64, 60 + i as u64, op);
        }
        // Replayed unchecked, a record applies or changes nothing, and its undo restores b;
        // undo of a record b never applied does not panic.
        for rec in &recs {
            let mut c = b.clone();
            let r = c.replay(rec);
            if r.noop.is_some() && rec.noop.is_none() {
                prop_assert_eq!(&c, &b);
            }
            c.undo(&r);
            prop_assert_eq!(&c, &b);
            c.undo(rec);
        }
        // Each record that fits replays (not marked EINVAL), and undo of all restores b.
        let before = b.clone();
        let mut done = Vec::new();
        for rec in &recs {
            if b.check(rec).is_ok() {
                let r = b.replay(rec);
                prop_assert!(r.noop == rec.noop, "{:?} -> {:?}", rec, r.noop);
                done.push(r);
            }
        }
        for r in done.iter().rev() {
            b.undo(r);
        }
        prop_assert_eq!(&b, &before);
    }

    #[test]
    fn the_change_stream_reproduces_the_listing(
        steps in prop::collection::vec((arb_op(), 0u8..4), 0..60),
    ) {
        let mut fs = Fileset::new();
        fs.set_mirror(true);
        let mut model = Model::default();
        let mut stack = Vec::new();
        for (i, (op, u)) in steps.iter().enumerate() {
            if *u == 0 {
                if let Some(rec) = stack.pop() {
                    fs.undo(&rec);
                }
            } else if *u == 1 {
                // Made on a copy, replayed here.
                let n = i as u64 + 1;
                let mut c = fs.clone();
                let rec = c.apply(id(n), n - 1, n, op);
                stack.push(fs.replay(&rec));
            } else {
                let n = i as u64 + 1;
                stack.push(fs.apply(id(n), n - 1, n, op));
            }
            while let Some(c) = fs.poll_change() {
                model.change(&c);
            }
            prop_assert_eq!(model.listing(), fs.listing());
        }
    }
}

/// A real directory, as the mirror's host keeps it: names to entries, files by inode.
#[derive(Default)]
struct Model {
    names: BTreeMap<String, M>,
    inodes: BTreeMap<u64, (Bytes, u32)>,
    next: u64,
}

#[derive(Clone, Debug)]
enum M {
    Dir(u32),
    File(u64),
    Symlink(String),
}

impl Model {
    fn change(&mut self, c: &Change) {
        match c {
            Change::Mkdir { path, mode } => {
                assert!(self.names.insert(path.clone(), M::Dir(*mode)).is_none());
            }
            Change::Write { path, data, mode } => match self.names.get(path) {
                Some(M::File(ino)) => {
                    self.inodes.insert(*ino, (data.clone(), *mode));
                }
                None => {
                    self.next += 1;
                    self.inodes.insert(self.next, (data.clone(), *mode));
                    self.names.insert(path.clone(), M::File(self.next));
                }
                Some(e) => panic!("write over {e:?}"),
            },
            Change::Symlink { path, target } => {
                assert!(self
                    .names
                    .insert(path.clone(), M::Symlink(target.clone()))
                    .is_none());
            }
            Change::Link { existing, path } => {
                let Some(M::File(ino)) = self.names.get(existing).cloned() else {
                    panic!("link of {existing}");
                };
                assert!(self.names.insert(path.clone(), M::File(ino)).is_none());
            }
            Change::Unlink { path } => {
                let Some(M::File(_) | M::Symlink(_)) = self.names.remove(path) else {
                    panic!("unlink of {path}");
                };
            }
            Change::Rmdir { path } => {
                let Some(M::Dir(_)) = self.names.remove(path) else {
                    panic!("rmdir of {path}");
                };
                let prefix = format!("{path}/");
                assert!(!self.names.keys().any(|k| k.starts_with(&prefix)));
            }
            Change::Rename { from, to } => {
                assert!(!self.names.contains_key(to));
                let prefix = format!("{from}/");
                let moved: Vec<String> = self
                    .names
                    .keys()
                    .filter(|k| *k == from || k.starts_with(&prefix))
                    .cloned()
                    .collect();
                assert!(!moved.is_empty(), "rename of {from}");
                for k in moved {
                    let e = self.names.remove(&k).unwrap();
                    self.names.insert(format!("{to}{}", &k[from.len()..]), e);
                }
            }
            Change::Chmod { path, mode } => match self.names.get_mut(path) {
                Some(M::Dir(m)) => *m = *mode,
                Some(M::File(ino)) => {
                    let ino = *ino;
                    if let Some(x) = self.inodes.get_mut(&ino) {
                        x.1 = *mode;
                    }
                }
                e => panic!("chmod of {e:?}"),
            },
        }
    }

    fn listing(&self) -> Vec<TreeEntry> {
        let mut first: BTreeMap<u64, (String, usize)> = BTreeMap::new();
        for (p, e) in &self.names {
            if let M::File(ino) = e {
                let x = first.entry(*ino).or_insert((p.clone(), 0));
                x.1 += 1;
            }
        }
        self.names
            .iter()
            .map(|(p, e)| match e {
                M::Dir(m) => TreeEntry {
                    path: p.clone(),
                    kind: Kind::Dir,
                    mode: *m,
                    size: 0,
                    content: [0; 32],
                    link: None,
                },
                M::File(ino) => {
                    let (data, mode) = &self.inodes[ino];
                    let (fp, n) = &first[ino];
                    TreeEntry {
                        path: p.clone(),
                        kind: Kind::File,
                        mode: *mode,
                        size: data.len() as u64,
                        content: sha(data),
                        link: (*n > 1).then(|| fp.clone()),
                    }
                }
                M::Symlink(t) => TreeEntry {
                    path: p.clone(),
                    kind: Kind::Symlink,
                    mode: 0,
                    size: 0,
                    content: sha(t.as_bytes()),
                    link: None,
                },
            })
            .collect()
    }
}

#[test]
fn digests_do_not_depend_on_insertion_order() {
    let mut x = T::new();
    x.ok(create("/a"));
    x.ok(create("/b"));
    let mut y = x.fs.clone();
    // Rebuild y's maps in another order: clone the objects reversed.
    let objs: Vec<(RecId, Object)> = y.objects.clone().into_iter().rev().collect();
    y.objects = objs.into_iter().collect();
    assert_eq!(x.fs.digest(), y.digest());
    assert_eq!(x.fs.tree_digest(), y.tree_digest());
    let mut z = x.fs.clone();
    let rec = z.apply(id(9), 8, 99, &write("/a", b"1"));
    assert_ne!(z.digest(), x.fs.digest());
    assert_ne!(z.tree_digest(), x.fs.tree_digest());
    z.undo(&rec);
    assert_eq!(z.digest(), x.fs.digest());
    // The listing digest is over the documented fields.
    let l = x.fs.listing();
    assert_eq!(listing_digest(&l), x.fs.tree_digest());
    assert_ne!(listing_digest(&l), listing_digest(&l[..1]));
}
