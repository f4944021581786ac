//! Fuzz target: the KML codecs (`Op::decode`, `Record::decode`) and the fileset behind them:
//! never panic; what decodes re-encodes to the same bytes; a decoded operation applied to a
//! small fileset never panics and its undo restores the fileset (equal digest); a decoded
//! record that `check` accepts replays, and its undo restores the fileset.
#![no_main]
use ringlab_sync::kml::record::{Attrs, Op, RecId, Record};
use ringlab_sync::kml::Fileset;

/// A small fileset: a directory with a file, a second name of it, a symlink.
fn small() -> Fileset {
    let mut fs = Fileset::new();
    fs.set_mirror(true);
    let attrs = Attrs {
        mode: 0o644,
        uid: 1,
        gid: 1,
    };
    let ops = [
        Op::Mkdir {
            path: "/d".into(),
            attrs,
        },
        Op::Create {
            path: "/d/f".into(),
            attrs,
        },
        Op::Write {
            path: "/d/f".into(),
            data: bytes::Bytes::from_static(b"content"),
        },
        Op::Link {
            existing: "/d/f".into(),
            path: "/g".into(),
        },
        Op::Symlink {
            path: "/s".into(),
            target: "d/f".into(),
            attrs,
        },
        Op::Mkdir {
            path: "/e".into(),
            attrs,
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        let n = i as u64 + 1;
        let id = RecId {
            origin: 1,
            inc: 1,
            recno: n,
        };
        let rec = fs.apply(id, n - 1, n, op);
        assert!(rec.noop.is_none());
    }
    fs
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(op) = Op::decode(data) {
        assert_eq!(op.encode(), data);
        let mut fs = small();
        let before = fs.clone();
        let id = RecId {
            origin: 2,
            inc: 1,
            recno: 1,
        };
        let rec = fs.apply(id, 0, 100, &op);
        assert_eq!(Record::decode(&rec.encode()).as_ref(), Ok(&rec));
        let _ = fs.listing();
        while fs.poll_change().is_some() {}
        fs.undo(&rec);
        assert_eq!(fs, before);
        assert_eq!(fs.digest(), before.digest());
    }
    if let Ok(rec) = Record::decode(data) {
        assert_eq!(rec.encode(), data);
        let mut fs = small();
        let before = fs.clone();
        if fs.check(&rec).is_ok() {
            let r = fs.replay(&rec);
            let _ = fs.tree_digest();
            fs.undo(&r);
            assert_eq!(fs, before);
            assert_eq!(fs.digest(), before.digest());
        }
        // Undo of a record that was never applied must not panic either.
        let mut other = small();
        other.undo(&rec);
    }
});
