//! The Totem single-ring ordering and membership protocol as a sans-IO state machine.
//!
//! The core, [`Ring`], never touches a socket, a clock or a thread: the caller feeds it
//! datagrams and timeouts with the current time, and drains what it wants sent and what it
//! has to say. A run loop looks like this:
//!
//! ```
//! use ringlab_ring::{Config, Dest, Event, Guarantee, Ring};
//! let mut now = 0u64; // nanoseconds on any monotonic clock
//! let mut ring = Ring::new(1, 0, Config::default(), 0, now).unwrap();
//! ring.submit(now, b"hello", Guarantee::Agreed).unwrap();
//! loop {
//!     // 1. Send what it asks for. A one-node cluster: what goes to node 1 comes back.
//!     let mut inbox = vec![];
//!     while let Some(t) = ring.poll_transmit() {
//!         if t.dest == Dest::Node(1) {
//!             inbox.push(t.payload);
//!         }
//!     }
//!     // 2. Feed it datagrams; when there are none, jump to its next deadline.
//!     if inbox.is_empty() {
//!         now = ring.poll_timeout().expect("a ring always has a timer");
//!         ring.handle_timeout(now);
//!     }
//!     for p in inbox {
//!         ring.handle_packet(now, Some(1), p);
//!     }
//!     // 3. Hand its events to the application.
//!     if let Some(Event::Deliver(d)) = std::iter::from_fn(|| ring.poll_event())
//!         .find(|e| matches!(e, Event::Deliver(_)))
//!     {
//!         assert_eq!(&d.data[..], b"hello");
//!         break;
//!     }
//! }
//! ```
//!
//! Modules: [`wire`] (the packet codec), [`pack`] (packing and fragmentation of application
//! messages), [`srp`] (the protocol), [`config`] (knobs), [`event`] (what goes in and out),
//! [`auth`] (the keyed envelope datagrams travel in when a cluster has a key).
//! The JSON event records every node writes are the `ringlab-records` crate's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod event;
pub mod pack;
pub mod srp;
pub mod wire;

pub use config::{Config, ConfigError, Timing, Variant};
pub use event::{ConfigChange, ConfigKind, Delivery, Dest, Event, MembState, Reason, Transmit};
pub use pack::{MsgId, SubmitError};
pub use srp::{DropReason, Drops, Guarantee, PacketOutcome, Ring, Stats};
pub use wire::{NodeId, RingId};
