//! The resources service: which node runs which resource group, decided from the agreed
//! configuration and the holdings the sync engine brings together at every configuration
//! change. Sans-IO: starting and stopping a group is a record here (instantaneous, as in the
//! simulator); a real node's start and stop commands are outside this crate.
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
//!   both were seen together once, `wait_for_all`); in it each group goes to its home node if
//!   present (when the group is free, or with `auto_failback`), else stays with its current
//!   holder (stickiness), else goes to the lowest member id. A move is a stop on the old
//!   holder, multicast as an operation (`stopped`) and so delivered in agreed order, before
//!   the start on the new holder, which starts on that delivery. A group whose holder has
//!   left the configuration (or that nobody runs) starts `takeover_ms` (3.5 s) after the
//!   placement: no one can know that a holder cut off unseen has stopped, so a holder out of
//!   any operational ring for `fence_ms` (2 s) stops everything, as a watchdog would, and
//!   the takeover waits longer than that plus the token timeout (a fencing device would let
//!   it start at once; there is none here). A node whose component is not primary stops
//!   everything it holds at the configuration change.
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
//! # Workload
//! The service has no random operations worth making: its workload is the empty operation,
//! a no-op (`deliver_op` ignores an empty payload), so a simulated run exercises it through
//! its faults alone.
//!
//! # Records
//! `{"ev":"quorum","primary":..,"ring":..,"members":[..],"groups":[..]}` at every regular
//! configuration, and `{"ev":"resource","action":"start"|"stop","name":..,"ring":..,
//! "home":..}` at every start and stop.

use crate::control::{Args, Control, ControlContext, ControlError};
use crate::engine::{Outbox, Progress, SyncContext};
use crate::msg::ServiceId;
use crate::service::{Plugin, Service, ServiceConfig, ServiceConfigError, StateSize, Workload};
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
    /// The resource groups.
    #[serde(default = "default_groups")]
    pub resources: Vec<Group>,
    /// Self-fencing: a holder out of any operational ring this long (ms) stops everything,
    /// as a watchdog would (policy primary).
    #[serde(default = "default_fence_ms")]
    pub fence_ms: u64,
    /// A group nobody runs is started this long (ms) after the placement that gives it,
    /// so that a holder cut off unseen has fenced itself first: above `fence_ms` plus the
    /// token timeout (a ring breaks for all its members within about one token timeout).
    #[serde(default = "default_takeover_ms")]
    pub takeover_ms: u64,
    /// `heartbeat2000`: how long (ms) after its start a node waits for others' claims before
    /// taking unclaimed groups (the seed's `RQSTDELAY`, 10 s); later takeovers are at once.
    #[serde(default = "default_request_delay_ms")]
    pub request_delay_ms: u64,
}

fn default_request_delay_ms() -> u64 {
    10_000
}

fn default_fence_ms() -> u64 {
    2_000
}

fn default_takeover_ms() -> u64 {
    3_500
}

fn default_groups() -> Vec<Group> {
    [("web", 1), ("db", 2), ("mail", 3)]
        .into_iter()
        .map(|(name, home)| Group {
            name: name.into(),
            home,
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
            resources: default_groups(),
            fence_ms: default_fence_ms(),
            takeover_ms: default_takeover_ms(),
            request_delay_ms: default_request_delay_ms(),
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
        }
        for (knob, ms) in [
            ("fence_ms", cfg.fence_ms),
            ("takeover_ms", cfg.takeover_ms),
            ("request_delay_ms", cfg.request_delay_ms),
        ] {
            if ms > ringlab_ring::config::DURATION_MAX_MS {
                return Err(bad(format!(
                    "{knob} {ms} is above one day ({} ms)",
                    ringlab_ring::config::DURATION_MAX_MS
                )));
            }
        }
        if cfg.takeover_ms <= cfg.fence_ms {
            return Err(bad(format!(
                "takeover_ms {} must exceed fence_ms {}",
                cfg.takeover_ms, cfg.fence_ms
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
                })
            })
            .collect()
    }
}

/// An operation of the service (one byte of kind, the group's index as a u16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceOp {
    /// The sender started the group.
    Started(u16),
    /// The sender stopped the group.
    Stopped(u16),
}

impl ResourceOp {
    /// Returns its encoding.
    pub fn encode(self) -> Bytes {
        let (k, g) = match self {
            Self::Started(g) => (1u8, g),
            Self::Stopped(g) => (2u8, g),
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
            _ => Err(DecodeError::Invalid("resource op kind")),
        }
    }
}

/// Encodes a sync message: the groups the sender runs.
fn encode_holdings(running: &BTreeSet<u16>) -> Bytes {
    let mut b = Vec::with_capacity(2 + 2 * running.len());
    b.extend_from_slice(&(running.len() as u16).to_be_bytes());
    for g in running {
        b.extend_from_slice(&g.to_be_bytes());
    }
    Bytes::from(b)
}

/// Decodes a sync message (the groups the sender runs).
pub fn decode_holdings(payload: &[u8]) -> Result<Vec<u16>, DecodeError> {
    let mut r = Reader::new(payload);
    let n = r.count("holdings count", MAX_GROUPS)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(r.u16("holdings group")?);
    }
    r.end()?;
    Ok(out)
}

/// Its control commands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Holdings and quorum.
    Status,
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
    /// The groups this node runs.
    pub running: Vec<String>,
    /// The agreed holder of each held group.
    pub holders: BTreeMap<String, NodeId>,
}

/// The resources service of one node.
pub struct ResourcesService {
    me: NodeId,
    cfg: ResourcesConfig,
    nodes: Vec<NodeId>,
    /// Agreed: group → holder.
    holders: BTreeMap<u16, NodeId>,
    /// Local truth: the groups this node runs.
    running: BTreeSet<u16>,
    primary: bool,
    seen_all: bool,
    ring: RingId,
    members: Vec<NodeId>,
    /// Where each group goes, from the last placement (empty while a sync runs).
    targets: BTreeMap<u16, NodeId>,
    /// The running sync: what each member reported.
    reported: BTreeMap<u16, BTreeSet<NodeId>>,
    sent: bool,
    records: VecDeque<Body>,
    ops: VecDeque<Bytes>,
    malformed: u64,
    /// The last time a tick gave.
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
            running: BTreeSet::new(),
            primary: false,
            seen_all: false,
            ring: RingId { rep: me, seq: 0 },
            members: vec![],
            targets: BTreeMap::new(),
            reported: BTreeMap::new(),
            sent: false,
            records: VecDeque::new(),
            ops: VecDeque::new(),
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
        let counted = members.iter().filter(|m| self.nodes.contains(m)).count();
        (!wait || self.seen_all) && counted >= self.quorum()
    }

    /// Returns the groups this node runs.
    pub fn running(&self) -> Vec<&str> {
        self.running.iter().map(|&g| self.name(g)).collect()
    }

    fn name(&self, g: u16) -> &str {
        &self.cfg.resources[usize::from(g)].name
    }

    fn start(&mut self, g: u16) {
        self.pending.remove(&g);
        if self.running.insert(g) {
            self.act("start", g, None);
            self.ops.push_back(ResourceOp::Started(g).encode());
        }
    }

    fn stop(&mut self, g: u16, reason: &str) {
        if self.running.remove(&g) {
            self.act("stop", g, Some(reason));
            self.ops.push_back(ResourceOp::Stopped(g).encode());
        }
    }

    fn stop_all(&mut self, reason: &str) {
        let held: Vec<u16> = self.running.iter().copied().collect();
        for g in held {
            self.stop(g, reason);
        }
    }

    fn act(&mut self, action: &str, g: u16, reason: Option<&str>) {
        self.records.push_back(Body::Resource {
            action: action.into(),
            name: self.name(g).to_string(),
            ring: self.ring,
            home: Some(self.cfg.resources[usize::from(g)].home),
            reason: reason.map(String::from),
        });
    }

    /// Places every group on the agreed holdings (primary policy).
    fn place(&mut self) {
        let groups = self.cfg.resources.len() as u16;
        let lowest = self.members.iter().copied().min();
        for g in 0..groups {
            let home = self.cfg.resources[usize::from(g)].home;
            let home_here = self.members.contains(&home);
            let cur = self.holders.get(&g).copied();
            let target = match cur {
                _ if home_here && (cur.is_none() || self.cfg.auto_failback) => Some(home),
                Some(h) => Some(h),
                None => lowest,
            };
            let Some(target) = target else { continue };
            self.targets.insert(g, target);
            if target != self.me {
                self.stop(g, "move");
            } else if cur.is_none() {
                self.pending
                    .insert(g, self.now + self.cfg.takeover_ms * 1_000_000);
            }
            // Else: the holder stops and says so; this node starts on that delivery.
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
            let home = self.cfg.resources[usize::from(g)].home;
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
        });
        self.targets.clear();
        self.pending.clear();
        self.reported.clear();
        self.sent = false;
        if !self.primary {
            self.stop_all("quorum");
        }
    }

    fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress {
        if self.sent || out.push(encode_holdings(&self.running)) {
            self.sent = true;
            Progress::Done
        } else {
            Progress::NotDone
        }
    }

    fn sync_deliver(&mut self, sender: NodeId, payload: &[u8]) -> Option<String> {
        match decode_holdings(payload) {
            Ok(gs) => {
                let n = self.cfg.resources.len();
                for g in gs.into_iter().filter(|&g| usize::from(g) < n) {
                    self.reported.entry(g).or_default().insert(sender);
                }
            }
            Err(_) => self.malformed += 1,
        }
        None
    }

    fn sync_activate(&mut self) {
        let reported = std::mem::take(&mut self.reported);
        self.holders = reported
            .iter()
            .filter_map(|(&g, hs)| hs.iter().next().map(|&h| (g, h)))
            .collect();
        match self.cfg.policy {
            Policy::Primary => {
                // Two holders of one group (two_node after a split, say): all but the
                // lowest stop.
                let extra: Vec<u16> = reported
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
            Ok(op) if self.valid(op_group(op)) => op,
            _ => {
                self.malformed += 1;
                return;
            }
        };
        match op {
            ResourceOp::Started(g) => {
                self.holders.insert(g, sender);
            }
            ResourceOp::Stopped(g) => {
                if self.holders.get(&g) == Some(&sender) {
                    self.holders.remove(&g);
                }
                if self.primary
                    && self.cfg.policy == Policy::Primary
                    && self.targets.get(&g) == Some(&self.me)
                    && !self.holders.contains_key(&g)
                {
                    self.start(g);
                }
            }
        }
    }

    fn control(
        &mut self,
        request: &serde_json::Value,
        _: &ControlContext,
    ) -> Result<Control, ControlError> {
        let Command::Status = serde_json::from_value(request.clone())
            .map_err(|e| ControlError::BadCommand(format!("svc resources: {e}")))?;
        let status = Status {
            ok: true,
            policy: self.cfg.policy,
            primary: self.primary,
            members: self.members.clone(),
            quorum: self.quorum(),
            running: self.running().into_iter().map(String::from).collect(),
            holders: self
                .holders
                .iter()
                .map(|(&g, &h)| (self.name(g).to_string(), h))
                .collect(),
        };
        Ok(Control::new(vec![], &status))
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (g, n) in &self.holders {
            h.update(g.to_be_bytes());
            h.update(n.to_be_bytes());
        }
        h.finalize().into()
    }

    fn size(&self) -> StateSize {
        StateSize {
            items: self.holders.len() as u64,
            bytes: 6 * self.holders.len() as u64,
        }
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }

    fn tick(&mut self, now: u64, operational: bool) {
        self.now = now;
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

    fn poll_record(&mut self) -> Option<Body> {
        self.records.pop_front()
    }
}

fn op_group(op: ResourceOp) -> u16 {
    match op {
        ResourceOp::Started(g) | ResourceOp::Stopped(g) => g,
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
        args.allow(&["op"])?;
        match args.text("op").as_deref() {
            None | Some("status") => {}
            Some(other) => {
                return Err(ControlError::BadCommand(format!(
                    "svc resources: unknown command {other:?} (known: status)"
                )))
            }
        }
        Ok(serde_json::to_value(Command::Status).expect("a command serialises"))
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
            (json!({ "fence_ms": 5000 }), "takeover_ms"),
            (
                json!({ "takeover_ms": 100_000_000_000u64 }),
                "takeover_ms 100000000000 is above one day",
            ),
            (json!({ "two_node": true }), "two_node"),
        ] {
            let e = cfg(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("resources"), "{e}");
        }
        assert_eq!(
            ResourcesConfig::parse_groups("web:2, db:3").unwrap(),
            vec![
                Group {
                    name: "web".into(),
                    home: 2
                },
                Group {
                    name: "db".into(),
                    home: 3
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
        let held: BTreeSet<u16> = [1, 4].into();
        assert_eq!(
            decode_holdings(&encode_holdings(&held)).unwrap(),
            vec![1, 4]
        );
        assert!(decode_holdings(&[0xff, 0xff]).is_err());
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
}
