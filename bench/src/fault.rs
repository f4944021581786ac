//! The fault schedule of an experiment: each step's action, typed and checked when the file
//! is parsed, the `fault.sh` calls that carry out a network fault, and the `fault` record
//! every step leaves.
//!
//! In the file (and in summary.json) a step is one flat table, tagged by its `action`:
//!
//! | action | arguments |
//! |---|---|
//! | `isolate` | `nodes` (nobody hears them, they hear nobody) |
//! | `split` | `groups`, two or more (each hears only itself) |
//! | `cut` | `nodes`, two; `oneway` (the second stops hearing the first) |
//! | `heal`, `clear`, `trunk-down`, `trunk-up` | none |
//! | `loss` | `pct`; `nodes` (none: every frame between two nodes); `burst` (mean burst length in frames, > 1: Gilbert–Elliott loss by `ringlab relay`s, see below) |
//! | `delay` | `nodes`, `ms`, `jitter_ms` |
//! | `reorder` | `nodes`, `pct`, `ms` (the gap) |
//! | `duplicate` | `nodes`, `pct` |
//! | `kill`, `pause`, `resume`, `leave` | `nodes` |
//! | `restart` | `nodes`; `empty_store` (its store file is removed before it starts again) |
//! | `svc` | `nodes`, `command`: a service's control command, as `ringlab ctl SOCK svc` takes it (`"kml write path=/a data=x"`), sent to each node in turn |
//!
//! A `loss` step without `burst` (or with 0 or 1) is uniform: an nftables `numgen` rule per
//! frame. With `burst` = B > 1, `pct` is the mean loss and B the mean burst: fault.sh puts
//! a `ringlab relay` on the port of each node named (none named: every node's, losing only
//! toward the node, so each hop between two nodes loses once), with one Gilbert–Elliott
//! chain per directed pair of IPv4 endpoints.
//!
//! A `svc` step is no fault: it changes a service's state through its control socket (a
//! refused command fails the repetition) and leaves no `fault` record, so the recovery of
//! the faults around it is measured as without it ([`FaultAction::leaves_record`]). Its
//! command is parsed when the file is, by the same parser as `ringlab ctl`; its words are
//! split at spaces (a value cannot hold one).
//!
//! **When.** Every step has exactly one of:
//! - `at_ms = N`: N ms after the repetition's timeline starts (the first full ring, or the
//!   end of the store's fill with a `[store]` section);
//! - `at = "copy-half"`: as soon as the latest `store_sync` `chunk` record of the node
//!   restarted with `empty_store` shows at least half the store's bytes (the store's `bytes`
//!   in `svc store status` after the fill); a copy that never gets there by the end of the
//!   repetition fails it, saying so;
//! - `after_ms = N`: N ms after the previous step fired (a heal after a half-way partition).
//!
//! **Whom.** Instead of `nodes`, an action that takes `nodes` (all but `cut`) may name
//! `target = "provider"`: the provider of the copy at that moment, from the same latest
//! `chunk` record (`provider`); with no such record yet, the repetition fails. So
//! `at = "copy-half"`, `action = "kill"`, `target = "provider"` kills the provider half-way
//! through the copy, and `action = "isolate"` cuts it off.
//!
//! An unknown action, a missing or malformed argument, or one the action does not take is an
//! error of the parse, at the step's line. What depends on the rest of the experiment (node
//! numbers, the two-sites shape of a trunk, `at_ms` within the duration, a copy to wait for)
//! is checked by [`Experiment::load`](crate::experiment::Experiment::load), which names the
//! line too.

use ringlab_ring::NodeId;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// One step of the fault schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultStep {
    /// When.
    pub when: When,
    /// What.
    pub action: FaultAction,
    /// Whom, when the step names its nodes by role instead of number (its action's node
    /// list is then empty until [`FaultAction::with_nodes`] fills it in).
    pub target: Option<Target>,
}

/// When a step fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// This many ms after the repetition's timeline starts (`at_ms`).
    AtMs(u64),
    /// When the copy to the node restarted with an empty store is half-way (`at = "copy-half"`).
    CopyHalf,
    /// This many ms after the previous step fired (`after_ms`).
    AfterMs(u64),
}

/// A trigger a step can wait for (`at = ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The copy's latest `chunk` record shows at least half the store's bytes.
    CopyHalf,
}

/// A node named by its role (`target = ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The provider of the copy now (the latest `chunk` record's `provider`).
    Provider,
}

impl FaultStep {
    /// Returns its `at_ms`, if it fires at a fixed time.
    pub fn at_ms(&self) -> Option<u64> {
        match self.when {
            When::AtMs(t) => Some(t),
            _ => None,
        }
    }
}

/// What a step does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// A change of the network, which `fault.sh` carries out.
    Network(NetworkFault),
    /// Something done to node processes, which the runner does itself on its children.
    Process(ProcessOp, Vec<NodeId>),
    /// A service's control command sent to each node (`svc`): the words after `svc`.
    Svc(Vec<NodeId>, String),
}

/// A change of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkFault {
    /// Nobody hears these nodes, and they hear nobody.
    Isolate(Vec<NodeId>),
    /// Each group hears only itself.
    Split(Vec<Vec<NodeId>>),
    /// Two nodes stop hearing each other; one-way: the second stops hearing the first.
    Cut {
        /// The two nodes.
        nodes: [NodeId; 2],
        /// One direction only.
        oneway: bool,
    },
    /// Every cut, split and isolation removed; the trunk up.
    Heal,
    /// Two-sites: the trunk between the sites goes down.
    TrunkDown,
    /// Two-sites: the trunk comes back.
    TrunkUp,
    /// A share of the frames lost.
    Loss {
        /// Whose frames, in and out; none: every frame between two nodes.
        nodes: Vec<NodeId>,
        /// Percent (0 removes the loss): the mean loss, uniform or in bursts.
        pct: u32,
        /// Mean burst length, frames (0 or 1: uniform loss; more: Gilbert–Elliott in
        /// relays).
        burst: u32,
    },
    /// Delay on each node's link.
    Delay {
        /// The nodes.
        nodes: Vec<NodeId>,
        /// Delay, ms.
        ms: u64,
        /// Uniform jitter, ± ms.
        jitter_ms: u64,
    },
    /// A share of each node's frames held back, so that later ones overtake them.
    Reorder {
        /// The nodes.
        nodes: Vec<NodeId>,
        /// Percent.
        pct: u32,
        /// How long a held-back frame waits, ms (0: 1 ms).
        gap_ms: u64,
    },
    /// A share of each node's frames duplicated.
    Duplicate {
        /// The nodes.
        nodes: Vec<NodeId>,
        /// Percent.
        pct: u32,
    },
    /// Heal, plus no loss and no impairment.
    Clear,
}

/// Something done to node processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessOp {
    /// SIGKILL.
    Kill,
    /// SIGSTOP.
    Pause,
    /// SIGCONT.
    Resume,
    /// Started again (killed first if it runs), as a new incarnation.
    Restart,
    /// Killed if it runs, its store file (`store.redb`) removed from its state directory,
    /// and started again with an empty store (`restart` with `empty_store = true`).
    RestartEmpty,
    /// Asked to leave the ring gracefully.
    Leave,
}

/// The fault record a step leaves among the event records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// The record's action.
    pub action: &'static str,
    /// The nodes it targets.
    pub targets: Vec<NodeId>,
    /// The groups the network falls into, where it falls apart (split, trunk).
    pub groups: Vec<Vec<NodeId>>,
}

/// The action names of the file: the tag of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ActionName {
    Isolate,
    Split,
    Cut,
    Heal,
    TrunkDown,
    TrunkUp,
    Loss,
    Delay,
    Reorder,
    Duplicate,
    Clear,
    Kill,
    Pause,
    Resume,
    Restart,
    Leave,
    Svc,
}

impl ActionName {
    /// Returns the name, as serde spells it.
    fn as_str(self) -> &'static str {
        match self {
            Self::Isolate => "isolate",
            Self::Split => "split",
            Self::Cut => "cut",
            Self::Heal => "heal",
            Self::TrunkDown => "trunk-down",
            Self::TrunkUp => "trunk-up",
            Self::Loss => "loss",
            Self::Delay => "delay",
            Self::Reorder => "reorder",
            Self::Duplicate => "duplicate",
            Self::Clear => "clear",
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Restart => "restart",
            Self::Leave => "leave",
            Self::Svc => "svc",
        }
    }

    /// Returns the arguments the action takes.
    fn arguments(self) -> &'static [&'static str] {
        match self {
            Self::Isolate | Self::Kill | Self::Pause | Self::Resume | Self::Leave => &["nodes"],
            Self::Restart => &["nodes", "empty_store"],
            Self::Svc => &["nodes", "command"],
            Self::Split => &["groups"],
            Self::Cut => &["nodes", "oneway"],
            Self::Heal | Self::Clear | Self::TrunkDown | Self::TrunkUp => &[],
            Self::Loss => &["nodes", "pct", "burst"],
            Self::Duplicate => &["nodes", "pct"],
            Self::Delay => &["nodes", "ms", "jitter_ms"],
            Self::Reorder => &["nodes", "pct", "ms"],
        }
    }
}

/// A step as the file spells it: every argument of every action, in the order summary.json
/// has always written them (an argument a step lacks is written as 0, and a 0 is accepted
/// for an argument the action does not take, so every summary.json reads back).
///
/// The keys added later (`at`, `after_ms`, `target`, `empty_store`, and `at_ms` absent) are
/// written only where a step has them, so summaries of steps without them read as before.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_ms: Option<u64>,
    action: ActionName,
    #[serde(default)]
    nodes: Vec<NodeId>,
    #[serde(default)]
    groups: Vec<Vec<NodeId>>,
    #[serde(default)]
    oneway: bool,
    #[serde(default, serialize_with = "zero_if_none")]
    pct: Option<u32>,
    #[serde(default, serialize_with = "zero_if_none")]
    ms: Option<u64>,
    #[serde(default, serialize_with = "zero_if_none")]
    jitter_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<Trigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<Target>,
    #[serde(default, skip_serializing_if = "is_false")]
    empty_store: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Writes an argument a step lacks as 0, as summary.json always has.
fn zero_if_none<S: Serializer, T: Serialize + Default>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => v.serialize(s),
        None => T::default().serialize(s),
    }
}

impl ProcessOp {
    /// Returns its name in the file and in the fault record.
    pub fn name(self) -> &'static str {
        FaultAction::Process(self, vec![]).name()
    }
}

impl NetworkFault {
    /// Returns the `fault.sh` calls that carry it out: one, or one per node for per-node
    /// impairments.
    pub fn script_calls(&self) -> Vec<Vec<String>> {
        let args = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<String>>();
        let each = |nodes: &[NodeId], mk: &dyn Fn(String) -> Vec<String>| {
            nodes.iter().map(|n| mk(n.to_string())).collect()
        };
        match self {
            Self::Isolate(nodes) => vec![args(&["isolate", &join(nodes)])],
            Self::Split(groups) => vec![std::iter::once("split".to_string())
                .chain(groups.iter().map(|g| join(g)))
                .collect()],
            Self::Cut { nodes, oneway } => {
                let (a, b) = (nodes[0].to_string(), nodes[1].to_string());
                let oneway: &[&str] = if *oneway { &["--oneway"] } else { &[] };
                vec![args(&[&["cut", a.as_str(), b.as_str()], oneway].concat())]
            }
            Self::Heal => vec![args(&["heal"])],
            Self::TrunkDown => vec![args(&["trunk", "down"])],
            Self::TrunkUp => vec![args(&["trunk", "up"])],
            Self::Loss { nodes, pct, burst } => {
                let (pct, burst) = (pct.to_string(), burst.to_string());
                let call = |n: &str| {
                    let mut a = args(&["loss", n, &pct]);
                    if burst != "0" {
                        a.push(burst.clone());
                    }
                    a
                };
                if nodes.is_empty() {
                    vec![call("all")]
                } else {
                    each(nodes, &|n| call(&n))
                }
            }
            Self::Delay {
                nodes,
                ms,
                jitter_ms,
            } => each(nodes, &|n| {
                args(&["delay", &n, &ms.to_string(), &jitter_ms.to_string()])
            }),
            Self::Reorder { nodes, pct, gap_ms } => each(nodes, &|n| {
                args(&[
                    "reorder",
                    &n,
                    &pct.to_string(),
                    &(*gap_ms).max(1).to_string(),
                ])
            }),
            Self::Duplicate { nodes, pct } => {
                each(nodes, &|n| args(&["duplicate", &n, &pct.to_string()]))
            }
            Self::Clear => vec![args(&["clear"])],
        }
    }
}

impl FaultAction {
    /// Returns its name in the file.
    pub fn name(&self) -> &'static str {
        self.tag().as_str()
    }

    /// Returns whether carrying it out leaves a `fault` record (every action but `svc`,
    /// which is no fault).
    pub fn leaves_record(&self) -> bool {
        !matches!(self, Self::Svc(..))
    }

    /// Returns the control request a `svc` step sends (none for every other action).
    pub fn svc_request(&self) -> Option<ringlab_net::control::Request> {
        match self {
            Self::Svc(_, cmd) => svc_request(cmd).ok(),
            _ => None,
        }
    }

    /// Returns the tag of its step.
    fn tag(&self) -> ActionName {
        match self {
            Self::Svc(..) => ActionName::Svc,
            Self::Process(op, _) => match op {
                ProcessOp::Kill => ActionName::Kill,
                ProcessOp::Pause => ActionName::Pause,
                ProcessOp::Resume => ActionName::Resume,
                ProcessOp::Restart | ProcessOp::RestartEmpty => ActionName::Restart,
                ProcessOp::Leave => ActionName::Leave,
            },
            Self::Network(f) => match f {
                NetworkFault::Isolate(_) => ActionName::Isolate,
                NetworkFault::Split(_) => ActionName::Split,
                NetworkFault::Cut { .. } => ActionName::Cut,
                NetworkFault::Heal => ActionName::Heal,
                NetworkFault::TrunkDown => ActionName::TrunkDown,
                NetworkFault::TrunkUp => ActionName::TrunkUp,
                NetworkFault::Loss { .. } => ActionName::Loss,
                NetworkFault::Delay { .. } => ActionName::Delay,
                NetworkFault::Reorder { .. } => ActionName::Reorder,
                NetworkFault::Duplicate { .. } => ActionName::Duplicate,
                NetworkFault::Clear => ActionName::Clear,
            },
        }
    }

    /// Returns the nodes it names in `nodes` (a split names its nodes in `groups`).
    pub fn nodes(&self) -> &[NodeId] {
        match self {
            Self::Process(_, nodes) | Self::Svc(nodes, _) => nodes,
            Self::Network(f) => match f {
                NetworkFault::Isolate(nodes)
                | NetworkFault::Loss { nodes, .. }
                | NetworkFault::Delay { nodes, .. }
                | NetworkFault::Reorder { nodes, .. }
                | NetworkFault::Duplicate { nodes, .. } => nodes,
                NetworkFault::Cut { nodes, .. } => nodes,
                NetworkFault::Split(_)
                | NetworkFault::Heal
                | NetworkFault::TrunkDown
                | NetworkFault::TrunkUp
                | NetworkFault::Clear => &[],
            },
        }
    }

    /// Returns the same action on `nodes` instead of the nodes it names (a step with a
    /// [`Target`] is resolved so); an action without a node list is returned as it is.
    pub fn with_nodes(&self, nodes: Vec<NodeId>) -> Self {
        let mut a = self.clone();
        match &mut a {
            Self::Process(_, n) | Self::Svc(n, _) => *n = nodes,
            Self::Network(f) => match f {
                NetworkFault::Isolate(n)
                | NetworkFault::Loss { nodes: n, .. }
                | NetworkFault::Delay { nodes: n, .. }
                | NetworkFault::Reorder { nodes: n, .. }
                | NetworkFault::Duplicate { nodes: n, .. } => *n = nodes,
                NetworkFault::Cut { .. }
                | NetworkFault::Split(_)
                | NetworkFault::Heal
                | NetworkFault::TrunkDown
                | NetworkFault::TrunkUp
                | NetworkFault::Clear => {}
            },
        }
        a
    }

    /// Returns a split's groups (none for every other action).
    pub fn groups(&self) -> &[Vec<NodeId>] {
        match self {
            Self::Network(NetworkFault::Split(groups)) => groups,
            _ => &[],
        }
    }

    /// Returns the record it leaves in a cluster of `nodes` nodes: a one-way cut is named
    /// so, a loss on every link targets every node, and a split (or the two-sites trunk
    /// going down or up) names its groups.
    pub fn record(&self, nodes: usize) -> FaultRecord {
        let (action, targets, groups) = match self {
            Self::Network(NetworkFault::Cut {
                nodes,
                oneway: true,
            }) => ("cut-oneway", nodes.to_vec(), vec![]),
            Self::Network(NetworkFault::Loss { nodes: t, .. }) if t.is_empty() => {
                (self.name(), (1..=nodes as NodeId).collect(), vec![])
            }
            Self::Network(NetworkFault::TrunkDown | NetworkFault::TrunkUp) => {
                let half = (nodes / 2) as NodeId;
                let sites = vec![(1..=half).collect(), (half + 1..=nodes as NodeId).collect()];
                (self.name(), vec![], sites)
            }
            _ => (self.name(), self.nodes().to_vec(), self.groups().to_vec()),
        };
        FaultRecord {
            action,
            targets,
            groups,
        }
    }
}

impl Target {
    /// Returns its name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
        }
    }
}

impl fmt::Display for FaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a `svc` step's command (the words after `svc`) as `ringlab ctl` does.
fn svc_request(cmd: &str) -> Result<ringlab_net::control::Request, String> {
    let words: Vec<String> = cmd.split_whitespace().map(String::from).collect();
    if words.is_empty() {
        return Err("svc needs `command`: a service and its command".into());
    }
    ringlab_net::control::args::parse("svc", &words)
        .map_err(|e| format!("svc: `command` {cmd:?}: {e}"))
}

/// Joins node ids with commas.
fn join(v: &[NodeId]) -> String {
    v.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl TryFrom<RawStep> for FaultStep {
    type Error = String;

    fn try_from(r: RawStep) -> Result<Self, String> {
        let name = r.action.as_str();
        let takes = r.action.arguments();
        let given = [
            ("nodes", !r.nodes.is_empty()),
            ("groups", !r.groups.is_empty()),
            ("oneway", r.oneway),
            ("pct", r.pct.is_some_and(|v| v != 0)),
            ("ms", r.ms.is_some_and(|v| v != 0)),
            ("jitter_ms", r.jitter_ms.is_some_and(|v| v != 0)),
            ("empty_store", r.empty_store),
            ("command", r.command.is_some()),
            ("burst", r.burst.is_some_and(|v| v != 0)),
        ];
        for (arg, set) in given {
            if set && !takes.contains(&arg) {
                return Err(match takes {
                    [] => format!("{name} takes no arguments, not `{arg}`"),
                    _ => format!("{name} takes `{}`, not `{arg}`", takes.join("`, `")),
                });
            }
        }
        let when = match (r.at_ms, r.at, r.after_ms) {
            (Some(t), None, None) => When::AtMs(t),
            (None, Some(Trigger::CopyHalf), None) => When::CopyHalf,
            (None, None, Some(t)) => When::AfterMs(t),
            _ => {
                return Err(
                    "a step needs exactly one of `at_ms`, `at` (\"copy-half\") and `after_ms`"
                        .into(),
                )
            }
        };
        if let Some(t) = r.target {
            if !takes.contains(&"nodes") || r.action == ActionName::Cut {
                return Err(format!("{name} takes no `target`"));
            }
            if !r.nodes.is_empty() {
                return Err(format!(
                    "{name}: `target` ({}) names its node; leave out `nodes`",
                    t.as_str()
                ));
            }
        } else if takes.contains(&"nodes") && r.action != ActionName::Loss && r.nodes.is_empty() {
            return Err(format!("{name} needs `nodes` (or `target`)"));
        }
        // What the action cannot do without: a percentage, a delay.
        let pct = match (takes.contains(&"pct"), r.pct) {
            (true, None) => return Err(format!("{name} needs `pct`")),
            (true, Some(p)) if p > 100 => {
                return Err(format!("{name}: `pct` is a percentage (0-100), not {p}"))
            }
            (_, p) => p.unwrap_or(0),
        };
        let ms = match (r.action, r.ms) {
            (ActionName::Delay, None) => return Err(format!("{name} needs `ms`")),
            (_, ms) => ms.unwrap_or(0),
        };
        let jitter_ms = r.jitter_ms.unwrap_or(0);
        let nodes = r.nodes;
        let net = FaultAction::Network;
        let action = match r.action {
            ActionName::Isolate => net(NetworkFault::Isolate(nodes)),
            ActionName::Split => {
                if r.groups.len() < 2 || r.groups.iter().any(|g| g.is_empty()) {
                    return Err("split needs `groups`: two or more, none empty".into());
                }
                net(NetworkFault::Split(r.groups))
            }
            ActionName::Cut => match nodes[..] {
                [a, b] if a != b => net(NetworkFault::Cut {
                    nodes: [a, b],
                    oneway: r.oneway,
                }),
                _ => return Err(format!("cut needs two different `nodes`, not {nodes:?}")),
            },
            ActionName::Heal => net(NetworkFault::Heal),
            ActionName::TrunkDown => net(NetworkFault::TrunkDown),
            ActionName::TrunkUp => net(NetworkFault::TrunkUp),
            ActionName::Loss => net(NetworkFault::Loss {
                nodes,
                pct,
                burst: r.burst.unwrap_or(0),
            }),
            ActionName::Delay => net(NetworkFault::Delay {
                nodes,
                ms,
                jitter_ms,
            }),
            ActionName::Reorder => net(NetworkFault::Reorder {
                nodes,
                pct,
                gap_ms: ms,
            }),
            ActionName::Duplicate => net(NetworkFault::Duplicate { nodes, pct }),
            ActionName::Clear => net(NetworkFault::Clear),
            ActionName::Kill => FaultAction::Process(ProcessOp::Kill, nodes),
            ActionName::Pause => FaultAction::Process(ProcessOp::Pause, nodes),
            ActionName::Resume => FaultAction::Process(ProcessOp::Resume, nodes),
            ActionName::Restart if r.empty_store => {
                FaultAction::Process(ProcessOp::RestartEmpty, nodes)
            }
            ActionName::Restart => FaultAction::Process(ProcessOp::Restart, nodes),
            ActionName::Leave => FaultAction::Process(ProcessOp::Leave, nodes),
            ActionName::Svc => {
                let cmd = r.command.unwrap_or_default();
                svc_request(&cmd)?;
                FaultAction::Svc(nodes, cmd)
            }
        };
        Ok(Self {
            when,
            action,
            target: r.target,
        })
    }
}

impl From<&FaultStep> for RawStep {
    fn from(f: &FaultStep) -> Self {
        let mut r = Self {
            at_ms: f.at_ms(),
            action: f.action.tag(),
            nodes: f.action.nodes().to_vec(),
            groups: f.action.groups().to_vec(),
            oneway: false,
            pct: None,
            ms: None,
            jitter_ms: None,
            at: (f.when == When::CopyHalf).then_some(Trigger::CopyHalf),
            after_ms: match f.when {
                When::AfterMs(t) => Some(t),
                _ => None,
            },
            target: f.target,
            empty_store: matches!(f.action, FaultAction::Process(ProcessOp::RestartEmpty, _)),
            command: match &f.action {
                FaultAction::Svc(_, c) => Some(c.clone()),
                _ => None,
            },
            burst: match f.action {
                FaultAction::Network(NetworkFault::Loss { burst, .. }) if burst != 0 => Some(burst),
                _ => None,
            },
        };
        if let FaultAction::Network(n) = &f.action {
            match *n {
                NetworkFault::Cut { oneway, .. } => r.oneway = oneway,
                NetworkFault::Loss { pct, .. } | NetworkFault::Duplicate { pct, .. } => {
                    r.pct = Some(pct)
                }
                NetworkFault::Delay { ms, jitter_ms, .. } => {
                    (r.ms, r.jitter_ms) = (Some(ms), Some(jitter_ms))
                }
                NetworkFault::Reorder { pct, gap_ms, .. } => {
                    (r.pct, r.ms) = (Some(pct), Some(gap_ms))
                }
                _ => {}
            }
        }
        r
    }
}

impl Serialize for FaultStep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawStep::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for FaultStep {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Reads the step's table and checks it inside the visit, so that the format's error
        /// carries the table's position (toml: the step's line).
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = FaultStep;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fault step: at_ms, action and the action's arguments")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FaultStep, A::Error> {
                let raw = RawStep::deserialize(de::value::MapAccessDeserializer::new(map))?;
                FaultStep::try_from(raw).map_err(de::Error::custom)
            }
        }
        d.deserialize_map(StepVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;

    const ALL: [ActionName; 17] = [
        ActionName::Isolate,
        ActionName::Split,
        ActionName::Cut,
        ActionName::Heal,
        ActionName::TrunkDown,
        ActionName::TrunkUp,
        ActionName::Loss,
        ActionName::Delay,
        ActionName::Reorder,
        ActionName::Duplicate,
        ActionName::Clear,
        ActionName::Kill,
        ActionName::Pause,
        ActionName::Resume,
        ActionName::Restart,
        ActionName::Leave,
        ActionName::Svc,
    ];

    /// Returns an experiment file of 5 nodes whose second step is `step` (from line 9 on).
    fn file(step: &str) -> String {
        format!(
            "name = 'x'\nnodes = 5\nduration_ms = 9000\n\n[[faults]]\nat_ms = 1000\naction = 'heal'\n\n[[faults]]\nat_ms = 2000\n{step}\n"
        )
    }

    fn parse_error(step: &str) -> String {
        match toml::from_str::<Experiment>(&file(step)) {
            Ok(_) => panic!("{step:?} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_percentage_or_a_delay_the_action_needs_is_not_taken_as_zero() {
        for (step, want) in [
            ("action = 'loss'\nnodes = [2]", "loss needs `pct`"),
            (
                "action = 'duplicate'\nnodes = [2]\npct = 1\nburst = 5",
                "duplicate takes `nodes`, `pct`, not `burst`",
            ),
            ("action = 'duplicate'\nnodes = [2]", "duplicate needs `pct`"),
            (
                "action = 'reorder'\nnodes = [2]\nms = 5",
                "reorder needs `pct`",
            ),
            (
                "action = 'delay'\nnodes = [2]\njitter_ms = 2",
                "delay needs `ms`",
            ),
        ] {
            let e = toml::from_str::<FaultStep>(&format!("at_ms = 1\n{step}")).unwrap_err();
            assert!(e.to_string().contains(want), "{step}: {e}");
        }
    }

    #[test]
    fn names_are_the_serde_tags() {
        for a in ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
            let raw = RawStep {
                at_ms: Some(0),
                action: a,
                nodes: if a.arguments().contains(&"nodes") {
                    vec![1, 2]
                } else {
                    vec![]
                },
                groups: if a == ActionName::Split {
                    vec![vec![1], vec![2]]
                } else {
                    vec![]
                },
                oneway: false,
                pct: a.arguments().contains(&"pct").then_some(1),
                ms: (a == ActionName::Delay).then_some(1),
                jitter_ms: None,
                at: None,
                after_ms: None,
                target: None,
                empty_store: false,
                command: (a == ActionName::Svc).then(|| "kml status".into()),
                burst: None,
            };
            let step = FaultStep::try_from(raw).unwrap();
            assert_eq!(step.action.name(), a.as_str());
            assert_eq!(step.action.tag(), a);
        }
    }

    #[test]
    fn a_bursty_loss_parses_writes_back_and_calls_fault_sh_with_its_burst() {
        let f: FaultStep =
            toml::from_str("at_ms = 7\naction = 'loss'\npct = 10\nburst = 5").unwrap();
        let FaultAction::Network(n) = &f.action else {
            panic!("{f:?}");
        };
        assert_eq!(n.script_calls(), [["loss", "all", "10", "5"]]);
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["burst"], 5);
        let back: FaultStep = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
        // Without a burst: no key written, uniform as before.
        let u: FaultStep = toml::from_str("at_ms = 7\naction = 'loss'\npct = 10").unwrap();
        assert!(serde_json::to_value(&u).unwrap().get("burst").is_none());
    }

    #[test]
    fn every_action_parses_and_writes_back_as_the_flat_table() {
        for step in [
            "action = 'isolate'\nnodes = [4, 5]",
            "action = 'split'\ngroups = [[1, 2], [3, 4, 5]]",
            "action = 'cut'\nnodes = [1, 2]\noneway = true",
            "action = 'heal'",
            "action = 'trunk-down'",
            "action = 'trunk-up'",
            "action = 'loss'\npct = 10",
            "action = 'loss'\nnodes = [2]\npct = 0",
            "action = 'delay'\nnodes = [2]\nms = 5\njitter_ms = 2",
            "action = 'reorder'\nnodes = [2]\npct = 5\nms = 20",
            "action = 'duplicate'\nnodes = [1]\npct = 3",
            "action = 'clear'",
            "action = 'kill'\nnodes = [3]",
            "action = 'pause'\nnodes = [3]",
            "action = 'resume'\nnodes = [3]",
            "action = 'restart'\nnodes = [3]",
            "action = 'leave'\nnodes = [3]",
        ] {
            let f: FaultStep = toml::from_str(&format!("at_ms = 7\n{step}")).unwrap();
            let t: toml::Table = toml::from_str(&format!("at_ms = 7\n{step}")).unwrap();
            // Every field, in the order summary.json has always had.
            let json = serde_json::to_string(&f).unwrap();
            let keys: Vec<&str> = json.split('"').skip(1).step_by(2).collect();
            let keys: Vec<&str> = keys
                .into_iter()
                .filter(|k| *k != t["action"].as_str().unwrap())
                .collect();
            assert_eq!(
                keys,
                [
                    "at_ms",
                    "action",
                    "nodes",
                    "groups",
                    "oneway",
                    "pct",
                    "ms",
                    "jitter_ms"
                ],
                "{step}"
            );
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            for (k, x) in &t {
                assert_eq!(
                    v[k].to_string(),
                    serde_json::to_value(x).unwrap().to_string(),
                    "{step}: {k}"
                );
            }
            let back: FaultStep = serde_json::from_str(&json).unwrap();
            assert_eq!(back, f, "{step}");
        }
    }

    #[test]
    fn a_svc_step_sends_a_checked_service_command_and_leaves_no_record() {
        let f: FaultStep = toml::from_str(
            "at_ms = 7\naction = 'svc'\nnodes = [1, 4]\ncommand = 'kml write path=/a data=x'",
        )
        .unwrap();
        assert_eq!(f.action.nodes(), [1, 4]);
        assert!(!f.action.leaves_record());
        let Some(ringlab_net::control::Request::Svc { service, request }) = f.action.svc_request()
        else {
            panic!("not a svc request: {:?}", f.action.svc_request());
        };
        assert_eq!(service, "kml");
        assert_eq!(request["op"], "do", "{request}");
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.contains("\"command\":\"kml write path=/a data=x\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<FaultStep>(&json).unwrap(), f);
        for (step, says) in [
            ("action = 'svc'\nnodes = [1]", "svc needs `command`"),
            (
                "action = 'svc'\nnodes = [1]\ncommand = 'kml bogus'",
                "unknown command",
            ),
            (
                "action = 'svc'\nnodes = [1]\ncommand = 'nosuchservice status'",
                "nosuchservice",
            ),
            (
                "action = 'svc'\ncommand = 'kml status'",
                "svc needs `nodes`",
            ),
            (
                "action = 'heal'\ncommand = 'kml status'",
                "heal takes no arguments, not `command`",
            ),
        ] {
            let e = parse_error(step);
            assert!(e.contains(says), "{step}: {e}");
        }
    }

    #[test]
    fn a_bad_action_is_an_error_at_its_line() {
        let e = parse_error("action = 'isolat'\nnodes = [5]");
        assert!(e.starts_with("TOML parse error at line 11,"), "{e}");
        assert!(e.contains("unknown variant `isolat`"), "{e}");
        assert!(e.contains("isolate"), "{e}");
    }

    #[test]
    fn a_bad_argument_is_an_error_at_its_step() {
        // The step's table starts at line 9; a key or a value of the wrong kind is named at
        // its own line.
        for (step, line, says) in [
            ("action = 'isolate'", 9, "isolate needs `nodes`"),
            (
                "action = 'isolate'\nnodes = [5]\npct = 5",
                9,
                "isolate takes `nodes`, not `pct`",
            ),
            (
                "action = 'heal'\nnodes = [5]",
                9,
                "heal takes no arguments, not `nodes`",
            ),
            (
                "action = 'cut'\nnodes = [1, 2, 3]",
                9,
                "cut needs two different `nodes`",
            ),
            (
                "action = 'cut'\nnodes = [2, 2]",
                9,
                "cut needs two different `nodes`",
            ),
            (
                "action = 'split'\ngroups = [[1, 2, 3, 4, 5]]",
                9,
                "split needs `groups`",
            ),
            (
                "action = 'split'\ngroups = [[1, 2], []]",
                9,
                "split needs `groups`",
            ),
            (
                "action = 'loss'\npct = 150",
                9,
                "`pct` is a percentage (0-100), not 150",
            ),
            (
                "action = 'delay'\nnodes = [2]\npct = 5",
                9,
                "delay takes `nodes`, `ms`, `jitter_ms`, not `pct`",
            ),
            (
                "action = 'kill'\ngroups = [[1], [2]]",
                9,
                "kill takes `nodes`, not `groups`",
            ),
            ("nodes = [1]", 9, "missing field `action`"),
            ("action = 'kill'\nnode = [1]", 12, "unknown field `node`"),
            ("action = 'kill'\nnodes = ['a']", 12, "invalid type"),
        ] {
            let e = parse_error(step);
            assert!(e.contains(says), "{step:?}: {e}");
            assert!(
                e.starts_with(&format!("TOML parse error at line {line},")),
                "{step:?}: {e}"
            );
        }
    }

    #[test]
    fn loading_a_file_names_the_file_and_the_line() {
        let path = std::env::temp_dir().join(format!("ringlab-bad-{}.toml", std::process::id()));
        std::fs::write(&path, file("action = 'cut'\nnodes = [1]")).unwrap();
        let e = format!("{:#}", Experiment::load(&path).unwrap_err());
        std::fs::remove_file(&path).unwrap();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("line 9"), "{e}");
        assert!(
            e.contains("cut needs two different `nodes`, not [1]"),
            "{e}"
        );
    }

    #[test]
    fn a_step_waits_for_the_copy_and_names_its_provider() {
        let f: FaultStep =
            toml::from_str("at = 'copy-half'\naction = 'kill'\ntarget = 'provider'").unwrap();
        assert_eq!(f.when, When::CopyHalf);
        assert_eq!(f.target, Some(Target::Provider));
        assert_eq!(f.action, FaultAction::Process(ProcessOp::Kill, vec![]));
        assert_eq!(f.at_ms(), None);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["at"], "copy-half");
        assert_eq!(v["target"], "provider");
        assert!(
            v.get("at_ms").is_none() && v.get("after_ms").is_none(),
            "{v}"
        );
        assert_eq!(serde_json::from_value::<FaultStep>(v).unwrap(), f);
        // Resolved at run time: the provider's number in the action and its record.
        let iso: FaultStep =
            toml::from_str("at = 'copy-half'\naction = 'isolate'\ntarget = 'provider'").unwrap();
        let a = iso.action.with_nodes(vec![3]);
        let FaultAction::Network(net) = &a else {
            panic!("{a:?}")
        };
        assert_eq!(net.script_calls(), [["isolate", "3"]]);
        assert_eq!(a.record(5).targets, [3]);
        assert_eq!(
            f.action.with_nodes(vec![2]),
            FaultAction::Process(ProcessOp::Kill, vec![2])
        );
        let heal: FaultStep = toml::from_str("after_ms = 5000\naction = 'heal'").unwrap();
        assert_eq!(heal.when, When::AfterMs(5000));
        assert_eq!(heal.action.with_nodes(vec![3]), heal.action);
        let v = serde_json::to_value(&heal).unwrap();
        assert_eq!(v["after_ms"], 5000);
        assert_eq!(serde_json::from_value::<FaultStep>(v).unwrap(), heal);
    }

    #[test]
    fn a_restart_with_an_empty_store_is_a_restart_in_its_record() {
        let f: FaultStep =
            toml::from_str("at_ms = 9\naction = 'restart'\nnodes = [5]\nempty_store = true")
                .unwrap();
        assert_eq!(
            f.action,
            FaultAction::Process(ProcessOp::RestartEmpty, vec![5])
        );
        assert_eq!(f.action.name(), "restart");
        assert_eq!(f.action.record(5).action, "restart");
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["empty_store"], true);
        assert_eq!(serde_json::from_value::<FaultStep>(v).unwrap(), f);
        let plain: FaultStep =
            toml::from_str("at_ms = 9\naction = 'restart'\nnodes = [5]\nempty_store = false")
                .unwrap();
        assert_eq!(
            plain.action,
            FaultAction::Process(ProcessOp::Restart, vec![5])
        );
        assert!(serde_json::to_value(&plain)
            .unwrap()
            .get("empty_store")
            .is_none());
    }

    #[test]
    fn a_step_with_no_time_or_two_or_a_target_it_cannot_take_is_refused() {
        for (step, says) in [
            ("action = 'heal'", "exactly one of `at_ms`, `at`"),
            (
                "at_ms = 1\nat = 'copy-half'\naction = 'heal'",
                "exactly one of",
            ),
            ("at_ms = 1\nafter_ms = 2\naction = 'heal'", "exactly one of"),
            (
                "at = 'copy-quarter'\naction = 'heal'",
                "unknown variant `copy-quarter`",
            ),
            (
                "at_ms = 1\naction = 'kill'\ntarget = 'leader'",
                "unknown variant `leader`",
            ),
            (
                "at_ms = 1\naction = 'kill'\nnodes = [2]\ntarget = 'provider'",
                "leave out `nodes`",
            ),
            (
                "at_ms = 1\naction = 'cut'\ntarget = 'provider'",
                "cut takes no `target`",
            ),
            (
                "at_ms = 1\naction = 'heal'\ntarget = 'provider'",
                "heal takes no `target`",
            ),
            (
                "at_ms = 1\naction = 'kill'\nnodes = [2]\nempty_store = true",
                "kill takes `nodes`, not `empty_store`",
            ),
            (
                "at_ms = 1\naction = 'kill'",
                "kill needs `nodes` (or `target`)",
            ),
        ] {
            let e = toml::from_str::<FaultStep>(step).unwrap_err().to_string();
            assert!(e.contains(says), "{step:?}: {e}");
        }
    }
}
