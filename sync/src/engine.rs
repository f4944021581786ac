//! The synchronisation engine: after every regular configuration it brings each service's
//! state together before the cluster serves again. Sans-IO, on the ring's agreed delivery.
//!
//! Inputs: [`SyncEngine::handle_event`] with every ring event (configurations and
//! deliveries), and [`SyncEngine::poll`] with the room left in the ring's send queue.
//! Outputs: [`SyncEngine::poll_submit`] (messages to submit to the ring, agreed),
//! [`SyncEngine::poll_event`] (start, service done, conflict, done, abort).
//!
//! On each regular configuration: every service's `sync_init` runs at once (corrected
//! design, see the crate docs), then SERVICELIST_BUILD: every member multicasts its service
//! list; when all lists are in, their union sorted by id is the plan, a service unknown here
//! being a no-op. Then, service by service, PROCESS (`sync_process` until done; it may say
//! "not done" when the ring's queue has no room and is called again) and BARRIER (every
//! member multicasts a barrier; when all members' barriers have been delivered the service is
//! activated everywhere, at the same point of the total order). After the last, sync is done.
//! Every message carries its ring id; a message of another ring is ignored. A configuration
//! change (transitional or regular) during sync aborts the current service, in PROCESS and in
//! BARRIER alike, and drops every trace of the aborted sync. Service operations delivered
//! while sync runs are held, in delivery order, and applied when it completes (or is aborted):
//! the same point for every member. Each operation reaches its service with how it was
//! delivered ([`OpDelivery`]: safe or agreed, in a regular or a transitional configuration),
//! for a service that may only apply what every member applies alike.

use crate::msg::{Msg, ServiceId};
use crate::service::{OpDelivery, Service};
use bytes::Bytes;
use ringlab_ring::{ConfigKind, Event, NodeId, RingId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Says whether `sync_process` finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything this node had to send is queued.
    Done,
    /// The outbox filled up; call again.
    NotDone,
}

/// Where `sync_process` puts its messages: bounded by the room in the ring's send queue.
pub struct Outbox<'a> {
    room: usize,
    out: &'a mut Vec<Bytes>,
}

impl<'a> Outbox<'a> {
    /// Creates an outbox with `room` bytes, putting its messages in `out` (the engine makes
    /// one per `sync_process` call; tests make their own).
    pub fn new(room: usize, out: &'a mut Vec<Bytes>) -> Self {
        Self { room, out }
    }

    /// Queues one message if it fits; returns false (and queues nothing) when it does not.
    pub fn push(&mut self, payload: Bytes) -> bool {
        let cost = payload.len() + 64;
        if cost > self.room {
            return false;
        }
        self.room -= cost;
        self.out.push(payload);
        true
    }
}

/// What a service sees of the configuration being synchronised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncContext {
    /// This node.
    pub me: NodeId,
    /// The new ring.
    pub ring: RingId,
    /// Its members.
    pub members: Vec<NodeId>,
    /// The members that came with this node from its old ring (the transitional configuration).
    pub trans: Vec<NodeId>,
}

/// What the engine reports (written as `sync` event records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncEvent {
    /// Sync started on a ring.
    Start {
        /// The ring.
        ring: RingId,
    },
    /// A service was activated everywhere.
    ServiceDone {
        /// The ring.
        ring: RingId,
        /// The service.
        service: ServiceId,
        /// Sync bytes delivered for it.
        bytes: u64,
    },
    /// A service resolved a conflict between partitions (its own words).
    Conflict {
        /// The ring.
        ring: RingId,
        /// The service.
        service: ServiceId,
        /// What it decided.
        detail: String,
    },
    /// Every service is synchronised.
    Done {
        /// The ring.
        ring: RingId,
        /// Sync bytes delivered in all.
        bytes: u64,
    },
    /// The sync was abandoned for a configuration change.
    Abort {
        /// The ring it was for.
        ring: RingId,
        /// The service it was at, if past the service list.
        service: Option<ServiceId>,
    },
}

impl SyncEvent {
    /// Returns the event as a `sync` event record body.
    pub fn to_record(&self) -> ringlab_records::Body {
        let (phase, ring, service, bytes, detail) = match self {
            Self::Start { ring } => ("start", *ring, None, 0, None),
            Self::ServiceDone {
                ring,
                service,
                bytes,
            } => ("service_done", *ring, Some(*service), *bytes, None),
            Self::Conflict {
                ring,
                service,
                detail,
            } => ("conflict", *ring, Some(*service), 0, Some(detail.clone())),
            Self::Done { ring, bytes } => ("done", *ring, None, *bytes, None),
            Self::Abort { ring, service } => ("abort", *ring, *service, 0, None),
        };
        ringlab_records::Body::Sync {
            phase: phase.into(),
            ring,
            service,
            bytes,
            detail,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    ServiceListBuild,
    Process(usize),
    Barrier(usize),
}

/// Counters of the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Syncs that completed.
    pub completed: u64,
    /// Syncs aborted by a configuration change.
    pub aborted: u64,
    /// Sync messages of another ring, ignored.
    pub foreign_ring: u64,
    /// Messages that did not decode.
    pub malformed: u64,
}

/// The sync engine of one node.
pub struct SyncEngine {
    me: NodeId,
    services: BTreeMap<ServiceId, Box<dyn Service>>,
    phase: Phase,
    ring: Option<RingId>,
    members: Vec<NodeId>,
    trans: Vec<NodeId>,
    lists: BTreeMap<NodeId, Vec<(ServiceId, u64)>>,
    plan: Vec<ServiceId>,
    barriers: BTreeMap<ServiceId, BTreeSet<NodeId>>,
    held_ops: Vec<(OpDelivery, ServiceId, Bytes)>,
    /// Between a transitional configuration and the next regular one.
    transitional: bool,
    bytes_service: u64,
    bytes_total: u64,
    out: VecDeque<Bytes>,
    events: VecDeque<SyncEvent>,
    stats: SyncStats,
}

impl SyncEngine {
    /// Creates the engine of node `me` with its services.
    pub fn new(me: NodeId, services: Vec<Box<dyn Service>>) -> Self {
        Self {
            me,
            services: services.into_iter().map(|s| (s.id(), s)).collect(),
            phase: Phase::Idle,
            ring: None,
            members: vec![],
            trans: vec![me],
            lists: BTreeMap::new(),
            plan: vec![],
            barriers: BTreeMap::new(),
            held_ops: vec![],
            transitional: false,
            bytes_service: 0,
            bytes_total: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: SyncStats::default(),
        }
    }

    /// Returns whether a sync is running (the application's sends are held meanwhile).
    pub fn is_syncing(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Returns the phase: "idle", "service_list_build", "process" or "barrier".
    pub fn phase(&self) -> &'static str {
        match self.phase {
            Phase::Idle => "idle",
            Phase::ServiceListBuild => "service_list_build",
            Phase::Process(_) => "process",
            Phase::Barrier(_) => "barrier",
        }
    }

    /// Returns the operations held while sync runs.
    pub fn held_ops(&self) -> usize {
        self.held_ops.len()
    }

    /// Returns the counters.
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    /// Returns a service by id.
    pub fn service(&self, id: ServiceId) -> Option<&dyn Service> {
        self.services.get(&id).map(|s| s.as_ref())
    }

    /// Returns a service by id, mutably.
    pub fn service_mut(&mut self, id: ServiceId) -> Option<&mut (dyn Service + 'static)> {
        self.services.get_mut(&id).map(|s| s.as_mut())
    }

    /// Returns every service, in id order.
    pub fn services(&self) -> impl Iterator<Item = &dyn Service> {
        self.services.values().map(|s| s.as_ref())
    }

    /// Returns every service, in id order, mutably.
    pub fn services_mut(&mut self) -> impl Iterator<Item = &mut (dyn Service + 'static)> {
        self.services.values_mut().map(|s| s.as_mut())
    }

    /// Returns the next message to submit to the ring (agreed).
    pub fn poll_submit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// Returns whether no message waits to be submitted.
    pub fn poll_submit_is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Returns the next event to record.
    pub fn poll_event(&mut self) -> Option<SyncEvent> {
        self.events.pop_front()
    }

    /// Returns an operation message for `service`, for the application to submit (only
    /// while [`SyncEngine::is_syncing`] is false).
    pub fn op_message(service: ServiceId, payload: &[u8]) -> Bytes {
        Bytes::from(
            Msg::Op {
                service,
                payload: Bytes::copy_from_slice(payload),
            }
            .encode(),
        )
    }

    /// Processes one ring event.
    pub fn handle_event(&mut self, ev: &Event) {
        match ev {
            Event::Config(c) if c.kind == ConfigKind::Transitional => {
                self.abort();
                self.trans = c.members.clone();
                self.transitional = true;
            }
            Event::Config(c) => {
                self.abort();
                self.transitional = false;
                self.start(c.ring_id, c.members.clone());
            }
            Event::Deliver(d) => match Msg::decode(&d.data) {
                Ok(m) => {
                    let how = OpDelivery {
                        sender: d.id.node,
                        inc: d.id.inc,
                        safe: d.safe,
                        regular: !self.transitional,
                    };
                    self.on_msg(how, m, d.data.len() as u64)
                }
                Err(_) => self.stats.malformed += 1,
            },
            Event::State { .. } => {}
        }
    }

    fn start(&mut self, ring: RingId, members: Vec<NodeId>) {
        if !self.trans.contains(&self.me) {
            self.trans = vec![self.me];
        }
        self.trans.retain(|m| members.contains(m));
        self.ring = Some(ring);
        self.members = members;
        self.lists.clear();
        self.barriers.clear();
        self.plan.clear();
        self.bytes_total = 0;
        self.phase = Phase::ServiceListBuild;
        self.events.push_back(SyncEvent::Start { ring });
        let ctx = SyncContext {
            me: self.me,
            ring,
            members: self.members.clone(),
            trans: self.trans.clone(),
        };
        for s in self.services.values_mut() {
            s.sync_init(&ctx);
        }
        let services = self
            .services
            .iter()
            .map(|(id, s)| (*id, s.state_token()))
            .collect();
        self.out
            .push_back(Bytes::from(Msg::ServiceList { ring, services }.encode()));
    }

    fn abort(&mut self) {
        if self.phase == Phase::Idle {
            return;
        }
        let ring = self.ring.expect("a ring while syncing");
        let current = match self.phase {
            Phase::Process(i) | Phase::Barrier(i) => self.plan.get(i).copied(),
            _ => None,
        };
        // Every local service was initialised at the service-list build: all drop their
        // temporary state (the current one, in PROCESS or in BARRIER, and those not reached).
        for s in self.services.values_mut() {
            s.sync_abort();
        }
        self.stats.aborted += 1;
        self.events.push_back(SyncEvent::Abort {
            ring,
            service: current,
        });
        self.finish_common();
    }

    fn finish_common(&mut self) {
        self.phase = Phase::Idle;
        self.ring = None;
        self.lists.clear();
        self.barriers.clear();
        self.out.clear();
        for (how, service, payload) in std::mem::take(&mut self.held_ops) {
            if let Some(s) = self.services.get_mut(&service) {
                s.deliver_op_in(&how, &payload);
            }
        }
    }

    fn on_msg(&mut self, how: OpDelivery, m: Msg, len: u64) {
        let sender = how.sender;
        let ring = match &m {
            Msg::Op { service, payload } => {
                if self.is_syncing() {
                    self.held_ops.push((how, *service, payload.clone()));
                } else if let Some(s) = self.services.get_mut(service) {
                    s.deliver_op_in(&how, payload);
                }
                return;
            }
            Msg::Barrier { ring, .. }
            | Msg::ServiceList { ring, .. }
            | Msg::ServiceData { ring, .. } => *ring,
        };
        if Some(ring) != self.ring {
            self.stats.foreign_ring += 1;
            return;
        }
        match m {
            Msg::ServiceList { services, .. } => {
                if self.phase != Phase::ServiceListBuild || !self.members.contains(&sender) {
                    return;
                }
                self.lists.insert(sender, services);
                if self.members.iter().all(|m| self.lists.contains_key(m)) {
                    let mut plan: Vec<ServiceId> =
                        self.lists.values().flatten().map(|(id, _)| *id).collect();
                    plan.sort_unstable();
                    plan.dedup();
                    for (id, s) in self.services.iter_mut() {
                        let tokens: BTreeMap<NodeId, u64> = self
                            .lists
                            .iter()
                            .filter_map(|(m, l)| {
                                l.iter().find(|(sid, _)| sid == id).map(|(_, t)| (*m, *t))
                            })
                            .collect();
                        s.sync_members(&tokens);
                    }
                    self.plan = plan;
                    self.next_service(0);
                }
            }
            Msg::ServiceData {
                service, payload, ..
            } => {
                self.bytes_service += len;
                self.bytes_total += len;
                if let Some(s) = self.services.get_mut(&service) {
                    if let Some(detail) = s.sync_deliver(sender, &payload) {
                        self.events.push_back(SyncEvent::Conflict {
                            ring,
                            service,
                            detail,
                        });
                    }
                }
            }
            Msg::Barrier { service, .. } => {
                if !self.members.contains(&sender) {
                    return;
                }
                self.barriers.entry(service).or_default().insert(sender);
                self.check_barrier();
            }
            Msg::Op { .. } => unreachable!("handled above"),
        }
    }

    fn next_service(&mut self, i: usize) {
        let ring = self.ring.expect("a ring while syncing");
        if i >= self.plan.len() {
            self.stats.completed += 1;
            self.events.push_back(SyncEvent::Done {
                ring,
                bytes: self.bytes_total,
            });
            self.finish_common();
            return;
        }
        self.bytes_service = 0;
        self.phase = Phase::Process(i);
    }

    fn check_barrier(&mut self) {
        let Phase::Barrier(i) = self.phase else {
            return;
        };
        let service = self.plan[i];
        let all = self
            .barriers
            .get(&service)
            .is_some_and(|b| self.members.iter().all(|m| b.contains(m)));
        if all {
            if let Some(s) = self.services.get_mut(&service) {
                s.sync_activate();
            }
            self.events.push_back(SyncEvent::ServiceDone {
                ring: self.ring.expect("a ring while syncing"),
                service,
                bytes: self.bytes_service,
            });
            self.next_service(i + 1);
        }
    }

    /// Runs the current service's `sync_process` with `room` bytes left in the ring's send
    /// queue; call after every input and whenever the queue has drained.
    pub fn poll(&mut self, room: usize) {
        let Phase::Process(i) = self.phase else {
            return;
        };
        let ring = self.ring.expect("a ring while syncing");
        let service = self.plan[i];
        let mut payloads = Vec::new();
        let progress = match self.services.get_mut(&service) {
            Some(s) => {
                let mut out = Outbox {
                    room,
                    out: &mut payloads,
                };
                s.sync_process(&mut out)
            }
            None => Progress::Done, // unknown here: a no-op
        };
        for p in payloads {
            self.out.push_back(Bytes::from(
                Msg::ServiceData {
                    ring,
                    service,
                    payload: p,
                }
                .encode(),
            ));
        }
        if progress == Progress::Done {
            self.out
                .push_back(Bytes::from(Msg::Barrier { ring, service }.encode()));
            self.phase = Phase::Barrier(i);
            self.check_barrier();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringlab_ring::{ConfigChange, Delivery, MsgId};
    use std::sync::{Arc, Mutex};

    /// A service that logs its calls and needs two `process` calls.
    struct Probe {
        id: ServiceId,
        node: NodeId,
        log: Arc<Mutex<Vec<String>>>,
        calls: u32,
    }

    impl Service for Probe {
        fn id(&self) -> ServiceId {
            self.id
        }
        fn sync_init(&mut self, _: &SyncContext) {
            self.calls = 0;
            self.log
                .lock()
                .unwrap()
                .push(format!("{} init {}", self.node, self.id));
        }
        fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress {
            self.calls += 1;
            out.push(Bytes::from(vec![self.id as u8]));
            if self.calls < 2 {
                Progress::NotDone
            } else {
                Progress::Done
            }
        }
        fn sync_deliver(&mut self, _: NodeId, _: &[u8]) -> Option<String> {
            None
        }
        fn sync_activate(&mut self) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} activate {}", self.node, self.id));
        }
        fn sync_abort(&mut self) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} abort {}", self.node, self.id));
        }
        fn deliver_op(&mut self, _: NodeId, _: &[u8]) {}
        fn deliver_op_in(&mut self, d: &OpDelivery, payload: &[u8]) {
            self.log.lock().unwrap().push(format!(
                "{} op {:?} from {} safe {} regular {}",
                self.node, payload, d.sender, d.safe, d.regular
            ));
        }
        fn name(&self) -> &'static str {
            "probe"
        }
        fn control(
            &mut self,
            _: &serde_json::Value,
            _: &crate::control::ControlContext,
        ) -> Result<crate::control::Control, crate::control::ControlError> {
            Err(crate::control::ControlError::BadCommand("none".into()))
        }
        fn digest(&self) -> [u8; 32] {
            [0; 32]
        }
    }

    fn config(kind: ConfigKind, ring: RingId, members: &[NodeId]) -> Event {
        Event::Config(ConfigChange {
            kind,
            ring_id: ring,
            members: members.to_vec(),
            left: vec![],
            joined: vec![],
        })
    }

    /// Delivers everything the engines submit, in one total order, until they are quiet.
    fn run(engines: &mut [SyncEngine], ring: RingId, counter: &mut u64) {
        for _ in 0..100 {
            let mut bus = Vec::new();
            for e in engines.iter_mut() {
                e.poll(1 << 20);
                while let Some(m) = e.poll_submit() {
                    bus.push((e.me, m));
                }
            }
            if bus.is_empty() {
                return;
            }
            for (sender, data) in bus {
                *counter += 1;
                let ev = Event::Deliver(Delivery {
                    id: MsgId {
                        node: sender,
                        inc: 1,
                        counter: *counter,
                    },
                    ring_id: ring,
                    seq: *counter,
                    safe: false,
                    sent_t_ns: 0,
                    data,
                });
                engines.iter_mut().for_each(|e| e.handle_event(&ev));
            }
        }
        panic!("the engines never went quiet");
    }

    fn node(me: NodeId, ids: &[ServiceId], log: &Arc<Mutex<Vec<String>>>) -> SyncEngine {
        let services: Vec<Box<dyn Service>> = ids
            .iter()
            .map(|&id| {
                Box::new(Probe {
                    id,
                    node: me,
                    log: log.clone(),
                    calls: 0,
                }) as Box<dyn Service>
            })
            .collect();
        SyncEngine::new(me, services)
    }

    #[test]
    fn services_sync_in_id_order_unknown_ones_are_no_ops_and_aborts_leave_nothing() {
        let log = Arc::new(Mutex::new(Vec::new()));
        // Node 1 runs services 1 and 3, node 2 runs 1 and 2, node 3 runs 1.
        let mut engines = vec![
            node(1, &[3, 1], &log),
            node(2, &[1, 2], &log),
            node(3, &[1], &log),
        ];
        let r1 = RingId { rep: 1, seq: 4 };
        let mut counter = 0;
        for e in engines.iter_mut() {
            e.handle_event(&config(ConfigKind::Transitional, r1, &[e.me]));
            e.handle_event(&config(ConfigKind::Regular, r1, &[1, 2, 3]));
        }
        // Every local service is initialised at once, before any process.
        assert_eq!(
            log.lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("init"))
                .count(),
            5
        );
        // A message of another ring is ignored.
        let foreign = Msg::ServiceList {
            ring: RingId { rep: 9, seq: 1 },
            services: vec![(7, 0)],
        };
        let ev = Event::Deliver(Delivery {
            id: MsgId {
                node: 2,
                inc: 1,
                counter: 999,
            },
            ring_id: r1,
            seq: 999,
            safe: false,
            sent_t_ns: 0,
            data: Bytes::from(foreign.encode()),
        });
        engines[0].handle_event(&ev);
        assert_eq!(engines[0].stats().foreign_ring, 1);
        run(&mut engines, r1, &mut counter);
        for e in engines.iter_mut() {
            assert!(!e.is_syncing());
            let evs: Vec<SyncEvent> = std::iter::from_fn(|| e.poll_event()).collect();
            let done: Vec<ServiceId> = evs
                .iter()
                .filter_map(|v| match v {
                    SyncEvent::ServiceDone { service, .. } => Some(*service),
                    _ => None,
                })
                .collect();
            assert_eq!(done, vec![1, 2, 3], "the union, sorted, at node {}", e.me);
            assert!(matches!(evs.last(), Some(SyncEvent::Done { .. })));
        }
        // Activation happened for local services only, once each.
        let acts: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("activate"))
            .cloned()
            .collect();
        assert_eq!(acts.len(), 5, "{acts:?}");
        // A configuration change in the middle of a sync aborts it everywhere.
        log.lock().unwrap().clear();
        let r2 = RingId { rep: 1, seq: 8 };
        for e in engines.iter_mut() {
            e.handle_event(&config(ConfigKind::Transitional, r2, &[1, 2, 3]));
            e.handle_event(&config(ConfigKind::Regular, r2, &[1, 2, 3]));
            e.poll(1 << 20); // service 1 is mid-PROCESS (needs two calls)
            assert_eq!(e.phase(), "service_list_build");
        }
        let r3 = RingId { rep: 1, seq: 12 };
        for e in engines.iter_mut() {
            e.handle_event(&config(ConfigKind::Transitional, r3, &[1, 2, 3]));
            assert!(!e.is_syncing());
            let aborted =
                std::iter::from_fn(|| e.poll_event()).any(|v| matches!(v, SyncEvent::Abort { .. }));
            assert!(aborted);
            e.handle_event(&config(ConfigKind::Regular, r3, &[1, 2, 3]));
        }
        assert_eq!(
            log.lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("abort"))
                .count(),
            5
        );
        // Messages of the aborted ring are ignored; the new sync completes.
        run(&mut engines, r3, &mut counter);
        assert!(engines
            .iter()
            .all(|e| !e.is_syncing() && e.stats().completed == 2 && e.stats().aborted == 1));
    }

    #[test]
    fn operations_carry_how_they_were_delivered() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let probe = Probe {
            id: 7,
            node: 1,
            log: log.clone(),
            calls: 0,
        };
        let mut e = SyncEngine::new(1, vec![Box::new(probe)]);
        let op = |counter, safe| {
            Event::Deliver(Delivery {
                id: MsgId {
                    node: 2,
                    inc: 1,
                    counter,
                },
                ring_id: RingId { rep: 1, seq: 4 },
                seq: counter,
                safe,
                sent_t_ns: 0,
                data: SyncEngine::op_message(7, &[counter as u8]),
            })
        };
        // Outside sync (no configuration yet): regular, as delivered.
        e.handle_event(&op(1, true));
        // After a transitional configuration: not regular, until the next regular one.
        e.handle_event(&config(
            ConfigKind::Transitional,
            RingId { rep: 1, seq: 8 },
            &[1],
        ));
        e.handle_event(&op(2, true));
        let ops: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(" op "))
            .cloned()
            .collect();
        assert_eq!(
            ops,
            [
                "1 op [1] from 2 safe true regular true",
                "1 op [2] from 2 safe true regular false"
            ]
        );
        // A regular configuration starts a sync: an operation is held, then handed over
        // with its context when the sync ends (here: aborted by the next configuration).
        e.handle_event(&config(
            ConfigKind::Regular,
            RingId { rep: 1, seq: 8 },
            &[1, 2],
        ));
        e.handle_event(&op(3, false));
        e.handle_event(&config(
            ConfigKind::Transitional,
            RingId { rep: 1, seq: 12 },
            &[1],
        ));
        let last = log
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|l| l.contains(" op "))
            .cloned();
        assert_eq!(
            last.as_deref(),
            Some("1 op [3] from 2 safe false regular true")
        );
    }
}
