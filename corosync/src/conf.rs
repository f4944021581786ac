//! corosync.conf from a ringlab [`NodeConfig`]: every ring knob that corosync has, under its
//! own name and with the exact number ringlab resolves it to, and a list of what could not
//! be carried over ([`Unmapped`]) with the reason.
//!
//! Guarantees: [`render`] is a pure function of the config and the state directory (no
//! clock, no file access); each knob of [`ringlab_ring::Config`] appears either in the
//! `totem` section or in [`Rendered::unmapped`]; derived knobs (`token_retransmit`, `hold`,
//! `consensus`) are written as the numbers ringlab derives, so that corosync's own
//! derivation never applies.
//!
//! Mapping notes:
//! - the transport is `udpu` (one unicast per member, ringlab's `unicast`); a config that
//!   asks for `multicast` still gets `udpu`, and says so in `unmapped`;
//! - with a `key_file`, the transport is `knet` instead: corosync 3 encrypts and
//!   authenticates only over knet (`crypto_cipher`/`crypto_hash` are refused with udpu). See
//!   [`authkey_from`] for how corosync's own key file is made from ringlab's key;
//! - `netmtu`: ringlab's knob is the largest UDP *payload*; corosync's is the largest packet
//!   *with* the IP and UDP headers (it subtracts them itself), so the value written is
//!   ringlab's plus 28 (IPv4) or 48 (IPv6);
//! - `port` is corosync's `mcastport` of link 0 (with udpu corosync also sends from it);
//!   corosync has one port for the whole cluster, so a peer with a port of its own is listed
//!   in `unmapped`;
//! - no quorum provider: CPG works without one, and ringlab nodes have no quorum either;
//! - logging goes to `STATE_DIR/corosync.log` with TOTEM debug on (the node parses its state
//!   changes) and `timestamp: hires` (the timestamp with milliseconds).

use ringlab_net::{NodeConfig, Transport};
use ringlab_ring::config::Variant;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

/// A knob of the ringlab config that corosync.conf does not carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmapped {
    /// The knob, as named in the ringlab config (`totem.` prefix for ring knobs).
    pub knob: String,
    /// Its value in the ringlab config.
    pub value: String,
    /// Why corosync does not get it.
    pub why: String,
}

/// A rendered corosync.conf and what it leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The corosync.conf text.
    pub text: String,
    /// Every knob that has no corosync equivalent, with its reason.
    pub unmapped: Vec<Unmapped>,
}

/// The name of corosync's key file in the state directory (with a `key_file`).
pub const AUTHKEY_FILE: &str = "corosync-authkey";

/// The name of corosync's log file in the state directory.
pub const LOG_FILE: &str = "corosync.log";

/// Shortest key knet accepts, in bytes.
pub const KNET_KEY_MIN: usize = 1024;
/// Longest key knet accepts, in bytes.
pub const KNET_KEY_MAX: usize = 4096;

/// Renders the corosync.conf of `cfg`, with paths under `cfg.state_dir`.
pub fn render(cfg: &NodeConfig) -> Rendered {
    let t = &cfg.totem;
    let mut unmapped = Vec::new();
    let mut un = |knob: &str, value: String, why: &str| {
        unmapped.push(Unmapped {
            knob: knob.to_string(),
            value,
            why: why.to_string(),
        })
    };
    let v6 = cfg.bind.is_ipv6();
    let state = &cfg.state_dir;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# Written by ringlab corosync-node from its NodeConfig; do not edit."
    );
    let _ = writeln!(w, "totem {{");
    let _ = writeln!(w, "\tversion: 2");
    let _ = writeln!(w, "\tcluster_name: ringlab");
    let crypto = cfg.key_file.is_some();
    let _ = writeln!(w, "\ttransport: {}", if crypto { "knet" } else { "udpu" });
    let _ = writeln!(w, "\tip_version: {}", if v6 { "ipv6" } else { "ipv4" });
    let _ = writeln!(w, "\ttoken: {}", t.token);
    let _ = writeln!(w, "\ttoken_coefficient: 0");
    let _ = writeln!(
        w,
        "\ttoken_retransmits_before_loss_const: {}",
        t.token_retransmits_before_loss_const
    );
    let _ = writeln!(w, "\ttoken_retransmit: {}", t.token_retransmit_ms());
    let _ = writeln!(w, "\thold: {}", t.hold_ms());
    let _ = writeln!(w, "\tjoin: {}", t.join);
    let _ = writeln!(w, "\tconsensus: {}", t.consensus_ms());
    let _ = writeln!(w, "\tmerge: {}", t.merge);
    let _ = writeln!(w, "\twindow_size: {}", t.window_size);
    let _ = writeln!(w, "\tmax_messages: {}", t.max_messages);
    let _ = writeln!(w, "\tfail_recv_const: {}", t.fail_recv_const);
    let _ = writeln!(w, "\tseqno_unchanged_const: {}", t.seqno_unchanged_const);
    let _ = writeln!(w, "\tmiss_count_const: {}", t.miss_count_const);
    let _ = writeln!(w, "\tnetmtu: {}", t.netmtu + udp_ip_header(v6));
    if crypto {
        let _ = writeln!(w, "\tcrypto_cipher: aes256");
        let _ = writeln!(w, "\tcrypto_hash: sha256");
        let _ = writeln!(
            w,
            "\tkeyfile: {}",
            state.join(AUTHKEY_FILE).to_string_lossy()
        );
    } else {
        let _ = writeln!(w, "\tcrypto_cipher: none");
        let _ = writeln!(w, "\tcrypto_hash: none");
    }
    let _ = writeln!(w, "\tinterface {{");
    let _ = writeln!(w, "\t\tlinknumber: 0");
    let _ = writeln!(w, "\t\tmcastport: {}", cfg.port);
    let _ = writeln!(w, "\t}}");
    let _ = writeln!(w, "}}");
    let _ = writeln!(w, "nodelist {{");
    for p in &cfg.nodes {
        let _ = writeln!(w, "\tnode {{");
        let _ = writeln!(w, "\t\tnodeid: {}", p.id);
        let _ = writeln!(w, "\t\tring0_addr: {}", addr(p.addr));
        let _ = writeln!(w, "\t}}");
        if let Some(port) = p.port.filter(|&port| port != cfg.port) {
            un(
                &format!("nodes[id={}].port", p.id),
                port.to_string(),
                "corosync uses one port (mcastport) for every node of the cluster",
            );
        }
    }
    let _ = writeln!(w, "}}");
    let _ = writeln!(w, "logging {{");
    let _ = writeln!(w, "\tto_logfile: yes");
    let _ = writeln!(w, "\tlogfile: {}", state.join(LOG_FILE).to_string_lossy());
    let _ = writeln!(w, "\tto_stderr: no");
    let _ = writeln!(w, "\tto_syslog: no");
    let _ = writeln!(w, "\ttimestamp: hires");
    let _ = writeln!(w, "\tdebug: off");
    let _ = writeln!(w, "\tlogger_subsys {{");
    let _ = writeln!(w, "\t\tsubsys: TOTEM");
    let _ = writeln!(w, "\t\tdebug: on");
    let _ = writeln!(w, "\t}}");
    let _ = writeln!(w, "}}");

    match t.variant {
        Variant::Classic => {}
        Variant::Accelerated => un(
            "totem.variant",
            "accelerated".into(),
            "corosync implements only the classic ordering (multicast, then pass the token); \
             it runs classic",
        ),
    }
    un(
        "totem.accelerated_window",
        t.accelerated_window.to_string(),
        "a knob of the Accelerated Ring, which corosync does not implement",
    );
    un(
        "totem.send_queue_bytes",
        t.send_queue_bytes.to_string(),
        "ringlab's own bound of the send queue; corosync's queues are bounded by its IPC \
         (cpg_mcast_joined answers CS_ERR_TRY_AGAIN when full)",
    );
    un(
        "totem.reachability",
        t.reachability.to_string(),
        "ringlab's handling of asymmetric and partial connectivity; corosync has none (it \
         re-forms for as long as such a cut lasts)",
    );
    un(
        "totem.pending_joins",
        t.pending_joins.to_string(),
        "ringlab merges with joins heard while forming a ring; corosync drops them",
    );
    un(
        "totem.adaptive_token_retransmit",
        t.adaptive_token_retransmit.to_string(),
        "ringlab paces token retransmission by the measured rotation; corosync re-sends \
         every token_retransmit",
    );
    if cfg.transport == Transport::Multicast {
        un(
            "transport",
            format!("multicast (group {})", cfg.mcast_group),
            "this node runs corosync with the udpu (unicast) transport, or knet with a key",
        );
    }
    if crypto {
        un(
            "key_file",
            cfg.key_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "mapped to knet with crypto_cipher aes256 / crypto_hash sha256 and a key derived \
             from the key file (corosync encrypts only over knet, and knet wants 1024 to \
             4096 key bytes): not ringlab's HMAC envelope, no replay marks across restarts",
        );
    }
    for (knob, v) in [
        ("recv_buffer", cfg.recv_buffer),
        ("send_buffer", cfg.send_buffer),
    ] {
        if let Some(v) = v {
            un(knob, v.to_string(), "corosync sizes its own socket buffers");
        }
    }
    if !cfg.batched_io {
        un(
            "batched_io",
            "false".into(),
            "corosync's socket calls are its own",
        );
    }
    if !cfg.services.is_empty() {
        un(
            "services",
            cfg.services.join(","),
            "corosync runs no ringlab services",
        );
    }
    Rendered { text: s, unmapped }
}

/// Returns the bytes of corosync's key file made from ringlab's key: the key itself when
/// knet takes its length (1024 to 4096 bytes), else 2048 bytes expanded from it with
/// SHA-256 in counter mode (`SHA-256(key || counter as 4 big-endian bytes)` for counters 0
/// to 63). Every node with the same key file gets the same key.
///
/// How this differs from ringlab's authentication: ringlab seals every datagram with an
/// HMAC-SHA-256 trailer over the plain payload, binds it to sender, receiver and
/// incarnation, and keeps replay marks in stable storage; corosync (knet) encrypts each
/// packet with AES-256 and authenticates it with an HMAC-SHA-256, with no replay marks kept
/// across restarts.
pub fn authkey_from(key: &[u8]) -> Vec<u8> {
    if (KNET_KEY_MIN..=KNET_KEY_MAX).contains(&key.len()) {
        return key.to_vec();
    }
    use sha2::Digest;
    let mut out = Vec::with_capacity(2048);
    for counter in 0u32..64 {
        let mut h = sha2::Sha256::new();
        h.update(key);
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
    }
    out
}

/// Returns where corosync's key file goes for a node with state directory `state_dir`.
pub fn authkey_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join(AUTHKEY_FILE)
}

fn udp_ip_header(v6: bool) -> usize {
    if v6 {
        48
    } else {
        28
    }
}

fn addr(a: IpAddr) -> String {
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra_top: &str, totem: &str) -> NodeConfig {
        let text = format!(
            r#"
node_id = 2
bind = "10.77.0.2"
port = 5999
control = "/tmp/x.sock"
state_dir = "/st/n2"
{extra_top}
[[nodes]]
id = 1
addr = "10.77.0.1"
[[nodes]]
id = 2
addr = "10.77.0.2"
[[nodes]]
id = 3
addr = "10.77.0.3"
[totem]
{totem}
"#
        );
        let c: NodeConfig = toml::from_str(&text).unwrap();
        c.validate().unwrap();
        c
    }

    /// Returns the value of `key` in the `totem` section (the first match).
    fn get<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
    }

    #[test]
    fn every_ring_knob_is_mapped_with_its_exact_number_or_listed() {
        let c = cfg(
            "",
            "token = 3000\ntoken_retransmits_before_loss_const = 7\njoin = 61\nmerge = 77\n\
             fail_recv_const = 1234\nseqno_unchanged_const = 31\nwindow_size = 66\n\
             max_messages = 19\nmiss_count_const = 6\nnetmtu = 1372\nconsensus = 4321\n\
             hold = 55\ntoken_retransmit = 333\naccelerated_window = 9\nsend_queue_bytes = 8388608",
        );
        let r = render(&c);
        let t = &r.text;
        for (k, v) in [
            ("version", "2"),
            ("cluster_name", "ringlab"),
            ("transport", "udpu"),
            ("ip_version", "ipv4"),
            ("token", "3000"),
            ("token_coefficient", "0"),
            ("token_retransmits_before_loss_const", "7"),
            ("token_retransmit", "333"),
            ("hold", "55"),
            ("join", "61"),
            ("consensus", "4321"),
            ("merge", "77"),
            ("window_size", "66"),
            ("max_messages", "19"),
            ("fail_recv_const", "1234"),
            ("seqno_unchanged_const", "31"),
            ("miss_count_const", "6"),
            ("netmtu", "1400"),
            ("crypto_cipher", "none"),
            ("crypto_hash", "none"),
            ("mcastport", "5999"),
            ("logfile", "/st/n2/corosync.log"),
            ("timestamp", "hires"),
            ("subsys", "TOTEM"),
        ] {
            assert_eq!(get(t, k), Some(v), "{k} in\n{t}");
        }
        for (id, a) in [(1, "10.77.0.1"), (2, "10.77.0.2"), (3, "10.77.0.3")] {
            assert!(
                t.contains(&format!("nodeid: {id}\n\t\tring0_addr: {a}\n")),
                "{t}"
            );
        }
        assert!(!t.contains("quorum"), "no quorum provider: {t}");
        let knobs: Vec<&str> = r.unmapped.iter().map(|u| u.knob.as_str()).collect();
        assert_eq!(
            knobs,
            [
                "totem.accelerated_window",
                "totem.send_queue_bytes",
                "totem.reachability",
                "totem.pending_joins",
                "totem.adaptive_token_retransmit"
            ]
        );
        assert_eq!(r.unmapped[0].value, "9");
        assert_eq!(r.unmapped[1].value, "8388608");

        // Every field of the ring's config is either rendered or listed: a knob added to
        // ringlab_ring::Config without a mapping fails here.
        let all = serde_json::to_value(&c.totem).unwrap();
        for knob in all.as_object().unwrap().keys() {
            let rendered = get(t, knob).is_some();
            let listed = knobs.contains(&format!("totem.{knob}").as_str());
            let implicit = knob == "variant"; // classic: corosync's only ordering
            assert!(
                rendered || listed || implicit,
                "knob {knob} neither rendered nor listed"
            );
        }
    }

    #[test]
    fn derived_timings_are_ringlabs_numbers() {
        let c = cfg("", "token = 1000");
        let t = render(&c).text;
        // ringlab derives 1000 / 4.2 = 238, hold 238 * 0.8 - 10 = 180, consensus 1200.
        assert_eq!(get(&t, "token_retransmit"), Some("238"));
        assert_eq!(get(&t, "hold"), Some("180"));
        assert_eq!(get(&t, "consensus"), Some("1200"));
        assert_eq!(get(&t, "netmtu"), Some("1428"));
    }

    #[test]
    fn multicast_accelerated_and_buffers_are_unmapped() {
        let c = cfg(
            "transport = \"multicast\"\nrecv_buffer = 8192\nbatched_io = false",
            "variant = \"accelerated\"",
        );
        let r = render(&c);
        assert_eq!(get(&r.text, "transport"), Some("udpu"));
        let knobs: Vec<&str> = r.unmapped.iter().map(|u| u.knob.as_str()).collect();
        for k in [
            "totem.variant",
            "totem.accelerated_window",
            "totem.send_queue_bytes",
            "transport",
            "recv_buffer",
            "batched_io",
        ] {
            assert!(knobs.contains(&k), "{k} missing from {knobs:?}");
        }
        assert!(r.unmapped.iter().all(|u| !u.why.is_empty()));
    }

    #[test]
    fn a_key_file_selects_knet_with_crypto_and_a_key_in_the_state_dir() {
        let c = cfg("key_file = \"/keys/cluster.key\"", "");
        let r = render(&c);
        assert_eq!(get(&r.text, "transport"), Some("knet"));
        assert_eq!(get(&r.text, "crypto_cipher"), Some("aes256"));
        assert_eq!(get(&r.text, "crypto_hash"), Some("sha256"));
        assert_eq!(get(&r.text, "keyfile"), Some("/st/n2/corosync-authkey"));
        assert!(r.unmapped.iter().any(|u| u.knob == "key_file"));
        let short = authkey_from(b"0123456789abcdef");
        assert_eq!(short.len(), 2048);
        assert_eq!(short, authkey_from(b"0123456789abcdef"));
        assert_ne!(short, authkey_from(b"0123456789abcdeF"));
        let long = vec![7u8; 1500];
        assert_eq!(authkey_from(&long), long);
    }

    #[test]
    fn ipv6_and_a_peer_port_of_its_own() {
        let text = r#"
node_id = 1
bind = "fd00::1"
control = "/tmp/x.sock"
state_dir = "/st"
[[nodes]]
id = 1
addr = "fd00::1"
[[nodes]]
id = 2
addr = "fd00::2"
port = 6000
"#;
        let c: NodeConfig = toml::from_str(text).unwrap();
        let r = render(&c);
        assert_eq!(get(&r.text, "ip_version"), Some("ipv6"));
        assert_eq!(get(&r.text, "netmtu"), Some("1448"));
        assert!(r.text.contains("ring0_addr: fd00::2"));
        assert!(r.unmapped.iter().any(|u| u.knob == "nodes[id=2].port"));
    }
}
