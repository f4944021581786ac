//! Services side by side: a second service, defined here as one type with its `Service` and
//! `Plugin` implementations and one `Entry` (as a new file in `sync/src/` would be with its
//! registry line), runs beside the checkpoint service in seeded runs with mixed faults, with
//! its own operations, sync, workload, control commands and convergence check.

use bytes::Bytes;
use rand::RngCore;
use ringlab_records::Body;
use ringlab_ring::wire::{DecodeError, Reader};
use ringlab_ring::NodeId;
use ringlab_sim::run::{run, service_agreement, Faults, RunConfig};
use ringlab_sim::{NetConfig, Sim};
use ringlab_sync::control::{Args, Control, ControlContext, ControlError};
use ringlab_sync::{
    registry, CheckpointService, Entry, Outbox, Plugin, Progress, Service, ServiceApp, StateSize,
    SyncContext, Workload,
};
use serde::{Deserialize, Serialize};

const MS: u64 = 1_000_000;

/// A register that keeps the largest value ever set: operations raise it, a sync makes every
/// member's the largest of all.
struct MaxRegister {
    value: u64,
    /// The largest value received in the running sync.
    temp: u64,
    malformed: u64,
}

/// Its commands.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    Set { value: u64 },
    Status,
}

/// The reply to `status`.
#[derive(Serialize, Deserialize)]
struct Status {
    ok: bool,
    value: u64,
}

fn decode(payload: &[u8]) -> Result<u64, DecodeError> {
    let mut r = Reader::new(payload);
    let v = r.u64("value")?;
    r.end()?;
    Ok(v)
}

impl Service for MaxRegister {
    fn id(&self) -> u16 {
        Self::ID
    }
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn sync_init(&mut self, _: &SyncContext) {
        self.temp = 0;
    }
    fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress {
        if out.push(Bytes::copy_from_slice(&self.value.to_be_bytes())) {
            Progress::Done
        } else {
            Progress::NotDone
        }
    }
    fn sync_deliver(&mut self, _: NodeId, payload: &[u8]) -> Option<String> {
        match decode(payload) {
            Ok(v) => self.temp = self.temp.max(v),
            Err(_) => self.malformed += 1,
        }
        None
    }
    fn sync_activate(&mut self) {
        self.value = self.temp;
    }
    fn sync_abort(&mut self) {
        self.temp = 0;
    }
    fn deliver_op(&mut self, _: NodeId, payload: &[u8]) {
        match decode(payload) {
            Ok(v) => self.value = self.value.max(v),
            Err(_) => self.malformed += 1,
        }
    }
    fn control(
        &mut self,
        request: &serde_json::Value,
        _: &ControlContext,
    ) -> Result<Control, ControlError> {
        let cmd: Command = serde_json::from_value(request.clone())
            .map_err(|e| ControlError::BadCommand(format!("svc maxreg: {e}")))?;
        Ok(match cmd {
            Command::Set { value } => Control::new(
                vec![value.to_be_bytes().to_vec()],
                &ringlab_sync::control::Ack::ok(),
            ),
            Command::Status => Control::new(
                vec![],
                &Status {
                    ok: true,
                    value: self.value,
                },
            ),
        })
    }
    fn digest(&self) -> [u8; 32] {
        let mut d = [0; 32];
        d[..8].copy_from_slice(&self.value.to_be_bytes());
        d
    }
    fn size(&self) -> StateSize {
        StateSize { items: 1, bytes: 8 }
    }
    fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl Plugin for MaxRegister {
    const NAME: &'static str = "maxreg";
    const ID: u16 = 900;

    fn new(_: NodeId) -> Self {
        Self {
            value: 0,
            temp: 0,
            malformed: 0,
        }
    }

    fn parse_args(args: &Args<'_>) -> Result<serde_json::Value, ControlError> {
        args.allow(&["op", "value"])?;
        let cmd = match args.text("op").as_deref() {
            Some("set") => Command::Set {
                value: args
                    .number("value")?
                    .ok_or_else(|| args.required("value").unwrap_err())?,
            },
            _ => Command::Status,
        };
        Ok(serde_json::to_value(cmd).unwrap())
    }

    fn workload_op(rng: &mut dyn RngCore, _: &Workload) -> Bytes {
        Bytes::copy_from_slice(&u64::from(rng.next_u32()).to_be_bytes())
    }
}

/// Its registry line.
static MAX_REGISTER: Entry = Entry::of::<MaxRegister>();

fn both() -> Vec<&'static Entry> {
    vec![
        registry::find(CheckpointService::NAME).unwrap(),
        &MAX_REGISTER,
    ]
}

#[test]
fn a_second_service_runs_beside_the_checkpoint_service_through_mixed_faults() {
    for seed in 1..=4 {
        let cfg = RunConfig {
            seed,
            faults: Faults::parse("partition,merge,crash,restart,pause").unwrap(),
            net: NetConfig {
                loss: 0.05,
                dup: 0.01,
                reorder: 0.05,
                ..NetConfig::default()
            },
            services: both(),
            workload: Workload {
                state_bytes: 65_536,
            },
            ..RunConfig::default()
        };
        let r = run(&cfg);
        assert!(
            r.check.violations.is_empty(),
            "seed {seed}: {:?}",
            r.check.violations
        );
        assert_eq!(r.state_mismatches, 0, "seed {seed}: {:?}", r.state_details);
        assert!(r.syncs_completed > 0);
        // Both services were synchronised, each in its turn.
        for id in [CheckpointService::ID, MaxRegister::ID] {
            assert!(
                r.records.iter().any(|x| matches!(
                    &x.body,
                    Body::Sync { phase, service: Some(s), .. } if phase == "service_done" && *s == id
                )),
                "seed {seed}: service {id} synchronised"
            );
        }
    }
}

#[test]
fn its_control_commands_reach_it_by_name_and_a_partition_merges_to_the_largest_value() {
    let mut sim = Sim::new(5, 11, ringlab_ring::Config::default(), NetConfig::default());
    sim.set_app_factory(|id| ServiceApp::new(id, &both()));
    sim.start_all();
    sim.run_for(3_000 * MS);
    let set = |sim: &mut Sim, id: NodeId, v: &str| {
        let args = vec!["set".to_string(), format!("value={v}")];
        let req = MAX_REGISTER.parse_args(&args).unwrap();
        sim.app_mut(id)
            .unwrap()
            .control(MaxRegister::NAME, &req, u64::MAX)
            .unwrap();
        sim.pump(id);
    };
    sim.partition(&[&[1, 2], &[3, 4, 5]]);
    sim.run_for(3_000 * MS);
    set(&mut sim, 1, "7");
    set(&mut sim, 4, "5");
    sim.run_for(1_000 * MS);
    let status = |sim: &mut Sim, id: NodeId| -> u64 {
        let req = serde_json::to_value(Command::Status).unwrap();
        let reply = sim
            .app_mut(id)
            .unwrap()
            .control(MaxRegister::NAME, &req, u64::MAX)
            .unwrap();
        serde_json::from_value::<Status>(reply).unwrap().value
    };
    assert_eq!((status(&mut sim, 2), status(&mut sim, 5)), (7, 5));
    sim.heal();
    sim.run_for(3_000 * MS);
    for id in 1..=5 {
        assert_eq!(status(&mut sim, id), 7, "node {id}");
    }
    let (mismatches, _, details) = service_agreement(&sim, &[1, 2, 3, 4, 5]);
    assert_eq!(mismatches, 0, "{details:?}");
    // A service the node does not run, and one nobody knows.
    let app = sim.app_mut(1).unwrap();
    let e = app
        .control("shred", &serde_json::Value::Null, 1)
        .unwrap_err();
    assert!(e.to_string().contains("unknown service \"shred\""), "{e}");
    let mut solo = ServiceApp::new(1, &[&MAX_REGISTER]);
    let e = solo
        .control(CheckpointService::NAME, &serde_json::Value::Null, 1)
        .unwrap_err();
    assert!(e.to_string().contains("not running"), "{e}");
}
