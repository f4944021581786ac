//! Fuzz target: the store's write codec (`Write::decode`): never panics; what decodes
//! re-encodes to the same bytes and applies to a real (in-memory) store without error.
#![no_main]
use ringlab_sync::store::{StoreDb, Write};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(w) = Write::decode(data) {
        assert_eq!(w.encode(), data);
        let mut db = StoreDb::in_memory(4).expect("an in-memory store");
        db.apply(1, &w).expect("a decoded write applies");
        assert_eq!(db.version(), 1);
    }
});
