//! The Wireshark dissector (dissector/ringlab.lua) against captures the simulator makes
//! (`ringlab sim --capture`): tshark decodes every packet to a ringlab message type and
//! marks none malformed, and it does mark a truncated packet and a foreign one. Needs
//! tshark: in CI (CI=true) a missing tshark fails the test; elsewhere it is skipped with a
//! line saying so.
// A test that runs the binary and tshark, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every name the dissector gives a packet (ringlab.msg).
const TYPES: &[&str] = &[
    "token",
    "mcast",
    "merge_detect",
    "join",
    "commit_token",
    "token_hold_cancel",
    "leave",
    "svc_datagram",
    "transfer_fragment",
    "transfer_ack",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dissector/ringlab.lua")
}

/// Returns whether tshark runs here; panics in CI when it does not.
fn tshark_present() -> bool {
    let ok = Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("tshark is missing in CI (.ci/run installs it with apt-get)");
        }
        eprintln!("skipped: tshark is not installed (apt-get install tshark); CI requires it");
    }
    ok
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringlab-dissector-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs tshark with the dissector over `file`; returns its stdout lines.
fn tshark(file: &Path, args: &[&str]) -> Vec<String> {
    let lua = format!("lua_script:{}", script().display());
    let o = Command::new("tshark")
        .args(["-n", "-X", &lua, "-r"])
        .arg(file)
        .args(args)
        .output()
        .expect("tshark runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "tshark failed: {err}");
    assert!(
        !err.contains("ringlab.lua:"),
        "the dissector did not load cleanly: {err}"
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Returns the count of each message type in `file`, asserting that every packet has one
/// of [`TYPES`] and that none is malformed.
fn decode_all(file: &Path) -> BTreeMap<String, usize> {
    decode_filtered(file, "frame")
}

/// [`decode_all`] over the packets that `filter` (a display filter) selects.
fn decode_filtered(file: &Path, filter: &str) -> BTreeMap<String, usize> {
    let frames = tshark(file, &["-Y", filter, "-T", "fields", "-e", "frame.number"]).len();
    assert!(frames > 0, "{} holds no packet", file.display());
    let names = tshark(file, &["-Y", filter, "-T", "fields", "-e", "ringlab.msg"]);
    assert_eq!(names.len(), frames);
    let mut counts = BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        assert!(
            TYPES.contains(&n.as_str()),
            "{}: packet {} decodes to {n:?}, not a ringlab message",
            file.display(),
            i + 1
        );
        *counts.entry(n.clone()).or_insert(0) += 1;
    }
    let bad = tshark(
        file,
        &["-Y", "_ws.malformed || _ws.expert.severity >= error"],
    );
    assert!(
        bad.is_empty(),
        "{}: malformed packets: {bad:#?}",
        file.display()
    );
    counts
}

fn sim_capture(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let file = dir.join(format!("{name}.pcapng"));
    let o = Command::new(env!("CARGO_BIN_EXE_ringlab"))
        .args(["sim", "--nodes", "3", "--capture"])
        .arg(&file)
        .args(extra)
        .output()
        .expect("ringlab runs");
    assert!(
        o.status.success(),
        "ringlab sim failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    file
}

#[test]
fn every_packet_of_a_simulated_run_decodes_and_none_is_malformed() {
    if !tshark_present() {
        return;
    }
    let dir = temp("sim");
    // Faults, loss and duplication: membership messages of every kind.
    let plain = sim_capture(
        &dir,
        "plain",
        &[
            "--seed",
            "5",
            "--duration-ms",
            "15000",
            "--faults",
            "all",
            "--loss",
            "0.05",
            "--dup",
            "0.02",
        ],
    );
    let counts = decode_all(&plain);
    for t in ["token", "mcast", "join", "commit_token", "merge_detect"] {
        assert!(counts.contains_key(t), "no {t} in {counts:?}");
    }
    // A keyed cluster (the HMAC trailer) whose store copies a node back with the chunk
    // protocol (service datagrams: transfer fragments and acks).
    std::fs::write(
        dir.join("store.toml"),
        "[store]\nlog_keep = 20\ndesign = \"pull\"\n",
    )
    .unwrap();
    let keyed = sim_capture(
        &dir,
        "keyed",
        &[
            "--seed",
            "7",
            "--duration-ms",
            "20000",
            "--faults",
            "crash,restart",
            "--services",
            "store",
            "--store-keys",
            "300",
            "--store-bytes",
            "2000",
            "--service-config",
            dir.join("store.toml").to_str().unwrap(),
            "--key",
        ],
    );
    let counts = decode_all(&keyed);
    for t in ["token", "mcast", "transfer_fragment", "transfer_ack"] {
        assert!(counts.contains_key(t), "no {t} in {counts:?}");
    }
    let trailers = tshark(
        &keyed,
        &[
            "-Y",
            "ringlab.auth.mac",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    let frames = tshark(&keyed, &["-T", "fields", "-e", "frame.number"]);
    assert_eq!(
        trailers.len(),
        frames.len(),
        "every keyed datagram has its trailer"
    );
    let chunks = tshark(
        &keyed,
        &[
            "-Y",
            "ringlab.chunk.op",
            "-T",
            "fields",
            "-e",
            "ringlab.chunk.op",
        ],
    );
    assert!(!chunks.is_empty(), "no chunk-protocol message decoded");
    let sync = tshark(
        &keyed,
        &[
            "-Y",
            "ringlab.sync.service == 4",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    assert!(
        !sync.is_empty(),
        "no sync-layer message of the store decoded"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_truncated_or_foreign_packet_is_marked_malformed() {
    if !tshark_present() {
        return;
    }
    use ringlab_sim::pcap::{synthetic_frame, write_pcapng, Frame};
    let dir = temp("bad");
    // A token cut in its retransmit list, a join whose processors are not sorted, a
    // datagram that is not ringlab's, and one good leave.
    let mut token = vec![0x52, 0x4C, 2, 0, 0, 0, 0, 1];
    token.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4]);
    token.extend_from_slice(&[0; 36]);
    token.extend_from_slice(&[0, 0, 3, 0, 0]);
    let mut join = vec![
        0x52, 0x4C, 2, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4,
    ];
    join.extend_from_slice(&[0; 8]);
    join.extend_from_slice(&[0, 2, 0, 0, 0, 3, 0, 0, 0, 1]);
    join.extend_from_slice(&[0, 0]);
    join.extend_from_slice(&[0; 8]);
    join.extend_from_slice(&[0, 0]);
    let mut leave = vec![
        0x52, 0x4C, 2, 6, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4,
    ];
    leave.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4]);
    let payloads: [&[u8]; 4] = [&token, &join, b"XYZW not ours", &leave];
    let frames = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let data = synthetic_frame(1, 2, p);
            Frame {
                at_ns: i as u64,
                interface: 0,
                original_len: data.len() as u32,
                data: Cow::Owned(data),
                comments: vec![],
            }
        })
        .collect();
    let file = dir.join("bad.pcapng");
    let f = std::fs::File::create(&file).unwrap();
    write_pcapng(f, "hand-made", &["n1->n2".to_string()], frames, &[]).unwrap();
    let bad = tshark(
        &file,
        &[
            "-Y",
            "_ws.expert.severity >= error",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
    );
    assert_eq!(bad, vec!["1", "2", "3"]);
    let names = tshark(&file, &["-T", "fields", "-e", "ringlab.msg"]);
    assert_eq!(names[3], "leave");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real capture: `ringlab run --capture` on the CI experiment in network namespaces
/// (root; run by .ci/run with `--ignored`). Every ring datagram on the bridge decodes and
/// none is malformed; the faults are in the file as comments; the summary names the file.
#[test]
#[ignore = "needs root: network namespaces"]
fn every_packet_of_a_namespace_run_decodes_and_none_is_malformed() {
    if !tshark_present() {
        return;
    }
    let dir = temp("real");
    let exp = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/ci-isolate-heal.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_ringlab"))
        .arg("run")
        .arg(&exp)
        .args(["--capture", "--out"])
        .arg(&dir)
        .output()
        .expect("ringlab runs");
    assert!(
        o.status.success(),
        "ringlab run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let run = std::fs::read_dir(dir.join("ci-isolate-heal"))
        .unwrap()
        .next()
        .expect("a run directory")
        .unwrap()
        .path();
    let file = run.join("records/rep-1/capture.pcapng");
    // The bridge also carries ARP and IPv6 neighbour discovery: only the ring's port counts.
    let counts = decode_filtered(&file, "udp.port == 5405");
    for t in ["token", "mcast", "join", "commit_token"] {
        assert!(counts.contains_key(t), "no {t} in {counts:?}");
    }
    let comments = tshark(
        &file,
        &["-Y", "frame.comment", "-T", "fields", "-e", "frame.comment"],
    );
    assert!(
        comments.iter().any(|c| c.contains("fault isolate [3]")),
        "no fault comment: {comments:?}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let cap = &summary["reps"][0]["capture"];
    assert_eq!(cap["file"], "records/rep-1/capture.pcapng");
    assert_eq!(cap["cap_reached"], false);
    assert!(cap["frames"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
