//! Fuzz target: the store's codecs (`Write::decode`, the payload of its operations, and
//! `StoreSync::decode`, its sync messages): never panic; what decodes re-encodes to the
//! same bytes; a decoded write applies to a real (in-memory) store without error; a store
//! service fed the input as an operation and as a sync message never panics.
#![no_main]
use ringlab_sync::store::service::StoreSync;
use ringlab_sync::store::{StoreDb, StoreService, Write};
use ringlab_sync::{OpDelivery, Plugin, Service};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(w) = Write::decode(data) {
        assert_eq!(w.encode(), data);
        let mut db = StoreDb::in_memory(4).expect("an in-memory store");
        db.apply(1, &w).expect("a decoded write applies");
        assert_eq!(db.version(), 1);
    }
    if let Ok(m) = StoreSync::decode(data) {
        assert_eq!(m.encode(), data);
    }
    let mut s = StoreService::new(1);
    let how = OpDelivery {
        sender: 2,
        safe: true,
        regular: data.first().is_some_and(|b| b % 2 == 0),
    };
    s.deliver_op_in(&how, data);
    let _ = s.sync_deliver(2, data);
    let _ = s.digest();
});
