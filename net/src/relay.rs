//! `ringlab relay`: a layer-2 relay between two interfaces, built on pnet's AF_PACKET
//! channels, that applies seeded delay, jitter, loss, duplication and reordering to every
//! frame it carries. It stands in for netem on kernels without it: fault.sh takes a node's
//! port off its bridge and puts the relay between that port and a new port on the bridge, so
//! the relay owns the only path between the two.
//!
//! Each direction has its own thread, queue and seeded generator. A frame is released at
//! `arrival + delay ± jitter` (uniform), so jitter alone already reorders; `reorder_pct` of the
//! frames are held `reorder_gap_ms` longer, so later frames overtake them; `duplicate_pct`
//! sends a second copy (with its own delay); `loss_pct` drops, uniformly (each frame on its
//! own) or, with `loss_burst` > 1, in bursts: a Gilbert–Elliott chain per directed pair of
//! endpoints (the frame's IPv4 source and destination), so each node-to-node link through
//! the port has its own chain ([`GilbertChain`]; frames that are not IPv4, ARP, are never
//! lost in that mode). `loss_to_a_only` loses frames only on their way to `a` (the node's
//! side where fault.sh puts the relay), so relays on every node's port lose each hop
//! once. Timing resolution is about
//! 1 ms (the poll timeout). UDP checksums are filled in on the way (veth leaves them to an
//! offload that a relayed frame never gets). The relay stops by itself after `max_seconds`
//! or on SIGTERM.
//!
//! Harness code (threads, clock): never used by the protocol cores.

use pnet_datalink::{self as datalink, Channel, DataLinkReceiver, DataLinkSender};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the relay does to frames (the same in both directions).
#[derive(Clone, Debug, Default)]
pub struct Impairment {
    /// Base one-way delay, ms.
    pub delay_ms: f64,
    /// Uniform jitter around the delay, ± ms.
    pub jitter_ms: f64,
    /// Percentage of frames dropped: the mean loss, uniform or in bursts.
    pub loss_pct: f64,
    /// Mean length of a burst of losses, in frames, per directed pair of endpoints
    /// (Gilbert–Elliott); 0 or 1: uniform loss.
    pub loss_burst: f64,
    /// Loses frames only on their way from `b` to `a` (else both ways).
    pub loss_to_a_only: bool,
    /// Percentage of frames sent twice.
    pub duplicate_pct: f64,
    /// Percentage of frames held back by `reorder_gap_ms`.
    pub reorder_pct: f64,
    /// Extra hold of a reordered frame, ms.
    pub reorder_gap_ms: f64,
}

/// Why the relay could not run.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// No such interface in this namespace.
    #[error("no interface {0} in this network namespace")]
    NoInterface(String),
    /// Opening the AF_PACKET channel failed.
    #[error("opening an AF_PACKET channel on {0}: {1}")]
    Channel(String, std::io::Error),
}

/// Frame counts of one direction.
#[derive(Debug, Default)]
pub struct DirStats {
    /// Frames read.
    pub received: AtomicU64,
    /// Frames written (duplicates included).
    pub sent: AtomicU64,
    /// Frames dropped by `loss_pct`.
    pub dropped: AtomicU64,
    /// Bursts of losses begun (a chain going from Good to Bad), with `loss_burst` > 1.
    pub bursts: AtomicU64,
    /// Extra copies.
    pub duplicated: AtomicU64,
    /// Frames held back.
    pub reordered: AtomicU64,
}

struct Held {
    due: Instant,
    order: u64,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.order) == (o.due, o.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // A max-heap: the earliest due comes out first.
        (o.due, o.order).cmp(&(self.due, self.order))
    }
}

/// Opens a raw AF_PACKET socket that does not see the frames it sends itself (otherwise a
/// frame written on one side would be read back and relayed again), and hands it to pnet.
type Channels = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>);

fn open(name: &str) -> Result<Channels, RelayError> {
    let iface = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| RelayError::NoInterface(name.into()))?;
    let chan_err = |e| RelayError::Channel(name.into(), e);
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    let sock = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(proto)),
    )
    .map_err(chan_err)?;
    let one: libc::c_int = 1;
    #[allow(unsafe_code)]
    // SAFETY: a valid socket, option value and length; PACKET_IGNORE_OUTGOING is Linux ≥ 4.20.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(chan_err(std::io::Error::last_os_error()));
    }
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    let cfg = datalink::Config {
        read_buffer_size: 65_536,
        write_buffer_size: 65_536,
        read_timeout: Some(Duration::from_millis(1)),
        promiscuous: true,
        socket_fd: Some(sock.into_raw_fd()),
        ..Default::default()
    };
    match datalink::channel(&iface, cfg).map_err(chan_err)? {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => Err(chan_err(std::io::Error::other("not an Ethernet channel"))),
    }
}

/// Fills in the UDP checksum of an IPv4 frame. A frame read off a veth with AF_PACKET may
/// carry a partial checksum (offloaded to a NIC that does not exist); written out again it
/// would be dropped by the receiver's UDP stack.
fn fix_udp_checksum(frame: &mut [u8]) {
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::{ipv4_checksum, MutableUdpPacket};
    use pnet_packet::Packet;
    let Some(eth) = EthernetPacket::new(frame) else {
        return;
    };
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return;
    }
    let Some(ip) = Ipv4Packet::new(eth.payload()) else {
        return;
    };
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Udp
        || ip.get_fragment_offset() != 0
        || ip.get_flags() & 1 != 0
    {
        return;
    }
    let (src, dst) = (ip.get_source(), ip.get_destination());
    let ihl = ip.get_header_length() as usize * 4;
    let total = (ip.get_total_length() as usize).min(ip.packet().len());
    if ihl < 20 || total <= ihl {
        return;
    }
    let start = EthernetPacket::minimum_packet_size() + ihl;
    let end = EthernetPacket::minimum_packet_size() + total;
    if end > frame.len() {
        return;
    }
    if let Some(mut udp) = MutableUdpPacket::new(&mut frame[start..end]) {
        udp.set_checksum(0);
        let c = ipv4_checksum(&udp.to_immutable(), &src, &dst);
        udp.set_checksum(c);
    }
}

/// The Gilbert–Elliott loss chain of one directed pair of endpoints: the simulator's own
/// model (`ringlab_sim::loss`, where the formula and its guarantees are), so a real link and
/// a simulated one lose alike.
pub use ringlab_sim::loss::Gilbert as GilbertChain;

/// Returns an Ethernet frame's IPv4 source and destination, if it carries IPv4.
fn ipv4_pair(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::Packet;
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new(eth.payload())?;
    Some((ip.get_source(), ip.get_destination()))
}

/// The loss decisions of one direction: uniform, or a Gilbert–Elliott chain per directed
/// pair of IPv4 endpoints.
#[derive(Debug, Default)]
pub struct LossModel {
    chains: BTreeMap<(Ipv4Addr, Ipv4Addr), GilbertChain>,
}

impl LossModel {
    /// Decides whether `frame` is lost; returns (lost, whether a burst began with it).
    pub fn decide(&mut self, rng: &mut impl Rng, imp: &Impairment, frame: &[u8]) -> (bool, bool) {
        let loss = imp.loss_pct / 100.0;
        if loss <= 0.0 {
            return (false, false);
        }
        if imp.loss_burst <= 1.0 {
            // Uniform: as before bursts existed, one draw per frame.
            return (rng.gen::<f64>() * 100.0 < imp.loss_pct, false);
        }
        let Some(pair) = ipv4_pair(frame) else {
            return (false, false);
        };
        let chain = self.chains.entry(pair).or_default();
        let was_bad = chain.bad;
        let lost = chain.lost(rng, loss, imp.loss_burst);
        (lost, lost && !was_bad)
    }
}

#[allow(clippy::too_many_arguments)]
fn pump(
    mut rx: Box<dyn DataLinkReceiver>,
    mut tx: Box<dyn DataLinkSender>,
    imp: Impairment,
    lossy: bool,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<DirStats>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut heap: BinaryHeap<Held> = BinaryHeap::new();
    let mut order = 0u64;
    let mut model = LossModel::default();
    let pct = |rng: &mut ChaCha8Rng, p: f64| p > 0.0 && rng.gen::<f64>() * 100.0 < p;
    while !stop.load(Ordering::Relaxed) {
        match rx.next() {
            Ok(frame) => {
                let now = Instant::now();
                stats.received.fetch_add(1, Ordering::Relaxed);
                let (lost, burst) = if lossy {
                    model.decide(&mut rng, &imp, frame)
                } else {
                    (false, false)
                };
                if burst {
                    stats.bursts.fetch_add(1, Ordering::Relaxed);
                }
                if lost {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    let copies = if pct(&mut rng, imp.duplicate_pct) {
                        stats.duplicated.fetch_add(1, Ordering::Relaxed);
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let mut ms = imp.delay_ms;
                        if imp.jitter_ms > 0.0 {
                            ms += rng.gen_range(-imp.jitter_ms..=imp.jitter_ms);
                        }
                        if pct(&mut rng, imp.reorder_pct) {
                            stats.reordered.fetch_add(1, Ordering::Relaxed);
                            ms += imp.reorder_gap_ms;
                        }
                        order += 1;
                        let mut frame = frame.to_vec();
                        fix_udp_checksum(&mut frame);
                        heap.push(Held {
                            due: now + Duration::from_secs_f64(ms.max(0.0) / 1000.0),
                            order,
                            frame,
                        });
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(%e, "relay read failed");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|h| h.due <= now) {
            let h = heap.pop().expect("peeked");
            if let Some(Ok(())) = tx.send_to(&h.frame, None) {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Relays frames between interfaces `a` and `b` until `stop` is set or `max` has passed;
/// returns the counts of both directions (a→b, b→a). Prints `relaying ...` to stdout once
/// both channels are open.
pub fn run(
    a: &str,
    b: &str,
    imp: Impairment,
    seed: u64,
    max: Duration,
    stop: Arc<AtomicBool>,
) -> Result<[Arc<DirStats>; 2], RelayError> {
    let (tx_a, rx_a) = open(a)?;
    let (tx_b, rx_b) = open(b)?;
    println!("relaying {a} <-> {b}: {imp:?}, seed {seed}");
    let stats = [Arc::new(DirStats::default()), Arc::new(DirStats::default())];
    let threads = [
        {
            let (imp, stop, st) = (imp.clone(), stop.clone(), stats[0].clone());
            let lossy = !imp.loss_to_a_only;
            std::thread::spawn(move || pump(rx_a, tx_b, imp, lossy, seed, stop, st))
        },
        {
            let (imp, stop, st) = (imp, stop.clone(), stats[1].clone());
            std::thread::spawn(move || pump(rx_b, tx_a, imp, true, seed ^ 0x9e37_79b9, stop, st))
        },
    ];
    let end = Instant::now() + max;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::MutableIpv4Packet;
    use pnet_packet::udp::{ipv4_checksum, MutableUdpPacket, UdpPacket};
    use std::net::Ipv4Addr;

    fn frame(payload: &[u8], checksum: u16) -> Vec<u8> {
        let udp_len = 8 + payload.len();
        let mut f = vec![0u8; 14 + 20 + udp_len];
        {
            let mut eth = MutableEthernetPacket::new(&mut f).unwrap();
            eth.set_ethertype(EtherTypes::Ipv4);
        }
        {
            let mut ip = MutableIpv4Packet::new(&mut f[14..]).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length((20 + udp_len) as u16);
            ip.set_ttl(1);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
            ip.set_source(Ipv4Addr::new(10, 77, 0, 1));
            ip.set_destination(Ipv4Addr::new(10, 77, 0, 2));
        }
        let mut udp = MutableUdpPacket::new(&mut f[34..]).unwrap();
        udp.set_source(5405);
        udp.set_destination(5405);
        udp.set_length(udp_len as u16);
        udp.set_payload(payload);
        udp.set_checksum(checksum);
        f
    }

    fn frame_between(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut f = frame(b"x", 0);
        let mut ip = MutableIpv4Packet::new(&mut f[14..]).unwrap();
        ip.set_source(src.into());
        ip.set_destination(dst.into());
        f
    }

    #[test]
    fn each_directed_pair_of_endpoints_has_its_own_chain() {
        let imp = Impairment {
            loss_pct: 10.0,
            loss_burst: 5.0,
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut m = LossModel::default();
        let pairs = [
            frame_between([10, 0, 0, 1], [10, 0, 0, 2]),
            frame_between([10, 0, 0, 2], [10, 0, 0, 1]),
            frame_between([10, 0, 0, 3], [239, 1, 1, 1]),
        ];
        let mut lost = [0u64; 3];
        let mut bursts = [0u64; 3];
        let n = 300_000;
        for k in 0..n {
            let i = k % 3;
            let (l, b) = m.decide(&mut rng, &imp, &pairs[i]);
            lost[i] += u64::from(l);
            bursts[i] += u64::from(b);
        }
        assert_eq!(m.chains.len(), 3);
        for i in 0..3 {
            let share = lost[i] as f64 / (n / 3) as f64;
            let mean = lost[i] as f64 / bursts[i] as f64;
            // Interleaved with the others, each pair still loses 10 % in bursts of 5.
            assert!((share - 0.1).abs() < 0.01, "pair {i}: {share}");
            assert!((mean - 5.0).abs() < 0.5, "pair {i}: {mean}");
        }
        // ARP is not lost in the bursty mode; uniform loss takes every frame alike.
        let mut arp = frame(b"x", 0);
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!((0..1000).all(|_| !m.decide(&mut rng, &imp, &arp).0));
        let uniform = Impairment {
            loss_pct: 50.0,
            ..Default::default()
        };
        assert!((0..1000).any(|_| m.decide(&mut rng, &uniform, &arp).0));
    }

    #[test]
    fn a_partial_udp_checksum_is_filled_in() {
        let mut f = frame(b"token", 0x1234);
        fix_udp_checksum(&mut f);
        let udp = UdpPacket::new(&f[34..]).unwrap();
        let want = ipv4_checksum(
            &udp,
            &Ipv4Addr::new(10, 77, 0, 1),
            &Ipv4Addr::new(10, 77, 0, 2),
        );
        assert_ne!(want, 0x1234);
        assert_eq!(udp.get_checksum(), want);
    }

    #[test]
    fn other_frames_and_garbage_are_left_alone() {
        let mut arp = frame(b"x", 7);
        arp[12] = 0x08;
        arp[13] = 0x06; // ARP
        let before = arp.clone();
        fix_udp_checksum(&mut arp);
        assert_eq!(arp, before);
        for len in 0..40 {
            let mut short = frame(b"abc", 1)[..len].to_vec();
            fix_udp_checksum(&mut short); // must not panic
        }
    }
}
