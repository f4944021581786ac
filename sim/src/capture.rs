//! A packet tap on the simulator's links: every datagram copy a node puts on a directed
//! link, with the virtual instant it left the sender and what the link did with it.
//!
//! Guarantees:
//! - Tapping changes nothing in a run: it draws from no random stream and writes no record,
//!   so a seed's records are the same with and without a capture.
//! - Bounded: past `max_bytes` of frames (counted as [`crate::pcap::frame_len`], headers
//!   included) the tap keeps no more frames and says so in [`Capture::truncated`].
//!
//! [`crate::pcap`] turns a capture into a pcapng file, one interface per directed link.

use bytes::Bytes;
use ringlab_ring::NodeId;

/// The default cap on a capture's size (256 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;

/// What a link did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Carried once.
    Delivered,
    /// Carried twice (the link duplicated it).
    Duplicated,
    /// Duplicated, and one of the two copies lost.
    DuplicatedOneLost,
    /// Lost on the link (loss model).
    Lost,
    /// Dropped by a partition or a one-way cut.
    Cut,
    /// Dropped by the test's filter (targeted packet surgery).
    Filtered,
    /// A node's datagram to itself (no network faults).
    Loopback,
    /// Injected by the hostile node on the segment, in `from`'s name.
    Hostile,
}

impl Fate {
    /// Returns a short note for the frame's pcapng comment (none for a plain delivery).
    pub fn note(self) -> Option<&'static str> {
        match self {
            Self::Delivered => None,
            Self::Duplicated => Some("duplicated by the link"),
            Self::DuplicatedOneLost => Some("duplicated by the link, one copy lost"),
            Self::Lost => Some("lost on the link"),
            Self::Cut => Some("dropped: partition or one-way cut"),
            Self::Filtered => Some("dropped by the test's filter"),
            Self::Loopback => Some("loopback"),
            Self::Hostile => Some("injected by the hostile node"),
        }
    }
}

/// One tapped frame.
#[derive(Clone, Debug)]
pub struct Tapped {
    /// Virtual instant it left the sender (ns).
    pub at: u64,
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// The datagram's payload (UDP payload: the ring's wire format, sealed when keyed).
    pub data: Bytes,
    /// What the link did with it.
    pub fate: Fate,
}

/// The frames of one run, bounded.
#[derive(Clone, Debug)]
pub struct Capture {
    frames: Vec<Tapped>,
    bytes: u64,
    max_bytes: u64,
    truncated: u64,
}

impl Capture {
    /// Creates an empty capture that keeps at most `max_bytes` of frames.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            frames: Vec::new(),
            bytes: 0,
            max_bytes,
            truncated: 0,
        }
    }

    /// Records a frame, unless the cap is reached (then counts it as left out).
    pub fn push(&mut self, t: Tapped) {
        let len = crate::pcap::frame_len(t.data.len()) as u64;
        if self.truncated > 0 || self.bytes + len > self.max_bytes {
            self.truncated += 1;
            return;
        }
        self.bytes += len;
        self.frames.push(t);
    }

    /// Returns the frames kept, in the order they were tapped.
    pub fn frames(&self) -> &[Tapped] {
        &self.frames
    }

    /// Returns the bytes of frames kept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Returns the cap.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Returns how many frames were left out once the cap was reached (0: complete).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stops_the_capture_and_counts_what_it_left_out() {
        let one = crate::pcap::frame_len(10) as u64;
        let mut c = Capture::new(2 * one);
        for at in 0..5 {
            c.push(Tapped {
                at,
                from: 1,
                to: 2,
                data: Bytes::from_static(&[0; 10]),
                fate: Fate::Delivered,
            });
        }
        assert_eq!(c.frames().len(), 2);
        assert_eq!(c.truncated(), 3);
        assert_eq!(c.bytes(), 2 * one);
    }
}
