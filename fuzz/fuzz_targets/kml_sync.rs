//! Fuzz target: the kml service's sync messages (`KmlSync::decode`: `Have`, `Tail`, `Snap`)
//! and its snapshot reader (`Fileset::read_snapshot`): never panic; what decodes re-encodes
//! to the same bytes; a snapshot that decodes is one tree (its listing and digest work, and
//! it snapshots back to the same bytes); a kml service fed the input as a sync message and as
//! an operation never panics.
#![no_main]
use ringlab_ring::wire::Reader;
use ringlab_sync::kml::sync_msg::KmlSync;
use ringlab_sync::kml::{Fileset, KmlService};
use ringlab_sync::{OpDelivery, Plugin, Service};
use std::cell::RefCell;

thread_local! {
    static SERVICE: RefCell<KmlService> = RefCell::new(KmlService::new(1));
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = KmlSync::decode(data) {
        assert_eq!(m.encode(), data);
    }
    let mut r = Reader::new(data);
    if let Ok(fs) = Fileset::read_snapshot(&mut r) {
        let _ = fs.listing();
        let _ = fs.digest();
        let mut b = Vec::new();
        fs.put_snapshot(&mut b);
        assert_eq!(&b[..], &data[..data.len() - r.remaining()]);
    }
    SERVICE.with(|s| {
        let mut s = s.borrow_mut();
        let _ = s.sync_deliver(2, data);
        let how = OpDelivery {
            sender: 2,
            inc: 1,
            safe: false,
            regular: true,
        };
        s.deliver_op_in(&how, data);
        let _ = s.digest();
    });
});
