//! The store's chunk protocol between real nodes on loopback (127.0.0.x; no root needed): a
//! node restarted with an empty store of 4 MiB gets a full copy point to point while the
//! ring goes on carrying writes, and its provider is SIGKILLed mid-copy: the copy resumes at
//! another provider after its last key. Both designs (push with a cluster key: its chunk
//! datagrams authenticated); the checker judges the records. No
//! test asserts a time: waits have generous limits and only behaviour is checked.
// A test over real processes and time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_net::control::Request;
use ringlab_net::harness::{Cluster, Spec};
use ringlab_net::Transport;
use ringlab_records::{Body, Record};
use ringlab_ring::{Config, NodeId};
use ringlab_sync::store::service::Status;
use std::time::{Duration, Instant};

fn store(request: serde_json::Value) -> Request {
    Request::Svc {
        service: "store".into(),
        request,
    }
}

fn status(c: &Cluster, id: NodeId) -> Option<Status> {
    c.call::<Status>(id, &store(serde_json::json!({"op": "status"})))
        .ok()
}

/// The `store_sync` records of node `id`'s incarnation `inc`: (phase, provider).
fn phases(records: &[Record], id: NodeId, inc: u32) -> Vec<(String, NodeId)> {
    records
        .iter()
        .filter(|r| r.node == id && r.inc == inc)
        .filter_map(|r| match &r.body {
            Body::StoreSync {
                phase, provider, ..
            } => Some((phase.clone(), *provider)),
            _ => None,
        })
        .collect()
}

fn copy_with_provider_killed(design: &str, key: bool, port: u16) {
    let dir = std::env::temp_dir().join(format!(
        "ringlab-test-store-{design}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let section: toml::Value = toml::from_str(&format!(
        "log_keep = 20\ndesign = \"{design}\"\nchunk_bytes = 131072\n\
         transfer_rate_limit = 2000000\ntimeout_ms = 500"
    ))
    .unwrap();
    let spec = Spec {
        nodes: 4,
        transport: Transport::Unicast,
        totem: Config::default(),
        port,
        group: [239, 192, 78, (port % 200) as u8 + 1].into(),
        dir,
        key: key.into(),
        record_messages: true,
        record_every: 1,
        binary: env!("CARGO_BIN_EXE_ringlab").into(),
        batched_io: true,
        ipv6: false,
        services: vec!["store".into()],
        service_config: [("store".to_string(), section)].into_iter().collect(),
        netns: None,
        implementation: ringlab_net::harness::Implementation::Ringlab,
    };
    let all: Vec<NodeId> = (1..=4).collect();
    let mut c = Cluster::start(spec).unwrap();
    c.wait_ring(&all, Duration::from_secs(20)).unwrap();
    // 4 MiB: 4096 keys of 1 KiB.
    c.call::<serde_json::Value>(
        1,
        &store(serde_json::json!({"op": "fill", "keys": 4096, "size": 1024})),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (1..=4).any(|i| status(&c, i).is_none_or(|s| s.version < 4096)) {
        assert!(Instant::now() < deadline, "the fill reached every node");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Node 4 dies and comes back with an empty store; writes go on meanwhile.
    c.kill(4);
    std::fs::remove_file(c.state_dir(4).join("store.redb")).unwrap();
    c.wait_ring(&[1, 2, 3], Duration::from_secs(20)).unwrap();
    for i in 0..30 {
        let put = serde_json::json!({"op": "put", "key": format!("late{i}"), "value": "x"});
        c.call::<serde_json::Value>(1 + i % 3, &store(put)).unwrap();
    }
    c.spawn(4).unwrap();
    let inc = c.incarnation(4);
    // Once a few chunks are in, the provider is SIGKILLed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let provider = loop {
        let r = c.records().unwrap();
        let p = phases(&r, 4, inc);
        if p.iter().filter(|x| x.0 == "chunk").count() >= 3 {
            break p.last().unwrap().1;
        }
        assert!(Instant::now() < deadline, "no chunks came: {p:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    c.kill(provider);
    let live: Vec<NodeId> = all.iter().copied().filter(|&n| n != provider).collect();
    c.wait_ring(&live, Duration::from_secs(30)).unwrap();
    // Writes go on while the copy resumes.
    for i in 0..20 {
        let put = serde_json::json!({"op": "put", "key": format!("later{i}"), "value": "y"});
        c.call::<serde_json::Value>(live[0], &store(put)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: Vec<Option<Status>> = live.iter().map(|&i| status(&c, i)).collect();
        let done = s.iter().all(|x| {
            x.as_ref().is_some_and(|x| {
                x.standing == "serving"
                    && Some(&x.digest) == s[0].as_ref().map(|f| &f.digest)
                    && x.version == 4096 + 50
            })
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "node 4 never served: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.wait_quiet(Duration::from_secs(30)), "queues drained");
    c.stop();
    let records = c.records().unwrap();
    let p = phases(&records, 4, inc);
    let n = |phase: &str| p.iter().filter(|x| x.0 == phase).count();
    assert_eq!((n("start"), n("finish")), (1, 1), "{p:?}");
    assert!(n("resume") >= 1, "{p:?}");
    // Pull: a leader change does not concern it. Push: the provider may have been the
    // leader too, whose change aborts the copy and begins it again.
    if design == "pull" {
        assert_eq!(n("abort"), 0, "{p:?}");
    }
    assert_ne!(p.last().unwrap().1, provider);
    let report = ringlab_sim::check(&records, None);
    for v in &report.violations {
        eprintln!("violation: {v}");
    }
    assert!(report.violations.is_empty());
    let _ = std::fs::remove_dir_all(&c.spec.dir);
}

#[test]
fn an_empty_node_gets_a_4_mib_copy_pulled_and_its_provider_killed_midway() {
    copy_with_provider_killed("pull", false, 18_640);
}

#[test]
fn an_empty_node_gets_a_4_mib_copy_pushed_and_its_provider_killed_midway_with_a_key() {
    // With a key, the chunk protocol's datagrams are sealed and opened like the ring's.
    copy_with_provider_killed("push", true, 18_660);
}
