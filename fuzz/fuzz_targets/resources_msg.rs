//! Fuzz target: the resources service's decoders (`ResourceOp::decode`, the payload of its
//! operations, and `decode_holdings`, its sync message): never panic; what decodes
//! re-encodes to the same bytes; a service fed the input as an operation and as a sync
//! message never panics.
#![no_main]
use ringlab_sync::resources::{decode_holdings, ResourceOp};
use ringlab_sync::{Plugin, ResourcesService, Service};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(op) = ResourceOp::decode(data) {
        assert_eq!(op.encode(), data);
    }
    let _ = decode_holdings(data);
    let mut s = ResourcesService::new(1);
    s.deliver_op(2, data);
    let _ = s.sync_deliver(2, data);
    let _ = s.digest();
});
