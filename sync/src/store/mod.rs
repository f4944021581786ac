//! The store (seed `ceph-mon-sync-message.txt`): the persistent, ordered key-value store
//! every node keeps in its state directory, whose writes the `store` service carries on the
//! ring and whose far-behind members the chunk protocol brings back.
//!
//! - the database layer ([`db::StoreDb`]): redb, a real embedded database, in a real node's
//!   state directory (`store.redb`), on a simulated disk that outlives a node's
//!   incarnations in the simulator ([`db::MemDisk`]), or in memory; the store's version
//!   (Ceph's `last_committed`), the log of the last `log_keep` writes, a chain hash of the
//!   history and an incremental digest of the contents. redb 2.6 rather than 3 or 4: those
//!   need Rust 1.89 and 1.90, the workspace builds with 1.88;
//! - the versioned, bounded codec of a write ([`write::Write`]);
//! - the `store` service ([`service::StoreService`]): writes through the ring, applied only
//!   where every member applies alike (see its docs: extended virtual synchrony gives that
//!   for safe deliveries of a regular primary configuration, and for a primary's tail in
//!   the next configuration when that one is primary too), the sync's recent path, the
//!   full copy's ring path (a whole copy multicast during the sync, durable load marker),
//!   and its unicast path by the chunk protocol, after which the copy catches up with the
//!   writes the ring delivered meanwhile;
//! - the chunk protocol's message ([`chunk_msg::ChunkMsg`]): the seed's ops, flags and
//!   fields and the pull design's ops, with its versioned, bounded codec and the CRC32C of
//!   a chunk. crc32c 0.6.9 declares no MSRV (edition 2018) and builds with 1.88;
//! - the chunk protocol itself ([`transfer::Transfer`]): the seed's push design (leader,
//!   provider, heartbeats, chunks pushed within a window, resume from `last_key` when the
//!   provider dies, abort when the leader changes) and Ceph's pull design (a cookie from a
//!   provider of the requester's choice, chunks pulled; resume from `last_key` too), point
//!   to point from one provider while the ring goes on carrying writes, with timeouts that
//!   measure progress rather than length;
//! - its transport ([`transport::Transport`]): a chunk travels as numbered datagrams with
//!   their own acknowledgements, retransmission and optional pacing, carried by the node's
//!   own event loop and socket (the simulator's network in the simulator).
//!
//! Both live in `sync/` (sans-IO, beside the service that drives them), not in a crate of
//! their own: nothing else uses them, and the store service is their one host.

pub mod chunk_msg;
pub mod db;
pub mod service;
pub mod transfer;
pub mod transport;
pub mod write;

pub use chunk_msg::{Chunk, ChunkMsg, CrcError, Flags};
pub use db::{Logged, MemDisk, StoreDb, StoreDigest, StoreError};
pub use service::{StoreConfig, StoreService, STORE_SERVICE};
pub use transfer::{Design, Fetched, Path, Transfer, TransferConfig, View};
pub use write::{Write, WriteError, MAX_KEY, MAX_VALUE};
