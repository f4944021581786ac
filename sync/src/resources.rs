//! The resources service: which node runs which resource group, decided from the agreed
//! configuration and the holdings the sync engine brings together at every configuration
//! change. Sans-IO: starting or stopping a resource is an [`Action`] the service hands its
//! host (a real node runs the group's `start` or `stop` command with a timeout; the
//! simulator completes it after a delay it draws) and whose outcome comes back through
//! [`Service::action_done`].
//!
//! # The seed, and what it got wrong
//! The seed is a heartbeat patch of May 2000 (Luis Claudio R. Goncalves to Alan Robertson,
//! `heartbeat-startup-resources.txt`, heartbeat's `doc/nice_failback.txt`): a starting node
//! multicasts a "resources held" message (none, local, foreign, all), waits a request delay
//! (`RQSTDELAY`, 10 s) and then takes its own resources and whatever nobody claimed. It has
//! no quorum and no fencing, so after a partition each side takes the other side's resources
//! and, on the merge, both hold them: double ownership ("the other guy probably has them"),
//! which heartbeat later answered with STONITH as a precondition for taking over and with
//! quorum (pacemaker's `no-quorum-policy=stop`, corosync's votequorum).
//!
//! # Policies
//! - `primary` (the default) fixes it with quorum and agreed order. Ownership is a pure
//!   function of the agreed regular configuration and the holdings every member reported in
//!   the sync: only a primary component holds resources (a strict majority of the configured
//!   nodes; with `two_node`, as corosync's votequorum, one of two suffices but only after
//!   both were seen together once, `wait_for_all`; `auto_tie_breaker` gives an even split to
//!   the half with the lowest node id); in it each group goes to its home node if
//!   present (when the group is free, or with `auto_failback`), else stays with its current
//!   holder (stickiness), else goes to the lowest member id. A move is a stop on the old
//!   holder, multicast as an operation (`stopped`) and so delivered in agreed order, before
//!   the start on the new holder, which starts on that delivery. A group whose holder has
//!   left the configuration (or that nobody runs) starts a takeover delay after the
//!   placement: no one can know that a holder cut off unseen has stopped, so a holder out of
//!   any operational ring for `fence_ms` (2 s) stops everything, as a watchdog would, and
//!   the takeover waits that plus the longest stop the holder can be in (a start under way,
//!   `start_timeout_ms`, then every resource of the largest group, `stop_timeout_ms` each)
//!   plus 1.5 s for the token timeout and consensus by which it notices: 13.5 s with the
//!   defaults, `takeover_ms` to set it (refused if not above fence + longest stop). A fencing
//!   device would let it start at once; there is none here. When every configured node is in
//!   the configuration (a cold start, say), a group none of them reports is known stopped
//!   and starts at once. A node whose component is not
//!   primary stops everything it holds at the configuration change, and nothing starts on a
//!   node whose ring is not operational (the old ring's last deliveries during recovery
//!   must not start a group on a node that may land in a minority). `two_node` alone is unsafe in a 1|1
//!   split (the network between two live nodes cut): both halves are quorate, as with
//!   votequorum, and both hold the groups; corosync relies on a fencing race there, and
//!   without a fencing device the only safe answer is `auto_tie_breaker`, which the
//!   simulator's tests show both ways.
//! - `heartbeat2000`: the seed as written, on N nodes, to be measured and to show its hazard:
//!   at every configuration each node reports what it holds (the sync of holdings plays the
//!   "resources held" messages) and then takes its home groups that nobody claimed, and the
//!   lowest member takes any other group nobody claimed (the seed had two nodes, so "the
//!   other side's" resources; the lowest id is the N-node tie-break); during the first
//!   `request_delay_ms` (10 s) after its start a node waits that long before taking, and
//!   takes only what is still unclaimed then. It never stops for want of quorum and never
//!   gives a group up on a merge.
//!
//! # State
//! Synchronised: the holders map (group → the node running it), rebuilt at every sync from
//! what each member reports it runs and kept up to date by the `started` and `stopped`
//! operations; equal on every member once the operations are delivered (the digest).
//! Local: the groups this node runs, whether its component is primary, and the targets of
//! the last placement.
//!
//! # Starts, stops and their failures
//! A group is an ordered list of resources (`primitives`; none: one named after the group),
//! started in order and stopped in reverse, one command at a time, as pacemaker runs a group.
//! The group is held from its first start command's beginning to its last stop command's
//! end, and reported as held in every sync meanwhile. A stop asked for while a start runs
//! follows it. A failed start (non-zero exit, timeout, or a command that cannot run) is
//! recorded (`start_failed`), the resources begun are stopped (the failed one too: its state
//! is unknown), and then, with `start_failure_is_fatal` (the default, as pacemaker's), the
//! node *refuses* the group: it multicasts `refused`, every member places the group again
//! without it, and its target starts it at once (it is known stopped). Without it the node
//! retries in place until `migration_threshold` starts have failed. A refusal lasts until
//! the node restarts or `svc resources cleanup name=GROUP` clears it. A failed stop leaves
//! the group *blocked* on the node (held: it may still run): the node multicasts `blocked`,
//! the block is agreed state reported in every sync by every member (so it outlives the
//! node's absence), and no member starts the group anywhere until the node stops it (a
//! `cleanup` there retries the stop) or, the node being absent, a `cleanup` on a member
//! lifts the block (the operator says it is stopped there, as `stonith_admin --confirm`).
//! A stop that fails while its node is cut off cannot be told to anyone: the majority takes
//! the group over after the takeover delay and it may then run twice; without a fencing
//! device nothing safer exists (said in the README). A node that quits stops and refuses
//! everything first, and refuses the groups it was about to take, so the others take them
//! at once.
//!
//! # Workload
//! The service has no random operations worth making: its workload is the empty operation,
//! a no-op (`deliver_op` ignores an empty payload), so a simulated run exercises it through
//! its faults alone.
//!
//! # Records
//! `{"ev":"quorum","primary":..,"ring":..,"members":[..],"groups":[..],"settle_ms":..}` at
//! every regular configuration (`settle_ms`: the bound within which a stable primary
//! component has placed every group, see [`ResourcesConfig::settle_ms`]), and
//! `{"ev":"resource","action":..,"name":GROUP,"resource":..,"ring":..,"home":..}` when a
//! command begins (`starting`, `stopping` with its `reason`) and when it ends (`start`,
//! `stop`, `start_failed`, `stop_failed`, with `cmd_us`, and `exit` and `error` on a
//! failure).

use crate::control::{Args, Control, ControlContext, ControlError};
use crate::engine::{Outbox, Progress, SyncContext};
use crate::msg::ServiceId;
use crate::service::{
    Action, ActionResult, Plugin, Service, ServiceConfig, ServiceConfigError, StateSize, Verb,
    Workload,
};
use bytes::Bytes;
use ringlab_records::Body;
use ringlab_ring::wire::{DecodeError, Reader};
use ringlab_ring::{NodeId, RingId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The resources service's number.
pub const RESOURCES_SERVICE: ServiceId = 3;

/// The most resource groups a config may name.
pub const MAX_GROUPS: usize = 1024;

/// The most resources one group may have.
pub const MAX_PRIMITIVES: usize = 64;

/// The longest start or stop command a config may give (bytes).
pub const MAX_COMMAND: usize = 4096;

/// What the settle bound adds for the delivery of the operations of a move (ms).
pub const SETTLE_MARGIN_MS: u64 = 1_000;

/// What a derived takeover delay adds to the fence and the longest stop (ms): the token
/// timeout and consensus by which a cut-off holder notices, with room.
pub const TAKEOVER_MARGIN_MS: u64 = 1_500;

/// How ownership is decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Quorum plus agreed placement (the default).
    #[default]
    Primary,
    /// The seed as written: no quorum, take what nobody claims.
    Heartbeat2000,
}

/// One resource group (`[[resources]] name = "web", home = 2`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// The node it prefers.
    pub home: NodeId,
    /// Its resources, started in this order and stopped in reverse (a haresources line:
    /// `2 IPaddr::10.0.0.1 httpd`); none: one resource named after the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primitives: Vec<String>,
    /// The command that starts one of its resources (`sh -c`, with `RINGLAB_GROUP`,
    /// `RINGLAB_RESOURCE`, `RINGLAB_ACTION`, `RINGLAB_NODE` and `RINGLAB_STATE_DIR` in its
    /// environment); none: the node creates the file `resources/RESOURCE` in its state
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// The command that stops one of its resources; none: the node removes that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
}

impl Group {
    /// Returns its resources (its own name when it lists none).
    pub fn resources(&self) -> Vec<&str> {
        if self.primitives.is_empty() {
            vec![self.name.as_str()]
        } else {
            self.primitives.iter().map(String::as_str).collect()
        }
    }
}

/// The service's configuration (its section of the node's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    /// How ownership is decided.
    #[serde(default)]
    pub policy: Policy,
    /// Whether a returning home node takes its group back.
    #[serde(default)]
    pub auto_failback: bool,
    /// Two configured nodes: one of them is quorate (after both were seen, `wait_for_all`).
    #[serde(default)]
    pub two_node: bool,
    /// Quorate only after every configured node was seen together once (implied by
    /// `two_node`).
    #[serde(default)]
    pub wait_for_all: bool,
    /// In a split into exactly half the configured nodes, the half with the lowest
    /// configured node id is quorate, the other not (corosync's `auto_tie_breaker`; with
    /// `two_node` it decides a 1|1 split, at the price that the survivor of a crash of the
    /// lowest node is not quorate).
    #[serde(default)]
    pub auto_tie_breaker: bool,
    /// The resource groups.
    #[serde(default = "default_groups")]
    pub resources: Vec<Group>,
    /// Self-fencing: a holder out of any operational ring this long (ms) stops everything,
    /// as a watchdog would (policy primary).
    #[serde(default = "default_fence_ms")]
    pub fence_ms: u64,
    /// A group nobody runs is started this long (ms) after the placement that gives it,
    /// so that a holder cut off unseen has fenced itself and finished stopping first (a ring
    /// breaks for all its members within about one token timeout). It must exceed
    /// `fence_ms` plus the longest stop a holder can be in: a start under way
    /// (`start_timeout_ms`) and then every resource of the largest group stopped
    /// (`stop_timeout_ms` each). Unset: that plus [`TAKEOVER_MARGIN_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover_ms: Option<u64>,
    /// `heartbeat2000`: how long (ms) after its start a node waits for others' claims before
    /// taking unclaimed groups (the seed's `RQSTDELAY`, 10 s); later takeovers are at once.
    #[serde(default = "default_request_delay_ms")]
    pub request_delay_ms: u64,
    /// How long a start command may run (ms) before it is killed and counts as failed.
    #[serde(default = "default_op_timeout_ms")]
    pub start_timeout_ms: u64,
    /// How long a stop command may run (ms) before it is killed and counts as failed.
    #[serde(default = "default_op_timeout_ms")]
    pub stop_timeout_ms: u64,
    /// Whether one failed start moves the group away from the node at once (pacemaker's
    /// `start-failure-is-fatal`, default true); if false the node retries in place until
    /// `migration_threshold` starts have failed.
    #[serde(default = "default_true")]
    pub start_failure_is_fatal: bool,
    /// Failed starts of a group a node tries before it gives the group up (only when
    /// `start_failure_is_fatal` is false; at least 1).
    #[serde(default = "default_migration_threshold")]
    pub migration_threshold: u32,
}

fn default_request_delay_ms() -> u64 {
    10_000
}

fn default_fence_ms() -> u64 {
    2_000
}

fn default_op_timeout_ms() -> u64 {
    5_000
}

fn default_true() -> bool {
    true
}

fn default_migration_threshold() -> u32 {
    3
}

fn default_groups() -> Vec<Group> {
    [("web", 1), ("db", 2), ("mail", 3)]
        .into_iter()
        .map(|(name, home)| Group {
            name: name.into(),
            home,
            primitives: vec![],
            start: None,
            stop: None,
        })
        .collect()
}

impl Default for ResourcesConfig {
    fn default() -> Self {
        Self {
            policy: Policy::Primary,
            auto_failback: false,
            two_node: false,
            wait_for_all: false,
            auto_tie_breaker: false,
            resources: default_groups(),
            fence_ms: default_fence_ms(),
            takeover_ms: None,
            request_delay_ms: default_request_delay_ms(),
            start_timeout_ms: default_op_timeout_ms(),
            stop_timeout_ms: default_op_timeout_ms(),
            start_failure_is_fatal: true,
            migration_threshold: default_migration_threshold(),
        }
    }
}

impl ResourcesConfig {
    /// Parses and checks a config section (null: the defaults, groups web@1, db@2, mail@3)
    /// for a cluster of `nodes`.
    pub fn parse(
        section: &serde_json::Value,
        nodes: &[NodeId],
    ) -> Result<Self, ServiceConfigError> {
        let bad = |reason: String| ServiceConfigError {
            service: ResourcesService::NAME,
            reason,
        };
        let cfg: Self = if section.is_null() {
            Self::default()
        } else {
            serde_json::from_value(section.clone()).map_err(|e| bad(e.to_string()))?
        };
        if cfg.resources.len() > MAX_GROUPS {
            return Err(bad(format!(
                "resources: {} groups, at most {MAX_GROUPS}",
                cfg.resources.len()
            )));
        }
        let mut names = BTreeSet::new();
        for g in &cfg.resources {
            if g.name.is_empty() || !names.insert(g.name.as_str()) {
                return Err(bad(format!(
                    "resources: name {:?} empty or repeated",
                    g.name
                )));
            }
            if g.primitives.len() > MAX_PRIMITIVES {
                return Err(bad(format!(
                    "resources {:?}: {} primitives, at most {MAX_PRIMITIVES}",
                    g.name,
                    g.primitives.len()
                )));
            }
            let mut seen = BTreeSet::new();
            for p in &g.primitives {
                if p.is_empty() || !seen.insert(p.as_str()) {
                    return Err(bad(format!(
                        "resources {:?}: primitive {p:?} empty or repeated",
                        g.name
                    )));
                }
            }
            for (key, cmd) in [("start", &g.start), ("stop", &g.stop)] {
                if let Some(c) = cmd {
                    if c.trim().is_empty() || c.len() > MAX_COMMAND {
                        return Err(bad(format!(
                            "resources {:?}: {key} command empty or over {MAX_COMMAND} bytes",
                            g.name
                        )));
                    }
                }
            }
        }
        for (knob, ms) in [
            ("fence_ms", cfg.fence_ms),
            ("takeover_ms", cfg.takeover_ms.unwrap_or(0)),
            ("request_delay_ms", cfg.request_delay_ms),
            ("start_timeout_ms", cfg.start_timeout_ms),
            ("stop_timeout_ms", cfg.stop_timeout_ms),
        ] {
            if ms > ringlab_ring::config::DURATION_MAX_MS {
                return Err(bad(format!(
                    "{knob} {ms} is above one day ({} ms)",
                    ringlab_ring::config::DURATION_MAX_MS
                )));
            }
        }
        for (knob, ms) in [
            ("start_timeout_ms", cfg.start_timeout_ms),
            ("stop_timeout_ms", cfg.stop_timeout_ms),
        ] {
            if ms == 0 {
                return Err(bad(format!("{knob} must be at least 1")));
            }
        }
        if cfg.migration_threshold == 0 || cfg.migration_threshold > 1_000 {
            return Err(bad(format!(
                "migration_threshold {} must be 1 to 1000",
                cfg.migration_threshold
            )));
        }
        let least = cfg.fence_ms + cfg.longest_stop_ms();
        if let Some(t) = cfg.takeover_ms.filter(|&t| t <= least) {
            return Err(bad(format!(
                "takeover_ms {t} must exceed fence_ms + start_timeout_ms + {} x stop_timeout_ms \
                 = {least} (a holder cut off must have fenced and stopped first)",
                cfg.most_resources()
            )));
        }
        if cfg.two_node && nodes.len() != 2 {
            return Err(bad(format!(
                "two_node: the cluster has {} nodes, not 2",
                nodes.len()
            )));
        }
        Ok(cfg)
    }

    /// Parses a command-line list `web:2,db:3` (name:home) into groups.
    pub fn parse_groups(list: &str) -> Result<Vec<Group>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let (name, home) = s
                    .split_once(':')
                    .ok_or_else(|| format!("{s:?}: expected name:home"))?;
                let home = home
                    .parse()
                    .map_err(|_| format!("{s:?}: home {home:?} is not a node id"))?;
                Ok(Group {
                    name: name.to_string(),
                    home,
                    primitives: vec![],
                    start: None,
                    stop: None,
                })
            })
            .collect()
    }

    /// Returns the most resources one group has.
    pub fn most_resources(&self) -> u64 {
        self.resources
            .iter()
            .map(|g| g.resources().len() as u64)
            .max()
            .unwrap_or(1)
    }

    /// Returns the longest a holder can take to stop a group once it must (ms): a start
    /// under way first, then every resource of the largest group.
    pub fn longest_stop_ms(&self) -> u64 {
        self.start_timeout_ms + self.most_resources() * self.stop_timeout_ms
    }

    /// Returns the takeover delay (ms): `takeover_ms`, or derived from the knobs.
    pub fn takeover(&self) -> u64 {
        self.takeover_ms
            .unwrap_or(self.fence_ms + self.longest_stop_ms() + TAKEOVER_MARGIN_MS)
    }

    /// Returns how long (ms) after its sync a stable primary component must have placed
    /// every group it can (none for `heartbeat2000`, which promises nothing): the takeover
    /// delay, then a move's stop and start of every resource at their timeouts, and a margin
    /// for the operations' delivery.
    pub fn settle_ms(&self) -> Option<u64> {
        if self.policy == Policy::Heartbeat2000 {
            return None;
        }
        let most = self.most_resources();
        Some(
            self.takeover()
                + most * (self.start_timeout_ms + self.stop_timeout_ms)
                + SETTLE_MARGIN_MS,
        )
    }
}

/// An operation of the service (one byte of kind, the group's index as a u16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceOp {
    /// The sender began starting the group (it holds it from now on).
    Started(u16),
    /// The sender stopped the group.
    Stopped(u16),
    /// The sender stopped the group and may not hold it again: its start failed
    /// (`start_failure_is_fatal`, or `migration_threshold` reached) or it is leaving. The
    /// group is placed again without it, at once (it is known stopped).
    Refused(u16),
    /// The sender's refusal of the group is cleared (`svc resources cleanup`); a block whose
    /// node is not a member is lifted (the operator says it is stopped there).
    Cleared(u16),
    /// A stop of the group failed on the sender: it may still run there, so nobody else
    /// starts it until that node stops it (after `cleanup`) or a cleanup lifts the block.
    Blocked(u16),
}

impl ResourceOp {
    /// Returns its encoding.
    pub fn encode(self) -> Bytes {
        let (k, g) = match self {
            Self::Started(g) => (1u8, g),
            Self::Stopped(g) => (2u8, g),
            Self::Refused(g) => (3u8, g),
            Self::Cleared(g) => (4u8, g),
            Self::Blocked(g) => (5u8, g),
        };
        let mut b = vec![k];
        b.extend_from_slice(&g.to_be_bytes());
        Bytes::from(b)
    }

    /// Decodes one (a typed error for garbage, never a panic).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let k = r.u8("resource op kind")?;
        let g = r.u16("resource group")?;
        r.end()?;
        match k {
            1 => Ok(Self::Started(g)),
            2 => Ok(Self::Stopped(g)),
            3 => Ok(Self::Refused(g)),
            4 => Ok(Self::Cleared(g)),
            5 => Ok(Self::Blocked(g)),
            _ => Err(DecodeError::Invalid("resource op kind")),
        }
    }

    fn group(self) -> u16 {
        match self {
            Self::Started(g)
            | Self::Stopped(g)
            | Self::Refused(g)
            | Self::Cleared(g)
            | Self::Blocked(g) => g,
        }
    }
}

/// A sync message: the groups the sender holds, the groups it refuses, and the blocks it
/// knows of (its own and those agreed before, so that a block outlives its node's absence).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Groups it holds (starting, running, stopping or blocked).
    pub held: Vec<u16>,
    /// Groups it may not hold (a failed start, or leaving).
    pub refused: Vec<u16>,
    /// (group, node) blocks: a stop of the group failed on the node.
    pub blocked: Vec<(u16, NodeId)>,
}

impl Holdings {
    /// Returns its encoding: two bounded lists of group indexes.
    pub fn encode(&self) -> Bytes {
        let mut b = Vec::with_capacity(6 + 2 * (self.held.len() + self.refused.len()));
        for list in [&self.held, &self.refused] {
            b.extend_from_slice(&(list.len() as u16).to_be_bytes());
            for g in list {
                b.extend_from_slice(&g.to_be_bytes());
            }
        }
        b.extend_from_slice(&(self.blocked.len() as u16).to_be_bytes());
        for (g, n) in &self.blocked {
            b.extend_from_slice(&g.to_be_bytes());
            b.extend_from_slice(&n.to_be_bytes());
        }
        Bytes::from(b)
    }

    /// Decodes one (a typed error for garbage, never a panic).
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let mut lists = [vec![], vec![]];
        for (list, what) in lists.iter_mut().zip(["holdings count", "refused count"]) {
            let n = r.count(what, MAX_GROUPS)?;
            list.reserve(n);
            for _ in 0..n {
                list.push(r.u16("holdings group")?);
            }
        }
        let n = r.count("blocked count", MAX_GROUPS)?;
        let mut blocked = Vec::with_capacity(n);
        for _ in 0..n {
            blocked.push((r.u16("blocked group")?, r.u32("blocked node")?));
        }
        r.end()?;
        let [held, refused] = lists;
        Ok(Self {
            held,
            refused,
            blocked,
        })
    }
}

/// Its control commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Holdings and quorum.
    Status,
    /// Clears this node's failures of a group (its refusal, its failed starts) and retries a
    /// blocked stop (`crm_resource --cleanup`).
    Cleanup {
        /// The group.
        name: String,
    },
}

/// The reply to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Always true.
    pub ok: bool,
    /// The policy.
    pub policy: Policy,
    /// Whether this node's component is primary.
    pub primary: bool,
    /// Its members.
    pub members: Vec<NodeId>,
    /// Members a primary component needs (0: the policy has no quorum).
    pub quorum: usize,
    /// The groups this node has fully started.
    pub running: Vec<String>,
    /// What this node does with each group it holds: `starting`, `running`, `stopping` or
    /// `blocked` (a stop failed).
    pub local: BTreeMap<String, String>,
    /// The agreed holder of each held group.
    pub holders: BTreeMap<String, NodeId>,
    /// The agreed refusals: group → the nodes that may not hold it.
    pub refused: BTreeMap<String, Vec<NodeId>>,
    /// The agreed blocks: group → the node where its stop failed.
    #[serde(default)]
    pub blocked: BTreeMap<String, NodeId>,
}

/// The reply to `cleanup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleaned {
    /// Always true.
    pub ok: bool,
    /// The group.
    pub name: String,
    /// Whether a blocked stop is being retried.
    pub retrying_stop: bool,
}

/// What happens once a group's resources are all stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterStop {
    /// Say so (`stopped`): the group may be placed on another member.
    Release,
    /// Refuse the group (`refused`): a failed start, or the node is leaving.
    Refuse,
    /// Start it again here (a failed start below the migration threshold).
    Retry,
}

/// What this node does with one group it holds (local truth; a group it does not hold has
/// no entry).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Local {
    /// Starting its resources in order; `step` is the one whose command runs.
    Starting {
        step: usize,
        action: u64,
        began: u64,
        /// A stop was asked for meanwhile (why): it follows the start.
        then_stop: Option<&'static str>,
    },
    /// Every resource started.
    Running,
    /// Stopping its resources in reverse; `step` is the one whose command runs.
    Stopping {
        step: usize,
        action: u64,
        began: u64,
        reason: &'static str,
        then: AfterStop,
    },
    /// A stop failed: the group may still run here, so it stays held until `cleanup`.
    Blocked,
}

impl Local {
    fn word(&self) -> &'static str {
        match self {
            Self::Starting { .. } => "starting",
            Self::Running => "running",
            Self::Stopping { .. } => "stopping",
            Self::Blocked => "blocked",
        }
    }
}

/// The resources service of one node.
pub struct ResourcesService {
    me: NodeId,
    cfg: ResourcesConfig,
    nodes: Vec<NodeId>,
    /// Agreed: group → holder.
    holders: BTreeMap<u16, NodeId>,
    /// Agreed: (group, node) pairs where the node may not hold the group.
    refused: BTreeSet<(u16, NodeId)>,
    /// Agreed: groups a stop of which failed, and on which node (nobody else starts them).
    blocked: BTreeMap<u16, NodeId>,
    /// Whether the ring was operational at the last tick (nothing starts otherwise).
    operational: bool,
    /// Local truth: what this node does with each group it holds.
    local: BTreeMap<u16, Local>,
    /// Failed starts per group since the last cleanup (local).
    failures: BTreeMap<u16, u32>,
    /// Groups this node refuses, said or still to be said (local: it reports them in every
    /// sync, so a refusal whose operation a configuration change delayed still counts).
    refusing: BTreeSet<u16>,
    /// This node is leaving: it refuses every group.
    quitting: bool,
    primary: bool,
    seen_all: bool,
    ring: RingId,
    members: Vec<NodeId>,
    /// Where each group goes, from the last placement (empty while a sync runs).
    targets: BTreeMap<u16, NodeId>,
    /// Groups whose holder's stop was delivered in this configuration and nobody started
    /// since: known stopped everywhere, so they may start at once.
    released: BTreeSet<u16>,
    /// The running sync: what each member reported.
    reported: BTreeMap<NodeId, Holdings>,
    sent: bool,
    records: VecDeque<Body>,
    ops: VecDeque<Bytes>,
    actions: VecDeque<Action>,
    next_action: u64,
    malformed: u64,
    /// The last time a tick or an action's end gave.
    now: u64,
    /// Since when the ring is not operational.
    unsure_since: Option<u64>,
    /// Free groups this node starts at these times (ns).
    pending: BTreeMap<u16, u64>,
    /// When this node started (its first tick).
    started_at: Option<u64>,
}

impl ResourcesService {
    /// Creates the service of node `me` in a cluster of `nodes` with `cfg`.
    pub fn with(me: NodeId, nodes: &[NodeId], cfg: ResourcesConfig) -> Self {
        let nodes = if nodes.is_empty() {
            vec![me]
        } else {
            nodes.to_vec()
        };
        Self {
            me,
            cfg,
            nodes,
            holders: BTreeMap::new(),
            refused: BTreeSet::new(),
            blocked: BTreeMap::new(),
            operational: false,
            local: BTreeMap::new(),
            failures: BTreeMap::new(),
            refusing: BTreeSet::new(),
            quitting: false,
            primary: false,
            seen_all: false,
            ring: RingId { rep: me, seq: 0 },
            members: vec![],
            targets: BTreeMap::new(),
            released: BTreeSet::new(),
            reported: BTreeMap::new(),
            sent: false,
            records: VecDeque::new(),
            ops: VecDeque::new(),
            actions: VecDeque::new(),
            next_action: 0,
            malformed: 0,
            now: 0,
            unsure_since: None,
            pending: BTreeMap::new(),
            started_at: None,
        }
    }

    /// Returns the members a primary component needs (0 for `heartbeat2000`).
    pub fn quorum(&self) -> usize {
        match self.cfg.policy {
            Policy::Heartbeat2000 => 0,
            Policy::Primary if self.cfg.two_node => 1,
            Policy::Primary => self.nodes.len() / 2 + 1,
        }
    }

    /// Returns whether a component of `members` is primary, given whether every configured
    /// node has been seen together.
    fn is_primary(&self, members: &[NodeId]) -> bool {
        if self.cfg.policy == Policy::Heartbeat2000 {
            return true;
        }
        let wait = self.cfg.wait_for_all || self.cfg.two_node;
        if wait && !self.seen_all {
            return false;
        }
        let counted = members.iter().filter(|m| self.nodes.contains(m)).count();
        if self.cfg.auto_tie_breaker && 2 * counted == self.nodes.len() {
            let lowest = self.nodes.iter().min();
            return lowest.is_some_and(|l| members.contains(l));
        }
        counted >= self.quorum()
    }

    /// Returns the groups this node has fully started.
    pub fn running(&self) -> Vec<&str> {
        self.local
            .iter()
            .filter(|(_, l)| **l == Local::Running)
            .map(|(&g, _)| self.name(g))
            .collect()
    }

    /// Returns whether this node holds nothing and runs no command (after [`Self::quit`],
    /// it may leave).
    pub fn is_idle(&self) -> bool {
        self.local.is_empty()
    }

    /// The node is leaving: stop every group and refuse it, so that the others place it
    /// without this node at once (a graceful shutdown, as pacemaker migrates resources away
    /// before it stops).
    pub fn quit(&mut self) {
        self.quitting = true;
        self.pending.clear();
        let held: Vec<u16> = self.local.keys().copied().collect();
        for g in held {
            self.stop(g, "quit");
            if let Some(Local::Stopping { then, .. }) = self.local.get_mut(&g) {
                *then = AfterStop::Refuse;
            }
        }
        // Groups it was to take, and does not hold: refused at once, so others take them.
        let targeted: Vec<u16> = self
            .targets
            .iter()
            .filter(|(g, t)| **t == self.me && !self.local.contains_key(g))
            .map(|(&g, _)| g)
            .collect();
        for g in targeted {
            self.refusing.insert(g);
            self.ops.push_back(ResourceOp::Refused(g).encode());
        }
    }

    fn name(&self, g: u16) -> &str {
        &self.cfg.resources[usize::from(g)].name
    }

    fn group(&self, g: u16) -> &Group {
        &self.cfg.resources[usize::from(g)]
    }

    /// Asks the host to run `verb` on resource `step` of group `g`; records its beginning.
    fn issue(&mut self, g: u16, verb: Verb, step: usize, reason: Option<&str>) -> u64 {
        self.next_action += 1;
        let id = self.next_action;
        let group = self.group(g);
        let resource = group.resources()[step].to_string();
        let (command, timeout_ms) = match verb {
            Verb::Start => (group.start.clone(), self.cfg.start_timeout_ms),
            Verb::Stop => (group.stop.clone(), self.cfg.stop_timeout_ms),
        };
        self.actions.push_back(Action {
            id,
            verb,
            group: group.name.clone(),
            resource: resource.clone(),
            command,
            timeout_ms,
        });
        let action = match verb {
            Verb::Start => "starting",
            Verb::Stop => "stopping",
        };
        self.record(action, g, reason, resource, None);
        id
    }

    fn record(
        &mut self,
        action: &str,
        g: u16,
        reason: Option<&str>,
        resource: String,
        ended: Option<(u64, &ActionResult)>,
    ) {
        let (cmd_us, exit, error) = match ended {
            None => (None, None, None),
            Some((began, result)) => {
                let us = self.now.saturating_sub(began) / 1_000;
                match result {
                    ActionResult::Ok => (Some(us), None, None),
                    ActionResult::Failed { exit, error } => (Some(us), *exit, Some(error.clone())),
                }
            }
        };
        self.records.push_back(Body::Resource {
            action: action.into(),
            name: self.name(g).to_string(),
            ring: self.ring,
            home: Some(self.group(g).home),
            reason: reason.map(String::from),
            resource: Some(resource),
            cmd_us,
            exit,
            error,
        });
    }

    /// Begins starting group `g` here (its first resource); claims it (`started`).
    fn start(&mut self, g: u16) {
        self.pending.remove(&g);
        // Never while the ring is not operational: a delivery of the old ring during
        // recovery must not start anything on a node that may land in a minority.
        if self.local.contains_key(&g)
            || self.quitting
            || !self.operational
            || self.refusing.contains(&g)
        {
            return;
        }
        self.released.remove(&g);
        let action = self.issue(g, Verb::Start, 0, None);
        self.local.insert(
            g,
            Local::Starting {
                step: 0,
                action,
                began: self.now,
                then_stop: None,
            },
        );
        self.ops.push_back(ResourceOp::Started(g).encode());
    }

    /// Begins stopping group `g` here (its last resource first), or marks a start under way
    /// to stop when it ends.
    fn stop(&mut self, g: u16, reason: &'static str) {
        let then = if self.quitting {
            AfterStop::Refuse
        } else {
            AfterStop::Release
        };
        match self.local.get_mut(&g) {
            None | Some(Local::Blocked) => {}
            Some(Local::Starting { then_stop, .. }) => {
                then_stop.get_or_insert(reason);
            }
            Some(Local::Stopping { then: t, .. }) => {
                // A retry in place is off once the group must go.
                if *t == AfterStop::Retry {
                    *t = then;
                }
            }
            Some(Local::Running) => {
                let last = self.group(g).resources().len() - 1;
                self.begin_stop(g, last, reason, then);
            }
        }
    }

    fn begin_stop(&mut self, g: u16, step: usize, reason: &'static str, then: AfterStop) {
        let action = self.issue(g, Verb::Stop, step, Some(reason));
        self.local.insert(
            g,
            Local::Stopping {
                step,
                action,
                began: self.now,
                reason,
                then,
            },
        );
    }

    fn stop_all(&mut self, reason: &'static str) {
        let held: Vec<u16> = self.local.keys().copied().collect();
        for g in held {
            self.stop(g, reason);
        }
    }

    /// Where group `g` goes in this configuration (policy primary): its home if present and
    /// not refusing it (when it is free, or with `auto_failback`), else its holder, else the
    /// lowest member not refusing it; none if every member refuses it.
    fn target(&self, g: u16) -> Option<NodeId> {
        if let Some(&h) = self.blocked.get(&g) {
            return Some(h); // It may still run there: nowhere else.
        }
        let ok = |n: &NodeId| self.members.contains(n) && !self.refused.contains(&(g, *n));
        let home = self.group(g).home;
        let cur = self.holders.get(&g).copied();
        if ok(&home) && (cur.is_none() || self.cfg.auto_failback) {
            return Some(home);
        }
        cur.or_else(|| self.members.iter().copied().filter(ok).min())
    }

    /// Places every group on the agreed holdings (primary policy).
    fn place(&mut self) {
        for g in 0..self.cfg.resources.len() as u16 {
            let Some(target) = self.target(g) else {
                self.targets.remove(&g);
                continue;
            };
            self.targets.insert(g, target);
            let everyone_here = self.nodes.iter().all(|n| self.members.contains(n));
            if target != self.me {
                self.stop(g, "move");
            } else if !self.holders.contains_key(&g) && everyone_here {
                // Every configured node is here and said what it holds: nobody runs it.
                self.released.insert(g);
                self.start(g);
            } else if !self.holders.contains_key(&g) {
                self.pending
                    .insert(g, self.now + self.cfg.takeover() * 1_000_000);
            }
            // Else: the holder stops and says so; this node starts on that delivery.
        }
    }

    /// Places group `g` again after a delivered stop, refusal or cleanup: a holder that is
    /// no longer its target stops it (a cleared home takes its group back with
    /// `auto_failback`); a group known stopped everywhere starts on its target at once.
    fn replace(&mut self, g: u16) {
        match self.target(g) {
            Some(t) => {
                self.targets.insert(g, t);
                if t != self.me {
                    self.stop(g, "move");
                } else if !self.holders.contains_key(&g) {
                    if self.released.contains(&g) {
                        self.start(g);
                    } else {
                        // Not known stopped (its holder left): the takeover delay.
                        self.pending
                            .entry(g)
                            .or_insert(self.now + self.cfg.takeover() * 1_000_000);
                    }
                }
            }
            None => {
                self.targets.remove(&g);
            }
        }
    }

    /// Takes what nobody claimed (heartbeat2000): home groups by their home, others by the
    /// lowest member. Never gives anything up.
    fn take_unclaimed(&mut self) {
        let groups = self.cfg.resources.len() as u16;
        let lowest = self.members.iter().copied().min();
        for g in 0..groups {
            if self.holders.contains_key(&g) {
                continue;
            }
            let home = self.group(g).home;
            let taker = if self.members.contains(&home) {
                Some(home)
            } else {
                lowest
            };
            if taker == Some(self.me) {
                self.targets.insert(g, self.me);
                let at =
                    self.started_at.unwrap_or(self.now) + self.cfg.request_delay_ms * 1_000_000;
                if at <= self.now {
                    self.start(g);
                } else {
                    self.pending.insert(g, at);
                }
            }
        }
    }

    fn valid(&self, g: u16) -> bool {
        usize::from(g) < self.cfg.resources.len()
    }

    fn status(&self) -> Status {
        let mut refused: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
        for &(g, n) in &self.refused {
            refused.entry(self.name(g).to_string()).or_default().push(n);
        }
        Status {
            ok: true,
            policy: self.cfg.policy,
            primary: self.primary,
            members: self.members.clone(),
            quorum: self.quorum(),
            running: self.running().into_iter().map(String::from).collect(),
            local: self
                .local
                .iter()
                .map(|(&g, l)| (self.name(g).to_string(), l.word().to_string()))
                .collect(),
            holders: self
                .holders
                .iter()
                .map(|(&g, &h)| (self.name(g).to_string(), h))
                .collect(),
            refused,
            blocked: self
                .blocked
                .iter()
                .map(|(&g, &n)| (self.name(g).to_string(), n))
                .collect(),
        }
    }

    fn cleanup(&mut self, name: &str) -> Result<Control, ControlError> {
        let g = self
            .cfg
            .resources
            .iter()
            .position(|x| x.name == name)
            .ok_or_else(|| {
                ControlError::BadCommand(format!("svc resources cleanup: no group {name:?}"))
            })? as u16;
        self.failures.remove(&g);
        self.refusing.remove(&g);
        let retrying_stop = self.local.get(&g) == Some(&Local::Blocked);
        if retrying_stop {
            let last = self.group(g).resources().len() - 1;
            self.begin_stop(g, last, "cleanup", AfterStop::Release);
        }
        // Always said (a refusal of ours may still be on its way): harmless otherwise.
        let ops = vec![ResourceOp::Cleared(g).encode().to_vec()];
        let first = self.group(g).resources()[0].to_string();
        self.record("cleanup", g, None, first, None);
        let reply = Cleaned {
            ok: true,
            name: name.to_string(),
            retrying_stop,
        };
        Ok(Control::new(ops, &reply))
    }

    /// A start of resource `step` of group `g` ended.
    fn start_ended(
        &mut self,
        g: u16,
        step: usize,
        began: u64,
        then_stop: Option<&'static str>,
        result: ActionResult,
    ) {
        let resource = self.group(g).resources()[step].to_string();
        let n = self.group(g).resources().len();
        match (&result, then_stop) {
            (ActionResult::Ok, Some(reason)) => {
                self.record("start", g, None, resource, Some((began, &result)));
                let then = if self.quitting {
                    AfterStop::Refuse
                } else {
                    AfterStop::Release
                };
                self.begin_stop(g, step, reason, then);
            }
            (ActionResult::Ok, None) => {
                self.record("start", g, None, resource, Some((began, &result)));
                if step + 1 < n {
                    let action = self.issue(g, Verb::Start, step + 1, None);
                    self.local.insert(
                        g,
                        Local::Starting {
                            step: step + 1,
                            action,
                            began: self.now,
                            then_stop: None,
                        },
                    );
                } else {
                    self.local.insert(g, Local::Running);
                }
            }
            (ActionResult::Failed { .. }, _) => {
                self.record("start_failed", g, None, resource, Some((began, &result)));
                let failures = self.failures.entry(g).or_default();
                *failures += 1;
                let threshold = if self.cfg.start_failure_is_fatal {
                    1
                } else {
                    self.cfg.migration_threshold
                };
                let then = if *failures >= threshold || self.quitting {
                    AfterStop::Refuse
                } else if then_stop.is_some() {
                    AfterStop::Release
                } else {
                    AfterStop::Retry
                };
                // The failed resource's state is unknown: it is stopped too (clean-up).
                self.begin_stop(g, step, then_stop.unwrap_or("start_failed"), then);
            }
        }
    }

    /// A stop of resource `step` of group `g` ended.
    fn stop_ended(
        &mut self,
        g: u16,
        step: usize,
        began: u64,
        reason: &'static str,
        then: AfterStop,
        result: ActionResult,
    ) {
        let resource = self.group(g).resources()[step].to_string();
        if let ActionResult::Failed { .. } = result {
            self.record(
                "stop_failed",
                g,
                Some(reason),
                resource,
                Some((began, &result)),
            );
            self.local.insert(g, Local::Blocked);
            self.ops.push_back(ResourceOp::Blocked(g).encode());
            return;
        }
        self.record("stop", g, Some(reason), resource, Some((began, &result)));
        if step > 0 {
            self.begin_stop(g, step - 1, reason, then);
            return;
        }
        self.local.remove(&g);
        match then {
            AfterStop::Release => self.ops.push_back(ResourceOp::Stopped(g).encode()),
            AfterStop::Refuse => {
                self.refusing.insert(g);
                self.ops.push_back(ResourceOp::Refused(g).encode());
            }
            AfterStop::Retry => {
                // Still the agreed holder: start again in place (in an operational ring).
                if self.primary && self.operational && self.targets.get(&g) == Some(&self.me) {
                    self.start(g);
                } else {
                    self.ops.push_back(ResourceOp::Stopped(g).encode());
                }
            }
        }
    }
}

impl Service for ResourcesService {
    fn id(&self) -> ServiceId {
        RESOURCES_SERVICE
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn sync_init(&mut self, ctx: &SyncContext) {
        self.ring = ctx.ring;
        self.members = ctx.members.clone();
        if self.nodes.iter().all(|n| ctx.members.contains(n)) {
            self.seen_all = true;
        }
        self.primary = self.is_primary(&ctx.members);
        self.records.push_back(Body::Quorum {
            primary: self.primary,
            ring: ctx.ring,
            members: ctx.members.clone(),
            groups: self.cfg.resources.iter().map(|g| g.name.clone()).collect(),
            settle_ms: self.cfg.settle_ms(),
        });
        self.targets.clear();
        self.pending.clear();
        self.released.clear();
        self.reported.clear();
        self.sent = false;
        if !self.primary {
            self.stop_all("quorum");
        }
    }

    fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress {
        let mine = Holdings {
            held: self.local.keys().copied().collect(),
            refused: (0..self.cfg.resources.len() as u16)
                .filter(|&g| {
                    self.quitting
                        || self.refusing.contains(&g)
                        || self.refused.contains(&(g, self.me))
                })
                .collect(),
            blocked: self.blocked.iter().map(|(&g, &n)| (g, n)).collect(),
        };
        if self.sent || out.push(mine.encode()) {
            self.sent = true;
            Progress::Done
        } else {
            Progress::NotDone
        }
    }

    fn sync_deliver(&mut self, sender: NodeId, payload: &[u8]) -> Option<String> {
        match Holdings::decode(payload) {
            Ok(mut h) => {
                let n = self.cfg.resources.len();
                h.held.retain(|&g| usize::from(g) < n);
                h.refused.retain(|&g| usize::from(g) < n);
                h.blocked.retain(|&(g, _)| usize::from(g) < n);
                self.reported.insert(sender, h);
            }
            Err(_) => self.malformed += 1,
        }
        None
    }

    fn sync_activate(&mut self) {
        let reported = std::mem::take(&mut self.reported);
        let mut by_group: BTreeMap<u16, BTreeSet<NodeId>> = BTreeMap::new();
        self.refused.clear();
        // Blocks outlive their node's absence: every member reports those it knows, its
        // own blocked groups included; a block is lifted only by a stop or a cleanup.
        self.blocked = self
            .local
            .iter()
            .filter(|(_, l)| **l == Local::Blocked)
            .map(|(&g, _)| (g, self.me))
            .collect();
        for h in reported.values() {
            for &(g, n) in &h.blocked {
                self.blocked.entry(g).or_insert(n);
            }
        }
        for (&node, h) in &reported {
            for &g in &h.held {
                by_group.entry(g).or_default().insert(node);
            }
            for &g in &h.refused {
                self.refused.insert((g, node));
            }
        }
        self.holders = by_group
            .iter()
            .filter_map(|(&g, hs)| hs.iter().next().map(|&h| (g, h)))
            .collect();
        match self.cfg.policy {
            Policy::Primary => {
                // Two holders of one group (two_node after a split, say): all but the
                // lowest stop.
                let extra: Vec<u16> = by_group
                    .iter()
                    .filter(|(g, hs)| hs.len() > 1 && self.holders.get(g) != Some(&self.me))
                    .map(|(&g, _)| g)
                    .collect();
                for g in extra {
                    self.stop(g, "conflict");
                }
                if self.primary {
                    self.place();
                }
            }
            Policy::Heartbeat2000 => self.take_unclaimed(),
        }
    }

    fn sync_abort(&mut self) {
        self.reported.clear();
        self.sent = false;
    }

    fn deliver_op(&mut self, sender: NodeId, payload: &[u8]) {
        if payload.is_empty() {
            return; // The workload's no-op.
        }
        let op = match ResourceOp::decode(payload) {
            Ok(op) if self.valid(op.group()) => op,
            _ => {
                self.malformed += 1;
                return;
            }
        };
        let primary = self.primary && self.cfg.policy == Policy::Primary;
        match op {
            ResourceOp::Started(g) => {
                self.holders.insert(g, sender);
                self.released.remove(&g);
            }
            ResourceOp::Stopped(g) | ResourceOp::Refused(g) => {
                if self.holders.get(&g) == Some(&sender) {
                    self.holders.remove(&g);
                }
                if self.blocked.get(&g) == Some(&sender) {
                    self.blocked.remove(&g);
                }
                if matches!(op, ResourceOp::Refused(_)) {
                    self.refused.insert((g, sender));
                }
                if !self.holders.contains_key(&g) {
                    self.released.insert(g);
                    if primary {
                        self.replace(g);
                    }
                }
            }
            ResourceOp::Cleared(g) => {
                self.refused.remove(&(g, sender));
                // A block of a node not here is lifted: the operator says it is stopped.
                if let Some(&h) = self.blocked.get(&g) {
                    if !self.members.contains(&h) {
                        self.blocked.remove(&g);
                        if self.holders.get(&g) == Some(&h) {
                            self.holders.remove(&g);
                        }
                    }
                }
                if primary {
                    self.replace(g);
                }
            }
            ResourceOp::Blocked(g) => {
                self.blocked.insert(g, sender);
                self.holders.insert(g, sender);
            }
        }
    }

    fn control(
        &mut self,
        request: &serde_json::Value,
        _: &ControlContext,
    ) -> Result<Control, ControlError> {
        let cmd: Command = serde_json::from_value(request.clone())
            .map_err(|e| ControlError::BadCommand(format!("svc resources: {e}")))?;
        match cmd {
            Command::Status => Ok(Control::new(vec![], &self.status())),
            Command::Cleanup { name } => self.cleanup(&name),
        }
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (g, n) in &self.holders {
            h.update(g.to_be_bytes());
            h.update(n.to_be_bytes());
        }
        h.update(b"refused");
        for (g, n) in &self.refused {
            h.update(g.to_be_bytes());
            h.update(n.to_be_bytes());
        }
        h.update(b"blocked");
        for (g, n) in &self.blocked {
            h.update(g.to_be_bytes());
            h.update(n.to_be_bytes());
        }
        h.finalize().into()
    }

    fn size(&self) -> StateSize {
        StateSize {
            items: self.holders.len() as u64,
            bytes: 6 * (self.holders.len() + self.refused.len()) as u64,
        }
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }

    fn tick(&mut self, now: u64, operational: bool) {
        self.now = now;
        self.operational = operational;
        self.started_at.get_or_insert(now);
        if self.cfg.policy == Policy::Heartbeat2000 {
            // No fencing in the seed.
        } else if operational {
            self.unsure_since = None;
        } else {
            let since = *self.unsure_since.get_or_insert(now);
            if now.saturating_sub(since) >= self.cfg.fence_ms * 1_000_000 {
                self.stop_all("fence");
            }
            return;
        }
        let due: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, &t)| t <= now)
            .map(|(&g, _)| g)
            .collect();
        for g in due {
            self.pending.remove(&g);
            if self.primary
                && self.targets.get(&g) == Some(&self.me)
                && !self.holders.contains_key(&g)
            {
                self.start(g);
            }
        }
    }

    fn poll_op(&mut self) -> Option<Bytes> {
        self.ops.pop_front()
    }

    fn poll_deadline(&self) -> Option<u64> {
        // Out of any operational ring: only the self-fence is due (once: a deadline never
        // stays in the past, or the host would spin); takeovers wait for a ring.
        if let Some(since) = self.unsure_since {
            let at = since + self.cfg.fence_ms * 1_000_000;
            return (!self.local.is_empty() && at > self.now).then_some(at);
        }
        // Due takeovers are all taken at the next tick.
        self.pending.values().copied().min()
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn action_done(&mut self, now: u64, id: u64, result: ActionResult) {
        self.now = self.now.max(now);
        let Some((&g, state)) = self.local.iter().find(|(_, l)| match l {
            Local::Starting { action, .. } | Local::Stopping { action, .. } => *action == id,
            _ => false,
        }) else {
            return; // Not ours, or ended twice: nothing to do.
        };
        match state.clone() {
            Local::Starting {
                step,
                began,
                then_stop,
                ..
            } => self.start_ended(g, step, began, then_stop, result),
            Local::Stopping {
                step,
                began,
                reason,
                then,
                ..
            } => self.stop_ended(g, step, began, reason, then, result),
            Local::Running | Local::Blocked => {}
        }
    }

    fn quit(&mut self) {
        Self::quit(self);
    }

    fn is_idle(&self) -> bool {
        Self::is_idle(self)
    }

    fn poll_record(&mut self) -> Option<Body> {
        self.records.pop_front()
    }
}

impl Plugin for ResourcesService {
    const NAME: &'static str = "resources";
    const ID: ServiceId = RESOURCES_SERVICE;

    fn new(me: NodeId) -> Self {
        Self::with(me, &[], ResourcesConfig::default())
    }

    fn configure(me: NodeId, cfg: &ServiceConfig) -> Result<Self, ServiceConfigError> {
        let parsed = ResourcesConfig::parse(&cfg.section, &cfg.nodes)?;
        Ok(Self::with(me, &cfg.nodes, parsed))
    }

    fn parse_args(args: &Args<'_>) -> Result<serde_json::Value, ControlError> {
        let cmd = match args.text("op").as_deref() {
            None | Some("status") => {
                args.allow(&["op"])?;
                Command::Status
            }
            Some("cleanup") => {
                args.allow(&["op", "name"])?;
                let name = args.text("name").ok_or_else(|| {
                    ControlError::BadCommand("svc resources cleanup: name=GROUP is needed".into())
                })?;
                Command::Cleanup { name }
            }
            Some(other) => {
                return Err(ControlError::BadCommand(format!(
                    "svc resources: unknown command {other:?} (known: status, cleanup)"
                )))
            }
        };
        Ok(serde_json::to_value(cmd).expect("a command serialises"))
    }

    fn workload_op(_: &mut dyn rand::RngCore, _: &Workload) -> Bytes {
        Bytes::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;
    use serde_json::json;

    fn cfg(section: serde_json::Value) -> Result<ResourcesConfig, ServiceConfigError> {
        ResourcesConfig::parse(&section, &[1, 2, 3])
    }

    #[test]
    fn configs_are_typed_and_bad_ones_name_the_key() {
        assert_eq!(
            cfg(serde_json::Value::Null).unwrap(),
            ResourcesConfig::default()
        );
        let c = cfg(json!({ "resources": [{ "name": "web", "home": 2 }], "auto_failback": true }))
            .unwrap();
        assert_eq!((c.resources.len(), c.auto_failback), (1, true));
        for (bad, says) in [
            (json!({ "polcy": "primary" }), "polcy"),
            (json!({ "policy": "raft" }), "raft"),
            (
                json!({ "resources": [{ "name": "a", "home": 1 }, { "name": "a", "home": 2 }] }),
                "repeated",
            ),
            (
                json!({ "fence_ms": 5000, "takeover_ms": 9000 }),
                "takeover_ms 9000 must exceed",
            ),
            (
                json!({ "takeover_ms": 100_000_000_000u64 }),
                "takeover_ms 100000000000 is above one day",
            ),
            (json!({ "two_node": true }), "two_node"),
            (json!({ "start_timeout_ms": 0 }), "start_timeout_ms"),
            (json!({ "migration_threshold": 0 }), "migration_threshold"),
            (
                json!({ "resources": [{ "name": "a", "home": 1, "primitives": ["x", "x"] }] }),
                "primitive",
            ),
            (
                json!({ "resources": [{ "name": "a", "home": 1, "start": " " }] }),
                "start command",
            ),
        ] {
            let e = cfg(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("resources"), "{e}");
        }
        assert_eq!(
            ResourcesConfig::parse_groups("web:2, db:3").unwrap(),
            vec![
                Group {
                    name: "web".into(),
                    home: 2,
                    primitives: vec![],
                    start: None,
                    stop: None,
                },
                Group {
                    name: "db".into(),
                    home: 3,
                    primitives: vec![],
                    start: None,
                    stop: None,
                }
            ]
        );
        assert!(ResourcesConfig::parse_groups("web").is_err());
        // A service that takes no section refuses one.
        let e = registry::find("checkpoint")
            .unwrap()
            .configure(
                1,
                &ServiceConfig {
                    nodes: vec![1],
                    section: json!({}),
                    ..Default::default()
                },
            )
            .err()
            .unwrap();
        assert!(e.to_string().contains("takes no configuration"), "{e}");
    }

    #[test]
    fn codecs_round_trip_and_refuse_garbage() {
        for op in [ResourceOp::Started(3), ResourceOp::Stopped(0)] {
            assert_eq!(ResourceOp::decode(&op.encode()), Ok(op));
        }
        assert!(ResourceOp::decode(&[9, 0, 1]).is_err());
        assert!(ResourceOp::decode(&[1, 0]).is_err());
        assert!(ResourceOp::decode(&[1, 0, 1, 0]).is_err());
        for op in [ResourceOp::Refused(2), ResourceOp::Cleared(1)] {
            assert_eq!(ResourceOp::decode(&op.encode()), Ok(op));
        }
        let h = Holdings {
            held: vec![1, 4],
            refused: vec![0],
            blocked: vec![(2, 7)],
        };
        assert_eq!(Holdings::decode(&h.encode()).unwrap(), h);
        assert!(Holdings::decode(&[0xff, 0xff]).is_err());
        assert!(Holdings::decode(&[0, 1, 0, 1]).is_err());
        assert!(Holdings::decode(&[0, 0, 0, 0, 0]).is_err());
        assert!(Holdings::decode(&[0, 0, 0, 0, 0, 1, 0, 1]).is_err());
        assert!(ResourceOp::decode(&ResourceOp::Blocked(3).encode()).is_ok());
        // Garbage is counted, never a panic; the workload's empty operation is a no-op.
        let mut s = ResourcesService::new(1);
        s.deliver_op(2, &[1, 0x7f, 0xff]);
        s.deliver_op(2, &[]);
        assert_eq!(s.malformed(), 1);
        assert!(s.sync_deliver(2, &[1]).is_none());
        assert_eq!(s.malformed(), 2);
    }

    #[test]
    fn status_is_its_one_command() {
        let args = vec!["status".to_string()];
        let req = registry::find("resources")
            .unwrap()
            .parse_args(&args)
            .unwrap();
        let mut s = ResourcesService::with(1, &[1, 2, 3], ResourcesConfig::default());
        let ctx = ControlContext {
            syncing: false,
            queued: 0,
            max_fill_bytes: 1,
        };
        let st: Status = serde_json::from_value(s.control(&req, &ctx).unwrap().reply).unwrap();
        assert_eq!((st.primary, st.quorum, st.running.len()), (false, 2, 0));
        let e = registry::find("resources")
            .unwrap()
            .parse_args(&["start".to_string()])
            .unwrap_err();
        assert!(e.to_string().contains("unknown command"), "{e}");
    }

    /// Past any takeover delay of these tests.
    const LATER: u64 = 100_000_000_000;

    /// Node `me` of 1..=3 (of 1..=4 configured) with `section`, after one sync where every
    /// member reported
    /// `held` (node → groups) and nothing refused, at time 1 s.
    fn synced(
        me: NodeId,
        section: serde_json::Value,
        held: &[(NodeId, &[u16])],
    ) -> ResourcesService {
        let cfg = ResourcesConfig::parse(&section, &[1, 2, 3, 4]).unwrap();
        // Node 4 is configured and absent: a free group waits for the takeover delay.
        let mut s = ResourcesService::with(me, &[1, 2, 3, 4], cfg);
        s.tick(1_000_000_000, true);
        s.sync_init(&SyncContext {
            me,
            ring: RingId { rep: 1, seq: 4 },
            members: vec![1, 2, 3],
            trans: vec![me],
        });
        for n in [1, 2, 3] {
            let groups = held.iter().find(|(m, _)| *m == n).map_or(&[][..], |x| x.1);
            let h = Holdings {
                held: groups.to_vec(),
                refused: vec![],
                blocked: vec![],
            };
            s.sync_deliver(n, &h.encode());
        }
        s.sync_activate();
        s
    }

    fn actions(s: &mut ResourcesService) -> Vec<Action> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    fn ops(s: &mut ResourcesService) -> Vec<ResourceOp> {
        std::iter::from_fn(|| s.poll_op())
            .map(|b| ResourceOp::decode(&b).unwrap())
            .collect()
    }

    fn actions_recorded(s: &mut ResourcesService) -> Vec<(String, String)> {
        std::iter::from_fn(|| s.poll_record())
            .filter_map(|r| match r {
                Body::Resource {
                    action, resource, ..
                } => Some((action, resource.unwrap_or_default())),
                _ => None,
            })
            .collect()
    }

    fn failed() -> ActionResult {
        ActionResult::Failed {
            exit: Some(1),
            error: "exit status 1".into(),
        }
    }

    #[test]
    fn a_group_starts_its_resources_in_order_and_stops_them_in_reverse() {
        let section = json!({ "resources": [{
            "name": "web", "home": 2, "primitives": ["ip", "httpd"],
            "start": "echo start", "stop": "echo stop", "start_timeout_ms": 5
        }]});
        assert!(
            ResourcesConfig::parse(&section, &[1, 2, 3]).is_err(),
            "a group knob"
        );
        let section = json!({ "start_timeout_ms": 5, "resources": [{
            "name": "web", "home": 2, "primitives": ["ip", "httpd"],
            "start": "echo start", "stop": "echo stop"
        }]});
        // Nobody holds web: its home takes it after the takeover delay.
        let mut s = synced(2, section, &[]);
        assert!(actions(&mut s).is_empty());
        s.tick(LATER, true);
        let a = actions(&mut s);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (
                a[0].verb,
                a[0].resource.as_str(),
                a[0].command.as_deref(),
                a[0].timeout_ms
            ),
            (Verb::Start, "ip", Some("echo start"), 5)
        );
        assert_eq!(ops(&mut s), vec![ResourceOp::Started(0)]);
        // A stop asked for while ip starts waits for that start.
        s.stop(0, "move");
        assert!(actions(&mut s).is_empty());
        s.action_done(5_000_000_000, a[0].id, ActionResult::Ok);
        let b = actions(&mut s);
        assert_eq!((b[0].verb, b[0].resource.as_str()), (Verb::Stop, "ip"));
        s.action_done(5_100_000_000, b[0].id, ActionResult::Ok);
        assert_eq!(ops(&mut s), vec![ResourceOp::Stopped(0)]);
        assert!(s.is_idle());
        // Delivered, the stop frees web for its target (node 2 itself): it starts at once,
        // both resources in order, then stops them in reverse on a quit.
        s.deliver_op(2, &ResourceOp::Started(0).encode());
        s.deliver_op(2, &ResourceOp::Stopped(0).encode());
        let c = actions(&mut s);
        assert_eq!(c[0].resource, "ip");
        s.action_done(6_000_000_000, c[0].id, ActionResult::Ok);
        let d = actions(&mut s);
        assert_eq!(d[0].resource, "httpd");
        s.action_done(6_000_000_000, d[0].id, ActionResult::Ok);
        assert_eq!(s.running(), vec!["web"]);
        s.quit();
        let e = actions(&mut s);
        assert_eq!((e[0].verb, e[0].resource.as_str()), (Verb::Stop, "httpd"));
        s.action_done(6_100_000_000, e[0].id, ActionResult::Ok);
        let f = actions(&mut s);
        assert_eq!(f[0].resource, "ip");
        s.action_done(6_200_000_000, f[0].id, ActionResult::Ok);
        assert!(s.is_idle());
        assert_eq!(
            ops(&mut s),
            vec![ResourceOp::Started(0), ResourceOp::Refused(0)]
        );
        let recs = actions_recorded(&mut s);
        let words: Vec<&str> = recs.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            words,
            [
                "starting", "start", "stopping", "stop", "starting", "start", "starting", "start",
                "stopping", "stop", "stopping", "stop"
            ]
        );
        assert_eq!(recs[7].1, "httpd");
        // An action it does not know is ignored.
        s.action_done(7_000_000_000, 999, ActionResult::Ok);
    }

    #[test]
    fn a_failed_start_refuses_the_group_and_the_next_member_takes_it_at_once() {
        let section = json!({ "resources": [{ "name": "web", "home": 2 }] });
        let mut s2 = synced(2, section.clone(), &[]);
        let mut s1 = synced(1, section.clone(), &[]);
        s2.tick(LATER, true);
        s1.tick(LATER, true);
        let a = actions(&mut s2);
        assert!(actions(&mut s1).is_empty(), "only the home starts it");
        s2.action_done(5_010_000_000, a[0].id, failed());
        // The clean-up stop of the failed resource, then the refusal.
        let b = actions(&mut s2);
        assert_eq!(b[0].verb, Verb::Stop);
        s2.action_done(5_020_000_000, b[0].id, ActionResult::Ok);
        let said = ops(&mut s2);
        assert_eq!(said, vec![ResourceOp::Started(0), ResourceOp::Refused(0)]);
        let recs = actions_recorded(&mut s2);
        assert!(recs.iter().any(|(a, _)| a == "start_failed"), "{recs:?}");
        // Delivered in order to node 1: it is the next target and starts at once.
        for op in said {
            s1.deliver_op(2, &op.encode());
            s2.deliver_op(2, &op.encode());
        }
        assert!(actions(&mut s2).is_empty(), "node 2 refuses web");
        let c = actions(&mut s1);
        assert_eq!((c.len(), c[0].verb), (1, Verb::Start));
        assert_eq!(s1.status().refused["web"], vec![2]);
        assert_eq!(s1.digest(), s2.digest());
        // Cleanup on node 2 says so; the refusal goes on every member.
        let req = json!({ "op": "cleanup", "name": "web" });
        let ctx = ControlContext {
            syncing: false,
            queued: 0,
            max_fill_bytes: 1,
        };
        let out = s2.control(&req, &ctx).unwrap();
        assert_eq!(out.ops.len(), 1);
        s1.deliver_op(2, &out.ops[0]);
        assert!(s1.status().refused.is_empty());
        assert!(s2
            .control(&json!({ "op": "cleanup", "name": "nope" }), &ctx)
            .is_err());
    }

    #[test]
    fn with_every_configured_node_present_a_free_group_starts_at_once() {
        let cfg = ResourcesConfig::parse(
            &json!({ "resources": [{ "name": "web", "home": 2 }] }),
            &[1, 2],
        )
        .unwrap();
        let mut s = ResourcesService::with(2, &[1, 2], cfg);
        s.tick(1_000_000_000, true);
        s.sync_init(&SyncContext {
            me: 2,
            ring: RingId { rep: 1, seq: 4 },
            members: vec![1, 2],
            trans: vec![2],
        });
        for n in [1, 2] {
            s.sync_deliver(n, &Holdings::default().encode());
        }
        s.sync_activate();
        assert_eq!(
            actions(&mut s).len(),
            1,
            "no takeover delay: nobody can be running it"
        );
        // A group this node refuses, even before the refusal is agreed, it never starts.
        let mut s = ResourcesService::with(
            2,
            &[1, 2],
            ResourcesConfig::parse(
                &json!({ "resources": [{ "name": "web", "home": 2 }] }),
                &[1, 2],
            )
            .unwrap(),
        );
        s.refusing.insert(0);
        s.tick(1_000_000_000, true);
        s.sync_init(&SyncContext {
            me: 2,
            ring: RingId { rep: 1, seq: 4 },
            members: vec![1, 2],
            trans: vec![2],
        });
        let mut out = Vec::new();
        let mut ob = Outbox::new(1 << 20, &mut out);
        s.sync_process(&mut ob);
        assert_eq!(Holdings::decode(&out[0]).unwrap().refused, vec![0]);
    }

    #[test]
    fn without_start_failure_is_fatal_a_node_retries_up_to_the_migration_threshold() {
        let section = json!({ "start_failure_is_fatal": false, "migration_threshold": 2,
            "resources": [{ "name": "web", "home": 2 }] });
        let mut s = synced(2, section, &[]);
        s.tick(LATER, true);
        let a = actions(&mut s);
        s.action_done(5_000_000_000, a[0].id, failed());
        let b = actions(&mut s);
        s.action_done(5_000_000_000, b[0].id, ActionResult::Ok);
        // Below the threshold: started again in place, nothing said.
        let c = actions(&mut s);
        assert_eq!(c[0].verb, Verb::Start);
        assert_eq!(
            ops(&mut s),
            vec![ResourceOp::Started(0), ResourceOp::Started(0)]
        );
        s.action_done(5_000_000_000, c[0].id, failed());
        let d = actions(&mut s);
        s.action_done(5_000_000_000, d[0].id, ActionResult::Ok);
        assert_eq!(ops(&mut s), vec![ResourceOp::Refused(0)]);
        assert!(actions(&mut s).is_empty());
    }

    #[test]
    fn a_failed_stop_blocks_the_group_until_cleanup() {
        let section = json!({ "resources": [{ "name": "web", "home": 1 }] });
        // Node 2 holds web; node 1 (home, no failback) is present: web stays. A loss of
        // quorum stops it, and that stop fails.
        let mut s = synced(2, section, &[(2, &[0])]);
        assert!(actions(&mut s).is_empty(), "sticky: nothing moves");
        // Node 2 did not start web in this instance: make it so.
        s.start(0);
        let a = actions(&mut s);
        s.action_done(1_000_000_000, a[0].id, ActionResult::Ok);
        s.sync_init(&SyncContext {
            me: 2,
            ring: RingId { rep: 2, seq: 8 },
            members: vec![2],
            trans: vec![2],
        });
        let b = actions(&mut s);
        assert_eq!(b[0].verb, Verb::Stop);
        s.action_done(1_100_000_000, b[0].id, failed());
        assert_eq!(s.status().local["web"], "blocked");
        assert!(!s.is_idle());
        let _ = ops(&mut s);
        // Cleanup retries the stop; it succeeds and says so.
        let ctx = ControlContext {
            syncing: false,
            queued: 0,
            max_fill_bytes: 1,
        };
        let out = s
            .control(&json!({ "op": "cleanup", "name": "web" }), &ctx)
            .unwrap();
        let c: Cleaned = serde_json::from_value(out.reply).unwrap();
        assert!(c.retrying_stop);
        let d = actions(&mut s);
        s.action_done(1_200_000_000, d[0].id, ActionResult::Ok);
        assert_eq!(ops(&mut s), vec![ResourceOp::Stopped(0)]);
        assert!(s.is_idle());
    }
}
