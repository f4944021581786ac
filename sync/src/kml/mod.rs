//! The modification log (`kml`): a replicated file tree changed through the ring, each change
//! logged as a KML record, and the logs of partitioned sides reintegrated at a merge (seed
//! `intermezzo-kml-reintegration.txt`, Peter Braam's plan of November 2001 for InterMezzo).
//!
//! - [`record`]: records and operations and their codec (versioned, bounded, one reader,
//!   fuzz target `kml_record`);
//! - [`fileset`]: the tree (directories, plain files with their content, symlinks, hard
//!   links; attributes and versions); apply, check, replay and undo of records; the changes a
//!   real node mirrors into `STATE_DIR/kml/`;
//! - [`history`]: the records in the order applied, with a chain hash and what undo
//!   restores beside the tree (per-origin last record numbers, the clock, the conflicts);
//! - [`reint`]: undo back to a fork, catch-up, reintegration with conflicts, `.elsewhere`;
//! - [`sync_msg`]: the sync's messages (`Have`, `Tail`);
//! - [`service`]: the service: operations through the ring, the sync that reintegrates,
//!   control commands, workload, records.
//!
//! # What the seed planned
//! A kernel ioctl reintegrates one KML record at a time, checking each affected object's
//! version (mtime, ctime, size; no size for directories) against the record and reporting one
//! of four conflicts: name/name (a create hits an existing name), update/update (setattr or
//! close on an object changed meanwhile), update/delete (either order), rename/rename (the
//! source is gone). A record whose number is not the one the fileset expects from its origin
//! draws a warning. On a conflict the client backs out: it moves its conflicting objects to
//! `/elsewhere/fileset/`, writes `WARNINGS`, turns the affected records into NOOPs (found
//! through a hash from path to records), verifies that the rest no longer conflicts, and the
//! process can be interrupted and resumed. For high availability, B steals the permit at
//! record X while A is down; when A returns with records to Y, A's X..Y are undone in exactly
//! the reverse order and B's X..tail reintegrated. Undo needs old attributes the 1.1 records
//! lacked (mode, uid, gid; "KML version 1.2").
//!
//! # What InterMezzo's code did
//! `kml_reint_rec` (Linux 2.4/2.5, `fs/intermezzo/kml_reint.c`) logs "KML record number %Lu
//! expected, not %d" and *goes on*; the version check is compiled out (`#if 0`, "FIXME: do an
//! upcall to resolve conflicts"); its `version_equal` compares mtime and size but not ctime,
//! although the seed says ctime; undo and branches are bare upcalls to Lento in user space. The
//! four conflicts and anti-reintegration never existed outside the plan.
//!
//! # What Coda does for the same problem
//! Coda's client log (CML) records carry version vectors and a StoreId (host, uniquifier);
//! the server makes no version check for directories and accepts only equal versions for
//! files; a replayed record at or below the last uniquifier from that host is stale; a
//! mismatch (`EINCOMPATIBLE`) marks a local/global conflict for repair. The server keeps no
//! log of its own partitioned operations.
//!
//! # What ringlab does
//! - Every node applies every operation the ring delivers, in the order delivered, in regular
//!   and transitional configurations (EVS gives members that move together the same
//!   deliveries); each becomes a record numbered next for its origin in that history, with
//!   the origin's incarnation. Failed operations are NOOP records (their number is used).
//! - Versions are the seed's (mtime, ctime, size) plus Coda's StoreId (the record that last
//!   changed the object): two sides that changed a file to the same size at the same tick
//!   still differ. Times are the fileset's logical clock, one tick per record, so that every
//!   node applies a record alike (nodes' clocks differ). Directories that are only parents
//!   are not version-checked (as Coda; the seed's check would make every pair of creates in
//!   one directory conflict, and InterMezzo compiled it out).
//! - The permit goes with the side of the most members of the merged configuration (a tie:
//!   the side holding the lowest node id); its history stands. Every other side's records
//!   after its fork with the permit side are reintegrated, in the order of the sides' lowest
//!   members: duplicates (both sides had the record) skipped, a record whose number is not
//!   the next of its origin reported (`kml` `warning`) and not applied (the seed's warning,
//!   which InterMezzo only logged), the rest checked record by record. A conflicting record
//!   and every later record of its side on an object it made or changed (the seed's
//!   path-to-records hash, here by object id) become NOOPs; what they created or wrote is put
//!   under `.elsewhere/<origin>/<path>` and each is described in `.elsewhere/WARNINGS`.
//!   Nodes of a non-permit side first undo their side's records back to the fork in exactly
//!   the reverse order and replay the permit side's: the seed's HA case, generalised.
//! - Every decision is made from agreed-order messages only, so every member ends with the
//!   same tree, history and conflict list (the checker's properties 16 and 17).
//! - Resumable: a configuration change aborts the sync; the records received so far are kept
//!   (as runs, by chain hash), and the next attempt's senders start after what every member
//!   already holds. Application is atomic at the sync's end, so an interrupted reintegration
//!   ends exactly as an uninterrupted one.
//! - In slices: the activation decides the merge (sides, forks, the snapshot's adoption) and
//!   leaves the undo, the catch-up and the reintegration (with what goes to `.elsewhere`) as a
//!   resumable job of at most `reint_slice` records a slice ([`crate::Service::has_work`],
//!   [`crate::Service::do_work`]; default 1000). Why: done in one call, a merge of 10,000
//!   minority records stalled a real node about 1.07 s (past the token timeout of 1000 ms; the
//!   ring lost its token right after the heal) and 100,000 records stalled it about 10 s again
//!   and again, so that every sync aborted. The job writes exactly the records one call wrote,
//!   in the same order, and ends the sync (`reint_done`, `fileset`) only when it is done;
//!   operations delivered meanwhile are applied after it. Its [`crate::ServiceApp`] holds every
//!   other input back in the meantime, so the step is as atomic to the protocol as before.
//!
//! Not as the seed: rename never replaces an existing target (`EEXIST`), so a rename's
//! undo needs no removed target; mknod makes plain files only; `.elsewhere` is inside the
//! fileset (it is replicated and undone like the rest) and control commands may not write
//! there; `WARNINGS` stops growing at 64 KiB (further lines are NOOP records).

pub mod fileset;
pub mod history;
pub mod record;
pub mod reint;
pub mod service;
pub mod sync_msg;

pub use fileset::{Change, Fileset, TreeEntry};
pub use record::{Attrs, ConflictKind, Kind, Noop, Op, RecId, Record, Touch, Undo, Version};
pub use service::{KmlConfig, KmlService, KML_SERVICE};
