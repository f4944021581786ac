//! Experiments: a TOML file in experiments/ says the topology, the nodes' knobs, the load and
//! the fault schedule; [`run`](crate::runner::run) carries it out in network namespaces (root) and writes
//! `results/<name>/<timestamp>/`.
//!
//! ```toml
//! name = "isolate-one"
//! description = "one node cut off, then healed"
//! nodes = 5
//! shape = "lan"            # lan | two-sites | star
//! transport = "unicast"    # unicast | multicast
//! reps = 5
//! duration_ms = 12000      # per repetition, from the first full ring
//! loss_pct = 0             # nftables loss of every frame between nodes, from the start
//! loss_burst = 0           # > 1: loss_pct is the mean loss, in bursts of this mean length
//!                          # (frames; Gilbert–Elliott per directed link, by a ringlab relay
//!                          # on every node's port instead of nftables); 0 or 1: uniform
//! services = []            # ["checkpoint"] runs the sync engine with these services
//! record_messages = true   # send/deliver records (false: none; throughput from counters)
//! record_every = 1         # of those, only messages whose counter is a multiple of N
//! [service_config.resources]   # a service's own section, given to every node
//! policy = "primary"
//! key = true               # a fresh random key per run (the default); false: no
//!                          # authentication, and ringlab run warns loudly
//! [totem]                  # every ring knob, corosync's names (variant too)
//! token = 1000
//! consensus = 1200
//! [load]
//! rate = 200               # messages per second per sender (0: as fast as the ring takes)
//! size = 1024
//! senders = 5              # nodes 1..=senders send
//! safe = false
//! service = "checkpoint"   # optional: the senders drive this service's own workload (one
//! state_bytes = 65536      # of `services`) instead of plain messages, sized to state_bytes
//! [store]                  # with services = ["store"]: the store built before the faults
//! bytes = 10485760         # of values: bytes / value_size keys, filled through node 1
//! value_size = 1024        # bytes of each value (1 to 61440)
//! fill_timeout_ms = 120000 # the fill's bound (default 30 s + 10 s per MiB)
//! [baseline]               # measurements of the bare network in the same run
//! raw = true               # raw UDP across the bridge (a fan-out; with [store]: one flow)
//! raw_ms = 1000            # each raw measurement's sending time
//! raw_transports = ["multicast", "unicast"]   # the fan-outs measured (default both)
//! [[faults]]
//! at_ms = 3000
//! action = "isolate"       # isolate split cut heal trunk-down trunk-up loss delay reorder
//! nodes = [5]              # duplicate clear kill pause resume restart leave
//! ```
//!
//! Each action's arguments, and the steps' `at = "copy-half"`, `after_ms`, `target =
//! "provider"` and `empty_store = true`: [`crate::fault`].
//!
//! **The store** (`[store]`, with `services = ["store"]`): after the first full ring, the
//! runner fills the store through node 1 (`svc store fill`, keys `fill-0`... of `value_size`
//! bytes, in requests of at most 128 MiB) and waits until every node's `svc store status`
//! shows a version of at least the number of keys (bounded by `fill_timeout_ms`; past it the
//! repetition fails). The timeline of `at_ms` and `duration_ms` starts after the fill. The
//! copy the store experiments measure is made by a step `action = "restart"`, `empty_store
//! = true`: its node is the copy's *requester*. Writes go on during the copy through the
//! experiment's `[load]`: `service = "store"` drives the store's own workload (puts and
//! deletes of keys `k0`... with values of 1 B to 2 KiB) at `rate` per sender. Make the
//! service's `log_keep` smaller than the number of keys, or the restarted node is brought
//! back from the log (the recent path) instead of by a full copy.
//!
//! **Baselines** (`[baseline]`): `raw = true` measures raw UDP across the run's own bridge
//! before the first repetition (topology up, no node started) and after each one (nodes
//! stopped, topology not yet down), so raw and ring measurements interleave: raw, ring,
//! raw, ring, ..., raw, and each repetition has the raw figures of the same run just
//! before and just after it.
//! - Without `[store]`: a fan-out ([`crate::raw`]): node 1's namespace sends datagrams of
//!   `load.size` bytes for `raw_ms` (default 1000 ms), as fast as it can, to every other
//!   namespace: one multicast to a group all of them joined, and one copy to each with
//!   `sendmmsg` (`raw_transports` picks; default both); per receiver datagrams/s, loss and
//!   CPU time per datagram of sender and receivers. Each repetition's ring throughput per
//!   node is set against the raw rate per receiver of the experiment's own transport (the
//!   mean of the measurements before and after it): `ring_over_raw` in summary.json.
//! - With `[store]`: one flow from node 1's namespace to the copy's requester's (the last
//!   node without an `empty_store` restart; node 2 when the requester is node 1), datagrams
//!   of the store's `datagram_bytes` (default 1400) for 1 s, the receiver's bytes/s, set
//!   against the copy's rate ([`store`](crate::store)).
//!
//! **Records**: `record_messages = false` switches the nodes' send and deliver records off,
//! `record_every = N` keeps those of one message in N (the same messages on every node, by
//! the sender's counter); the other records stay. Throughput and latency then come from
//! the nodes' counters (`stats`), which count every message either way, and the checker
//! judges the records that remain: with none, total order, agreement, virtual synchrony and
//! self delivery have no messages to judge (summary.json's `records` says what a run kept).

use crate::fault::{FaultAction, FaultStep, NetworkFault, ProcessOp, When};
use anyhow::{bail, Context, Result};
use ringlab_net::harness::Implementation;
use ringlab_net::Transport;
use ringlab_ring::{Config as RingConfig, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One experiment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name: the results directory.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// Node count (1..=250).
    pub nodes: usize,
    /// Topology shape.
    #[serde(default = "default_shape")]
    pub shape: String,
    /// Transport.
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// Repetitions.
    #[serde(default = "default_reps")]
    pub reps: u32,
    /// Length of each repetition from the first full ring, ms.
    pub duration_ms: u64,
    /// nftables loss of every frame between two nodes (per hop) from the first full ring on,
    /// percent.
    #[serde(default)]
    pub loss_pct: u32,
    /// With `loss_pct`: the mean length of a burst of losses, in frames. Above 1 the loss
    /// is Gilbert–Elliott, one chain per directed link, carried out by a `ringlab relay` on
    /// every node's port (losing toward the node, so each hop loses once) instead of
    /// nftables; 0 or 1: uniform.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub loss_burst: u32,
    /// Services every node runs.
    #[serde(default)]
    pub services: Vec<String>,
    /// Each service's own section (`[service_config.resources]`), given to every node as
    /// its `[service_config.NAME]`; checked by the service at load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_config: BTreeMap<String, toml::Value>,
    /// Ring knobs.
    #[serde(default)]
    pub totem: RingConfig,
    /// The load.
    #[serde(default)]
    pub load: Load,
    /// The fault schedule.
    #[serde(default)]
    pub faults: Vec<FaultStep>,
    /// Seed of the relay's impairments.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Whether the nodes authenticate every datagram with a key (the default: a fresh
    /// random key per run, see [`runner`](crate::runner)). `key = false` runs without, and
    /// `ringlab run` warns loudly of what that lets an attacker on the segment do. Written
    /// into summaries only when false (summary.json's `authenticated` says what a run did).
    #[serde(default = "default_key", skip_serializing_if = "is_true")]
    pub key: bool,
    /// The store built before the faults (`[store]`, with the store service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSetup>,
    /// Measurements of the bare network in the same run (`[baseline]`).
    #[serde(default, skip_serializing_if = "Baseline::is_none")]
    pub baseline: Baseline,
    /// Which Totem the nodes run: `"ringlab"` (the default) or `"corosync"` (the
    /// distribution's corosync through its CPG, one daemon per namespace; see
    /// [`crate::peer`]). Written into summaries only when not ringlab.
    #[serde(default, skip_serializing_if = "is_ringlab")]
    pub implementation: Implementation,
    /// Whether the nodes write send and deliver records (see the module's notes).
    #[serde(default = "default_key", skip_serializing_if = "is_true")]
    pub record_messages: bool,
    /// Of those, one message's in N.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub record_every: u64,
    /// Whether each repetition captures every frame that crosses the bridge into
    /// `records/rep-N/capture.pcapng` (`--capture`; see [`crate::capture`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture: bool,
    /// The cap on each repetition's capture, bytes (default 256 MiB); reaching it is said
    /// in the repetition's summary.
    #[serde(
        default = "default_capture_max",
        skip_serializing_if = "is_default_capture_max"
    )]
    pub capture_max_bytes: u64,
}

fn default_capture_max() -> u64 {
    ringlab_sim::capture::DEFAULT_MAX_BYTES
}

fn is_default_capture_max(v: &u64) -> bool {
    *v == default_capture_max()
}

fn one() -> u64 {
    1
}
fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_one(v: &u64) -> bool {
    *v == 1
}

fn is_ringlab(i: &Implementation) -> bool {
    *i == Implementation::Ringlab
}

/// `[store]`: the store every node holds before the faults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreSetup {
    /// Bytes of values to write (`bytes / value_size` keys).
    pub bytes: u64,
    /// Bytes of each value (default 1024).
    #[serde(default = "default_value_size")]
    pub value_size: usize,
    /// How long the fill may take, ms (default 30 s + 10 s per MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_timeout_ms: Option<u64>,
}

fn default_value_size() -> usize {
    1024
}

impl StoreSetup {
    /// Returns the number of keys the fill writes.
    pub fn keys(&self) -> u64 {
        self.bytes / self.value_size.max(1) as u64
    }

    /// Returns the fill's bound, ms.
    pub fn fill_timeout_ms(&self) -> u64 {
        self.fill_timeout_ms
            .unwrap_or(30_000 + self.bytes.div_ceil(1 << 20) * 10_000)
    }

    fn check(&self) -> Result<()> {
        let max = ringlab_sync::store::write::MAX_VALUE;
        if !(1..=max).contains(&self.value_size) {
            bail!("store.value_size {} must be 1 to {max}", self.value_size);
        }
        if self.keys() == 0 || self.bytes > 64 << 30 {
            bail!(
                "store.bytes {} must be at least value_size ({}) and at most 64 GiB",
                self.bytes,
                self.value_size
            );
        }
        if self.fill_timeout_ms == Some(0) {
            bail!("store.fill_timeout_ms must be above 0");
        }
        Ok(())
    }
}

/// `[baseline]`: measurements of the bare network, made in the same run as the experiment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Baseline {
    /// Raw UDP across the bridge before the first repetition and after each: a fan-out from
    /// node 1 (with `[store]`: one flow from node 1 to the copy's requester).
    pub raw: bool,
    /// Each fan-out's sending time, ms (1 to 10,000; default 1000).
    #[serde(default = "default_raw_ms", skip_serializing_if = "is_default_raw_ms")]
    pub raw_ms: u64,
    /// The fan-outs measured (default both).
    #[serde(
        default = "default_raw_transports",
        skip_serializing_if = "is_default_raw_transports"
    )]
    pub raw_transports: Vec<crate::raw::RawTransport>,
}

impl Default for Baseline {
    fn default() -> Self {
        Self {
            raw: false,
            raw_ms: default_raw_ms(),
            raw_transports: default_raw_transports(),
        }
    }
}

fn default_raw_ms() -> u64 {
    1000
}

fn is_default_raw_ms(v: &u64) -> bool {
    *v == default_raw_ms()
}

fn is_default_raw_transports(v: &[crate::raw::RawTransport]) -> bool {
    v == default_raw_transports()
}

fn default_raw_transports() -> Vec<crate::raw::RawTransport> {
    vec![
        crate::raw::RawTransport::Multicast,
        crate::raw::RawTransport::Unicast,
    ]
}

impl Baseline {
    fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

fn default_key() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

fn default_shape() -> String {
    "lan".into()
}
fn default_transport() -> Transport {
    Transport::Unicast
}
fn default_reps() -> u32 {
    3
}
fn default_seed() -> u64 {
    1
}

/// The load every sender runs for the whole repetition.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Load {
    /// Messages per second per sender; 0 runs at the ring's pace.
    pub rate: u64,
    /// Message size, bytes.
    pub size: usize,
    /// Nodes 1..=senders send (0: no load).
    pub senders: usize,
    /// Safe delivery instead of agreed.
    pub safe: bool,
    /// Drive this service's own workload (one of the experiment's `services`) instead of
    /// plain messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// With `service`: about how many bytes of state its workload keeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<usize>,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            rate: 200,
            size: 1024,
            senders: 0,
            safe: false,
            service: None,
            state_bytes: None,
        }
    }
}

impl Experiment {
    /// Reads and validates an experiment file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let e: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        e.check(&step_lines(&text))
            .with_context(|| format!("checking {}", path.display()))?;
        Ok(e)
    }

    /// Checks the fields against each other.
    pub fn validate(&self) -> Result<()> {
        self.check(&[])
    }

    /// Checks the fields against each other; a step's error names its line where `lines`
    /// has it.
    fn check(&self, lines: &[usize]) -> Result<()> {
        if !(1..=250).contains(&self.nodes) {
            bail!("nodes must be 1-250");
        }
        if !["lan", "two-sites", "star"].contains(&self.shape.as_str()) {
            bail!("shape must be lan, two-sites or star");
        }
        if self.reps == 0 {
            bail!("reps must be at least 1");
        }
        if self.loss_pct > 100 {
            bail!("loss_pct is a percentage (0-100)");
        }
        if self.loss_burst > 1000 {
            bail!("loss_burst is a mean burst length in frames (0-1000)");
        }
        if self.load.senders > self.nodes {
            bail!("load.senders must be at most nodes");
        }
        // Empty messages would run and report 0 msgs/s; a service's workload sizes its own.
        if self.load.senders > 0 && self.load.service.is_none() && self.load.size == 0 {
            bail!("load.size must be at least 1 byte (0 sends nothing to measure)");
        }
        let services = ringlab_sync::registry::resolve(&self.services).context("services")?;
        for name in self.service_config.keys() {
            if !self.services.contains(name) {
                bail!(
                    "service_config.{name}: {name:?} is not one of services {:?}",
                    self.services
                );
            }
        }
        let sections = self
            .service_config
            .iter()
            .map(|(k, v)| Ok((k.clone(), serde_json::to_value(v)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let nodes: Vec<ringlab_ring::NodeId> = (1..=self.nodes as ringlab_ring::NodeId).collect();
        ringlab_sync::ServiceApp::with_config(1, &services, &nodes, &sections)
            .context("service_config")?;
        if let Some(s) = &self.load.service {
            if !self.services.contains(s) {
                bail!(
                    "load.service {s:?} must be one of services {:?}",
                    self.services
                );
            }
        }
        self.totem.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(st) = &self.store {
            if !self.services.iter().any(|s| s == "store") {
                bail!("[store] needs the store service: services = [\"store\"]");
            }
            st.check()?;
        }
        if self.baseline.raw && self.nodes < 2 {
            bail!("baseline.raw needs two nodes or more");
        }
        if !(1..=10_000).contains(&self.baseline.raw_ms) {
            bail!("baseline.raw_ms must be 1 to 10000");
        }
        if self.baseline.raw && self.store.is_none() && self.baseline.raw_transports.is_empty() {
            bail!("baseline.raw_transports is empty: name multicast, unicast or both");
        }
        if self.record_every == 0 {
            bail!("record_every must be 1 or more (record_messages = false keeps none)");
        }
        if self.implementation == Implementation::Corosync {
            crate::peer::check_experiment(self)?;
        }
        // Each step's action and arguments were checked by the parse; here, what depends
        // on the rest of the experiment.
        for (i, f) in self.faults.iter().enumerate() {
            let at = lines
                .get(i)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            let a = &f.action;
            for n in a.nodes().iter().chain(a.groups().iter().flatten()) {
                if *n == 0 || *n as usize > self.nodes {
                    bail!(
                        "{at}faults[{i}] names node {n}; nodes are 1..={}",
                        self.nodes
                    );
                }
            }
            let trunk = matches!(
                a,
                FaultAction::Network(NetworkFault::TrunkDown | NetworkFault::TrunkUp)
            );
            if trunk && self.shape != "two-sites" {
                bail!("{at}faults[{i}] ({a}) needs the two-sites shape");
            }
            if f.at_ms().is_some_and(|t| t >= self.duration_ms) {
                bail!("{at}faults[{i}].at_ms is past duration_ms");
            }
            let empty = matches!(a, FaultAction::Process(ProcessOp::RestartEmpty, _));
            if empty && self.store.is_none() {
                bail!("{at}faults[{i}] restarts with an empty store: the experiment needs a [store] section");
            }
            let copy = self.faults[..i]
                .iter()
                .any(|g| matches!(g.action, FaultAction::Process(ProcessOp::RestartEmpty, _)));
            if (f.when == When::CopyHalf || f.target.is_some()) && !copy {
                bail!(
                    "{at}faults[{i}] waits for a copy or names its provider: an earlier step must restart a node with empty_store = true"
                );
            }
        }
        let empties: Vec<NodeId> = self
            .faults
            .iter()
            .filter(|f| matches!(f.action, FaultAction::Process(ProcessOp::RestartEmpty, _)))
            .flat_map(|f| f.action.nodes().iter().copied())
            .collect();
        if empties.len() > 1 {
            bail!("one node restarted with an empty store per experiment, not {empties:?}");
        }
        Ok(())
    }

    /// Returns the index among a repetition's `fault` records of the schedule's `i`-th
    /// step: a start-up loss (`loss_pct`) is record 0, and a step that leaves no record
    /// (`svc`) has none.
    pub fn recorded_index(&self, i: usize) -> Option<usize> {
        let f = self.faults.get(i)?;
        f.action.leaves_record().then(|| {
            usize::from(self.loss_pct > 0)
                + self.faults[..i]
                    .iter()
                    .filter(|g| g.action.leaves_record())
                    .count()
        })
    }

    /// Returns the copy's requester: the node restarted with an empty store, if any step
    /// does so.
    pub fn requester(&self) -> Option<NodeId> {
        self.faults.iter().find_map(|f| match &f.action {
            FaultAction::Process(ProcessOp::RestartEmpty, n) => n.first().copied(),
            _ => None,
        })
    }

    /// Returns the two ends of the raw baseline: from node 1 (node 2 when the requester is
    /// node 1) to the requester (the last node without one).
    pub fn baseline_ends(&self) -> (NodeId, NodeId) {
        let to = self.requester().unwrap_or(self.nodes as NodeId);
        (if to == 1 { 2 } else { 1 }, to)
    }

    /// Returns the raw fan-out of the experiment's own transport.
    pub fn raw_transport(&self) -> crate::raw::RawTransport {
        match self.transport {
            Transport::Multicast => crate::raw::RawTransport::Multicast,
            Transport::Unicast => crate::raw::RawTransport::Unicast,
        }
    }

    /// Returns the store service's `datagram_bytes` (default 1400): the raw baseline's
    /// datagram size.
    pub fn datagram_bytes(&self) -> usize {
        self.service_config
            .get("store")
            .and_then(|t| t.get("datagram_bytes"))
            .and_then(toml::Value::as_integer)
            .map_or(1400, |v| v as usize)
    }

    /// Sets one knob by name: a `[totem]` knob, or nodes, transport, shape, loss_pct, loss_burst,
    /// duration_ms, load.rate, load.size, load.senders, record_messages, record_every,
    /// records (all, none, or N: one message's records in N),
    /// implementation, store.bytes,
    /// store.value_size, or
    /// `service_config.SERVICE.KEY` (a key of the section of a service the experiment runs:
    /// `service_config.store.design`), also written `SERVICE.KEY` (`resources.policy`) where
    /// that is not one of the keys before. Used by `ringlab sweep`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some(k) = key
            .strip_prefix("store.")
            .filter(|k| ["bytes", "value_size"].contains(k) && !key.starts_with("service_config."))
        {
            let st = self
                .store
                .as_mut()
                .context("store.* needs a [store] section in the experiment")?;
            match k {
                "bytes" => st.bytes = value.parse().context("store.bytes")?,
                _ => st.value_size = value.parse().context("store.value_size")?,
            }
            return self.validate();
        }
        let key = key.strip_prefix("service_config.").unwrap_or(key);
        if let Some((service, k)) = key.split_once('.') {
            if self.services.iter().any(|s| s == service) {
                let v = value
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .or_else(|_| value.parse::<bool>().map(toml::Value::Boolean))
                    .unwrap_or_else(|_| toml::Value::String(value.into()));
                let section = self
                    .service_config
                    .entry(service.into())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                let Some(t) = section.as_table_mut() else {
                    bail!("service_config.{service} is not a table");
                };
                t.insert(k.into(), v);
                return self.validate();
            }
        }
        match key {
            "nodes" => self.nodes = value.parse()?,
            "shape" => self.shape = value.into(),
            "transport" => {
                self.transport = toml::Value::String(value.into())
                    .try_into()
                    .context("transport is unicast or multicast")?
            }
            "loss_pct" | "loss" => self.loss_pct = value.parse()?,
            "loss_burst" => self.loss_burst = value.parse()?,
            "duration_ms" => self.duration_ms = value.parse()?,
            "load.rate" => self.load.rate = value.parse()?,
            "load.size" => self.load.size = value.parse()?,
            "load.senders" => self.load.senders = value.parse()?,
            "record_messages" => self.record_messages = value.parse()?,
            // One knob for a sweep over all three: all, none, or N (one message in N).
            "records" => {
                (self.record_messages, self.record_every) = match value {
                    "all" => (true, 1),
                    "none" => (false, 1),
                    n => (
                        true,
                        n.parse()
                            .context("records is all, none, or N (one message in N)")?,
                    ),
                }
            }
            "record_every" => self.record_every = value.parse()?,
            "implementation" => {
                self.implementation = value.parse().map_err(|e: String| anyhow::anyhow!(e))?
            }
            _ => {
                let mut t = toml::Value::try_from(&self.totem)?;
                let tbl = t.as_table_mut().expect("a table");
                // A knob of the table with a value it cannot take says so, not "no knob".
                let known = tbl.contains_key(key);
                let v = value
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .unwrap_or_else(|_| toml::Value::String(value.into()));
                tbl.insert(key.into(), v);
                self.totem = t.try_into().with_context(|| {
                    if known {
                        format!("'{value}' is not a value '{key}' can take")
                    } else {
                        format!("'{key}' is not a knob of this experiment")
                    }
                })?;
            }
        }
        if self.load.senders > self.nodes {
            self.load.senders = self.nodes;
        }
        self.validate()
    }
}

/// Returns the line of each `[[faults]]` step of an experiment file (empty if it has none
/// or does not parse).
fn step_lines(text: &str) -> Vec<usize> {
    #[derive(Deserialize)]
    struct Steps {
        #[serde(default)]
        faults: Vec<toml::Spanned<toml::Table>>,
    }
    let steps = toml::from_str::<Steps>(text).map_or_else(|_| vec![], |s| s.faults);
    steps
        .iter()
        .map(|s| text[..s.span().start].matches('\n').count() + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_experiment_parses_and_validates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let mut n = 0;
        let mut dirs = vec![dir.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "toml") {
                    let e =
                        Experiment::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                    // Each side-by-side file runs on both implementations.
                    if p.parent().is_some_and(|d| d.ends_with("vs-corosync")) {
                        for i in ["ringlab", "corosync"] {
                            let mut e = e.clone();
                            e.set("implementation", i)
                                .unwrap_or_else(|e| panic!("{} on {i}: {e:#}", p.display()));
                        }
                    }
                    n += 1;
                }
            }
        }
        assert!(n >= 30, "only {n} experiments under {}", dir.display());
    }

    /// Issue 16's experiments: 20 repetitions per cell, 200 msgs/s per node, the schedule
    /// it names; the loss runs on the default knobs; 100 fault-free starts.
    #[test]
    fn the_issue_16_experiments_measure_what_it_names() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        let schedule = |e: &Experiment| -> Vec<(Option<u64>, &'static str)> {
            e.faults
                .iter()
                .map(|f| (f.at_ms(), f.action.name()))
                .collect()
        };
        for name in ["partial-cut", "oneway-cut", "loss/uniform-10"] {
            let e = Experiment::load(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!((e.nodes, e.reps), (5, 20), "{name}");
            assert_eq!((e.load.rate, e.load.senders), (200, 5), "{name}");
            let first = if name.starts_with("loss") {
                "isolate"
            } else {
                "cut"
            };
            assert_eq!(
                schedule(&e),
                [(Some(1000), first), (Some(6000), "heal")],
                "{name}"
            );
        }
        let e = Experiment::load(&dir.join("loss/uniform-10.toml")).unwrap();
        assert_eq!(e.loss_pct, 10);
        assert_eq!(e.totem, RingConfig::default());
        let e = Experiment::load(&dir.join("start-full-ring.toml")).unwrap();
        assert_eq!((e.nodes, e.reps, e.load.senders), (5, 100, 0));
        assert!(e.faults.is_empty() && e.loss_pct == 0);
    }

    #[test]
    fn the_throughput_family_measures_its_own_transport_against_a_raw_fanout() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/throughput");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let e = Experiment::load(&p).unwrap();
            assert!(e.baseline.raw && e.store.is_none(), "{}", p.display());
            assert_eq!(e.load.rate, 0, "{}", p.display());
            assert_eq!(e.baseline.raw_transports, default_raw_transports());
            assert!(p.to_string_lossy().contains(match e.raw_transport() {
                crate::raw::RawTransport::Multicast => "-mcast-",
                crate::raw::RawTransport::Unicast => "-ucast-",
            }));
            // The family's sweep: every node count and size, all senders down to the nodes.
            let all = e.load.senders == e.nodes;
            for nodes in ["3", "5", "9", "16"] {
                for size in ["64", "1024", "8192", "65536"] {
                    // A sweep sets each configuration's knobs on the file's experiment.
                    let mut e = e.clone();
                    e.set("nodes", nodes).unwrap();
                    e.set("load.size", size).unwrap();
                    assert_eq!(e.load.senders == e.nodes, all, "{}", p.display());
                }
            }
            n += 1;
        }
        assert_eq!(n, 8, "transports x variants x (one sender, all)");
    }

    #[test]
    fn records_and_the_raw_baseline_have_bounds() {
        let base = "name = 'x'\nnodes = 3\nduration_ms = 5000\n";
        let parse = |extra: &str| {
            toml::from_str::<Experiment>(&format!("{base}{extra}"))
                .map_err(anyhow::Error::from)
                .and_then(|e| e.validate().map(|()| e))
        };
        let e = parse("record_every = 10\n[baseline]\nraw = true\nraw_ms = 300\nraw_transports = ['unicast']\n").unwrap();
        assert_eq!(e.record_every, 10);
        assert_eq!(
            e.baseline.raw_transports,
            vec![crate::raw::RawTransport::Unicast]
        );
        // Written back only where not the defaults.
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["record_every"], 10);
        assert!(v.get("record_messages").is_none());
        assert_eq!(v["baseline"]["raw_ms"], 300);
        let d = serde_json::to_value(parse("").unwrap()).unwrap();
        assert!(d.get("baseline").is_none() && d.get("record_every").is_none());
        for (extra, says) in [
            ("record_every = 0\n", "record_every must be 1 or more"),
            (
                "[baseline]\nraw = true\nraw_ms = 0\n",
                "raw_ms must be 1 to 10000",
            ),
            (
                "[baseline]\nraw = true\nraw_transports = []\n",
                "raw_transports is empty",
            ),
            (
                "[baseline]\nraw_transports = ['carrier-pigeon']\n",
                "unknown variant",
            ),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(format!("{e:#}").contains(says), "{extra}: {e:#}");
        }
        let mut e = parse("").unwrap();
        e.set("record_messages", "false").unwrap();
        e.set("record_every", "100").unwrap();
        assert!(!e.record_messages && e.record_every == 100);
        assert!(e.set("record_every", "0").is_err());
        e.set("records", "all").unwrap();
        assert!(e.record_messages && e.record_every == 1);
        e.set("records", "10").unwrap();
        assert!(e.record_messages && e.record_every == 10);
        e.set("records", "none").unwrap();
        assert!(!e.record_messages);
        assert!(e.set("records", "some").is_err());
    }

    #[test]
    fn a_service_load_must_name_a_service_the_experiment_runs() {
        let base = "name = 'x'\nnodes = 3\nduration_ms = 5000\n";
        let with = |extra: &str| toml::from_str::<Experiment>(&format!("{base}{extra}")).unwrap();
        let ok = with("services = ['checkpoint']\n[load]\nsenders = 1\nservice = 'checkpoint'\n");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.load.service.as_deref(), Some("checkpoint"));
        let e = with("[load]\nservice = 'checkpoint'\n")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("must be one of services"), "{e}");
        let e = with("services = ['shred']\n").validate().unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown service \"shred\""),
            "{e:#}"
        );
        // Without a service load, the load is written as before.
        let v = serde_json::to_value(with("")).unwrap();
        assert!(v["load"].get("service").is_none(), "{v}");
    }

    #[test]
    fn service_sections_are_checked_and_a_sweep_sets_their_keys() {
        let base = "name = 'x'\nnodes = 5\nduration_ms = 5000\nservices = ['resources']\n";
        let with = |extra: &str| toml::from_str::<Experiment>(&format!("{base}{extra}")).unwrap();
        let mut e = with(
            "[service_config.resources]\nfence_ms = 100\ntakeover_ms = 300\n\
             start_timeout_ms = 50\nstop_timeout_ms = 50\n",
        );
        e.validate().unwrap();
        e.set("resources.policy", "heartbeat2000").unwrap();
        assert_eq!(
            e.service_config["resources"]["policy"].as_str(),
            Some("heartbeat2000")
        );
        let e = format!(
            "{:#}",
            e.clone().set("resources.fence_ms", "300").unwrap_err()
        );
        assert!(
            e.contains("takeover_ms 300 must exceed") && e.contains("= 400"),
            "{e}"
        );
        let e = with("[service_config.checkpoint]\n")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("is not one of services"), "{e}");
        let e = format!(
            "{:#}",
            with("[service_config.resources]\nnope = 1\n")
                .validate()
                .unwrap_err()
        );
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn an_empty_message_size_is_refused() {
        let e = toml::from_str::<Experiment>(
            "name = 'x'\nnodes = 3\nduration_ms = 5000\n[load]\nsenders = 3\nsize = 0\n",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("load.size must be at least 1 byte"),
            "{e:#}"
        );
    }

    #[test]
    fn a_key_is_the_default_and_key_false_is_kept() {
        let base = "name = 'x'\nnodes = 3\nduration_ms = 5000\n";
        let keyed: Experiment = toml::from_str(base).unwrap();
        assert!(keyed.key);
        let v = serde_json::to_value(&keyed).unwrap();
        assert!(v.get("key").is_none(), "{v}");
        let open: Experiment = toml::from_str(&format!("{base}key = false\n")).unwrap();
        assert!(!open.key);
        let v = serde_json::to_value(&open).unwrap();
        assert_eq!(v["key"], false);
        assert!(!serde_json::from_value::<Experiment>(v).unwrap().key);
        assert!(toml::from_str::<Experiment>(&format!("{base}key = 'yes'\n")).is_err());
        // The CI experiment runs with a key.
        let ci = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/ci-isolate-heal.toml");
        assert!(Experiment::load(&ci).unwrap().key);
    }

    #[test]
    fn set_changes_knobs_and_rejects_unknown_ones() {
        let mut e: Experiment = toml::from_str(
            "name = 'x'\nnodes = 3\nduration_ms = 5000\n[[faults]]\nat_ms = 1000\naction = 'isolate'\nnodes = [3]\n",
        )
        .unwrap();
        e.set("token", "500").unwrap();
        assert_eq!(e.totem.token, 500);
        e.set("consensus", "600").unwrap();
        assert_eq!(e.totem.consensus, Some(600));
        e.set("transport", "multicast").unwrap();
        assert_eq!(e.transport, Transport::Multicast);
        assert!(e.set("no_such_knob", "1").is_err());
        assert!(e.key, "a key unless the file says otherwise");
        assert!(e.set("nodes", "2").is_err(), "the schedule names node 3");
    }

    #[test]
    fn a_step_that_does_not_fit_the_experiment_is_named_by_its_line() {
        let path = std::env::temp_dir().join(format!("ringlab-steps-{}.toml", std::process::id()));
        for (steps, says) in [
            (
                "[[faults]]\nat_ms = 1000\naction = 'isolate'\nnodes = [7]\n",
                "line 8: faults[1] names node 7; nodes are 1..=5",
            ),
            (
                "[[faults]]\nat_ms = 1000\naction = 'trunk-down'\n",
                "line 8: faults[1] (trunk-down) needs the two-sites shape",
            ),
            (
                "[[faults]]\nat_ms = 9000\naction = 'heal'\n",
                "line 8: faults[1].at_ms is past duration_ms",
            ),
        ] {
            let text = format!(
                "name = 'x'\nnodes = 5\nduration_ms = 9000\n[[faults]]\nat_ms = 1000\naction = 'heal'\n\n{steps}"
            );
            std::fs::write(&path, text).unwrap();
            let e = format!("{:#}", Experiment::load(&path).unwrap_err());
            assert!(e.ends_with(says), "{e}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// An experiment of 5 nodes with the store service and `extra` after it.
    fn store_exp(extra: &str) -> Result<Experiment> {
        let e: Experiment = toml::from_str(&format!(
            "name = 'x'\nnodes = 5\nduration_ms = 9000\nservices = ['store']\n{extra}"
        ))?;
        e.validate()?;
        Ok(e)
    }

    const EMPTY_RESTART: &str =
        "[[faults]]\nat_ms = 1000\naction = 'restart'\nnodes = [5]\nempty_store = true\n";

    #[test]
    fn a_store_section_is_parsed_and_bad_values_are_refused() {
        let e = store_exp("[store]\nbytes = 10485760\n").unwrap();
        let st = e.store.clone().unwrap();
        assert_eq!(
            (st.bytes, st.value_size, st.keys()),
            (10 << 20, 1024, 10240)
        );
        assert_eq!(st.fill_timeout_ms(), 30_000 + 10 * 10_000);
        let e =
            store_exp("[store]\nbytes = 5000\nvalue_size = 100\nfill_timeout_ms = 7\n").unwrap();
        let st = e.store.unwrap();
        assert_eq!((st.keys(), st.fill_timeout_ms()), (50, 7));
        for (extra, says) in [
            (
                "[store]\nbytes = 1000\nvalue_size = 0\n",
                "store.value_size 0 must be 1 to 61440",
            ),
            (
                "[store]\nbytes = 1000\nvalue_size = 70000\n",
                "must be 1 to 61440",
            ),
            (
                "[store]\nbytes = 100\nvalue_size = 1024\n",
                "store.bytes 100 must be at least value_size",
            ),
            (
                "[store]\nbytes = 4096\nfill_timeout_ms = 0\n",
                "fill_timeout_ms must be above 0",
            ),
            ("[store]\nbytes = 1000\nsize = 3\n", "unknown field `size`"),
            ("[store]\nvalue_size = 10\n", "missing field `bytes`"),
            ("[baseline]\nraw = 'yes'\n", "invalid type"),
            (
                "[baseline]\nmulticast = true\n",
                "unknown field `multicast`",
            ),
        ] {
            let e = format!("{:#}", store_exp(extra).unwrap_err());
            assert!(e.contains(says), "{extra:?}: {e}");
        }
        // The store section needs the store service.
        let e: Experiment =
            toml::from_str("name = 'x'\nnodes = 3\nduration_ms = 5000\n[store]\nbytes = 4096\n")
                .unwrap();
        let e = e.validate().unwrap_err().to_string();
        assert!(e.contains("[store] needs the store service"), "{e}");
        // Without the sections, nothing is written for them.
        let v = serde_json::to_value(store_exp("").unwrap()).unwrap();
        assert!(
            v.get("store").is_none() && v.get("baseline").is_none(),
            "{v}"
        );
        let v = serde_json::to_value(
            store_exp("[store]\nbytes = 4096\n[baseline]\nraw = true\n").unwrap(),
        )
        .unwrap();
        assert_eq!(v["store"]["bytes"], 4096);
        assert_eq!(v["baseline"]["raw"], true);
        let back: Experiment = serde_json::from_value(v).unwrap();
        assert!(back.baseline.raw);
    }

    #[test]
    fn copy_steps_need_a_node_restarted_with_an_empty_store() {
        let e = store_exp(&format!(
            "[store]\nbytes = 4096\n[baseline]\nraw = true\n{EMPTY_RESTART}\
             [[faults]]\nat = 'copy-half'\naction = 'kill'\ntarget = 'provider'\n"
        ))
        .unwrap();
        assert_eq!(e.requester(), Some(5));
        assert_eq!(e.baseline_ends(), (1, 5));
        assert_eq!(e.datagram_bytes(), 1400);
        let half = "[[faults]]\nat = 'copy-half'\naction = 'heal'\n";
        let provider = "[[faults]]\nat_ms = 2000\naction = 'isolate'\ntarget = 'provider'\n";
        for (extra, says) in [
            (
                format!("[store]\nbytes = 4096\n{half}"),
                "an earlier step must restart a node with empty_store = true",
            ),
            (
                format!("[store]\nbytes = 4096\n{provider}"),
                "an earlier step must restart",
            ),
            (
                format!("[store]\nbytes = 4096\n{half}{EMPTY_RESTART}"),
                "faults[0] waits for a copy",
            ),
            (
                EMPTY_RESTART.to_string(),
                "the experiment needs a [store] section",
            ),
            (
                format!(
                    "[store]\nbytes = 4096\n{EMPTY_RESTART}{}",
                    EMPTY_RESTART.replace("[5]", "[4]")
                ),
                "one node restarted with an empty store per experiment, not [5, 4]",
            ),
        ] {
            let e = format!("{:#}", store_exp(&extra).unwrap_err());
            assert!(e.contains(says), "{extra:?}: {e}");
        }
        // The baseline goes to the last node without a copy, from node 2 when node 1 is the
        // requester; datagrams of the store's datagram_bytes.
        let e =
            store_exp("[baseline]\nraw = true\n[service_config.store]\ndatagram_bytes = 1200\n")
                .unwrap();
        assert_eq!(
            (e.requester(), e.baseline_ends(), e.datagram_bytes()),
            (None, (1, 5), 1200)
        );
        let e = store_exp(&format!(
            "[store]\nbytes = 4096\n{}",
            EMPTY_RESTART.replace("[5]", "[1]")
        ))
        .unwrap();
        assert_eq!(e.baseline_ends(), (2, 1));
        let one: Experiment =
            toml::from_str("name = 'x'\nnodes = 1\nduration_ms = 9\n[baseline]\nraw = true\n")
                .unwrap();
        assert!(one
            .validate()
            .unwrap_err()
            .to_string()
            .contains("two nodes or more"));
    }

    #[test]
    fn a_sweep_sets_the_store_size_and_the_store_services_keys() {
        let mut e = store_exp(&format!("[store]\nbytes = 4096\n{EMPTY_RESTART}")).unwrap();
        e.set("store.bytes", "104857600").unwrap();
        assert_eq!(e.store.as_ref().unwrap().bytes, 100 << 20);
        e.set("store.value_size", "512").unwrap();
        e.set("duration_ms", "60000").unwrap();
        assert_eq!(e.duration_ms, 60_000);
        assert!(
            e.clone().set("duration_ms", "1000").is_err(),
            "the restart is at 1000 ms"
        );
        assert_eq!(e.store.as_ref().unwrap().keys(), 204800);
        e.set("service_config.store.design", "push").unwrap();
        e.set("service_config.store.chunk_bytes", "3145728")
            .unwrap();
        e.set("service_config.store.path", "ring").unwrap();
        e.set("store.log_keep", "50").unwrap();
        let section = &e.service_config["store"];
        assert_eq!(section["design"].as_str(), Some("push"));
        assert_eq!(section["chunk_bytes"].as_integer(), Some(3 << 20));
        assert_eq!(section["path"].as_str(), Some("ring"));
        assert_eq!(section["log_keep"].as_integer(), Some(50));
        for (k, v, says) in [
            (
                "service_config.store.design",
                "sideways",
                "unknown variant `sideways`",
            ),
            (
                "service_config.store.chunk_bytes",
                "10",
                "chunk_bytes 10 must be",
            ),
            ("store.bytes", "ten", "store.bytes"),
            ("store.bytes", "10", "must be at least value_size"),
        ] {
            let e = format!("{:#}", e.clone().set(k, v).unwrap_err());
            assert!(e.contains(says), "{k}={v}: {e}");
        }
        let mut plain = store_exp("").unwrap();
        let e = plain.set("store.bytes", "4096").unwrap_err().to_string();
        assert!(e.contains("needs a [store] section"), "{e}");
    }

    #[test]
    fn the_shipped_store_experiments_copy_to_a_restarted_node_against_the_raw_flow() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
        for name in [
            "store-restart-empty",
            "store-kill-provider",
            "store-partition",
            "store-loss-10",
            "ci-store-restart",
        ] {
            let e = Experiment::load(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!(e.name, name);
            assert!(e.store.is_some() && e.baseline.raw, "{name}");
            assert!(e.requester().is_some(), "{name}");
        }
    }
}
