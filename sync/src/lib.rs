//! The synchronisation engine and the services it synchronises, as sans-IO state machines on
//! the ring's agreed delivery.
//!
//! - [`engine`]: the sync engine (service-list build, per-service process and barrier,
//!   activate everywhere at the same point of the total order, abort on any configuration
//!   change);
//! - [`service`]: the plug-in: the [`Service`] trait a service implements (sync hooks,
//!   operations, control commands, digest and counters, event records) and its static side,
//!   [`Plugin`] (name, number, command-line parsing, workload);
//! - [`registry`]: the one list of services, one line each; configs, the simulator, the
//!   control socket and experiments find a service there by name, and nothing else names one;
//! - [`control`]: the generic control path of services (`svc NAME ...`): arguments, the
//!   context a service sees, its typed errors;
//! - [`checkpoint`]: the checkpoint service and its two-phase sync;
//! - [`resources`]: the resources service: which node runs which resource group (quorum,
//!   placement, moves in agreed order; and the 2000 heartbeat seed's policy, to measure);
//! - [`msg`]: what the sync layer puts inside ring messages;
//! - [`app`]: the engine and its services driven over a ring ([`ServiceApp`]), what real
//!   and simulated nodes run.
//!
//! Every message of the sync layer and of every service is decoded by one reader,
//! [`ringlab_ring::wire::Reader`], into one typed error, [`DecodeError`]: lengths bounded
//! before anything is allocated, never a panic.
//!
//! # Adding a service
//! 1. Write `sync/src/NAME.rs`: its operations and sync messages with their encoding (read
//!    with [`ringlab_ring::wire::Reader`]), its typed control `Command` and replies (serde),
//!    `impl Service` and `impl Plugin` with a `NAME` and an `ID` of its own.
//! 2. Declare the module below and add `Entry::of::<TheService>()` to
//!    [`registry::SERVICES`].
//! 3. Add a fuzz target per decoder in `fuzz/fuzz_targets/`.
//!
//! It then runs on real nodes (`services = ["NAME"]`, `ringlab ctl SOCK svc NAME ...`), in the
//! simulator (`ringlab sim --services NAME`, with its workload and convergence checks) and
//! beside every other service.
//!
//! # The seed and what changed
//! The design follows the openais syncv2 patch (2009) with the two corrections corosync made
//! for races the patch has:
//! - activate runs when the barrier has completed on all members, not locally before the
//!   barrier (the patch activated a service on a node as soon as that node's `process` ended,
//!   so one node could serve the new state while another still synchronised);
//! - every service's `init` runs when the service list is built, not lazily when its turn
//!   comes (a message sent during a service's turn could reach a node whose `init` for that
//!   service had not run).
//!
//! Also: abort runs for the current service in BARRIER as well as in PROCESS (corosync fixed
//! that in 2026; the patch aborted only in PROCESS), and every local service, initialised at
//! the list build, drops its temporary state.
//!
//! Plain bugs of the patch, not reproduced:
//! - the loop that fills `service_build.service_list` runs `for (i = 0; i <
//!   my_initial_service_list[i].service_id; i++)`: its bound is the i-th service's *id*, not
//!   the number of services, so the list sent is cut short or overruns;
//! - the `qsort` comparator returns `a->service_id > b->service_id`, a boolean: never
//!   negative, so the sort order is undefined;
//! - `schedwrk_processor` sets `state = PROCESS` inside `if (state == PROCESS)` and
//!   `state = ACTIVATE` inside `if (state == ACTIVATE)`: a state set twice, hiding that the
//!   transitions were meant elsewhere.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod checkpoint;
pub mod control;
pub mod engine;
pub mod kml;
pub mod msg;
pub mod registry;
pub mod resources;
pub mod service;
pub mod store;

pub use app::ServiceApp;
pub use checkpoint::{CheckpointService, Op, SyncChunk, CHECKPOINT_SERVICE};
pub use control::{Control, ControlContext, ControlError};
pub use engine::{Outbox, Progress, SyncContext, SyncEngine, SyncEvent, SyncStats};
pub use msg::{Msg, ServiceId};
pub use registry::{Entry, UnknownService, SERVICES};
pub use resources::{ResourcesConfig, ResourcesService, RESOURCES_SERVICE};
pub use ringlab_ring::wire::DecodeError;
pub use service::{
    listing_digest, Action, ActionResult, Counters, FileChange, FileEntry, OpDelivery, Plugin,
    Service, ServiceConfig, ServiceConfigError, SimDisks, StateSize, Storage, Verb, Workload,
};
