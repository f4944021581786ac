//! pcapng files: the simulator's captures with synthetic Ethernet/IPv4/UDP headers, and the
//! one writer real captures share (through [`write_pcapng`]).
//!
//! A simulated capture has one interface per directed link (`n1->n2`), named so in
//! Wireshark's interface column (`frame.interface_name`). Each frame is the datagram as
//! the sender put it on the link, at the virtual instant it left (ns, `if_tsresol` 9),
//! wrapped in the addresses the namespaces use: node i is 10.77.0.i (10.77.x.y past 255)
//! with MAC 02:00:0a:4d:x:y, UDP port 5405 at both ends. Multicast copies carry the
//! receiver's address (the simulator sends one copy per link). A frame that the link lost,
//! duplicated, or that a partition dropped carries a comment saying so; a fault instant is
//! a comment on the first frame at or after it, and every fault is listed in the section
//! header's comment as well.
//!
//! Writing uses the `pcap-file` crate for the block format.

use crate::capture::Capture;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{PcapNgBlock, PcapNgWriter};
use pcap_file::DataLink;
use ringlab_records::{Body, Record};
use ringlab_ring::NodeId;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// The UDP port of the ring in the namespaces (and of every synthetic frame).
pub const RING_PORT: u16 = 5405;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// The largest snap length written (the frames are never cut).
const SNAPLEN: u32 = 0x0004_0000;

/// Why a pcapng file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PcapWriteError {
    /// The writer refused (an I/O error, or a block the format cannot hold).
    #[error("writing pcapng: {0}")]
    Write(#[from] pcap_file::PcapError),
}

/// Returns the length of the synthetic frame around a payload of `payload` bytes.
pub fn frame_len(payload: usize) -> usize {
    ETH_LEN + IP_LEN + UDP_LEN + payload
}

/// Returns node `id`'s IPv4 address in the namespaces' plan.
pub fn node_ip(id: NodeId) -> [u8; 4] {
    [10, 77, (id >> 8) as u8, id as u8]
}

fn node_mac(id: NodeId) -> [u8; 6] {
    let ip = node_ip(id);
    [0x02, 0x00, ip[0], ip[1], ip[2], ip[3]]
}

/// Returns the Ethernet/IPv4/UDP frame that carries `payload` from node `from` to node
/// `to` on port [`RING_PORT`] (IPv4 checksum filled in; UDP checksum 0, which IPv4 allows).
pub fn synthetic_frame(from: NodeId, to: NodeId, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(frame_len(payload.len()));
    f.extend_from_slice(&node_mac(to));
    f.extend_from_slice(&node_mac(from));
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    // Lengths past what the headers can say are clamped (the simulator never sends them).
    let ip_total = u16::try_from(IP_LEN + UDP_LEN + payload.len()).unwrap_or(u16::MAX);
    let udp_len = u16::try_from(UDP_LEN + payload.len()).unwrap_or(u16::MAX);
    let mut ip = [0u8; IP_LEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&node_ip(from));
    ip[16..20].copy_from_slice(&node_ip(to));
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&RING_PORT.to_be_bytes());
    f.extend_from_slice(&RING_PORT.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One frame to write.
#[derive(Clone, Debug)]
pub struct Frame<'a> {
    /// Timestamp, ns (virtual, or since the Unix epoch for real captures).
    pub at_ns: u64,
    /// Index into the interfaces given to [`write_pcapng`].
    pub interface: u32,
    /// The whole frame, from its Ethernet header on.
    pub data: Cow<'a, [u8]>,
    /// Its length on the wire (larger than `data` when the capture cut it).
    pub original_len: u32,
    /// Comments (the link's fate, fault instants).
    pub comments: Vec<String>,
}

/// A fault instant to write as a comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultNote {
    /// When, on the frames' clock (ns).
    pub at_ns: u64,
    /// What (e.g. `fault crash [3]`).
    pub text: String,
}

/// Returns the fault records among `records` as notes (`fault <action> <targets>`).
pub fn fault_notes(records: &[Record]) -> Vec<FaultNote> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            Body::Fault {
                action,
                targets,
                groups,
            } => {
                let mut text = format!("fault {action}");
                if !targets.is_empty() {
                    text.push_str(&format!(" {targets:?}"));
                }
                if !groups.is_empty() {
                    text.push_str(&format!(" groups {groups:?}"));
                }
                Some(FaultNote {
                    at_ns: r.t_ns,
                    text,
                })
            }
            _ => None,
        })
        .collect()
}

/// Writes a pcapng section: Ethernet interfaces named `interfaces`, then `frames` sorted by
/// time (stable), each fault of `faults` as a comment on the first frame at or after it
/// (the last frame for faults after every frame) and all of them, with `header`, in the
/// section header's comment. Returns the frames written.
pub fn write_pcapng<W: Write>(
    w: W,
    header: &str,
    interfaces: &[String],
    mut frames: Vec<Frame<'_>>,
    faults: &[FaultNote],
) -> Result<usize, PcapWriteError> {
    frames.sort_by_key(|f| f.at_ns);
    let mut faults: Vec<&FaultNote> = faults.iter().collect();
    faults.sort_by_key(|f| f.at_ns);
    let mut comment = header.to_string();
    for f in &faults {
        comment.push_str(&format!("\n{} ns: {}", f.at_ns, f.text));
    }
    for f in &faults {
        let i = frames.partition_point(|fr| fr.at_ns < f.at_ns);
        let i = i.min(frames.len().saturating_sub(1));
        if let Some(fr) = frames.get_mut(i) {
            fr.comments.push(format!("{} at {} ns", f.text, f.at_ns));
        }
    }
    let section = SectionHeaderBlock {
        options: vec![
            SectionHeaderOption::Comment(Cow::Owned(comment)),
            SectionHeaderOption::UserApplication(Cow::Borrowed("ringlab")),
        ],
        ..Default::default()
    };
    let mut out = PcapNgWriter::with_section_header(w, section)?;
    for name in interfaces {
        out.write_block(&idb(name).into_block())?;
    }
    let n = frames.len();
    for f in frames {
        let epb = EnhancedPacketBlock {
            interface_id: f.interface,
            timestamp: Duration::from_nanos(f.at_ns),
            original_len: f.original_len,
            data: f.data,
            options: f
                .comments
                .into_iter()
                .map(|c| EnhancedPacketOption::Comment(Cow::Owned(c)))
                .collect(),
        };
        out.write_block(&epb.into_block())?;
    }
    Ok(n)
}

/// Writes a simulated run's capture: one interface per directed link that carried a frame,
/// synthetic headers, the links' fates and `records`' faults as comments. `header` heads
/// the section's comment (the seed, say). Returns the frames written.
pub fn write_sim_capture<W: Write>(
    w: W,
    header: &str,
    capture: &Capture,
    records: &[Record],
) -> Result<usize, PcapWriteError> {
    let mut links: BTreeMap<(NodeId, NodeId), u32> = BTreeMap::new();
    for t in capture.frames() {
        let next = links.len() as u32;
        links.entry((t.from, t.to)).or_insert(next);
    }
    let mut interfaces = vec![String::new(); links.len()];
    for (&(from, to), &i) in &links {
        interfaces[i as usize] = format!("n{from}->n{to}");
    }
    let frames = capture
        .frames()
        .iter()
        .map(|t| {
            let data = synthetic_frame(t.from, t.to, &t.data);
            Frame {
                at_ns: t.at,
                interface: links[&(t.from, t.to)],
                original_len: data.len() as u32,
                data: Cow::Owned(data),
                comments: t.fate.note().map(String::from).into_iter().collect(),
            }
        })
        .collect();
    let mut header = header.to_string();
    if capture.truncated() > 0 {
        header.push_str(&format!(
            "\ncapture cap of {} bytes reached: {} later frames left out",
            capture.max_bytes(),
            capture.truncated()
        ));
    }
    write_pcapng(w, &header, &interfaces, frames, &fault_notes(records))
}

/// A pcapng file written frame by frame as a capture goes (real captures): Ethernet
/// interfaces named at the start, nanosecond timestamps.
pub struct StreamWriter<W: Write> {
    out: PcapNgWriter<W>,
}

impl<W: Write> StreamWriter<W> {
    /// Writes the section header (comment `header`) and one Ethernet interface per name.
    pub fn new(w: W, header: &str, interfaces: &[String]) -> Result<Self, PcapWriteError> {
        let section = SectionHeaderBlock {
            options: vec![
                SectionHeaderOption::Comment(Cow::Owned(header.to_string())),
                SectionHeaderOption::UserApplication(Cow::Borrowed("ringlab")),
            ],
            ..Default::default()
        };
        let mut out = PcapNgWriter::with_section_header(w, section)?;
        for name in interfaces {
            out.write_block(&idb(name).into_block())?;
        }
        Ok(Self { out })
    }

    /// Writes one frame captured on interface `interface` at `at_ns`.
    pub fn write(
        &mut self,
        at_ns: u64,
        interface: u32,
        data: &[u8],
        original_len: u32,
    ) -> Result<(), PcapWriteError> {
        let epb = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: Duration::from_nanos(at_ns),
            original_len,
            data: Cow::Borrowed(data),
            options: vec![],
        };
        self.out.write_block(&epb.into_block())?;
        Ok(())
    }

    /// Returns the underlying writer (to flush it).
    pub fn get_mut(&mut self) -> &mut W {
        self.out.get_mut()
    }
}

fn idb(name: &str) -> InterfaceDescriptionBlock<'static> {
    InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: SNAPLEN,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    }
}

/// Why a capture file could not be annotated.
#[derive(Debug, thiserror::Error)]
pub enum AnnotateError {
    /// Reading or writing the file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Its blocks.
    #[error("reading pcapng: {0}")]
    Read(#[from] pcap_file::PcapError),
    /// Writing it again.
    #[error(transparent)]
    Write(#[from] PcapWriteError),
}

/// Rewrites the pcapng file at `path` (one section of Ethernet interfaces, as
/// [`StreamWriter`] writes it) with `faults` as comments ([`write_pcapng`]) and `note`
/// appended to its section comment; a file cut short (a capture killed mid-write) keeps
/// the frames before the cut. Returns the frames written.
pub fn annotate_file(
    path: &std::path::Path,
    faults: &[FaultNote],
    note: &str,
) -> Result<usize, AnnotateError> {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let bytes = std::fs::read(path)?;
    let mut r = PcapNgReader::new(&bytes[..])?;
    let mut header = r
        .section()
        .options
        .iter()
        .find_map(|o| match o {
            SectionHeaderOption::Comment(c) => Some(c.to_string()),
            _ => None,
        })
        .unwrap_or_default();
    let mut interfaces = Vec::new();
    let mut frames = Vec::new();
    while let Some(b) = r.next_block() {
        let Ok(b) = b else { break };
        match b {
            Block::InterfaceDescription(i) => interfaces.push(
                i.options
                    .iter()
                    .find_map(|o| match o {
                        InterfaceDescriptionOption::IfName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .unwrap_or_default(),
            ),
            Block::EnhancedPacket(e) => frames.push(Frame {
                at_ns: e.timestamp.as_nanos() as u64,
                interface: e.interface_id,
                original_len: e.original_len,
                data: Cow::Owned(e.data.into_owned()),
                comments: Vec::new(),
            }),
            _ => {}
        }
    }
    if !note.is_empty() {
        header.push('\n');
        header.push_str(note);
    }
    let tmp = path.with_extension("pcapng.tmp");
    let n = write_pcapng(
        std::io::BufWriter::new(std::fs::File::create(&tmp)?),
        &header,
        &interfaces,
        frames,
        faults,
    )?;
    std::fs::rename(&tmp, path)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Fate, Tapped};
    use bytes::Bytes;
    use pcap_file::pcapng::{Block, PcapNgReader};

    #[test]
    fn a_synthetic_frame_has_valid_lengths_and_checksum() {
        let f = synthetic_frame(1, 300, b"hello");
        assert_eq!(f.len(), frame_len(5));
        assert_eq!(&f[26..30], &[10, 77, 0, 1]);
        assert_eq!(&f[30..34], &[10, 77, 1, 44]);
        assert_eq!(ipv4_checksum(&f[14..34]), 0, "a valid header sums to 0");
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 13);
        assert_eq!(&f[42..], b"hello");
    }

    #[test]
    fn a_capture_reads_back_with_one_interface_per_link_and_fault_comments() {
        let mut c = Capture::new(1 << 20);
        for (at, from, to, fate) in [
            (30, 2, 1, Fate::Lost),
            (10, 1, 2, Fate::Delivered),
            (20, 1, 3, Fate::Delivered),
        ] {
            c.push(Tapped {
                at,
                from,
                to,
                data: Bytes::from_static(b"x"),
                fate,
            });
        }
        let records = vec![Record {
            t_ns: 15,
            node: 0,
            inc: 0,
            body: Body::Fault {
                action: "crash".into(),
                targets: vec![3],
                groups: vec![],
            },
        }];
        let mut buf = Vec::new();
        assert_eq!(
            write_sim_capture(&mut buf, "seed 1", &c, &records).unwrap(),
            3
        );
        let mut r = PcapNgReader::new(&buf[..]).unwrap();
        let (mut idbs, mut epbs) = (Vec::new(), Vec::new());
        while let Some(b) = r.next_block() {
            match b.unwrap() {
                Block::InterfaceDescription(i) => idbs.push(i.into_owned()),
                Block::EnhancedPacket(e) => epbs.push(e.into_owned()),
                _ => {}
            }
        }
        assert_eq!(idbs.len(), 3);
        let times: Vec<u128> = epbs.iter().map(|e| e.timestamp.as_nanos()).collect();
        assert_eq!(times, vec![10, 20, 30]);
        let comments = |e: &EnhancedPacketBlock| -> Vec<String> {
            e.options
                .iter()
                .filter_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                })
                .collect()
        };
        assert!(comments(&epbs[0]).is_empty());
        assert_eq!(comments(&epbs[1]), vec!["fault crash [3] at 15 ns"]);
        assert_eq!(comments(&epbs[2]), vec!["lost on the link"]);
    }

    #[test]
    fn a_streamed_capture_is_annotated_in_place() {
        let path = std::env::temp_dir().join(format!("ringlab-pcap-{}.pcapng", std::process::id()));
        let mut w = StreamWriter::new(
            std::fs::File::create(&path).unwrap(),
            "real",
            &["br0".to_string()],
        )
        .unwrap();
        for at in [100, 200, 300] {
            let f = synthetic_frame(1, 2, b"x");
            w.write(at, 0, &f, f.len() as u32).unwrap();
        }
        drop(w);
        let faults = [FaultNote {
            at_ns: 150,
            text: "fault isolate [2]".into(),
        }];
        assert_eq!(annotate_file(&path, &faults, "cap not reached").unwrap(), 3);
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut r = PcapNgReader::new(&bytes[..]).unwrap();
        let header = format!("{:?}", r.section().options);
        assert!(header.contains("real") && header.contains("cap not reached"));
        let mut comments = Vec::new();
        while let Some(b) = r.next_block() {
            if let Block::EnhancedPacket(e) = b.unwrap() {
                comments.push(format!("{:?}", e.options));
            }
        }
        assert_eq!(comments.len(), 3);
        assert!(comments[1].contains("fault isolate [2] at 150 ns"));
        assert!(!comments[0].contains("fault"));
    }
}
