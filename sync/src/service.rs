//! The service plug-in: the one trait a synchronised service implements ([`Service`], what
//! the engine and a node call on it) and its static side ([`Plugin`], what the
//! [registry](crate::registry) needs to make it, parse its control commands and draw its
//! workload without an instance).
//!
//! A service owns everything about itself: its operations (applied in total order through
//! the ring, encoded with the one codec of [`ringlab_ring::wire`]), its sync (the engine's
//! hooks below), its control commands (typed, serde-derived, reached through the control
//! socket as `svc NAME ...`), its workload for the simulator, its digest and counters for the
//! convergence checks, and its own event records. Nothing outside its file and its line in
//! the registry names it, and every service runs beside every other: each has its own
//! [`ServiceId`], its own messages and its own state.
//!
//! Guarantees the engine gives a service: `sync_init` for every local service at the
//! service-list build; `sync_members` once every list is in; then, in ascending id order,
//! `sync_process` until it says [`Progress::Done`], its sync messages delivered to every
//! member in one total order, and `sync_activate` at the same point of that order on every
//! member; `sync_abort` instead, on every member, when the configuration changes first.
//! Operations delivered while a sync runs are held and handed to `deliver_op` when it ends.

use crate::control::{Args, Control, ControlContext, ControlError};
use crate::engine::{Outbox, Progress, SyncContext};
use crate::msg::ServiceId;
use bytes::Bytes;
use ringlab_records::Body;
use ringlab_ring::NodeId;
use std::collections::BTreeMap;

/// How much replicated state a service holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Items (checkpoints, resource groups, keys, ...).
    pub items: u64,
    /// Bytes of their data.
    pub bytes: u64,
}

impl std::ops::Add for StateSize {
    type Output = Self;

    fn add(self, o: Self) -> Self {
        Self {
            items: self.items + o.items,
            bytes: self.bytes + o.bytes,
        }
    }
}

/// Replicated counters that are the sum of every member's own share (a checkpoint's
/// reference count is the sum of the members' open counts): after a sync, each total on
/// every live node equals the sum of the live nodes' shares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// What a counter counts, for messages ("reference count").
    pub what: &'static str,
    /// The replicated totals, by key.
    pub totals: BTreeMap<Vec<u8>, u64>,
    /// This node's own share of each, by key (its local truth; absent: 0).
    pub shares: BTreeMap<Vec<u8>, u64>,
}

/// What a service is configured with: the cluster's configured nodes (what a quorum counts)
/// and its own section of the node's config (`[service_config.NAME]` in a node's TOML,
/// `--service-config FILE` in the simulator), which the service parses into its own typed
/// struct. A null section means "defaults".
#[derive(Clone, Debug, Default)]
pub struct ServiceConfig {
    /// Every node configured in the cluster (empty: unknown, only this node).
    pub nodes: Vec<NodeId>,
    /// The service's own section (null: none given).
    pub section: serde_json::Value,
    /// Where it may keep state that outlives the process (none by default).
    pub storage: Storage,
}

/// Where a service may keep state that outlives the process (the store's database).
#[derive(Clone, Debug, Default)]
pub enum Storage {
    /// Nowhere: state lives in memory and dies with the node.
    #[default]
    None,
    /// A real node's state directory.
    Dir(std::path::PathBuf),
    /// The simulator's disks of one node, by file name, kept across its incarnations.
    Sim(SimDisks),
}

/// One simulated node's disks, by file name (clones share them).
#[derive(Clone, Debug, Default)]
pub struct SimDisks(std::sync::Arc<std::sync::Mutex<BTreeMap<String, crate::store::MemDisk>>>);

impl SimDisks {
    /// Returns the disk named `name`, made empty the first time.
    pub fn disk(&self, name: &str) -> crate::store::MemDisk {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Empties every disk (a node restarted with new disks).
    pub fn wipe(&self) {
        for d in self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            d.wipe();
        }
    }
}

/// Why a service refused its configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("service {service:?}: bad configuration: {reason}")]
pub struct ServiceConfigError {
    /// The service.
    pub service: &'static str,
    /// What is wrong, naming the key.
    pub reason: String,
}

/// What the random workload of a service is sized to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// About how many bytes of replicated state the workload keeps.
    pub state_bytes: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            state_bytes: 65_536,
        }
    }
}

/// What an [`Action`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// Start the resource.
    Start,
    /// Stop the resource.
    Stop,
}

impl Verb {
    /// Returns its name, as records and the environment of a command spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }
}

/// Work a service asks its host to do outside the sans-IO core: start or stop one resource
/// (a resource agent's operation). A real node runs `command` (or its default: create or
/// remove a file named after the resource in its state directory) and kills it after
/// `timeout_ms`; the simulator completes it after a delay it draws. Either way the outcome
/// comes back through [`Service::action_done`] with the same `id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    /// Its number, unique within the service instance.
    pub id: u64,
    /// Start or stop.
    pub verb: Verb,
    /// The group the resource belongs to.
    pub group: String,
    /// The resource.
    pub resource: String,
    /// The shell command to run (`sh -c`); none: the host's default.
    pub command: Option<String>,
    /// How long it may take (ms); then it is killed and counts as failed.
    pub timeout_ms: u64,
}

/// How an [`Action`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionResult {
    /// It succeeded (exit status 0).
    Ok,
    /// It failed: its exit status (none: killed, timed out, or could not run) and why.
    Failed {
        /// The exit status, if it exited.
        exit: Option<i32>,
        /// What went wrong, for records and logs.
        error: String,
    },
}

/// How an operation was delivered, as extended virtual synchrony tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpDelivery {
    /// Who sent it.
    pub sender: NodeId,
    /// The sender's incarnation (as the ring's message id carries it).
    pub inc: u32,
    /// Delivered safe: every member of the configuration it was delivered in had it.
    pub safe: bool,
    /// Delivered in a regular configuration; false in a transitional one (after the ring
    /// broke: the members that came along from the old ring deliver what they have, and
    /// the other side of a split may deliver a different tail).
    pub regular: bool,
}

/// One change to a service's real directory (a service that keeps files, as `kml` mirrors
/// its fileset), in the order made; paths are `/`-rooted inside that directory. A host
/// applies them under `STATE_DIR/NAME/` (see [`Service::poll_file_change`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// Make a directory.
    Mkdir {
        /// Where.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// Create a plain file with this content, or rewrite an existing one in place (its
    /// other names, if any, see the new content).
    Write {
        /// Where.
        path: String,
        /// Its whole content.
        data: Bytes,
        /// Permission bits.
        mode: u32,
    },
    /// Make a symlink.
    Symlink {
        /// Where.
        path: String,
        /// Where it points.
        target: String,
    },
    /// Make `path` a hard link of `existing`.
    Link {
        /// The existing name.
        existing: String,
        /// The new name.
        path: String,
    },
    /// Remove a name of a file or symlink.
    Unlink {
        /// The name.
        path: String,
    },
    /// Remove an empty directory.
    Rmdir {
        /// The directory.
        path: String,
    },
    /// Rename.
    Rename {
        /// The source.
        from: String,
        /// The target (absent before).
        to: String,
    },
    /// Set permission bits.
    Chmod {
        /// The object.
        path: String,
        /// Permission bits.
        mode: u32,
    },
}

/// What a directory shows of one object, for comparing a service's real directory with its
/// state ([`listing_digest`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    /// Its path (`/`-rooted; the root is not listed).
    pub path: String,
    /// `b'd'` (directory), `b'f'` (plain file) or `b'l'` (symlink).
    pub kind: u8,
    /// Permission bits (`& 0o7777`; 0 for symlinks).
    pub mode: u32,
    /// Size (files: content length; 0 otherwise).
    pub size: u64,
    /// SHA-256 of the content (files) or of the target (symlinks); zeros for directories.
    pub content: [u8; 32],
    /// For a file with more than one name: its smallest path (byte order), the same for
    /// every name; none otherwise.
    pub link: Option<String>,
}

/// Returns the digest of a listing (sorted by path here first): SHA-256 over each entry's
/// path, kind, mode, size, content and link, strings length-prefixed, numbers big-endian.
pub fn listing_digest(entries: &[FileEntry]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut sorted: Vec<&FileEntry> = entries.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    let s = |h: &mut Sha256, x: &str| {
        h.update((x.len() as u64).to_be_bytes());
        h.update(x.as_bytes());
    };
    for e in sorted {
        s(&mut h, &e.path);
        h.update([e.kind]);
        h.update(e.mode.to_be_bytes());
        h.update(e.size.to_be_bytes());
        h.update(e.content);
        match &e.link {
            Some(l) => {
                h.update([1]);
                s(&mut h, l);
            }
            None => h.update([0]),
        }
    }
    h.finalize().into()
}

/// A synchronised service: one node's instance, as the engine and the node drive it.
pub trait Service: Send {
    /// Returns its number (services sync in ascending order; unique in the registry).
    fn id(&self) -> ServiceId;
    /// Returns its name, as configs, the control socket and records spell it.
    fn name(&self) -> &'static str;

    /// Starts a sync: record temporary state for `sync_process`.
    fn sync_init(&mut self, ctx: &SyncContext);
    /// Returns a token of the committed state, sent in the service list: members whose
    /// tokens are equal hold identical state (the default, 0, says "assume identical").
    fn state_token(&self) -> u64 {
        0
    }
    /// Receives every member's token for this service, once all service lists are in and
    /// before the first `sync_process`.
    fn sync_members(&mut self, _tokens: &BTreeMap<NodeId, u64>) {}
    /// Sends this node's share of the sync; may stop when the outbox is full.
    fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress;
    /// Receives a sync message of this service (current ring only), with its sender;
    /// returns what it decided about a conflict, if it resolved one (a `sync` record with
    /// phase `conflict`).
    fn sync_deliver(&mut self, sender: NodeId, payload: &[u8]) -> Option<String>;
    /// Every member finished: replace the committed state with the synchronised one.
    fn sync_activate(&mut self);
    /// The sync was cut short: drop its temporary state.
    fn sync_abort(&mut self);

    /// Applies an operation delivered outside sync (its own encoding; garbage is counted
    /// and dropped, never a panic).
    fn deliver_op(&mut self, sender: NodeId, payload: &[u8]);

    /// Applies an operation with how it was delivered (see [`OpDelivery`]); the default
    /// ignores the context and calls [`Service::deliver_op`]. A service whose operations
    /// may only apply where every member applies the same sequence (the store: only safe
    /// deliveries of a regular configuration) overrides this.
    fn deliver_op_in(&mut self, d: &OpDelivery, payload: &[u8]) {
        self.deliver_op(d.sender, payload);
    }

    /// Returns whether its operations are submitted safe (delivered only once every member
    /// of the configuration has received them) rather than agreed (the default).
    fn safe_ops(&self) -> bool {
        false
    }

    /// Carries out a control command (the JSON of its typed command, as its
    /// [`Plugin::parse_args`] builds it): returns the operations to submit and the typed
    /// reply, or why it refused (a refused command changes nothing).
    fn control(
        &mut self,
        request: &serde_json::Value,
        ctx: &ControlContext,
    ) -> Result<Control, ControlError>;

    /// Returns a digest of the committed state: equal on every member after a sync.
    fn digest(&self) -> [u8; 32];
    /// Returns how much state it holds.
    fn size(&self) -> StateSize {
        StateSize::default()
    }
    /// Returns its counters that sum the members' shares (none by default).
    fn counters(&self) -> Counters {
        Counters::default()
    }
    /// Returns operations and sync messages it dropped as malformed.
    fn malformed(&self) -> u64 {
        0
    }
    /// Learns the time and whether the ring is operational (after every input of the node;
    /// its records and operations are drained right after). Nothing by default.
    fn tick(&mut self, _now: u64, _operational: bool) {}
    /// Returns when (ns) it next needs a [`Service::tick`] of its own (a timer of its: a
    /// takeover, a self-fence), so that its host wakes then rather than at its next input
    /// (none by default).
    fn poll_deadline(&self) -> Option<u64> {
        None
    }
    /// Returns the next operation it submits of its own accord (a resource's stop, after a
    /// configuration change), which the app sends through the ring like a control command's
    /// (none by default).
    fn poll_op(&mut self) -> Option<Bytes> {
        None
    }
    /// Takes a datagram of its own from `from` at `now`: point to point, outside the ring
    /// (the store's chunk transfers), as its host received it (the app's framing taken
    /// off). Its records and operations are drained right after. Nothing by default.
    fn handle_datagram(&mut self, _now: u64, _from: NodeId, _data: &[u8]) {}
    /// Returns the next datagram it sends point to point at `now`: (to, bytes). None by
    /// default.
    fn poll_datagram(&mut self, _now: u64) -> Option<(NodeId, Bytes)> {
        None
    }
    /// Starts queueing [`FileChange`]s for a real directory (a host that keeps one calls
    /// this once, before any input). Nothing by default.
    fn set_mirror(&mut self, _on: bool) {}
    /// Returns the next change to its real directory (none by default).
    fn poll_file_change(&mut self) -> Option<FileChange> {
        None
    }
    /// Returns the [`listing_digest`] its real directory must show (none: it keeps none).
    fn tree_digest(&self) -> Option<[u8; 32]> {
        None
    }
    /// Returns the next [`Action`] it asks its host to carry out (none by default).
    fn poll_action(&mut self) -> Option<Action> {
        None
    }
    /// Learns how the action `id` ended, at `now` (ns); its records and operations are
    /// drained right after.
    fn action_done(&mut self, _now: u64, _id: u64, _result: ActionResult) {}
    /// The node is leaving: give up what it holds (stopping resources, say) so that others
    /// take over at once. Nothing by default.
    fn quit(&mut self) {}
    /// Returns whether it holds nothing and runs no action (a quitting node leaves then).
    fn is_idle(&self) -> bool {
        true
    }
    /// Returns its next event record (its own `ev` kinds; the `sync` records are the
    /// engine's).
    fn poll_record(&mut self) -> Option<Body> {
        None
    }
    /// Returns whether it has local work pending (a long step it runs in slices, see
    /// [`Service::do_work`]); none by default. While any service has, its
    /// [`ServiceApp`](crate::ServiceApp) holds every other input in a backlog, so the step
    /// stays as atomic as if it had run in one call.
    fn has_work(&self) -> bool {
        false
    }
    /// Runs one bounded slice of its pending work at `now` (ns), as large as the service's
    /// own configuration says (`reint_slice` records, for `kml`). Its records and operations
    /// are drained right after. Nothing by default.
    fn do_work(&mut self, _now: u64) {}
}

/// The static side of a service: what the [registry](crate::registry) needs to make one,
/// parse its control commands on a client and draw its workload.
pub trait Plugin: Service + Sized + 'static {
    /// Its name (configs: `services = ["NAME"]`; `--services NAME`; `svc NAME`).
    const NAME: &'static str;
    /// Its number.
    const ID: ServiceId;

    /// Returns the service of node `me`, empty.
    fn new(me: NodeId) -> Self;

    /// Returns the service of node `me`, empty, configured by `cfg` (its own section parsed
    /// into its own typed config). The default takes no section: a null one gives
    /// [`Plugin::new`], anything else is refused.
    fn configure(me: NodeId, cfg: &ServiceConfig) -> Result<Self, ServiceConfigError> {
        if cfg.section.is_null() {
            Ok(Self::new(me))
        } else {
            Err(ServiceConfigError {
                service: Self::NAME,
                reason: "this service takes no configuration".into(),
            })
        }
    }

    /// Builds its typed control command from `ringlab ctl SOCK svc NAME [VERB] key=value...`
    /// (a leading word without `=` comes as `op`), checking every argument it can without
    /// the node; returns the command's JSON.
    fn parse_args(args: &Args<'_>) -> Result<serde_json::Value, ControlError>;

    /// Returns one random operation of its workload (the payload `deliver_op` takes), drawn
    /// from `rng` only, so a seed replays it.
    fn workload_op(rng: &mut dyn rand::RngCore, w: &Workload) -> Bytes;
}
