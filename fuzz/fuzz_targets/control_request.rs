//! Fuzz target: a control request line (`ringlab_net::control::proto::Request`, JSON, as the
//! node's control server reads it): never panics; a request that decodes encodes to JSON that
//! decodes to the same request; a load request's sizes check never panics.
#![no_main]
use ringlab_net::control::proto::Request;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    if let Request::Load(spec) = &r {
        let _ = spec.check();
    }
    let line = serde_json::to_string(&r).expect("a request encodes");
    assert_eq!(
        serde_json::from_str::<Request>(&line).ok(),
        Some(r),
        "{line}"
    );
});
