//! The attacks of an outside tester, on real nodes over loopback: datagrams captured off the
//! wire and replayed, and datagrams forged, from a member's own address. Capturing every
//! node's traffic and spoofing a member's source address take raw sockets, so these tests
//! need root: they are `#[ignore]`d for `cargo test` and run by CI (as root) with
//! `cargo test -p ringlab --test attacks -- --ignored`. The same attacks run in the
//! simulator, without root, in sim/tests/hostile.rs.
// A test over real processes, sockets and time, not protocol code (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ringlab_net::control::{Ack, Request, StopLoadReply};
use ringlab_net::harness::{Cluster, Spec};
use ringlab_net::{LoadSpec, Transport};
use ringlab_ring::wire::{self, Leave, Message, MessageType, NodeId, Packet};
use ringlab_ring::{Config, Variant};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

fn cluster(name: &str, port: u16, key: bool) -> Cluster {
    let dir = std::env::temp_dir().join(format!("ringlab-attack-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let c = Cluster::start(Spec {
        nodes: 3,
        transport: Transport::Unicast,
        totem: Config {
            variant: Variant::Classic,
            ..Config::default()
        },
        port,
        group: [239, 192, 78, (port % 200) as u8 + 1].into(),
        dir,
        key: key.into(),
        record_messages: true,
        record_every: 1,
        binary: env!("CARGO_BIN_EXE_ringlab").into(),
        batched_io: true,
        ipv6: false,
        services: vec![],
        service_config: Default::default(),
        netns: None,
        implementation: ringlab_net::harness::Implementation::Ringlab,
    })
    .unwrap();
    c.wait_ring(&[1, 2, 3], Duration::from_secs(20)).unwrap();
    for n in 1..=3 {
        let l = Request::Load(LoadSpec {
            rate: 300,
            size: 200,
            duration_ms: Some(30_000),
            ..LoadSpec::default()
        });
        c.call::<Ack>(n, &l).unwrap();
    }
    c
}

/// Returns a raw IPv4 socket that sees every UDP datagram the host receives, and sends
/// datagrams with any source address.
fn raw() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
        .expect("these tests capture and spoof traffic with raw sockets: run them as root");
    s.set_header_included_v4(true).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

/// Captures (bounded: 10 s) up to `n` datagrams from node `from` to node `to` on `port`
/// whose packet is of type `kind`; returns their UDP payloads (sealed, if the cluster has a
/// key).
fn capture(
    s: &mut Socket,
    port: u16,
    from: NodeId,
    to: NodeId,
    kind: MessageType,
    n: usize,
) -> Vec<Vec<u8>> {
    let (src, dst) = (Cluster::addr(from), Cluster::addr(to));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while out.len() < n && Instant::now() < deadline {
        let Ok(len) = s.read(&mut buf) else { continue };
        let ip = &buf[..len];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip.len() < ihl + 8 + 4 || ip[9] != 17 {
            continue;
        }
        let (s_ip, d_ip) = (
            Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        );
        let (sport, dport) = (
            u16::from_be_bytes([ip[ihl], ip[ihl + 1]]),
            u16::from_be_bytes([ip[ihl + 2], ip[ihl + 3]]),
        );
        let payload = &ip[ihl + 8..];
        if std::net::IpAddr::V4(s_ip) == src
            && std::net::IpAddr::V4(d_ip) == dst
            && sport == port
            && dport == port
            && payload[3] == kind as u8
        {
            out.push(payload.to_vec());
        }
    }
    assert_eq!(
        out.len(),
        n,
        "captured {} of {n} {kind:?} datagrams {from}->{to}",
        out.len()
    );
    out
}

/// Sends `payload` to node `to` as if node `from` had sent it (its address and port).
fn spoof(s: &Socket, port: u16, from: NodeId, to: NodeId, payload: &[u8]) {
    let std::net::IpAddr::V4(src) = Cluster::addr(from) else {
        unreachable!()
    };
    let std::net::IpAddr::V4(dst) = Cluster::addr(to) else {
        unreachable!()
    };
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    p.extend_from_slice(payload);
    // The kernel fills in the total length, id and header checksum.
    s.send_to(&p, &SockAddr::from(SocketAddrV4::new(dst, port)))
        .unwrap();
}

/// Stops the loads, waits for the queues to drain, stops the nodes and checks the records.
fn stop_and_check(mut c: Cluster) {
    for n in 1..=3 {
        c.call::<StopLoadReply>(n, &Request::StopLoad).unwrap();
    }
    assert!(c.wait_quiet(Duration::from_secs(30)), "queues drained");
    c.stop();
    let report = ringlab_sim::check(&c.records().unwrap(), None);
    assert!(report.violations.is_empty(), "{}", report.violations[0]);
    let _ = std::fs::remove_dir_all(&c.spec.dir);
}

fn installs(c: &Cluster, n: NodeId) -> u64 {
    c.stats(n).unwrap().ring_stats.installs
}

/// Waits (bounded) until `pred` holds of node `n`'s stats.
fn wait_stats(
    c: &Cluster,
    n: NodeId,
    pred: impl Fn(&ringlab_net::control::StatsReply) -> bool,
) -> ringlab_net::control::StatsReply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = c.stats(n).unwrap();
        if pred(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs root: raw sockets"]
fn a_token_captured_on_its_way_to_node_3_and_replayed_to_node_1_is_refused() {
    for (key, port) in [(true, 16405), (false, 16415)] {
        let mut s = raw();
        let c = cluster(if key { "replay-key" } else { "replay-nokey" }, port, key);
        let tokens = capture(&mut s, port, 2, 3, MessageType::Token, 100);
        let before = installs(&c, 1);
        for t in &tokens {
            for _ in 0..10 {
                spoof(&s, port, 2, 1, t);
            }
            spoof(&s, port, 2, 3, t); // and once more to its own receiver
        }
        if key {
            let st = wait_stats(&c, 1, |s| s.drops.not_for_me >= 1000);
            assert_eq!(st.drops.not_for_me, 1000, "{:?}", st.drops);
            let st = wait_stats(&c, 3, |s| s.drops.replayed >= 100);
            assert!(st.drops.replayed >= 100, "{:?}", st.drops);
        } else {
            // Without a key the ring itself refuses a token meant for another member; one
            // captured while the ring was still settling (before its last install) is
            // refused for its ring id instead, as a foreign token.
            let refused = |d: &ringlab_net::drops::NodeDrops| {
                d.ring.misdirected_tokens + d.ring.foreign_tokens
            };
            let st = wait_stats(&c, 1, |s| refused(&s.drops) >= 1000);
            assert_eq!(refused(&st.drops), 1000, "{:?}", st.drops);
            assert!(st.drops.ring.misdirected_tokens > 0, "{:?}", st.drops);
        }
        assert_eq!(installs(&c, 1), before, "no membership change");
        stop_and_check(c);
    }
}

#[test]
#[ignore = "needs root: raw sockets"]
fn a_forged_leave_re_forms_the_ring_without_a_key_and_is_refused_with_one() {
    for (key, port) in [(false, 16425), (true, 16435)] {
        let s = raw();
        let c = cluster(if key { "leave-key" } else { "leave-nokey" }, port, key);
        let ring = c.status(1).unwrap().ring;
        let before = installs(&c, 1);
        let leave = wire::encode(&Packet {
            sender: 2,
            ring_id: ring,
            message: Message::Leave(Leave { ring_seq: ring.seq }),
        });
        spoof(&s, port, 2, 1, &leave);
        if key {
            let st = wait_stats(&c, 1, |s| s.drops.unauthenticated >= 1);
            assert_eq!(st.drops.unauthenticated, 1, "{:?}", st.drops);
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(installs(&c, 1), before, "with a key nothing happens");
        } else {
            let st = wait_stats(&c, 1, |s| s.ring_stats.installs > before);
            assert!(
                st.ring_stats.installs > before,
                "one forged datagram re-forms the ring"
            );
        }
        stop_and_check(c);
    }
}
