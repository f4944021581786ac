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
//! services = []            # ["checkpoint"] runs the sync engine with these services
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
//! [[faults]]
//! at_ms = 3000
//! action = "isolate"       # isolate split cut heal trunk-down trunk-up loss delay reorder
//! nodes = [5]              # duplicate clear kill pause resume restart leave
//! ```
//!
//! Each action's arguments: [`crate::fault`].

use crate::fault::{FaultAction, FaultStep, NetworkFault};
use anyhow::{bail, Context, Result};
use ringlab_net::Transport;
use ringlab_ring::Config as RingConfig;
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
        if self.load.senders > self.nodes {
            bail!("load.senders must be at most nodes");
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
            if f.at_ms >= self.duration_ms {
                bail!("{at}faults[{i}].at_ms is past duration_ms");
            }
        }
        Ok(())
    }

    /// Sets one knob by name: a `[totem]` knob, or nodes, transport, shape, loss_pct,
    /// load.rate, load.size, load.senders, or `SERVICE.KEY` (a key of the section of a
    /// service the experiment runs: `resources.policy`). Used by `ringlab sweep`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
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
            "load.rate" => self.load.rate = value.parse()?,
            "load.size" => self.load.size = value.parse()?,
            "load.senders" => self.load.senders = value.parse()?,
            _ => {
                let mut t = toml::Value::try_from(&self.totem)?;
                let tbl = t.as_table_mut().expect("a table");
                let v = value
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .unwrap_or_else(|_| toml::Value::String(value.into()));
                tbl.insert(key.into(), v);
                self.totem = t
                    .try_into()
                    .with_context(|| format!("'{key}' is not a knob of this experiment"))?;
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
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Experiment::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 10, "only {n} experiments in {}", dir.display());
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
}
