//! `ringlab capture`: records every frame that crosses the given bridges (AF_PACKET through
//! pnet, as the relay reads its ports; a bridge in promiscuous mode hands its socket every
//! frame it forwards) into a pcapng file, one interface per bridge, as it goes.
//!
//! Guarantees: the file never grows past `max_bytes` of frames (counted whole, block
//! overhead aside): once the next frame would pass it, capturing stops and the count of
//! frames left out is reported ([`CaptureStats::left_out`]); frames are stamped with the
//! realtime clock, read as `monotonic + offset` with the offset taken once at the start
//! (so the event records' monotonic instants map onto them with that offset, which is
//! written beside the file as `<file>.offset`). Stops on SIGTERM or after `max`.
//!
//! Harness code (threads, clock): never used by the protocol cores.

use pnet_datalink::{self as datalink, Channel};
use ringlab_sim::pcap::StreamWriter;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a capture could not run.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No such interface in this network namespace.
    #[error("no interface {0} in this network namespace")]
    NoInterface(String),
    /// Opening an AF_PACKET channel failed.
    #[error("opening an AF_PACKET channel on {0}: {1}")]
    Channel(String, std::io::Error),
    /// Writing the file.
    #[error("writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// Writing a block.
    #[error(transparent)]
    Write(#[from] ringlab_sim::pcap::PcapWriteError),
}

/// What a capture did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames written.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames not written because the cap was reached (0: complete).
    pub left_out: u64,
}

/// Writes frame `(interface, at, bytes)` to `w` unless the cap is reached; from the first
/// frame that does not fit on, frames are only counted (`left_out`).
fn keep<W: Write>(
    w: &mut StreamWriter<W>,
    stats: &mut CaptureStats,
    max_bytes: u64,
    (i, at, frame): (u32, u64, Vec<u8>),
) -> Result<(), CaptureError> {
    let len = frame.len() as u64;
    if stats.left_out > 0 || stats.bytes + len > max_bytes {
        stats.left_out += 1;
        return Ok(());
    }
    w.write(at, i, &frame, frame.len() as u32)?;
    stats.frames += 1;
    stats.bytes += len;
    Ok(())
}

/// Returns the realtime clock minus the monotonic one, ns.
fn clock_offset() -> i128 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    real - crate::clock::monotonic_ns() as i128
}

/// Returns the path of the file that holds a capture's clock offset.
pub fn offset_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".offset");
    PathBuf::from(s)
}

/// Returns whether `frame` is an Ethernet/IPv4 UDP datagram from or to `port`.
fn udp_port_is(frame: &[u8], port: u16) -> bool {
    use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocols;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::UdpPacket;
    use pnet_packet::Packet;
    let Some(eth) = EthernetPacket::new(frame) else {
        return false;
    };
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return false;
    }
    let Some(ip) = Ipv4Packet::new(eth.payload()) else {
        return false;
    };
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Udp {
        return false;
    }
    UdpPacket::new(ip.payload())
        .is_some_and(|u| u.get_source() == port || u.get_destination() == port)
}

/// Captures the frames crossing `ifaces` into `out` until `stop` is set or `max` has passed,
/// keeping at most `max_bytes` of frames; with `only_port`, only the IPv4 UDP datagrams
/// from or to that port (a capture on a shared interface, loopback).
pub fn run(
    ifaces: &[String],
    out: &Path,
    max_bytes: u64,
    max: Duration,
    only_port: Option<u16>,
    stop: Arc<AtomicBool>,
) -> Result<CaptureStats, CaptureError> {
    let offset = clock_offset();
    let io = |e| CaptureError::Io(out.to_path_buf(), e);
    std::fs::write(offset_path(out), format!("{offset}\n")).map_err(io)?;
    let all = datalink::interfaces();
    let (tx, rx) = mpsc::sync_channel::<(u32, u64, Vec<u8>)>(65_536);
    let mut readers = Vec::new();
    for (i, name) in ifaces.iter().enumerate() {
        let iface = all
            .iter()
            .find(|x| &x.name == name)
            .cloned()
            .ok_or_else(|| CaptureError::NoInterface(name.clone()))?;
        let cfg = datalink::Config {
            read_buffer_size: 65_536,
            read_timeout: Some(Duration::from_millis(50)),
            promiscuous: true,
            ..Default::default()
        };
        let mut rx_chan = match datalink::channel(&iface, cfg) {
            Ok(Channel::Ethernet(_, rx)) => rx,
            Ok(_) => {
                return Err(CaptureError::Channel(
                    name.clone(),
                    std::io::Error::other("not an Ethernet channel"),
                ))
            }
            Err(e) => return Err(CaptureError::Channel(name.clone(), e)),
        };
        let (tx, stop) = (tx.clone(), stop.clone());
        readers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match rx_chan.next() {
                    Ok(frame) => {
                        if only_port.is_some_and(|p| !udp_port_is(frame, p)) {
                            continue;
                        }
                        let at = (crate::clock::monotonic_ns() as i128 + offset).max(0) as u64;
                        if tx.send((i as u32, at, frame.to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "capture: reading a bridge");
                        return;
                    }
                }
            }
        }));
    }
    drop(tx);
    let file = std::fs::File::create(out).map_err(io)?;
    let header = format!(
        "ringlab capture of {} (AF_PACKET through pnet), realtime clock",
        ifaces.join(", ")
    );
    let mut w = StreamWriter::new(std::io::BufWriter::new(file), &header, ifaces)?;
    let mut stats = CaptureStats::default();
    let end = Instant::now() + max;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(x) => keep(&mut w, &mut stats, max_bytes, x)?,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Whatever is still queued was seen before the stop.
    while let Ok(x) = rx.try_recv() {
        keep(&mut w, &mut stats, max_bytes, x)?;
    }
    w.get_mut().flush().map_err(io)?;
    for r in readers {
        let _ = r.join();
    }
    Ok(stats)
}
