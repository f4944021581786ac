//! The deterministic simulator and the checker: ringlab's main test instrument.
//!
//! - [`sim`]: a seeded, virtual-clock network of [`ringlab_ring::Ring`] nodes with delay,
//!   jitter, loss, duplication, reordering, partitions, one-way cuts, crashes, restarts and
//!   pauses; the same seed gives the same run, bit for bit.
//! - [`checker`]: verifies integrity, total order, membership agreement, virtual synchrony,
//!   safe delivery, self delivery and liveness over event records, simulated or real.
//! - [`loss`]: the links' loss models (uniform, and bursty Gilbert–Elliott) and the seeded
//!   random stream of each directed link.
//! - [`adversary`]: a hostile node on the segment that replays, alters and forges datagrams;
//! - [`capture`] and [`pcap`]: a tap on every link and the pcapng file it makes, one
//!   interface per directed link, for reading a seed's run packet by packet in Wireshark.
//! - [`run`](mod@run): one seeded run with mixed faults and load, as `ringlab sim` drives it.
//! - [`summary`]: the totals of many runs, as `ringlab sim` prints them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adversary;
pub mod capture;
pub mod checker;
pub mod loss;
pub mod pcap;
pub mod run;
pub mod sim;
pub mod summary;

pub use adversary::Adversary;
pub use checker::{check, Liveness, Property, Report, Violation};
pub use run::{liveness_bound, run, Faults, RunConfig, RunReport};
pub use sim::{AuthDrops, NetConfig, PacketInfo, Sim};
pub use summary::SimSummary;
