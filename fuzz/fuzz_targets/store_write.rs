//! Fuzz target: the store's codecs (`Write::decode`, the payload of its operations, and
//! `StoreSync::decode`, its sync messages): never panic; what decodes re-encodes to the
//! same bytes; a decoded write applies to a real (in-memory) store without error; a store
//! service fed the input as an operation and as a sync message never panics. The store and
//! the service live across inputs (one redb database per input would be slower than the
//! codecs by a thousand times).
#![no_main]
use ringlab_sync::store::service::StoreSync;
use ringlab_sync::store::{StoreDb, StoreService, Write};
use ringlab_sync::{OpDelivery, Plugin, Service};
use std::cell::RefCell;

thread_local! {
    static DB: RefCell<StoreDb> = RefCell::new(StoreDb::in_memory(4).expect("an in-memory store"));
    static SERVICE: RefCell<StoreService> = RefCell::new(StoreService::new(1));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(w) = Write::decode(data) {
        assert_eq!(w.encode(), data);
        DB.with(|db| {
            let mut db = db.borrow_mut();
            let v = db.version() + 1;
            db.apply(v, &w).expect("a decoded write applies");
            assert_eq!(db.version(), v);
        });
    }
    if let Ok(m) = StoreSync::decode(data) {
        assert_eq!(m.encode(), data);
    }
    SERVICE.with(|s| {
        let mut s = s.borrow_mut();
        let how = OpDelivery {
            sender: 2,
            inc: 1,
            safe: true,
            regular: data.first().is_some_and(|b| b % 2 == 0),
        };
        s.deliver_op_in(&how, data);
        let _ = s.sync_deliver(2, data);
        let _ = s.digest();
    });
});
