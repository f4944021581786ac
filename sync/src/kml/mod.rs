//! The modification log (`kml`): a replicated file tree changed through the ring, each change
//! logged as a KML record, and the logs of partitioned sides reintegrated at a merge (seed
//! `intermezzo-kml-reintegration.txt`).
//!
//! - [`record`]: records and operations, their codec;
//! - [`fileset`]: the tree; apply, check, replay and undo of records.

pub mod fileset;
pub mod history;
pub mod record;
pub mod reint;
pub mod service;
pub mod sync_msg;

pub use fileset::{Change, Fileset, TreeEntry};
pub use record::{Attrs, ConflictKind, Kind, Noop, Op, RecId, Record, Touch, Undo, Version};
pub use service::{KmlConfig, KmlService, KML_SERVICE};
