//! One seeded run with mixed faults, as `ringlab sim` and the seed sweeps drive it.
//!
//! Timeline of a run of `duration`:
//! 1. all nodes start within the first 10 ms;
//! 2. the fault phase, up to `faults_end = duration - settle - probe`: every 300–2000 ms one
//!    fault from the enabled set (partition into 2 or 3 random groups, merge, crash, restart,
//!    pause for up to 2 × token); random load on every running node (1 B–2 KiB, one in 20
//!    messages 5–40 KiB so fragmentation is exercised; one in 5 safe), or, with services,
//!    their own random workloads (one service drawn per operation when there are several;
//!    none drawn when there is one); link loss, duplication and reordering as configured;
//! 3. at `faults_end` the faults stop: partitions heal, paused nodes resume, crashed nodes
//!    restart if restarts are enabled, and the links become clean;
//! 4. `settle` = the liveness bound; then every live node sends one probe, and the run goes
//!    on for `probe` = 2 × token + 1 s so the probes are delivered;
//! 5. the checker runs over all records, liveness included; with services,
//!    [`service_agreement`] compares every service's digest and counters across the live
//!    nodes.
//!
//! Random streams: the start times and the fault schedule draw from one stream, the load
//! from another, the services' actions from a third, each seeded from the run's seed
//! (`seed ^ FAULT_STREAM`, `seed ^ LOAD_STREAM`, `seed ^ ACTION_STREAM`), and every
//! directed link from its own ([`crate::loss`]); so a seed replays the same faults at the
//! same times and the same offered load after a change of the protocol that alters its
//! traffic (what the faults and the load hit may of course differ).
//!
//! The liveness bound derived from the config is `token + 2 × consensus + merge + hold +
//! 20 × join + 1 s`: a token loss on a ring that still lists a dead member, two consensus
//! rounds (one to exclude the dead, one to settle a set that grew meanwhile), merge
//! detection of a ring that went idle, and slack for the join exchange and recovery.

use crate::adversary::{Adversary, AdversaryStats};
use crate::capture::Capture;
use crate::checker::{self, Liveness, Report};
use crate::sim::{NetConfig, Sim};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ringlab_records::Record;
use ringlab_ring::{Config, Guarantee, NodeId};
use ringlab_sync::{ActionResult, Entry, ServiceApp, SimDisks, Storage, Verb, Workload};
use std::collections::BTreeMap;

const MS: u64 = 1_000_000;

/// Which faults a run injects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Random partitions.
    pub partition: bool,
    /// Heals of every partition.
    pub merge: bool,
    /// Crashes (state lost).
    pub crash: bool,
    /// Restarts of crashed nodes, as new incarnations.
    pub restart: bool,
    /// Pauses (SIGSTOP-like) of up to 2 × token.
    pub pause: bool,
    /// A hostile node on the segment that replays, alters and forges datagrams (see
    /// [`crate::adversary`]); not part of `all`.
    pub hostile: bool,
    /// One-way cuts: one random up node stops hearing another (until the next merge or the
    /// end of the faults); not part of `all`.
    pub oneway: bool,
    /// Partial cuts: two random up nodes stop hearing each other while both still reach
    /// every other node (until the next merge or the end of the faults); not part of `all`.
    pub partial: bool,
}

impl Faults {
    /// Parses a comma list: partition, merge, crash, restart, pause, hostile, oneway,
    /// partial (or "none", or "all": every fault but hostile, oneway and partial).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut f = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "partition" => f.partition = true,
                "merge" => f.merge = true,
                "crash" => f.crash = true,
                "restart" => f.restart = true,
                "pause" => f.pause = true,
                "hostile" => f.hostile = true,
                "oneway" => f.oneway = true,
                "partial" => f.partial = true,
                "none" => {}
                "all" => {
                    f = Self {
                        partition: true,
                        merge: true,
                        crash: true,
                        restart: true,
                        pause: true,
                        ..f
                    }
                }
                other => {
                    return Err(format!(
                        "unknown fault '{other}' (partition, merge, crash, restart, pause, hostile, oneway, partial)"
                    ))
                }
            }
        }
        Ok(f)
    }

    fn any(&self) -> bool {
        self.partition
            || self.merge
            || self.crash
            || self.restart
            || self.pause
            || self.hostile
            || self.oneway
            || self.partial
    }
}

/// Everything one seeded run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Nodes, 1 to 32 (more work, up to 384).
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Virtual duration, ms.
    pub duration_ms: u64,
    /// Link behaviour during the fault phase (clean afterwards).
    pub net: NetConfig,
    /// Faults injected.
    pub faults: Faults,
    /// Ring knobs.
    pub ring: Config,
    /// Mean interval between messages per node, ms (0: no load).
    pub load_interval_ms: u64,
    /// Whether send and deliver records are kept.
    pub record_messages: bool,
    /// Run the sync engine with these services (from the registry, `ringlab_sync::registry`)
    /// and their random workloads instead of plain messages (empty: plain messages only).
    pub services: Vec<&'static Entry>,
    /// What the services' workloads are sized to (`--state-bytes`).
    pub workload: Workload,
    /// Authenticate every datagram with a cluster key, as `key_file` does on real nodes.
    pub key: bool,
    /// Each service's own configuration section, by service name (`--service-config FILE`:
    /// one TOML table per service); a service not named here gets its defaults.
    pub service_config: BTreeMap<String, serde_json::Value>,
    /// The services' actions (a resource's start or stop command) take a time drawn
    /// uniformly from 0 to this (ms; `--action-ms`); past their timeout they fail.
    pub action_ms: u64,
    /// The share of start actions that fail (exit status 1; `--start-fail-rate`).
    pub start_fail_rate: f64,
    /// With the store service: keys written through the ring once the ring forms, before
    /// the faults begin (`--store-keys`; 0: none), so that a full copy moves a store of a
    /// size.
    pub store_keys: u64,
    /// Bytes of each of those keys' values (`--store-bytes`).
    pub store_bytes: usize,
    /// Virtual time one slice of a service's local work takes (ns; `--work-slice-ns`): the
    /// node's ring runs on meanwhile while its services are busy. 0 (the default): the work
    /// is done at the instant it starts, as before slices existed.
    pub work_slice_ns: u64,
    /// Captures every frame put on a link, up to this many bytes ([`crate::capture`];
    /// `--capture`); None: no capture. The run is the same either way.
    pub capture_max_bytes: Option<u64>,
}

/// Writes `store_keys` keys through node 1 once the ring has formed, and runs until every
/// node applied them (or 60 s of simulated time); returns the writes sent.
fn fill_store(sim: &mut Sim, cfg: &RunConfig) -> u64 {
    let first = sim.ids()[0];
    let all = sim.ids();
    sim.run_until_cond(sim.now() + 10_000 * MS, |s| {
        all.iter()
            .all(|&id| s.state(id) == Some(ringlab_ring::MembState::Operational))
    });
    sim.run_for(500 * MS); // the first sync
    let request =
        serde_json::json!({"op": "fill", "keys": cfg.store_keys, "size": cfg.store_bytes});
    if let Some(app) = sim.app_mut(first) {
        if let Err(e) = app.control("store", &request, u64::MAX) {
            tracing::warn!(error = %e, "the store's fill was refused");
            return 0;
        }
    }
    sim.pump(first);
    let want = cfg.store_keys;
    sim.run_until_cond(sim.now() + 60_000 * MS, |s| {
        all.iter().all(|&id| {
            s.app(id)
                .and_then(|a| a.service("store"))
                .is_some_and(|st| st.state_token() >= want)
        })
    });
    cfg.store_keys
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            nodes: 5,
            seed: 1,
            duration_ms: 20_000,
            net: NetConfig::default(),
            faults: Faults::default(),
            ring: Config::default(),
            load_interval_ms: 20,
            record_messages: true,
            services: vec![],
            workload: Workload::default(),
            key: false,
            service_config: BTreeMap::new(),
            action_ms: 0,
            start_fail_rate: 0.0,
            store_keys: 0,
            store_bytes: 1024,
            work_slice_ns: 0,
            capture_max_bytes: None,
        }
    }
}

/// The outcome of one run.
#[derive(Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// What the checker found.
    pub check: Report,
    /// Messages submitted and accepted.
    pub sent: u64,
    /// Messages delivered, all nodes together.
    pub delivered: u64,
    /// Faults injected.
    pub faults: u64,
    /// Every record, to write out on request.
    pub records: Vec<Record>,
    /// With services: syncs that completed (all nodes together).
    pub syncs_completed: u64,
    /// With services: syncs aborted by a configuration change.
    pub syncs_aborted: u64,
    /// With services: live nodes whose digest of a service differs from the lowest live
    /// node's after the last sync, plus counters (a checkpoint's reference count) that differ
    /// from the sum of the live nodes' own shares.
    pub state_mismatches: u64,
    /// With services: bytes of their state at the end (lowest live node).
    pub state_bytes: u64,
    /// With services: what differed, for each mismatch.
    pub state_details: Vec<String>,
    /// With a key: datagrams the authenticators refused, all nodes together.
    pub auth_refused: u64,
    /// With a hostile node: what it injected.
    pub adversary: AdversaryStats,
    /// With the resources service: its `resource` records by action.
    pub resource_actions: BTreeMap<String, u64>,
    /// With `capture_max_bytes`: the run's frames ([`crate::pcap::write_sim_capture`]).
    pub capture: Option<Capture>,
}

/// The cluster key of simulated runs with `key`.
pub const SIM_KEY: &[u8] = b"ringlab simulated cluster key, 32";

/// Datagrams a hostile node injects at each of its turns in the fault mix.
pub const HOSTILE_OPS: usize = 50;

/// Returns the liveness bound the config implies, in ns.
pub fn liveness_bound(c: &Config) -> u64 {
    (c.token + 2 * c.consensus_ms() + c.merge + c.hold_ms() + 20 * c.join + 1000) * MS
}

/// What the actions' random stream is seeded with, beside the run's seed.
const ACTION_STREAM: u64 = 0xAC71_0000_0000_0001;

/// What the start times' and the fault schedule's random stream is seeded with, beside the
/// run's seed.
pub const FAULT_STREAM: u64 = 0xFA17_0000_0000_0001;

/// What the load's random stream is seeded with, beside the run's seed.
pub const LOAD_STREAM: u64 = 0x10AD_0000_0000_0001;

/// Runs one seed.
///
/// Panics if a service refuses its section of `service_config` (a caller checks it first
/// with [`ServiceApp::with_config`]).
pub fn run(cfg: &RunConfig) -> RunReport {
    let settle = liveness_bound(&cfg.ring);
    let probe = (2 * cfg.ring.token + 1000) * MS;
    let duration = cfg.duration_ms * MS;
    let faults_end = duration.saturating_sub(settle + probe).max(100 * MS);
    let mut sim = Sim::new(cfg.nodes, cfg.seed, cfg.ring.clone(), cfg.net);
    sim.record_messages = cfg.record_messages;
    sim.work_slice_ns = cfg.work_slice_ns;
    if let Some(max) = cfg.capture_max_bytes {
        sim.set_capture(max);
    }
    if cfg.key {
        sim.set_key(SIM_KEY.to_vec())
            .expect("the simulator's key is long enough");
    }
    if cfg.faults.hostile {
        sim.set_adversary(Adversary::new());
    }
    if !cfg.services.is_empty() {
        let services = cfg.services.clone();
        let sections = cfg.service_config.clone();
        let nodes = sim.ids();
        // Checked before the run: a bad section is the caller's error, not a node's.
        if let Err(e) = ServiceApp::with_config(1, &services, &nodes, &sections) {
            panic!("{e}");
        }
        // Each node's disks outlive its incarnations (a restart finds its store).
        let disks: BTreeMap<NodeId, SimDisks> =
            nodes.iter().map(|&id| (id, SimDisks::default())).collect();
        sim.set_app_factory(move |id| {
            let storage = Storage::Sim(disks[&id].clone());
            ServiceApp::with_storage(id, &services, &nodes, &sections, &storage)
                .expect("checked above")
        });
        // Actions draw from their own stream, so a run without actions replays as before.
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ ACTION_STREAM);
        let (max_ms, fail) = (cfg.action_ms, cfg.start_fail_rate);
        sim.set_action_hook(move |_, a| {
            let delay = rng.gen_range(0..=max_ms * MS);
            let result = if a.verb == Verb::Start && rng.gen_bool(fail.clamp(0.0, 1.0)) {
                ActionResult::Failed {
                    exit: Some(1),
                    error: "exit status 1 (drawn)".into(),
                }
            } else {
                ActionResult::Ok
            };
            (delay, result)
        });
    }
    let with_services = !cfg.services.is_empty();
    let mut fault_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ FAULT_STREAM);
    let mut load_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ LOAD_STREAM);
    let ids = sim.ids();
    for &id in &ids {
        let at = fault_rng.gen_range(0..10 * MS);
        sim.run_until(at);
        sim.start(id);
    }
    let mut sent = 0u64;
    if cfg.store_keys > 0 && cfg.services.iter().any(|e| e.name == "store") {
        sent += fill_store(&mut sim, cfg);
    }
    let mut faults = 0u64;
    let mut next_fault = sim.now() + fault_rng.gen_range(300..2000) * MS;
    let mut resume_at: Vec<(u64, NodeId)> = Vec::new();
    let mut next_send: Vec<u64> = ids.iter().map(|_| 0).collect();
    let tick = MS;
    let mut payload_seed = 0u8;
    while sim.now() < faults_end {
        let now = sim.now();
        // Load.
        if cfg.load_interval_ms > 0 {
            for (i, &id) in ids.iter().enumerate() {
                if next_send[i] <= now && sim.is_up(id) && !sim.is_paused(id) && with_services {
                    let gap = load_rng.gen_range(0..2 * cfg.load_interval_ms * MS);
                    // One service draws no number for its choice, so a one-service run
                    // replays as before services were plug-ins.
                    let service = match cfg.services.as_slice() {
                        [one] => *one,
                        many => *many.choose(&mut load_rng).expect("services"),
                    };
                    let op = service.workload_op(&mut load_rng, &cfg.workload);
                    if let Some(app) = sim.app_mut(id) {
                        app.queue_op(service.id, &op);
                        sent += 1;
                    }
                    sim.pump(id);
                    next_send[i] = now + gap;
                } else if next_send[i] <= now && sim.is_up(id) && !sim.is_paused(id) {
                    let rng = &mut load_rng;
                    let len = if rng.gen_ratio(1, 20) {
                        rng.gen_range(5_000..40_000)
                    } else {
                        rng.gen_range(1..2048)
                    };
                    let g = if rng.gen_ratio(1, 5) {
                        Guarantee::Safe
                    } else {
                        Guarantee::Agreed
                    };
                    let gap = rng.gen_range(0..2 * cfg.load_interval_ms * MS);
                    payload_seed = payload_seed.wrapping_add(1);
                    let data = vec![payload_seed; len];
                    if sim.submit(id, &data, g).is_ok() {
                        sent += 1;
                    }
                    next_send[i] = now + gap;
                }
            }
        }
        // Pauses that end.
        resume_at.retain(|&(t, id)| {
            if t <= now {
                sim.resume(id);
                false
            } else {
                true
            }
        });
        // Faults.
        if cfg.faults.any() && now >= next_fault {
            if inject(&mut sim, &mut fault_rng, cfg, &ids, &mut resume_at) {
                faults += 1;
            }
            next_fault = now + fault_rng.gen_range(300..2000) * MS;
        }
        sim.run_until(now + tick);
    }
    // The faults stop: partitions and cuts (one-way and partial too) heal.
    sim.net = NetConfig {
        loss: 0.0,
        dup: 0.0,
        reorder: 0.0,
        ..cfg.net
    };
    sim.heal();
    for &id in &ids {
        sim.resume(id);
        if cfg.faults.restart && !sim.is_up(id) {
            sim.start(id);
            sim.fault_record("restart", vec![id]);
        }
    }
    let faults_end = sim.now();
    sim.run_until(faults_end + settle);
    let live: Vec<NodeId> = ids.iter().copied().filter(|&id| sim.is_up(id)).collect();
    for &id in &live {
        if sim.submit(id, b"probe", Guarantee::Safe).is_ok() {
            sent += 1;
        }
    }
    sim.run_until(sim.now() + probe);
    let (mut syncs_completed, mut syncs_aborted) = (0, 0);
    let mut resource_actions: BTreeMap<String, u64> = BTreeMap::new();
    for r in sim.records() {
        match &r.body {
            ringlab_records::Body::Sync { phase, .. } => match phase.as_str() {
                "done" => syncs_completed += 1,
                "abort" => syncs_aborted += 1,
                _ => {}
            },
            ringlab_records::Body::Resource { action, .. } => {
                *resource_actions.entry(action.clone()).or_default() += 1;
            }
            _ => {}
        }
    }
    let (state_mismatches, state_bytes, state_details) = if with_services {
        service_agreement(&sim, &live)
    } else {
        (0, 0, vec![])
    };
    let records = sim.take_records();
    let check = checker::check(
        &records,
        Some(&Liveness {
            faults_end,
            bound: settle,
            live,
            end: sim.now(),
        }),
    );
    RunReport {
        seed: cfg.seed,
        check,
        sent,
        delivered: sim.delivered,
        faults,
        records,
        syncs_completed,
        syncs_aborted,
        state_mismatches,
        state_bytes,
        state_details,
        auth_refused: ids.iter().map(|&id| sim.auth_drops(id).total()).sum(),
        adversary: sim.adversary().map(|a| a.stats.clone()).unwrap_or_default(),
        resource_actions,
        capture: sim.take_capture(),
    }
}

/// Compares the live nodes' services: each service's digest against the lowest live
/// node's, and each of its counters against the sum of the live nodes' own shares (a
/// checkpoint's reference count against their open counts). Returns (mismatches, state
/// bytes of the lowest live node, what differed).
pub fn service_agreement(sim: &Sim, live: &[NodeId]) -> (u64, u64, Vec<String>) {
    let apps: Vec<(NodeId, &ServiceApp)> = live
        .iter()
        .filter_map(|&id| sim.app(id).map(|a| (id, a)))
        .collect();
    let Some((first_id, first)) = apps.first().copied() else {
        return (0, 0, vec![]);
    };
    let mut details = Vec::new();
    for (id, a) in &apps {
        if a.engine.is_syncing() {
            details.push(format!("node {id} is still synchronising"));
            continue;
        }
        for s in first.services() {
            if a.service(s.name()).map(|t| t.digest()) != Some(s.digest()) {
                details.push(format!(
                    "node {id}'s {} digest differs from node {first_id}'s",
                    s.name()
                ));
            }
        }
    }
    for s in first.services() {
        let counters = s.counters();
        let shares: Vec<(NodeId, _)> = apps
            .iter()
            .map(|(id, a)| {
                let c = a.service(s.name()).map(|t| t.counters());
                (*id, c.map(|c| c.shares).unwrap_or_default())
            })
            .collect();
        for (key, total) in &counters.totals {
            let own: Vec<(NodeId, u64)> = shares
                .iter()
                .map(|(id, sh)| (*id, sh.get(key).copied().unwrap_or(0)))
                .collect();
            if own.iter().map(|(_, o)| o).sum::<u64>() != *total {
                details.push(format!(
                    "{} {:?}: {} {total}, the nodes' own shares {own:?}",
                    s.name(),
                    String::from_utf8_lossy(key),
                    counters.what
                ));
            }
        }
    }
    (details.len() as u64, first.state_size().bytes, details)
}

fn inject(
    sim: &mut Sim,
    rng: &mut ChaCha8Rng,
    cfg: &RunConfig,
    ids: &[NodeId],
    resume_at: &mut Vec<(u64, NodeId)>,
) -> bool {
    let f = cfg.faults;
    let mut choices = vec![];
    if f.partition {
        choices.push(0);
    }
    if f.merge {
        choices.push(1);
    }
    if f.crash {
        choices.push(2);
    }
    if f.restart {
        choices.push(3);
    }
    if f.pause {
        choices.push(4);
    }
    if f.hostile {
        choices.push(5);
    }
    if f.oneway {
        choices.push(6);
    }
    if f.partial {
        choices.push(7);
    }
    let up: Vec<NodeId> = ids.iter().copied().filter(|&i| sim.is_up(i)).collect();
    let down: Vec<NodeId> = ids.iter().copied().filter(|&i| !sim.is_up(i)).collect();
    let now = sim.now();
    match *choices.choose(rng).expect("a fault is enabled") {
        0 if ids.len() >= 2 => {
            let k = rng.gen_range(2..=3.min(ids.len()));
            let mut shuffled = ids.to_vec();
            shuffled.shuffle(rng);
            let mut groups: Vec<Vec<NodeId>> = vec![vec![]; k];
            for (i, id) in shuffled.into_iter().enumerate() {
                groups[i % k].push(id);
            }
            let refs: Vec<&[NodeId]> = groups.iter().map(|g| g.as_slice()).collect();
            sim.partition(&refs);
            true
        }
        1 => {
            sim.heal();
            true
        }
        2 if up.len() > 1 => {
            let id = *up.choose(rng).expect("non-empty");
            sim.crash(id);
            sim.fault_record("crash", vec![id]);
            true
        }
        3 if !down.is_empty() => {
            let id = *down.choose(rng).expect("non-empty");
            sim.start(id);
            sim.fault_record("restart", vec![id]);
            true
        }
        4 if !up.is_empty() => {
            let id = *up.choose(rng).expect("non-empty");
            if sim.is_paused(id) {
                return false;
            }
            let d = rng.gen_range(50..=2 * cfg.ring.token.max(50)) * MS;
            sim.pause(id);
            sim.fault_record("pause", vec![id]);
            resume_at.push((now + d, id));
            true
        }
        5 => {
            let injected = sim.attack(HOSTILE_OPS);
            sim.fault_record("hostile", vec![]);
            injected > 0
        }
        // A one-way cut (b stops hearing a) or a partial cut (a and b stop hearing each
        // other, both still reach the rest); healed by the next merge and at the end.
        c @ (6 | 7) if up.len() >= 2 => {
            let pair: Vec<NodeId> = up.choose_multiple(rng, 2).copied().collect();
            sim.cut(pair[0], pair[1], c == 6);
            true
        }
        _ => false,
    }
}
