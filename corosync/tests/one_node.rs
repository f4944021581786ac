//! One `ringlab corosync-node` in a network namespace of its own, started through the very
//! command the harness uses; a one-member regular ring, a 1-second load whose every `send`
//! is delivered, `quit`, and nothing left behind (corosync's PID gone, the namespace
//! removed on every exit path).
//!
//! Needs root, corosync and libcpg4 (else `#[ignore]`d: see build.rs), and the `ringlab`
//! binary built beside this test (`cargo build -p ringlab`; `cargo test --workspace`
//! builds it).
// An I/O test: the clock and sleeps are its job (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::{alive, read_pid, ringlab_bin};
use ringlab_net::control::{self, Ack, Request, StatusReply};
use ringlab_net::LoadSpec;
use ringlab_records::{Body, Record};
use ringlab_ring::MembState;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespace, the processes and the directory of the test; removed on every path.
struct Fixture {
    ns: String,
    dir: PathBuf,
    node: Option<Child>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(mut c) = self.node.take() {
            // By PID: the node's process (PR_SET_PDEATHSIG then takes corosync).
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = read_pid(&self.dir.join("state/corosync.pid")) {
            if alive(pid) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?} failed");
}

#[test]
#[cfg_attr(
    not(corosync_root),
    ignore = "needs root, corosync and libcpg4 (see build.rs)"
)]
fn one_node_forms_a_ring_delivers_its_load_and_leaves_nothing() {
    let bin = ringlab_bin();
    let pid = std::process::id();
    let ns = format!("rlcp{pid}");
    let dir = std::env::temp_dir().join(format!("ringlab-corosync-test-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state/corosync-lib")).unwrap();
    let mut fx = Fixture {
        ns: ns.clone(),
        dir: dir.clone(),
        node: None,
    };
    // One namespace, node 1 at 10.77.0.1/24 (netns-scripts' range) on a veth pair of its
    // own: nothing outside the namespace is touched.
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    sh(&[
        "ip", "-n", &ns, "link", "add", "e0", "type", "veth", "peer", "name", "e1",
    ]);
    sh(&["ip", "-n", &ns, "addr", "add", "10.77.0.1/24", "dev", "e0"]);
    sh(&["ip", "-n", &ns, "link", "set", "e0", "up"]);
    sh(&["ip", "-n", &ns, "link", "set", "e1", "up"]);

    let events = dir.join("node-1.jsonl");
    let sock = dir.join("node-1.sock");
    let state = dir.join("state");
    let cfg = dir.join("node-1.toml");
    std::fs::write(
        &cfg,
        format!(
            "node_id = 1\nbind = \"10.77.0.1\"\nevents = \"{}\"\ncontrol = \"{}\"\n\
             state_dir = \"{}\"\n[[nodes]]\nid = 1\naddr = \"10.77.0.1\"\n",
            events.display(),
            sock.display(),
            state.display()
        ),
    )
    .unwrap();
    let node =
        ringlab_net::harness::corosync_command(&ns, &state.join("corosync-lib"), &bin, &cfg, None)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(dir.join("node.err")).unwrap())
            .spawn()
            .unwrap();
    fx.node = Some(node);

    // A one-member regular ring.
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(s) = control::call::<StatusReply>(&sock, &Request::Status) {
            if s.state == MembState::Operational {
                break s;
            }
        }
        if let Some(Ok(Some(st))) = fx.node.as_mut().map(Child::try_wait) {
            panic!(
                "the node exited ({st}): {}",
                std::fs::read_to_string(dir.join("node.err")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < until, "no regular ring within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.members, [1]);
    assert_eq!(status.ring.rep, 1);
    assert_eq!(status.inc, 1);
    let corosync = read_pid(&state.join("corosync.pid")).expect("corosync.pid");
    assert!(alive(corosync));

    // A 1-second load.
    let spec = LoadSpec {
        rate: 2000,
        size: 100,
        duration_ms: Some(1000),
        ..LoadSpec::default()
    };
    let _: Ack = control::call(&sock, &Request::Load(spec)).unwrap();
    let safe = LoadSpec {
        safe: true,
        ..LoadSpec::default()
    };
    let refused = control::call::<Ack>(&sock, &Request::Load(safe)).unwrap_err();
    assert!(refused.to_string().contains("agreed"), "{refused}");
    std::thread::sleep(Duration::from_millis(1500));
    let _: Ack = control::call(&sock, &Request::Quit).unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(st) = fx.node.as_mut().unwrap().try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < until,
            "the node did not exit within 15 s of quit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    fx.node = None;
    assert!(exit.success(), "the node exited with {exit}");
    assert!(
        !alive(corosync),
        "corosync (PID {corosync}) is still running"
    );
    assert!(!sock.exists(), "the control socket is left");

    // Every send delivered once, with its length and ring.
    let mut recs: Vec<Record> = Vec::new();
    ringlab_records::read_file(&events, &mut recs).unwrap();
    let mut sent = BTreeMap::new();
    let mut delivered = BTreeMap::new();
    let mut regular = 0;
    for r in &recs {
        match &r.body {
            Body::Send { id, len, safe } => {
                assert!(!safe);
                sent.insert(*id, *len);
            }
            Body::Deliver { id, len, ring, .. } => {
                assert_eq!(*ring, status.ring);
                assert!(
                    delivered.insert(*id, *len).is_none(),
                    "{id} delivered twice"
                );
            }
            Body::Config { .. } => regular += 1,
            _ => {}
        }
    }
    assert!(
        sent.len() >= 1000,
        "only {} sent in 1 s at 2000/s",
        sent.len()
    );
    assert_eq!(sent, delivered);
    assert!(regular >= 2, "a transitional and a regular configuration");
    assert!(
        std::fs::read_to_string(&events)
            .unwrap()
            .contains("\"source\":\"corosync-log\""),
        "state records from corosync's log"
    );
    drop(fx);
    assert!(
        !Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&ns))
            .unwrap_or(false),
        "namespace {ns} is left"
    );
}
