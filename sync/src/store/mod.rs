//! The store (seed `ceph-mon-sync-message.txt`), being built: the persistent, ordered
//! key-value store every node keeps in its state directory, whose writes the `store`
//! service will carry on the ring and whose far-behind members the chunk protocol will
//! bring back.
//!
//! Built so far: the database layer ([`db::StoreDb`], redb: a real embedded database, on
//! disk for a real node and on redb's in-memory backend for the simulator) with the store's
//! version (Ceph's `last_committed`), the log of the last `log_keep` writes, an incremental
//! digest of the contents, and the versioned, bounded codec of a write ([`write::Write`]);
//! the chunk protocol's message ([`chunk_msg::ChunkMsg`]): the seed's ops, flags and fields
//! and the pull design's ops, with its versioned, bounded codec and the CRC32C of a chunk
//! (sans-IO: the data and its codec, not yet the protocol that sends it). redb 2.6 rather
//! than 3 or 4: those need Rust 1.89 and 1.90, the workspace builds with 1.88; crc32c 0.6.9
//! declares no MSRV (edition 2018) and builds with 1.88.
//!
//! Not built yet (issue 12 stays open): the `store` service itself, its sync's recent path,
//! the chunk protocol's state machines (push and pull designs, unicast and ring paths),
//! their records and checker properties. One constraint found while designing it, for
//! whoever builds it: a write may only change the store where every node that applies it
//! applies the same sequence before it, and extended virtual synchrony gives that only for
//! messages delivered *safe* in a *regular* configuration of a *primary* (majority)
//! component. Writes delivered in a transitional configuration can differ between the two
//! sides of a split (each side delivers what its own members received), and a minority that
//! applied them would come back with a history that is not a prefix of the majority's, so
//! the recent path (which ships only the missing tail) would make a store that no node had.
//! Applying only safe deliveries of regular primary configurations keeps every node's
//! history a prefix of one sequence, which is what the version number then means.

pub mod chunk_msg;
pub mod db;
pub mod write;

pub use chunk_msg::{Chunk, ChunkMsg, CrcError, Flags};
pub use db::{StoreDb, StoreDigest, StoreError};
pub use write::{Write, WriteError, MAX_KEY, MAX_VALUE};
