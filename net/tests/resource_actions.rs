//! Real nodes on loopback running the resources service: the node runs each group's start
//! and stop for real (node/actions.rs): the default file actions, a start command that fails
//! on one node, a start command killed with its process group at its timeout, and a graceful
//! quit that stops everything. The checker judges every run's records.
//!
//! The nodes run in this test process, one thread each (`Node::start` and `Node::run`, as
//! `ringlab node` does), so the test needs no binary. Nothing here asserts a timing: every
//! wait is for a condition, with a generous bound.
// Test code of the I/O side: real threads, sleeps and the clock (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_net::config::{NodeConfig, Peer, Transport};
use ringlab_net::control::{self, Ack, Request, StatusReply};
use ringlab_net::Node;
use ringlab_records::{Body, Record};
use ringlab_ring::{MembState, NodeId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A cluster of in-process nodes on 127.0.0.1..=n at one port.
struct Cluster {
    dir: PathBuf,
    n: NodeId,
    threads: Vec<Option<JoinHandle<()>>>,
}

impl Cluster {
    /// Starts `n` nodes running the resources service with `section`.
    fn start(name: &str, n: NodeId, port: u16, section: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rl-act-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let section: toml::Value = toml::from_str(section).unwrap();
        let totem: ringlab_ring::Config = toml::from_str("token = 500").unwrap();
        let mut threads = Vec::new();
        for id in 1..=n {
            let cfg = NodeConfig {
                node_id: id,
                bind: [127, 0, 0, id as u8].into(),
                port,
                transport: Transport::Unicast,
                mcast_group: [239, 192, 7, 7].into(),
                nodes: (1..=n)
                    .map(|i| Peer {
                        id: i,
                        addr: [127, 0, 0, i as u8].into(),
                        port: None,
                    })
                    .collect(),
                events: Some(dir.join(format!("node-{id}.jsonl"))),
                record_messages: true,
                record_every: 1,
                control: dir.join(format!("node-{id}.sock")),
                state_dir: state_dir(&dir, id),
                key_file: None,
                recv_buffer: None,
                send_buffer: None,
                batched_io: true,
                services: vec!["resources".into()],
                max_fill_bytes: ringlab_net::config::DEFAULT_MAX_FILL_BYTES,
                service_config: BTreeMap::from([("resources".to_string(), section.clone())]),
                totem: totem.clone(),
            };
            cfg.validate().unwrap();
            threads.push(Some(std::thread::spawn(move || {
                let node = Node::start(cfg).expect("the node starts");
                node.run().expect("the node runs");
            })));
        }
        let c = Self { dir, n, threads };
        c.wait_ring();
        c
    }

    fn sock(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("node-{id}.sock"))
    }

    /// Waits for one ring of every node.
    fn wait_ring(&self) {
        let all: Vec<NodeId> = (1..=self.n).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st: Vec<Option<StatusReply>> = all
                .iter()
                .map(|&i| control::call(&self.sock(i), &Request::Status).ok())
                .collect();
            let ok = st.iter().all(|s| {
                s.as_ref().is_some_and(|s| {
                    s.state == MembState::Operational
                        && s.members == all
                        && Some(s.ring) == st[0].as_ref().map(|f| f.ring)
                })
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "no ring of {all:?}: {st:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads every node's records.
    fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for id in 1..=self.n {
            let f = self.dir.join(format!("node-{id}.jsonl"));
            if f.exists() {
                ringlab_records::read_file(&f, &mut out).unwrap();
            }
        }
        out
    }

    /// Waits until `done` holds over the records (bounded); returns them.
    fn wait_for(&self, what: &str, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.records();
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen; resource records: {:#?}",
                resource_records(&r)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Quits every node (gracefully: the services stop what they hold first) and waits
    /// for their threads; returns every record.
    fn quit(&mut self) -> Vec<Record> {
        for id in 1..=self.n {
            let _ = control::call::<Ack>(&self.sock(id), &Request::Quit);
        }
        for t in &mut self.threads {
            if let Some(t) = t.take() {
                t.join().expect("a node thread ends without a panic");
            }
        }
        self.records()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed test: ask the nodes still running to quit (their threads end with them).
        if self.threads.iter().any(Option::is_some) {
            for id in 1..=self.n {
                let _ = control::call::<Ack>(&self.sock(id), &Request::Quit);
            }
        }
    }
}

fn state_dir(dir: &Path, id: NodeId) -> PathBuf {
    dir.join("state").join(format!("node-{id}"))
}

/// (node, action, group, error) of every resource record, in the nodes' order.
fn resource_records(r: &[Record]) -> Vec<(NodeId, String, String, Option<String>)> {
    r.iter()
        .filter_map(|r| match &r.body {
            Body::Resource {
                action,
                name,
                error,
                ..
            } => Some((r.node, action.clone(), name.clone(), error.clone())),
            _ => None,
        })
        .collect()
}

/// The nodes whose last record of group `g` is a `start`: its holders now.
fn holders(r: &[Record], g: &str) -> Vec<NodeId> {
    let mut last: BTreeMap<NodeId, String> = BTreeMap::new();
    for (node, action, name, _) in resource_records(r) {
        if name == g && ["start", "stop", "start_failed", "stop_failed"].contains(&&*action) {
            last.insert(node, action);
        }
    }
    last.into_iter()
        .filter(|(_, a)| a == "start")
        .map(|(n, _)| n)
        .collect()
}

/// The checker finds nothing in the records.
fn assert_clean(r: &[Record]) {
    let report = ringlab_sim::checker::check(r, None);
    assert!(
        report.violations.is_empty(),
        "violations: {:#?}",
        report.violations
    );
}

/// Short knobs: the takeover delay, derived, is 200 + 300 + 300 + 1500 ms.
const FAST: &str = "fence_ms = 200\nstart_timeout_ms = 300\nstop_timeout_ms = 300\n";

#[test]
fn default_file_actions_place_every_group_in_its_holders_state_dir_only() {
    let mut c = Cluster::start("files", 3, 47_610, FAST);
    let groups = ["web", "db", "mail"];
    let r = c.wait_for("every group started on one node", |r| {
        groups.iter().all(|g| holders(r, g).len() == 1)
    });
    // Wait for a state where the records and the files agree (a start is recorded right
    // after its file is made).
    for g in groups {
        let holder = holders(&r, g)[0];
        for id in 1..=3 {
            let f = state_dir(&c.dir, id).join("resources").join(g);
            assert_eq!(f.exists(), id == holder, "{g}: node {id}'s file");
        }
        let text =
            std::fs::read_to_string(state_dir(&c.dir, holder).join("resources").join(g)).unwrap();
        assert_eq!(text, format!("node {holder} group {g}\n"));
    }
    let (mut run, mut failed) = (0, 0);
    for id in 1..=3 {
        let s = control::call::<control::StatsReply>(&c.sock(id), &Request::Stats).unwrap();
        run += s.actions.run;
        failed += s.actions.failed;
    }
    assert!(run >= 3 && failed == 0, "run {run}, failed {failed}");
    let r = c.quit();
    // The graceful quit stopped every group: no file is left behind.
    for g in groups {
        for id in 1..=3 {
            let f = state_dir(&c.dir, id).join("resources").join(g);
            assert!(!f.exists(), "{} left after the quit", f.display());
        }
    }
    let quits = resource_records(&r)
        .into_iter()
        .filter(|(_, a, _, _)| a == "stopping")
        .count();
    assert!(quits >= 3, "{:#?}", resource_records(&r));
    assert_clean(&r);
    let _ = std::fs::remove_dir_all(&c.dir);
}

/// Waits until `web` runs on a node other than `from`, and checks that its starts failed on
/// `from` only, each with `error`.
fn web_moved_off(c: &Cluster, from: NodeId, error: &str) {
    let r = c.wait_for(&format!("web started on a node other than {from}"), |r| {
        let h = holders(r, "web");
        h.len() == 1 && h[0] != from
    });
    let failed: Vec<_> = resource_records(&r)
        .into_iter()
        .filter(|(_, a, g, _)| a == "start_failed" && g == "web")
        .collect();
    assert!(!failed.is_empty(), "{:#?}", resource_records(&r));
    for (node, _, _, e) in &failed {
        assert_eq!(*node, from);
        assert_eq!(e.as_deref(), Some(error));
    }
}

#[test]
fn a_start_command_failing_on_one_node_moves_the_group_elsewhere() {
    let section = format!(
        "{FAST}[[resources]]\nname = \"web\"\nhome = 2\nstart = 'test \"$RINGLAB_NODE\" != 2'\n"
    );
    let mut c = Cluster::start("fails", 3, 47_620, &section);
    web_moved_off(&c, 2, "exit status 1");
    let stats = control::call::<control::StatsReply>(&c.sock(2), &Request::Stats).unwrap();
    assert!(stats.actions.failed >= 1, "{:?}", stats.actions);
    let r = c.quit();
    assert_clean(&r);
    let _ = std::fs::remove_dir_all(&c.dir);
}

#[test]
fn a_start_command_past_its_timeout_is_killed_with_its_process_group() {
    // On node 1 (web's home) the start leaves a grandchild running and waits for it.
    let section = format!(
        "{FAST}[[resources]]\nname = \"web\"\nhome = 1\n\
         start = 'if [ \"$RINGLAB_NODE\" = 1 ]; then sleep 60 & echo $! > \"$RINGLAB_STATE_DIR/sleep.pid\"; wait; fi'\n"
    );
    let mut c = Cluster::start("timeout", 3, 47_630, &section);
    web_moved_off(&c, 1, "timed out after 300 ms");
    let stats = control::call::<control::StatsReply>(&c.sock(1), &Request::Stats).unwrap();
    assert!(stats.actions.timed_out >= 1, "{:?}", stats.actions);
    let pid: i32 = std::fs::read_to_string(state_dir(&c.dir, 1).join("sleep.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        ringlab_net::harness::process_gone(pid),
        "the command's grandchild {pid} still runs"
    );
    let r = c.quit();
    assert_clean(&r);
    let _ = std::fs::remove_dir_all(&c.dir);
}
