//! Three `ringlab corosync-node`s on netns-scripts' `lan` topology (prefix `rlcp<PID>`),
//! started through the very command the harness uses: a ring of three, a load on every
//! node, node 3 isolated and healed, `quit`; the checker (the one that judges ringlab's runs)
//! finds no violation in their records, and nothing is left behind (every corosync PID gone,
//! the topology removed on every exit path).
//!
//! Needs root, corosync and libcpg4 (else `#[ignore]`d: see build.rs), nftables and the
//! `ringlab` binary built beside this test (`cargo build -p ringlab`).
// An I/O test: the clock and sleeps are its job (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::{alive, read_pid, ringlab_bin};
use ringlab_net::control::{self, Ack, Request, StatusReply};
use ringlab_net::LoadSpec;
use ringlab_records::Record;
use ringlab_ring::MembState;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const N: u32 = 3;

struct Fixture {
    prefix: String,
    dir: PathBuf,
    nodes: Vec<Child>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        for i in 1..=N {
            if let Some(pid) = read_pid(&self.dir.join(format!("st{i}/corosync.pid"))) {
                if alive(pid) {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(pid.to_string())
                        .status();
                }
            }
        }
        let _ = Command::new("bash")
            .arg(scripts().join("topo.sh"))
            .args(["down", "--prefix", &self.prefix])
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../netns-scripts")
}

fn fault(prefix: &str, args: &[&str]) {
    let st = Command::new("bash")
        .arg(scripts().join("fault.sh"))
        .args(["--prefix", prefix])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "fault.sh {args:?}");
}

/// Waits until every node in `want` reports an installed ring with exactly those members.
fn wait_rings(dir: &Path, want: &[(u32, &[u32])], secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let ok = want.iter().all(|(i, members)| {
            control::call::<StatusReply>(&dir.join(format!("node-{i}.sock")), &Request::Status)
                .is_ok_and(|s| s.state == MembState::Operational && s.members == *members)
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < until,
            "rings {want:?} not formed within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(
    not(corosync_root),
    ignore = "needs root, corosync and libcpg4 (see build.rs)"
)]
fn three_nodes_through_an_isolation_and_a_heal_are_judged_clean() {
    let bin = ringlab_bin();
    let pid = std::process::id();
    let prefix = format!("rlcp{pid}");
    let dir = std::env::temp_dir().join(format!("ringlab-corosync-three-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut fx = Fixture {
        prefix: prefix.clone(),
        dir: dir.clone(),
        nodes: Vec::new(),
    };
    let up = Command::new("bash")
        .arg(scripts().join("topo.sh"))
        .args(["up", "--nodes", "3", "--shape", "lan", "--prefix", &prefix])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(up.success(), "topo.sh up");
    let peers: String = (1..=N)
        .map(|i| format!("[[nodes]]\nid = {i}\naddr = \"10.77.0.{i}\"\n"))
        .collect();
    for i in 1..=N {
        let st = dir.join(format!("st{i}"));
        std::fs::create_dir_all(st.join("corosync-lib")).unwrap();
        let cfg = dir.join(format!("n{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "node_id = {i}\nbind = \"10.77.0.{i}\"\nevents = \"{d}/node-{i}.jsonl\"\n\
                 control = \"{d}/node-{i}.sock\"\nstate_dir = \"{s}\"\n{peers}",
                d = dir.display(),
                s = st.display(),
            ),
        )
        .unwrap();
        let child = ringlab_net::harness::corosync_command(
            &format!("{prefix}-n{i}"),
            &st.join("corosync-lib"),
            &bin,
            &cfg,
            None,
        )
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("node-{i}.err"))).unwrap())
        .spawn()
        .unwrap();
        fx.nodes.push(child);
    }
    let all: &[u32] = &[1, 2, 3];
    wait_rings(&dir, &[(1, all), (2, all), (3, all)], 30);
    let corosync: Vec<u32> = (1..=N)
        .map(|i| read_pid(&dir.join(format!("st{i}/corosync.pid"))).expect("corosync.pid"))
        .collect();

    for i in 1..=N {
        let spec = LoadSpec {
            rate: 300,
            size: 200,
            duration_ms: Some(20_000),
            ..LoadSpec::default()
        };
        let _: Ack =
            control::call(&dir.join(format!("node-{i}.sock")), &Request::Load(spec)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1000));
    fault(&prefix, &["isolate", "3"]);
    wait_rings(&dir, &[(1, &[1, 2]), (2, &[1, 2]), (3, &[3])], 20);
    std::thread::sleep(Duration::from_millis(500));
    fault(&prefix, &["heal"]);
    wait_rings(&dir, &[(1, all), (2, all), (3, all)], 20);
    std::thread::sleep(Duration::from_millis(500));

    for i in 1..=N {
        let _: Ack = control::call(&dir.join(format!("node-{i}.sock")), &Request::Quit).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(20);
    for c in &mut fx.nodes {
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "a node exited with {st}");
                break;
            }
            assert!(Instant::now() < until, "a node did not exit after quit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fx.nodes.clear();
    for pid in &corosync {
        assert!(!alive(*pid), "corosync (PID {pid}) is still running");
    }

    let mut recs: Vec<Record> = Vec::new();
    for i in 1..=N {
        ringlab_records::read_file(&dir.join(format!("node-{i}.jsonl")), &mut recs).unwrap();
    }
    let report = ringlab_sim::check(&recs, None);
    assert!(
        report.violations.is_empty(),
        "violations: {:?}",
        report.violations
    );
    assert!(report.deliveries > 1000, "{} deliveries", report.deliveries);
    // Each node: the first ring, the ring without (or of) node 3, the healed ring.
    assert!(
        report.regular_installs >= 9,
        "{} regular installs",
        report.regular_installs
    );
}
