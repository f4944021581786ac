//! `ringlab blast`: raw UDP on the same topology as a ring run, with no ordering. One sender
//! sends datagrams of the ring's message size as fast as it can, either one copy to each
//! receiver (as the unicast transport does) or one to the multicast group; each receiver
//! counts what arrives. Its per-receiver rate is the limit ring throughput is compared with.
//!
//! `ringlab flow recv|send` (each end its own process; [`ringlab_bench::raw`]) is what
//! `ringlab run` measures its raw baseline with, across the bridge between its namespaces.

use ringlab_net::monotonic_ns;
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What one blast measured.
#[derive(Debug, Serialize)]
pub(crate) struct Blast {
    /// Receivers.
    pub receivers: usize,
    /// Datagram payload size.
    pub size: usize,
    /// "unicast" or "multicast".
    pub transport: String,
    /// Seconds the sender sent.
    pub seconds: f64,
    /// Datagrams the sender handed to the kernel.
    pub sent: u64,
    /// Datagrams received per second, per receiver (mean).
    pub per_receiver_msgs_per_s: f64,
    /// The same in MB/s (10^6 bytes).
    pub per_receiver_mb_per_s: f64,
}

/// Runs one blast; receivers at 127.0.0.2.., the sender at 127.0.0.1, all on `port`.
pub(crate) fn blast(
    receivers: usize,
    size: usize,
    seconds: f64,
    port: u16,
    multicast: bool,
) -> std::io::Result<Blast> {
    let group = Ipv4Addr::new(239, 192, 76, 250);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    let mut targets = Vec::new();
    for r in 0..receivers {
        let addr = Ipv4Addr::new(127, 0, 0, 2 + r as u8);
        let sock = if multicast {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.set_recv_buffer_size(4 << 20)?;
            s.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST)?;
            s.bind(&SocketAddr::new(IpAddr::V4(group), port).into())?;
            UdpSocket::from(s)
        } else {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
            s.set_recv_buffer_size(4 << 20)?;
            s.bind(&SocketAddr::new(IpAddr::V4(addr), port).into())?;
            UdpSocket::from(s)
        };
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        targets.push(SocketAddr::new(IpAddr::V4(addr), port));
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_send_buffer_size(4 << 20)?;
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(true)?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).into())?;
    let sender = UdpSocket::from(s);
    let data = vec![0x5Au8; size];
    let start = monotonic_ns();
    let end = start + (seconds * 1e9) as u64;
    let mut sent = 0u64;
    while monotonic_ns() < end {
        for _ in 0..64 {
            if multicast {
                if sender
                    .send_to(&data, SocketAddr::new(IpAddr::V4(group), port))
                    .is_ok()
                {
                    sent += 1;
                }
            } else {
                for t in &targets {
                    if sender.send_to(&data, t).is_ok() {
                        sent += 1;
                    }
                }
            }
        }
    }
    let elapsed = (monotonic_ns() - start) as f64 / 1e9;
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let got: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let per = got as f64 / receivers as f64 / elapsed;
    Ok(Blast {
        receivers,
        size,
        transport: if multicast { "multicast" } else { "unicast" }.into(),
        seconds: elapsed,
        sent,
        per_receiver_msgs_per_s: per,
        per_receiver_mb_per_s: per * size as f64 / 1e6,
    })
}
