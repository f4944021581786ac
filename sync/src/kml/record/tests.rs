//! The codec: round trips (property-tested), truncation, non-canonical and over-long input.

use super::*;
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z]{1,5}", 0..4).prop_map(|c| format!("/{}", c.join("/")))
}

fn attrs() -> impl Strategy<Value = Attrs> {
    (0..=MAX_MODE, any::<u32>(), any::<u32>()).prop_map(|(mode, uid, gid)| Attrs { mode, uid, gid })
}

fn data() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn target() -> impl Strategy<Value = String> {
    "[a-z./]{1,12}"
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Noop),
        (path(), attrs()).prop_map(|(path, attrs)| Op::Create { path, attrs }),
        (path(), attrs()).prop_map(|(path, attrs)| Op::Mkdir { path, attrs }),
        (path(), attrs()).prop_map(|(path, attrs)| Op::Mknod { path, attrs }),
        (path(), target(), attrs()).prop_map(|(path, target, attrs)| Op::Symlink {
            path,
            target,
            attrs
        }),
        (path(), path()).prop_map(|(existing, path)| Op::Link { existing, path }),
        path().prop_map(|path| Op::Unlink { path }),
        path().prop_map(|path| Op::Rmdir { path }),
        (path(), path()).prop_map(|(from, to)| Op::Rename { from, to }),
        (
            path(),
            prop::option::of(0..=MAX_MODE),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(path, mode, uid, gid, mtime, size)| Op::Setattr {
                path,
                mode,
                uid,
                gid,
                mtime,
                size
            }),
        (path(), data()).prop_map(|(path, data)| Op::Write { path, data }),
        (path(), data()).prop_map(|(path, data)| Op::Append { path, data }),
    ]
}

fn recid() -> impl Strategy<Value = RecId> {
    (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(origin, inc, recno)| RecId {
        origin,
        inc,
        recno,
    })
}

fn version() -> impl Strategy<Value = Version> {
    (any::<u64>(), any::<u64>(), any::<u64>(), recid()).prop_map(|(mtime, ctime, size, store)| {
        Version {
            mtime,
            ctime,
            size,
            store,
        }
    })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Dir), Just(Kind::File), Just(Kind::Symlink)]
}

fn noop() -> impl Strategy<Value = Option<Noop>> {
    prop_oneof![
        Just(None),
        (0..ERRNOS.len()).prop_map(|i| Some(Noop::Failed(ERRNOS[i]))),
        prop_oneof![
            Just(ConflictKind::NameName),
            Just(ConflictKind::UpdateUpdate),
            Just(ConflictKind::UpdateDelete),
            Just(ConflictKind::DeleteUpdate),
            Just(ConflictKind::RenameRename),
        ]
        .prop_map(|k| Some(Noop::Conflict(k))),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        recid(),
        any::<u64>(),
        noop(),
        op(),
        prop::collection::vec(
            (
                recid(),
                kind(),
                prop::option::of(version()),
                prop::option::of(version()),
            )
                .prop_map(|(fid, kind, old, new)| Touch {
                    fid,
                    kind,
                    old,
                    new,
                }),
            0..=MAX_TOUCHED,
        ),
        (
            prop::option::of(attrs()),
            prop::option::of(target()),
            prop::option::of(data()),
        ),
    )
        .prop_map(
            |(id, time, noop, op, touched, (old_attrs, old_target, old_data))| Record {
                id,
                prev: id.recno.saturating_sub(1),
                time,
                noop,
                op,
                touched,
                undo: Undo {
                    old_attrs,
                    old_target,
                    old_data,
                },
            },
        )
}

proptest! {
    #[test]
    fn ops_round_trip_and_every_truncation_is_an_error(op in op()) {
        let b = op.encode();
        let d = Op::decode(&b).unwrap();
        prop_assert_eq!(&d, &op);
        prop_assert_eq!(d.encode(), b.clone());
        for n in 0..b.len() {
            prop_assert!(Op::decode(&b[..n]).is_err());
        }
        let mut extra = b.clone();
        extra.push(0);
        prop_assert_eq!(Op::decode(&extra), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn records_round_trip_and_every_truncation_is_an_error(rec in record()) {
        let b = rec.encode();
        let d = Record::decode(&b).unwrap();
        prop_assert_eq!(&d, &rec);
        prop_assert_eq!(d.encode(), b.clone());
        for n in 0..b.len() {
            prop_assert!(Record::decode(&b[..n]).is_err());
        }
    }

    #[test]
    fn garbage_never_panics_and_what_decodes_re_encodes(b in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(op) = Op::decode(&b) {
            prop_assert_eq!(op.encode(), b.clone());
        }
        if let Ok(rec) = Record::decode(&b) {
            prop_assert_eq!(rec.encode(), b.clone());
        }
    }
}

fn sample() -> Record {
    Record {
        id: RecId {
            origin: 1,
            inc: 2,
            recno: 3,
        },
        prev: 2,
        time: 9,
        noop: None,
        op: Op::Setattr {
            path: "/a".into(),
            mode: Some(0o644),
            uid: None,
            gid: None,
            mtime: None,
            size: None,
        },
        touched: vec![Touch {
            fid: RecId {
                origin: 1,
                inc: 2,
                recno: 1,
            },
            kind: Kind::File,
            old: Some(Version::default()),
            new: None,
        }],
        undo: Undo::default(),
    }
}

/// The offset of the first presence byte of the setattr in [`sample`]'s encoding (after the
/// version byte, id 16, prev 8, time 8, noop 1, opcode 1, path 4 + 2).
const SETATTR_MODE: usize = 1 + 16 + 8 + 8 + 1 + 1 + 4 + 2;

#[test]
fn non_canonical_and_invalid_bytes_are_refused() {
    let good = sample().encode();
    assert_eq!(Record::decode(&good).unwrap(), sample());
    assert_eq!(good[SETATTR_MODE], 1);
    // A presence byte other than 0 or 1.
    let mut b = good.clone();
    b[SETATTR_MODE] = 2;
    assert!(matches!(Record::decode(&b), Err(DecodeError::Invalid(_))));
    // A mode above 0o7777.
    let mut b = good.clone();
    b[SETATTR_MODE + 1..SETATTR_MODE + 5].copy_from_slice(&0o10000u32.to_be_bytes());
    assert_eq!(
        Record::decode(&b),
        Err(DecodeError::Invalid("kml setattr mode"))
    );
    // prev not recno - 1.
    let mut bad = sample();
    bad.prev = 1;
    assert_eq!(
        Record::decode(&bad.encode()),
        Err(DecodeError::Invalid("kml record prev"))
    );
    // The first record's prev is 0.
    let mut first = sample();
    first.id.recno = 0;
    first.prev = 0;
    assert_eq!(Record::decode(&first.encode()).unwrap(), first);
    // A noop byte, errno index, conflict kind or touch kind out of range.
    let noop_at = 1 + 16 + 8 + 8;
    let mut b = good.clone();
    b[noop_at] = 3;
    assert!(Record::decode(&b).is_err());
    let mut failed = sample();
    failed.noop = Some(Noop::Failed("ENOENT"));
    let mut b = failed.encode();
    assert_eq!(Record::decode(&b).unwrap(), failed);
    b[noop_at + 1] = ERRNOS.len() as u8;
    assert_eq!(
        Record::decode(&b),
        Err(DecodeError::Invalid("kml record errno"))
    );
    let mut conflict = sample();
    conflict.noop = Some(Noop::Conflict(ConflictKind::RenameRename));
    let mut b = conflict.encode();
    assert_eq!(Record::decode(&b).unwrap(), conflict);
    b[noop_at + 1] = 5;
    assert!(Record::decode(&b).is_err());
    // An unknown version or opcode.
    let mut b = good.clone();
    b[0] = 2;
    assert_eq!(Record::decode(&b), Err(DecodeError::Invalid("kml version")));
    assert_eq!(
        Op::decode(&[KML_VERSION, 12]),
        Err(DecodeError::Invalid("kml opcode"))
    );
    // Bad paths and targets.
    for p in ["a", "", "/a/", "//a", "/a/./b", "/a/../b", "/a\0b"] {
        let b = Op::Unlink { path: p.into() }.encode();
        assert!(Op::decode(&b).is_err(), "{p:?}");
    }
    for t in ["", "a\0b"] {
        let b = Op::Symlink {
            path: "/s".into(),
            target: t.into(),
            attrs: Attrs::default(),
        }
        .encode();
        assert!(Op::decode(&b).is_err(), "{t:?}");
    }
    // A path that is not UTF-8.
    let mut b = vec![KML_VERSION, 6];
    put_blob(&mut b, &[b'/', 0xff]);
    assert!(Op::decode(&b).is_err());
}

#[test]
fn over_long_lengths_are_refused_before_reading() {
    let mut b = vec![KML_VERSION, 6];
    b.extend_from_slice(&(MAX_PATH as u32 + 1).to_be_bytes());
    assert!(matches!(Op::decode(&b), Err(DecodeError::TooLong { .. })));
    let mut b = vec![KML_VERSION, 10];
    put_blob(&mut b, b"/f");
    b.extend_from_slice(&(MAX_DATA as u32 + 1).to_be_bytes());
    assert!(matches!(Op::decode(&b), Err(DecodeError::TooLong { .. })));
    let mut b = vec![KML_VERSION, 10];
    put_blob(&mut b, b"/f");
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(Op::decode(&b), Err(DecodeError::TooLong { .. })));
    // More touches than MAX_TOUCHED.
    let mut rec = sample();
    rec.touched.clear();
    let mut b = rec.encode();
    let at = b.len() - 3 - 2;
    b[at..at + 2].copy_from_slice(&(MAX_TOUCHED as u16 + 1).to_be_bytes());
    assert!(matches!(
        Record::decode(&b),
        Err(DecodeError::TooLong {
            field: "kml record touched",
            ..
        })
    ));
    // Long data in the undo.
    let mut rec = sample();
    rec.undo.old_data = Some(Bytes::from(vec![0; MAX_DATA]));
    assert_eq!(Record::decode(&rec.encode()).unwrap(), rec);
}

#[test]
fn paths_are_checked() {
    assert_eq!(check_path("/").unwrap(), Vec::<&str>::new());
    assert_eq!(check_path("/a/b").unwrap(), vec!["a", "b"]);
    for bad in ["", "a", "/a/", "//", "/a//b", "/.", "/..", "/a/\0"] {
        assert!(check_path(bad).is_err(), "{bad:?}");
    }
    let long_name = format!("/{}", "x".repeat(MAX_NAME + 1));
    assert!(check_path(&long_name).is_err());
    assert!(check_path(&format!("/{}", "x".repeat(MAX_NAME))).is_ok());
    let deep = "/a".repeat(MAX_DEPTH + 1);
    assert!(check_path(&deep).is_err());
    assert!(check_path(&"/a".repeat(MAX_DEPTH)).is_ok());
    let long = "/".to_owned() + &vec!["y".repeat(200); 21].join("/");
    assert!(long.len() > MAX_PATH);
    assert!(matches!(
        check_path(&long),
        Err(DecodeError::TooLong {
            field: "kml path",
            ..
        })
    ));
}
