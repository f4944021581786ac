//! Real nodes on real UDP over loopback (127.0.0.x; no root needed), judged by the same
//! checker as the simulator. Each test has its own port (and group), so they run in parallel.
//! No test asserts a time: waits have generous limits and only behaviour is checked.
// A benchmark or test over real processes and time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_net::control::{Ack, Request, StopLoadReply, SyncStats};
use ringlab_net::harness::{Cluster, Spec};
use ringlab_net::{LoadSpec, Transport};
use ringlab_records::{Body, Record};
use ringlab_ring::auth::Authenticator;
use ringlab_ring::{Config, MsgId, NodeId, Reason, Variant};
use ringlab_sync::checkpoint::{Command, DigestReply, FillReply};
use ringlab_sync::{CheckpointService, Plugin};
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

fn spec(
    name: &str,
    nodes: usize,
    transport: Transport,
    variant: Variant,
    port: u16,
    key: bool,
) -> Spec {
    let dir = std::env::temp_dir().join(format!("ringlab-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Spec {
        nodes,
        transport,
        totem: Config {
            variant,
            ..Config::default()
        },
        port,
        group: [239, 192, 77, (port % 200) as u8 + 1].into(),
        dir,
        key: key.into(),
        record_messages: true,
        record_every: 1,
        binary: env!("CARGO_BIN_EXE_ringlab").into(),
        // The kill/restart tests run one call per datagram, the others batched: both paths.
        batched_io: !name.starts_with("kill"),
        ipv6: false,
        services: vec![],
        service_config: Default::default(),
        netns: None,
        implementation: ringlab_net::harness::Implementation::Ringlab,
    }
}

fn ids(n: usize) -> Vec<NodeId> {
    (1..=n as NodeId).collect()
}

/// A load of `size`-byte messages at `rate` per second (0: maximum), stopping after `count`.
fn load(rate: u64, size: usize, count: Option<u64>) -> Request {
    Request::Load(LoadSpec {
        rate,
        size,
        count,
        ..LoadSpec::default()
    })
}

/// Returns the checkpoint digests of nodes 1..=n.
fn digests(c: &Cluster, n: NodeId) -> Vec<String> {
    (1..=n)
        .map(|i| {
            c.call::<DigestReply>(i, &ckpt(Command::Digest))
                .unwrap()
                .digest
        })
        .collect()
}

/// A command of the checkpoint service.
fn ckpt(cmd: Command) -> Request {
    Request::Svc {
        service: CheckpointService::NAME.into(),
        request: serde_json::to_value(cmd).unwrap(),
    }
}

/// Stops the cluster, checks every record, returns them.
fn stop_and_check(c: &mut Cluster) -> Vec<Record> {
    assert!(c.wait_quiet(Duration::from_secs(30)), "queues drained");
    c.stop();
    let records = c.records().unwrap();
    let report = ringlab_sim::check(&records, None);
    for v in &report.violations {
        eprintln!("violation: {v}");
    }
    assert!(
        report.violations.is_empty(),
        "{} violations",
        report.violations.len()
    );
    let _ = std::fs::remove_dir_all(&c.spec.dir);
    records
}

fn ten_thousand_messages(name: &str, transport: Transport, variant: Variant, port: u16) {
    let mut c = Cluster::start(spec(name, 5, transport, variant, port, false)).unwrap();
    c.wait_ring(&ids(5), Duration::from_secs(20)).unwrap();
    // 10,000 messages from 3 senders, 1 B to 64 KiB.
    let sizes = [1, 100, 1000, 1, 300, 1400, 9000, 65_536];
    for (sender, count) in [(1, 3334), (3, 3333), (5, 3333)] {
        let cmd = Request::Load(LoadSpec {
            rate: 0,
            sizes: sizes.to_vec(),
            count: Some(count),
            ..LoadSpec::default()
        });
        c.call::<Ack>(sender, &cmd).unwrap();
    }
    let records = stop_and_check(&mut c);
    let sent: HashSet<MsgId> = records
        .iter()
        .filter_map(|r| match r.body {
            Body::Send { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 10_000);
    let mut per_node: HashMap<NodeId, Vec<MsgId>> = HashMap::new();
    for r in &records {
        if let Body::Deliver { id, .. } = r.body {
            per_node.entry(r.node).or_default().push(id);
        }
    }
    // Every node delivered all of them, in one and the same order.
    let first = per_node[&1].clone();
    assert_eq!(first.len(), 10_000);
    for n in 2..=5 {
        assert_eq!(per_node[&n], first, "node {n}'s order");
    }
}

#[test]
fn five_nodes_10k_messages_unicast_classic() {
    ten_thousand_messages("10k-uc", Transport::Unicast, Variant::Classic, 17_100);
}

#[test]
fn five_nodes_10k_messages_multicast_classic() {
    ten_thousand_messages("10k-mc", Transport::Multicast, Variant::Classic, 17_200);
}

#[test]
fn five_nodes_10k_messages_unicast_accelerated() {
    ten_thousand_messages("10k-ua", Transport::Unicast, Variant::Accelerated, 17_300);
}

#[test]
fn five_nodes_10k_messages_multicast_accelerated() {
    ten_thousand_messages("10k-ma", Transport::Multicast, Variant::Accelerated, 17_400);
}

fn kill_and_restart(name: &str, transport: Transport, variant: Variant, port: u16) {
    let mut c = Cluster::start(spec(name, 5, transport, variant, port, false)).unwrap();
    c.wait_ring(&ids(5), Duration::from_secs(20)).unwrap();
    for s in [1, 3] {
        c.call::<Ack>(s, &load(500, 700, None)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    c.kill(3);
    c.wait_ring(&[1, 2, 4, 5], Duration::from_secs(20)).unwrap();
    c.spawn(3).unwrap();
    assert_eq!(c.incarnation(3), 2);
    c.wait_ring(&ids(5), Duration::from_secs(20)).unwrap();
    c.call::<Ack>(3, &load(500, 700, None)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for s in [1, 3] {
        c.call::<StopLoadReply>(s, &Request::StopLoad).unwrap();
    }
    let records = stop_and_check(&mut c);
    // The survivors saw a 4-member configuration, then 5 again with node 3's new incarnation.
    let regular_sizes: Vec<usize> = records
        .iter()
        .filter(|r| r.node == 1)
        .filter_map(|r| match &r.body {
            Body::Config {
                kind: ringlab_ring::ConfigKind::Regular,
                members,
                ..
            } => Some(members.len()),
            _ => None,
        })
        .collect();
    assert!(
        regular_sizes.windows(2).any(|w| w == [4, 5]),
        "{regular_sizes:?}"
    );
    assert!(records.iter().any(|r| r.node == 3 && r.inc == 2));
}

#[test]
fn sigkill_one_node_then_restart_unicast_classic() {
    kill_and_restart("kill-uc", Transport::Unicast, Variant::Classic, 17_500);
}

#[test]
fn sigkill_one_node_then_restart_multicast_accelerated() {
    kill_and_restart(
        "kill-ma",
        Transport::Multicast,
        Variant::Accelerated,
        17_600,
    );
}

#[test]
fn graceful_leave_reforms_without_a_token_loss() {
    let mut c = Cluster::start(spec(
        "leave",
        5,
        Transport::Unicast,
        Variant::Classic,
        17_700,
        false,
    ))
    .unwrap();
    c.wait_ring(&ids(5), Duration::from_secs(20)).unwrap();
    c.call::<Ack>(4, &Request::Leave).unwrap();
    c.wait_ring(&[1, 2, 3, 5], Duration::from_secs(20)).unwrap();
    let records = stop_and_check(&mut c);
    // The survivors left OPERATIONAL because of the leave, and none timed the token out.
    let reasons: Vec<Reason> = records
        .iter()
        .filter(|r| r.node != 4)
        .filter_map(|r| match r.body {
            Body::State { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert!(reasons.contains(&Reason::Leave));
    assert!(!reasons.contains(&Reason::TokenLoss), "{reasons:?}");
}

#[test]
fn bad_datagrams_are_counted_per_reason_and_the_ring_is_unharmed() {
    let port = 17_800;
    let mut c = Cluster::start(spec(
        "garbage",
        3,
        Transport::Unicast,
        Variant::Classic,
        port,
        true,
    ))
    .unwrap();
    c.wait_ring(&ids(3), Duration::from_secs(20)).unwrap();
    // Node 3 goes away; the test takes its address to speak as a known but rogue sender.
    c.kill(3);
    let ring = c.wait_ring(&[1, 2], Duration::from_secs(20)).unwrap();
    let to = SocketAddr::new(Cluster::addr(1), port);
    let rogue = UdpSocket::bind(SocketAddr::new(Cluster::addr(3), port)).unwrap();
    let stranger = UdpSocket::bind(SocketAddr::new([127, 0, 0, 9].into(), port)).unwrap();
    let key = std::fs::read(c.spec.dir.join("cluster.key")).unwrap();
    let mut auth = Authenticator::new(key, 3, 1000, Default::default()).unwrap();
    let mut wrong_key =
        Authenticator::new(b"not the cluster key".to_vec(), 3, 1000, Default::default()).unwrap();
    let seal = |a: &mut Authenticator, p: &[u8]| {
        let mut v = p.to_vec();
        a.seal(ringlab_ring::Dest::Multicast, &mut v);
        v
    };
    let mut header = vec![0x52, 0x4C, ringlab_ring::wire::VERSION, 5, 0, 0, 0, 3];
    header.extend_from_slice(&[0; 12]);
    let mut wrong_version = header.clone();
    wrong_version[2] = 9;
    let mut not_ours = header.clone();
    not_ours[0] = 0;
    for i in 0..50u8 {
        stranger.send_to(&[i; 60], to).unwrap(); // foreign
        stranger.send_to(&vec![i; 3000], to).unwrap(); // foreign too, however large
        rogue.send_to(&[i; 60], to).unwrap(); // unauthenticated (no trailer)
        rogue.send_to(&seal(&mut wrong_key, &header), to).unwrap(); // another cluster's key
        rogue.send_to(&seal(&mut auth, &wrong_version), to).unwrap(); // wrong version
        rogue.send_to(&seal(&mut auth, &not_ours), to).unwrap(); // bad magic
        rogue.send_to(&seal(&mut auth, &header[..7]), to).unwrap(); // truncated header
        rogue.send_to(&vec![i; 3000], to).unwrap(); // oversized
    }
    let replay = seal(&mut auth, &header);
    rogue.send_to(&replay, to).unwrap();
    rogue.send_to(&replay, to).unwrap(); // replayed
                                         // Wait (bounded) until node 1 has read all 402 datagrams; a loaded machine may take a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = c.stats(1).unwrap();
        let d = &s.drops;
        let seen = d.foreign
            + d.unauthenticated
            + d.ring.wrong_version
            + d.ring.bad_magic
            + d.ring.malformed
            + d.ring.oversized
            + d.replayed;
        if seen >= 401 || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let d = &s.drops;
    assert_eq!(d.foreign, 100, "{d:?}");
    assert_eq!(d.unauthenticated, 100, "{d:?}");
    assert_eq!(d.ring.wrong_version, 50, "{d:?}");
    assert_eq!(d.ring.bad_magic, 50, "{d:?}");
    assert_eq!(d.ring.malformed, 50, "{d:?}");
    assert_eq!(d.ring.oversized, 50, "{d:?}");
    assert_eq!(d.replayed, 1, "{d:?}");
    // Still the same ring, and it still carries messages.
    assert_eq!(c.wait_ring(&[1, 2], Duration::from_secs(5)).unwrap(), ring);
    c.call::<Ack>(1, &load(0, 500, Some(2000))).unwrap();
    let records = stop_and_check(&mut c);
    let delivered_at_2 = records
        .iter()
        .filter(|r| r.node == 2 && matches!(r.body, Body::Deliver { .. }))
        .count();
    assert_eq!(delivered_at_2, 2000);
}

#[test]
fn a_bad_config_names_the_field_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("ringlab-test-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.toml");
    std::fs::write(
        &p,
        "node_id = 1\nbind = \"127.0.0.1\"\ncontrol = \"x.sock\"\nstate_dir = \"s\"\n[[nodes]]\nid = 1\naddr = \"127.0.0.1\"\n[totem]\nmax_messages = 999\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringlab"))
        .args(["node", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("totem.max_messages"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn ipv6_cluster(name: &str, transport: Transport, port: u16) {
    let mut s = spec(name, 3, transport, Variant::Classic, port, false);
    s.ipv6 = true;
    s.group = "ff02::1:7272".parse().unwrap();
    let mut c = Cluster::start(s).unwrap();
    c.wait_ring(&ids(3), Duration::from_secs(20)).unwrap();
    c.call::<Ack>(2, &load(0, 800, Some(1000))).unwrap();
    let records = stop_and_check(&mut c);
    for n in 1..=3 {
        let got = records
            .iter()
            .filter(|r| r.node == n && matches!(r.body, Body::Deliver { .. }))
            .count();
        assert_eq!(got, 1000, "node {n}");
    }
}

// IPv6 multicast is not tested here: this host's loopback has no MULTICAST flag, so the kernel
// refuses IPv6 multicast sends on it (IPv4 loops back anyway), and changing the host's `lo` is
// off limits. It runs between network namespaces, where the links carry multicast.
#[test]
fn ipv6_unicast_on_the_loopback() {
    ipv6_cluster("v6-uc", Transport::Unicast, 17_900);
}

fn sync_of(c: &Cluster, id: NodeId) -> SyncStats {
    c.stats(id)
        .unwrap()
        .sync
        .expect("the checkpoint service runs")
}

#[test]
fn checkpoint_state_is_synchronised_after_a_kill_and_restart() {
    let mut s = spec(
        "ckpt",
        3,
        Transport::Unicast,
        Variant::Classic,
        18_100,
        false,
    );
    s.services = vec![CheckpointService::NAME.into()];
    let mut c = Cluster::start(s).unwrap();
    c.wait_ring(&ids(3), Duration::from_secs(20)).unwrap();
    c.call::<FillReply>(1, &ckpt(Command::Fill { bytes: 2_097_152 }))
        .unwrap();
    let open = || ckpt(Command::Open { name: "c0".into() });
    c.call::<Ack>(2, &open()).unwrap();
    c.call::<Ack>(3, &open()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while (1..=3).any(|i| sync_of(&c, i).state_bytes != 2_097_152) {
        assert!(
            std::time::Instant::now() < deadline,
            "the writes reached every node"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Node 3 dies and comes back empty; node 2 writes meanwhile.
    c.kill(3);
    c.wait_ring(&[1, 2], Duration::from_secs(20)).unwrap();
    let write = Command::Write {
        name: "c0".into(),
        section: "extra".into(),
        size: 1000,
    };
    c.call::<Ack>(2, &ckpt(write)).unwrap();
    c.spawn(3).unwrap();
    c.wait_ring(&ids(3), Duration::from_secs(20)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s: Vec<SyncStats> = (1..=3).map(|i| sync_of(&c, i)).collect();
        let d = digests(&c, 3);
        let settled =
            s.iter().all(|x| !x.syncing && x.queued_ops == 0) && d.iter().all(|x| *x == d[0]);
        if settled && s[0].state_bytes == 2_098_152 {
            // Node 3's restart took its open count with it: only node 2's remains.
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replicas never agreed: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The service's own workload as a load: its operations reach every replica.
    let load = LoadSpec {
        rate: 2000,
        count: Some(200),
        service: Some(CheckpointService::NAME.into()),
        state_bytes: Some(128 * 100),
        ..LoadSpec::default()
    };
    c.call::<Ack>(1, &Request::Load(load)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = c.stats(1).unwrap();
        let d = digests(&c, 3);
        if !st.load.running
            && st.load.sent == 200
            && st.sync.as_ref().is_some_and(|x| x.queued_ops == 0)
            && d.iter().all(|x| *x == d[0])
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service load never settled: {:?}",
            st.load
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = stop_and_check(&mut c);
    assert!(records.iter().any(|r| r.node == 3
        && r.inc == 2
        && matches!(&r.body, Body::Sync { phase, .. } if phase == "done")));
}

/// Writes a one-node config on 127.0.0.1:`port` into `dir` (control socket and state in
/// subdirectories the node creates); returns its path.
fn one_node_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("node.toml");
    std::fs::write(
        &p,
        format!(
            "node_id = 1\nbind = \"127.0.0.1\"\nport = {port}\ncontrol = \"{}\"\nstate_dir = \"{}\"\n[[nodes]]\nid = 1\naddr = \"127.0.0.1\"\n",
            dir.join("ctl/node.sock").display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    p
}

/// Waits (at most `limit`) for `child` to exit; kills it (this test's own child, by PID)
/// when it does not. Returns its exit code and stderr.
fn wait_exit(mut child: std::process::Child, limit: Duration) -> (Option<i32>, String) {
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    (status.and_then(|s| s.code()), err)
}

#[test]
fn a_damaged_state_file_stops_the_node_with_exit_2_naming_it() {
    let dir = std::env::temp_dir().join(format!("ringlab-test-badstate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = one_node_config(&dir, 18_200);
    let state = dir.join("state/node-1.state");
    let cases: [(&str, &[u8]); 5] = [
        ("empty", b""),
        ("truncated", b"{\"incarnation\":41,"),
        ("not UTF-8", b"\xff\xfe\x00{"),
        ("wrong type", b"{\"incarnation\":\"41\",\"ring_seq\":0}"),
        (
            "last incarnation",
            b"{\"incarnation\":4294967295,\"ring_seq\":0}",
        ),
    ];
    for (what, bytes) in cases {
        std::fs::create_dir_all(state.parent().unwrap()).unwrap();
        std::fs::write(&state, bytes).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ringlab"))
            .args(["node", "--config"])
            .arg(&cfg)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A node that starts anyway runs until killed: that is the failure.
        let (code, err) = wait_exit(child, Duration::from_secs(10));
        assert_eq!(code, Some(2), "{what}: {err}");
        assert!(err.contains(&state.display().to_string()), "{what}: {err}");
        assert!(err.contains("remove the file"), "{what}: {err}");
        assert_eq!(std::fs::read(&state).unwrap(), bytes, "{what}: file kept");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn under_umask_000_the_state_file_and_control_socket_are_private_and_no_key_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("ringlab-test-umask-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = one_node_config(&dir, 18_300);
    let child = std::process::Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" node --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_ringlab"))
        .arg(&cfg)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sock = dir.join("ctl/node.sock");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ringlab_net::control::call::<ringlab_net::control::StatusReply>(&sock, &Request::Status)
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "the node answered");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let modes = [
        mode(&dir.join("state")),
        mode(&dir.join("state/node-1.state")),
        mode(&dir.join("ctl")),
        mode(&sock),
    ];
    ringlab_net::control::call::<Ack>(&sock, &Request::Quit).unwrap();
    let (code, err) = wait_exit(child, Duration::from_secs(10));
    assert_eq!(
        modes,
        [0o700, 0o600, 0o700, 0o600],
        "{:?}",
        modes.map(|m| format!("{m:o}"))
    );
    assert_eq!(code, Some(0), "{err}");
    // No key_file: the node says so, loudly, with what an attacker can do.
    assert!(
        err.contains("WARN") && err.contains("without a key") && err.contains("forge"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Returns a `/proc/<pid>/status` field in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Sends one raw request line; returns the node's error message (panics on `ok: true`).
fn refusal(sock: &std::path::Path, line: &str) -> String {
    let v = ringlab_net::control::exchange(sock, line).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn the_control_socket_bounds_its_clients_closes_every_connection_and_checks_every_argument() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let mut s = spec(
        "ctl-bounds",
        1,
        Transport::Unicast,
        Variant::Classic,
        18_400,
        false,
    );
    s.services = vec!["checkpoint".into()];
    let mut c = Cluster::start(s).unwrap();
    c.wait_ring(&ids(1), Duration::from_secs(20)).unwrap();
    let pid = c.pid(1).unwrap();
    let sock = c.control_path(1);
    let rss_before = proc_kib(pid, "VmRSS:");

    // 1. A client writes 3.2 MB of `stats` without reading a reply: the node drops it once
    // 1 MiB of replies waits, and its memory stays bounded.
    let mut w = UnixStream::connect(&sock).unwrap();
    w.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    w.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = "{\"cmd\":\"stats\"}\n".repeat(1000);
    let mut written = 0;
    while written < 3_200_000 {
        match w.write(chunk.as_bytes()) {
            Ok(n) => written += n,
            Err(_) => break, // dropped (EPIPE, reset) or blocked past the timeout
        }
    }
    // What the node wrote before it dropped the client, then the end of the stream.
    let mut buf = vec![0u8; 1 << 16];
    let mut ended = false;
    for _ in 0..10_000 {
        match w.read(&mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(_) => {}
            // Reset by the node: closed too. A timeout: still open, not dropped.
            Err(e) => {
                ended = e.kind() == std::io::ErrorKind::ConnectionReset;
                break;
            }
        }
    }
    let rss_after = proc_kib(pid, "VmRSS:");
    assert!(ended, "the node closed the no-read writer");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB after {written} bytes of stats requests"
    );
    drop(w);
    assert!(c.stats(1).unwrap().control.dropped >= 1);

    // 2. 500 clients send a request and close before reading the reply (50 at a time while
    // the node is stopped, so that each is gone before the node answers): no descriptor
    // stays open.
    let fds_before = open_fds(pid);
    for _ in 0..10 {
        assert!(c.pause(1, true));
        for _ in 0..50 {
            let mut k = UnixStream::connect(&sock).unwrap();
            k.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        }
        assert!(c.pause(1, false));
        c.status(1).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_fds(pid) > fds_before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // (The count before may include a connection the node had not yet seen close.)
    let fds_after = open_fds(pid);
    assert!(
        fds_after <= fds_before,
        "descriptors: {fds_before} before 500 closed clients, {fds_after} after"
    );
    c.status(1).unwrap();

    // 3. 64 clients at once are served; one more gets one error line and is closed.
    let held: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let mut extra = UnixStream::connect(&sock).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    let _ = extra.read_to_string(&mut line);
    assert!(line.contains("too many control clients"), "{line:?}");
    assert_eq!(line.matches('\n').count(), 1, "{line:?}");
    drop(held);
    // Served again once the node has seen the 64 go (this call is the one client left).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let control = loop {
        match c.stats(1) {
            Ok(st) if st.control.clients == 1 => break st.control,
            other => assert!(
                std::time::Instant::now() < deadline,
                "served again: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(control.refused >= 1, "{control:?}");

    // 4. Every argument past its bound is refused, naming it; nothing runs or is queued.
    let big = |n: usize| "x".repeat(n);
    let half = 512 * 1024;
    let cases = [
        (
            r#"{"cmd":"load","duration_ms":18446744073709551615}"#.to_string(),
            "duration_ms=",
        ),
        (
            r#"{"cmd":"load","rate":18446744073709551615,"count":1}"#.to_string(),
            "rate=",
        ),
        (r#"{"cmd":"load","count":0}"#.to_string(), "count=0"),
        (r#"{"cmd":"load","size":0}"#.to_string(), "size=0"),
        (
            r#"{"cmd":"load","size":2097152}"#.to_string(),
            "size=2097152",
        ),
        (r#"{"cmd":"load","sizes":[1,0]}"#.to_string(), "sizes=0"),
        (
            format!(
                r#"{{"cmd":"svc","service":"checkpoint","request":{{"op":"create","name":"{}"}}}}"#,
                big(half + 1)
            ),
            "name=",
        ),
        (
            format!(
                r#"{{"cmd":"svc","service":"checkpoint","request":{{"op":"write","name":"c","section":"{}","size":1}}}}"#,
                big(half + 1)
            ),
            "section=",
        ),
        (
            r#"{"cmd":"svc","service":"checkpoint","request":{"op":"write","name":"c","section":"s","size":524289}}"#.to_string(),
            "size=524289",
        ),
        (
            format!(
                r#"{{"cmd":"svc","service":"checkpoint","request":{{"op":"write","name":"{}","section":"{}","size":1000}}}}"#,
                big(half),
                big(half - 1000) // the line itself stays under the 1 MiB a line may take
            ),
            "name+section+size=1048592 refused: at most 1048512 bytes encoded",
        ),
        (
            r#"{"cmd":"svc","service":"checkpoint","request":{"op":"fill","bytes":4000000000}}"#.to_string(),
            "max_fill_bytes=268435456",
        ),
        (
            r#"{"cmd":"svc","service":"checkpoint","request":{"op":"fill","bytes":0}}"#.to_string(),
            "bytes=0",
        ),
        (
            r#"{"cmd":"svc","service":"shred","request":{}}"#.to_string(),
            "unknown service \"shred\"",
        ),
    ];
    for (line, name) in &cases {
        let e = refusal(&sock, line);
        assert!(e.contains(name), "{name}: {e}");
    }
    let st = c.stats(1).unwrap();
    assert!(!st.load.running);
    assert_eq!(st.sync.unwrap().queued_ops, 0);

    // 5. After all that the node still quits when asked.
    c.call::<Ack>(1, &Request::Quit).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.is_running(1) {
        assert!(std::time::Instant::now() < deadline, "the node quit");
        std::thread::sleep(Duration::from_millis(20));
    }
    c.stop();
    let _ = std::fs::remove_dir_all(&c.spec.dir);
}

#[test]
fn quit_during_a_load_drains_before_the_node_exits() {
    let mut c = Cluster::start(spec(
        "quit-load",
        3,
        Transport::Unicast,
        Variant::Classic,
        18_500,
        false,
    ))
    .unwrap();
    c.wait_ring(&ids(3), Duration::from_secs(20)).unwrap();
    // A maximum load keeps a window of node 1's messages queued; quit while it runs.
    c.call::<Ack>(1, &load(0, 700, None)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.stats(1).unwrap().delivered.messages < 2000 {
        assert!(std::time::Instant::now() < deadline, "the load runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.call::<Ack>(1, &Request::Quit).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while c.is_running(1) {
        assert!(std::time::Instant::now() < deadline, "node 1 exited");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.wait_ring(&[2, 3], Duration::from_secs(20)).unwrap();
    // No self-delivery failure: node 1 delivered every message it sent before it exited,
    // or said that it stopped with some undelivered.
    let records = stop_and_check(&mut c);
    let sent = records
        .iter()
        .filter(|r| r.node == 1 && matches!(r.body, Body::Send { .. }))
        .count();
    assert!(sent >= 2000, "{sent}");
}

#[test]
fn write_failures_and_kernel_drops_show_in_stats() {
    let port = 18_600;
    let s = spec(
        "failures",
        2,
        Transport::Unicast,
        Variant::Classic,
        port,
        false,
    );
    // Node 1's event records go to a full disk.
    std::fs::create_dir_all(&s.dir).unwrap();
    std::os::unix::fs::symlink("/dev/full", s.dir.join("node-1.jsonl")).unwrap();
    let mut c = Cluster::start(s).unwrap();
    c.wait_ring(&ids(2), Duration::from_secs(20)).unwrap();
    let log = |c: &Cluster| std::fs::read_to_string(c.spec.dir.join("node-1.log")).unwrap();

    // 1. The records writer's failures: counted, the first one kept and logged.
    let st = c.stats(1).unwrap();
    let rec = st.records.expect("node 1 writes records");
    assert!(rec.failed >= 1, "{rec:?}");
    assert!(
        rec.first_error
            .as_deref()
            .is_some_and(|e| e.contains("No space left")),
        "{rec:?}"
    );
    assert!(log(&c).contains("writing event records failed"));
    assert!(
        st.stable.written >= 1 && st.stable.failed == 0,
        "{:?}",
        st.stable
    );
    assert!(c.stats(2).unwrap().records.unwrap().failed == 0);

    // 2. A flood while node 1 is stopped overflows its receive buffer: what the kernel
    // dropped is counted, and with what the node read, accounts for every datagram.
    let to = SocketAddr::new(Cluster::addr(1), port);
    let stranger = UdpSocket::bind(SocketAddr::new([127, 0, 0, 9].into(), 0)).unwrap();
    let before = c.stats(1).unwrap();
    assert!(c.pause(1, true));
    let mut flooded = 0u64;
    for _ in 0..8000 {
        if stranger.send_to(&[0u8; 1000], to).is_ok() {
            flooded += 1;
        }
    }
    assert!(c.pause(1, false));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (foreign, kernel) = loop {
        let s = c.stats(1).unwrap();
        let foreign = s.drops.foreign - before.drops.foreign;
        let kernel = s.kernel_drops.unicast.unwrap() - before.kernel_drops.unicast.unwrap();
        if foreign + kernel >= flooded || std::time::Instant::now() > deadline {
            break (foreign, kernel);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        kernel > 0,
        "foreign {foreign}, kernel {kernel} of {flooded}"
    );
    assert!(
        foreign + kernel >= flooded,
        "foreign {foreign}, kernel {kernel} of {flooded}"
    );

    // 3. Stable storage that cannot be written: node 1's state directory goes away, node 2
    // dies, node 1's new ring seq cannot be saved: counted, kept, logged.
    let state = c.spec.dir.join("state");
    let away = c.spec.dir.join("state-away");
    std::fs::rename(&state, &away).unwrap();
    c.kill(2);
    c.wait_ring(&[1], Duration::from_secs(20)).unwrap();
    let st = c.stats(1).unwrap().stable;
    std::fs::rename(&away, &state).unwrap();
    assert!(st.failed >= 1, "{st:?}");
    assert!(st.first_error.is_some(), "{st:?}");
    assert!(log(&c).contains("writing stable storage failed"));
    // The records of node 1 are /dev/full: not read back.
    c.stop();
    let _ = std::fs::remove_dir_all(&c.spec.dir);
}

/// `record_every = 10`: every node writes the send and deliver records of the same tenth
/// of the messages (counter a multiple of 10), the checker judges them clean, and the
/// nodes' counters still count every message.
#[test]
fn record_every_keeps_one_message_in_ten_on_every_node_and_the_counters_count_all() {
    let mut s = spec(
        "rec-every",
        3,
        Transport::Unicast,
        Variant::Classic,
        18_700,
        false,
    );
    s.record_every = 10;
    let mut c = Cluster::start(s).unwrap();
    c.wait_ring(&ids(3), Duration::from_secs(20)).unwrap();
    c.call::<Ack>(1, &load(0, 200, Some(1000))).unwrap();
    c.call::<Ack>(2, &load(0, 200, Some(500))).unwrap();
    assert!(c.wait_quiet(Duration::from_secs(30)), "queues drained");
    let delivered: Vec<u64> = ids(3)
        .iter()
        .map(|&i| c.stats(i).unwrap().delivered.messages)
        .collect();
    assert_eq!(delivered, vec![1500; 3]);
    let records = stop_and_check(&mut c);
    let mut per_node: HashMap<NodeId, Vec<MsgId>> = HashMap::new();
    let mut sent = 0;
    for r in &records {
        match &r.body {
            Body::Deliver { id, .. } => per_node.entry(r.node).or_default().push(*id),
            Body::Send { id, .. } => {
                assert_eq!(id.counter % 10, 0, "{id}");
                sent += 1;
            }
            _ => {}
        }
    }
    assert_eq!(sent, 150);
    for n in ids(3) {
        let ids = &per_node[&n];
        assert_eq!(ids.len(), 150, "node {n}");
        assert!(ids.iter().all(|id| id.counter % 10 == 0));
    }
}
