//! Fuzz target: a control request line (`ringlab_net::control::proto::Request`, JSON, as the
//! node's control server reads it): never panics; a request that decodes encodes to JSON that
//! decodes to the same request; a load request's sizes check never panics; a service
//! command, carried out by a node running every registered service, never panics.
#![no_main]
use ringlab_net::control::proto::Request;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(r) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    match &r {
        Request::Load(spec) => {
            let _ = spec.check();
        }
        Request::Svc { service, request } => {
            let all: Vec<_> = ringlab_sync::SERVICES.iter().collect();
            let mut app = ringlab_sync::ServiceApp::new(1, &all);
            let _ = app.control(service, request, 1 << 20);
        }
        _ => {}
    }
    let line = serde_json::to_string(&r).expect("a request encodes");
    assert_eq!(
        serde_json::from_str::<Request>(&line).ok(),
        Some(r),
        "{line}"
    );
});
