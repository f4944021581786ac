//! The store (seed `ceph-mon-sync-message.txt`), being built: the persistent, ordered
//! key-value store every node keeps in its state directory, whose writes the `store`
//! service carries on the ring and whose far-behind members the chunk protocol will bring
//! back.
//!
//! Built so far:
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
//!   the next configuration when that one is primary too), the sync's recent path, and the
//!   full transfer's ring path (a whole copy multicast during the sync, durable load
//!   marker);
//! - the chunk protocol's message ([`chunk_msg::ChunkMsg`]): the seed's ops, flags and
//!   fields and the pull design's ops, with its versioned, bounded codec and the CRC32C of
//!   a chunk (the data and its codec, not yet the protocol that sends it). crc32c 0.6.9
//!   declares no MSRV (edition 2018) and builds with 1.88.
//!
//! Not built yet (issue 12 stays open): the chunk protocol's state machines (the push and
//! pull designs, unicast, with resume from `last_key`, one provider while the ring goes on
//! serving writes), their transport (acknowledgements, retransmission, pacing), the
//! chunk records, the simulator's `--store-keys`/`--store-bytes` and the `ringlab run`
//! store experiments and figures.

pub mod chunk_msg;
pub mod db;
pub mod service;
pub mod write;

pub use chunk_msg::{Chunk, ChunkMsg, CrcError, Flags};
pub use db::{Logged, MemDisk, StoreDb, StoreDigest, StoreError};
pub use service::{StoreService, STORE_SERVICE};
pub use write::{Write, WriteError, MAX_KEY, MAX_VALUE};
