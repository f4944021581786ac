//! Fuzz target: the resources service's decoders (`ResourceOp::decode`, the payload of its
//! operations, and `Holdings::decode`, its sync message): never panic; what decodes
//! re-encodes to the same bytes; a service fed the input as an operation, as a sync
//! message and as the outcome of its actions never panics.
#![no_main]
use ringlab_sync::resources::{Holdings, ResourceOp};
use ringlab_sync::{ActionResult, Plugin, ResourcesService, Service};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(op) = ResourceOp::decode(data) {
        assert_eq!(op.encode(), data);
    }
    if let Ok(h) = Holdings::decode(data) {
        assert_eq!(h.encode(), data);
    }
    let mut s = ResourcesService::new(1);
    s.deliver_op(2, data);
    let _ = s.sync_deliver(2, data);
    for (i, b) in data.iter().enumerate().take(16) {
        let result = if b % 2 == 0 {
            ActionResult::Ok
        } else {
            ActionResult::Failed {
                exit: Some(i32::from(*b)),
                error: "fuzz".into(),
            }
        };
        s.action_done(i as u64, u64::from(*b % 8), result);
        while s.poll_action().is_some() {}
    }
    let _ = s.digest();
});
