//! The sync engine with its services, driven over a [`Ring`]: what a node (real or simulated)
//! runs on top of its ring. It feeds ring events to the engine, submits the engine's messages
//! first, and holds the services' operations while a sync runs (sync traffic goes first),
//! submitting them once it completes. Control commands reach a service by its name
//! ([`ServiceApp::control`]); nothing here knows any service.
//!
//! # Local work in slices
//! A service may have a long local step to do (the `kml` service's merge: undo, replay and
//! reintegration of up to hundreds of thousands of records), which it runs in bounded
//! slices ([`Service::has_work`], [`Service::do_work`]) so that its host keeps serving its
//! ring meanwhile (a real node stalled for a second by one such step loses the token). The
//! host calls [`ServiceApp::handle_work`] while [`ServiceApp::has_work`] says so. Meanwhile
//! the app takes every other input it is handed (ring events, service datagrams, actions'
//! outcomes, `quit`) into an in-order backlog instead of processing it, submits nothing
//! ([`ServiceApp::pump`] waits) and gives no service a tick; when the work finishes it
//! processes the backlog in order, stopping again where an input starts new work. So the
//! step is exactly as atomic as if it had run in one call, only spread over time: to the
//! protocol the node is a slow one. Control commands are answered at once (a reply cannot
//! wait); they see `syncing` true meanwhile.
//!
//! The backlog holds only what arrives during the work, nothing more: its memory is the
//! inputs the host hands in meanwhile (each a ring event or a datagram, as the ring's flow
//! control and the network bound them), for as long as the work lasts (its slices over the
//! host's turns); [`ServiceApp::backlog_peak`] tells the most it held.

use crate::control::{ControlContext, ControlError, OP_OVERHEAD};
use crate::registry::Entry;
use crate::service::{
    Action, ActionResult, Service, ServiceConfig, ServiceConfigError, StateSize, Storage,
};
use crate::{ServiceId, SyncEngine};
use bytes::Bytes;
use ringlab_records::Body;
use ringlab_ring::{Event, Guarantee, NodeId, Ring, SubmitError};
use std::collections::BTreeMap;
use std::collections::VecDeque;

/// The first bytes of a service's point-to-point datagram ("RS"; the ring's packets begin
/// with "RL"), followed by the service's id (big-endian u16) and its own bytes: a host tells the two apart
/// by these ([`is_service_datagram`]) and hands such a datagram to
/// [`ServiceApp::handle_datagram`].
pub const DATAGRAM_MAGIC: [u8; 2] = *b"RS";

/// The bytes of a service datagram's framing: the magic and the service's id (two bytes).
pub const DATAGRAM_HEADER: usize = 4;

/// Returns whether `data` is a service's point-to-point datagram (not a ring packet).
pub fn is_service_datagram(data: &[u8]) -> bool {
    data.len() >= DATAGRAM_HEADER && data[..2] == DATAGRAM_MAGIC
}

/// An input taken while a service had work pending, processed once it finishes.
#[derive(Debug)]
enum Held {
    /// A ring event.
    Event(Event),
    /// A service datagram: when, from whom, the framed bytes.
    Datagram(u64, NodeId, Bytes),
    /// An action's outcome: when, the service, the action, how it ended.
    ActionDone(u64, ServiceId, u64, ActionResult),
    /// The node is leaving.
    Quit,
}

/// The sync engine with its services, plus a queue of their operations.
pub struct ServiceApp {
    /// The engine (owning the services).
    pub engine: SyncEngine,
    pending: VecDeque<Bytes>,
    /// Operations waiting, each with its guarantee (the service's: agreed or safe).
    ops: VecDeque<(Bytes, Guarantee)>,
    /// The bytes of `ops`.
    ops_bytes: usize,
    /// Inputs taken while a service had work pending, in the order handed in.
    backlog: VecDeque<Held>,
    /// The most `backlog` held.
    backlog_peak: usize,
}

impl ServiceApp {
    /// Creates the app of node `me` running `services` (from the [registry](crate::registry)).
    pub fn new(me: NodeId, services: &[&'static Entry]) -> Self {
        Self {
            engine: SyncEngine::new(me, services.iter().map(|e| e.make(me)).collect()),
            pending: VecDeque::new(),
            ops: VecDeque::new(),
            ops_bytes: 0,
            backlog: VecDeque::new(),
            backlog_peak: 0,
        }
    }

    /// Creates the app of node `me` running `services`, each configured with the cluster's
    /// `nodes` and its own section of `sections` (by service name; absent: null, defaults).
    pub fn with_config(
        me: NodeId,
        services: &[&'static Entry],
        nodes: &[NodeId],
        sections: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Self, ServiceConfigError> {
        Self::with_storage(me, services, nodes, sections, &Storage::None)
    }

    /// As [`ServiceApp::with_config`], the services keeping what outlives the process in
    /// `storage` (a real node's state directory, or the simulator's disks of the node).
    pub fn with_storage(
        me: NodeId,
        services: &[&'static Entry],
        nodes: &[NodeId],
        sections: &BTreeMap<String, serde_json::Value>,
        storage: &Storage,
    ) -> Result<Self, ServiceConfigError> {
        let made = services
            .iter()
            .map(|e| {
                e.configure(
                    me,
                    &ServiceConfig {
                        nodes: nodes.to_vec(),
                        section: sections.get(e.name).cloned().unwrap_or_default(),
                        storage: storage.clone(),
                    },
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            engine: SyncEngine::new(me, made),
            pending: VecDeque::new(),
            ops: VecDeque::new(),
            ops_bytes: 0,
            backlog: VecDeque::new(),
            backlog_peak: 0,
        })
    }

    /// Returns the names of the services run, in id order.
    pub fn names(&self) -> Vec<&'static str> {
        self.services().map(|s| s.name()).collect()
    }

    /// Returns the service named `name`, if this app runs it.
    pub fn service(&self, name: &str) -> Option<&dyn Service> {
        self.services().find(|s| s.name() == name)
    }

    /// Returns every service run, in id order.
    pub fn services(&self) -> impl Iterator<Item = &dyn Service> {
        self.engine.services()
    }

    /// Returns the state every service holds, together.
    pub fn state_size(&self) -> StateSize {
        self.services()
            .map(|s| s.size())
            .fold(StateSize::default(), |a, b| a + b)
    }

    /// Queues an operation of `service` (its payload); while sync runs it waits (sync
    /// traffic goes first).
    pub fn queue_op(&mut self, service: ServiceId, payload: &[u8]) {
        let m = SyncEngine::op_message(service, payload);
        let safe = self.services().any(|s| s.id() == service && s.safe_ops());
        let g = if safe {
            Guarantee::Safe
        } else {
            Guarantee::Agreed
        };
        self.ops_bytes += m.len();
        self.ops.push_back((m, g));
    }

    /// Carries out a control command of the service named `name` (the JSON its
    /// [`Plugin::parse_args`](crate::Plugin::parse_args) builds), with the operations waiting
    /// to be sent bounded by `max_fill_bytes`; queues the operations it makes and returns its
    /// reply.
    pub fn control(
        &mut self,
        name: &str,
        request: &serde_json::Value,
        max_fill_bytes: u64,
    ) -> Result<serde_json::Value, ControlError> {
        let Some(id) = self.service(name).map(|s| s.id()) else {
            crate::registry::find(name)?;
            return Err(ControlError::NotRunning {
                service: name.to_string(),
                running: self.names(),
            });
        };
        let ctx = ControlContext {
            syncing: self.engine.is_syncing() || self.has_work(),
            queued: self.queued_bytes() as u64 + self.queued_ops() as u64 * OP_OVERHEAD,
            max_fill_bytes,
        };
        let service = self.engine.service_mut(id).expect("a service run");
        let out = service.control(request, &ctx)?;
        for op in &out.ops {
            self.queue_op(id, op);
        }
        Ok(out.reply)
    }

    /// Returns the earliest time (ns) a service needs a tick of its own: its host wakes then
    /// and pumps (see [`Service::poll_deadline`]).
    pub fn poll_deadline(&self) -> Option<u64> {
        self.services().filter_map(|s| s.poll_deadline()).min()
    }

    /// Hands a service datagram (see [`is_service_datagram`]) from `from` to its service at
    /// `now`; appends the records it makes and queues the operations it sends. Returns
    /// false when it is not one (too short, or for a service this node does not run).
    pub fn handle_datagram(
        &mut self,
        now: u64,
        from: NodeId,
        data: &[u8],
        records: &mut Vec<Body>,
    ) -> bool {
        if !is_service_datagram(data) {
            return false;
        }
        let id = u16::from_be_bytes([data[2], data[3]]);
        if self.engine.service_mut(id).is_none() {
            return false;
        }
        if self.has_work() {
            self.hold(Held::Datagram(now, from, Bytes::copy_from_slice(data)));
            return true;
        }
        self.take_datagram(now, from, data, records);
        true
    }

    fn take_datagram(&mut self, now: u64, from: NodeId, data: &[u8], records: &mut Vec<Body>) {
        let id = u16::from_be_bytes([data[2], data[3]]);
        if let Some(s) = self.engine.service_mut(id) {
            s.handle_datagram(now, from, &data[DATAGRAM_HEADER..]);
        }
        self.drain_services(None, records);
    }

    /// Returns the next datagram a service sends point to point at `now`, framed for the
    /// wire: (to, bytes).
    pub fn poll_datagram(&mut self, now: u64) -> Option<(NodeId, Bytes)> {
        self.engine.services_mut().find_map(|s| {
            let id = s.id();
            s.poll_datagram(now).map(|(to, d)| {
                let mut b = Vec::with_capacity(DATAGRAM_HEADER + d.len());
                b.extend_from_slice(&DATAGRAM_MAGIC);
                b.extend_from_slice(&id.to_be_bytes());
                b.extend_from_slice(&d);
                (to, Bytes::from(b))
            })
        })
    }

    /// Turns on the real-directory mirror of every service that keeps files.
    pub fn set_mirror(&mut self, on: bool) {
        for s in self.engine.services_mut() {
            s.set_mirror(on);
        }
    }

    /// Returns the next change to a service's real directory, with the service's name (the
    /// host applies it under `STATE_DIR/NAME/`).
    pub fn poll_file_change(&mut self) -> Option<(&'static str, crate::FileChange)> {
        self.engine
            .services_mut()
            .find_map(|s| s.poll_file_change().map(|c| (s.name(), c)))
    }

    /// Returns the next action a service asks its host to carry out, with the service's id.
    pub fn poll_action(&mut self) -> Option<(ServiceId, Action)> {
        self.engine
            .services_mut()
            .find_map(|s| s.poll_action().map(|a| (s.id(), a)))
    }

    /// Hands a service the outcome of its action `id` at `now`; appends the records it makes
    /// and queues the operations it sends.
    pub fn action_done(
        &mut self,
        now: u64,
        service: ServiceId,
        id: u64,
        result: ActionResult,
        records: &mut Vec<Body>,
    ) {
        if self.has_work() {
            self.hold(Held::ActionDone(now, service, id, result));
            return;
        }
        self.take_action_done(now, service, id, result, records);
    }

    fn take_action_done(
        &mut self,
        now: u64,
        service: ServiceId,
        id: u64,
        result: ActionResult,
        records: &mut Vec<Body>,
    ) {
        if let Some(s) = self.engine.service_mut(service) {
            s.action_done(now, id, result);
        }
        self.drain_services(None, records);
    }

    /// The node is leaving: every service gives up what it holds (see [`Service::quit`]);
    /// appends their records and queues their operations.
    pub fn quit(&mut self, records: &mut Vec<Body>) {
        if self.has_work() {
            self.hold(Held::Quit);
            return;
        }
        self.take_quit(records);
    }

    fn take_quit(&mut self, records: &mut Vec<Body>) {
        for s in self.engine.services_mut() {
            s.quit();
        }
        self.drain_services(None, records);
    }

    /// Returns whether every service is idle and no operation waits: a quitting node may
    /// leave.
    pub fn is_idle(&self) -> bool {
        !self.has_work()
            && self.ops.is_empty()
            && self.pending.is_empty()
            && self.services().all(|s| s.is_idle())
    }

    /// Returns whether [`ServiceApp::handle_work`] has something to do: a service has local
    /// work pending, or inputs taken meanwhile wait in the backlog. The host then calls it
    /// (the simulator at once by default, a real node once per loop turn, polling without
    /// waiting while this holds).
    pub fn has_work(&self) -> bool {
        !self.backlog.is_empty() || self.services().any(|s| s.has_work())
    }

    /// Runs one slice of the first service's pending work at `now` (ns); once no service has
    /// work left, processes the inputs taken meanwhile, in order, until one of them starts
    /// new work. Appends the records made and queues the operations sent.
    pub fn handle_work(&mut self, now: u64, records: &mut Vec<Body>) {
        let mut worked = false;
        if let Some(s) = self.engine.services_mut().find(|s| s.has_work()) {
            s.do_work(now);
            worked = true;
        }
        if worked {
            self.drain_services(None, records);
        }
        while !self.services().any(|s| s.has_work()) {
            let Some(h) = self.backlog.pop_front() else {
                break;
            };
            match h {
                Held::Event(ev) => self.take_event(&ev, records),
                Held::Datagram(at, from, data) => self.take_datagram(at, from, &data, records),
                Held::ActionDone(at, service, id, result) => {
                    self.take_action_done(at, service, id, result, records)
                }
                Held::Quit => self.take_quit(records),
            }
        }
    }

    /// Returns the inputs waiting in the backlog.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Returns the most inputs the backlog held at once.
    pub fn backlog_peak(&self) -> usize {
        self.backlog_peak
    }

    fn hold(&mut self, h: Held) {
        self.backlog.push_back(h);
        self.backlog_peak = self.backlog_peak.max(self.backlog.len());
    }

    /// Returns the operations waiting to be submitted.
    pub fn queued_ops(&self) -> usize {
        self.ops.len()
    }

    /// Returns the bytes of the operations waiting to be submitted.
    pub fn queued_bytes(&self) -> usize {
        self.ops_bytes
    }

    /// Hands one ring event to the engine; appends the records it produces.
    /// While a service has work pending it waits in the backlog (see [`ServiceApp::has_work`]).
    pub fn on_event(&mut self, ev: &Event, records: &mut Vec<Body>) {
        if self.has_work() {
            self.hold(Held::Event(ev.clone()));
            return;
        }
        self.take_event(ev, records);
    }

    fn take_event(&mut self, ev: &Event, records: &mut Vec<Body>) {
        self.engine.handle_event(ev);
        self.poll_records(records);
    }

    /// Appends the engine's records, then each service's own; queues the operations the
    /// services submit of their own accord.
    fn poll_records(&mut self, records: &mut Vec<Body>) {
        while let Some(e) = self.engine.poll_event() {
            records.push(e.to_record());
        }
        self.drain_services(None, records);
    }

    /// Takes every service's records and the operations it sends of its own accord
    /// (queued), after giving it the time when `tick` says so. A service with work pending
    /// stops the drain after its own, so that the records of the services after it follow
    /// the ones its work makes, as they would had it worked in one call.
    fn drain_services(&mut self, tick: Option<(u64, bool)>, records: &mut Vec<Body>) {
        let mut own = Vec::new();
        for s in self.engine.services_mut() {
            if let Some((now, operational)) = tick {
                s.tick(now, operational);
            }
            while let Some(r) = s.poll_record() {
                records.push(r);
            }
            while let Some(op) = s.poll_op() {
                own.push((s.id(), op));
            }
            if s.has_work() {
                break;
            }
        }
        for (id, op) in own {
            self.queue_op(id, &op);
        }
    }

    /// Submits what waits, sync messages first, as far as the ring's queue takes them;
    /// appends `send` and `sync` records. Does nothing while a service has work pending (see
    /// [`ServiceApp::has_work`]).
    pub fn pump(&mut self, now: u64, ring: &mut Ring, records: &mut Vec<Body>) {
        if self.has_work() {
            return;
        }
        let operational = ring.state() == ringlab_ring::MembState::Operational;
        self.drain_services(Some((now, operational)), records);
        for _ in 0..64 {
            while let Some(m) = self.engine.poll_submit() {
                self.pending.push_back(m);
            }
            if !submit_all(&mut self.pending, now, ring, records, &mut 0, |m| {
                (m.clone(), Guarantee::Agreed)
            }) {
                return;
            }
            if !self.engine.is_syncing() {
                break;
            }
            let room = ring
                .config()
                .send_queue_bytes
                .saturating_sub(ring.queue_depth().1 + 64 * 1024);
            self.engine.poll(room);
            self.poll_records(records);
            if self.engine.poll_submit_is_empty() {
                break;
            }
        }
        if !self.engine.is_syncing() {
            let mut taken = 0;
            submit_all(&mut self.ops, now, ring, records, &mut taken, Clone::clone);
            self.ops_bytes -= taken;
        }
    }
}

/// Submits the messages of `q` in order (each with the guarantee `how` gives it) until the
/// ring's queue is full (returns false); adds the bytes of the messages it took off `q` to
/// `taken`.
fn submit_all<T>(
    q: &mut VecDeque<T>,
    now: u64,
    ring: &mut Ring,
    records: &mut Vec<Body>,
    taken: &mut usize,
    how: impl Fn(&T) -> (Bytes, Guarantee),
) -> bool {
    while let Some(item) = q.front() {
        let (m, g) = how(item);
        let len = m.len();
        match ring.submit(now, &m, g) {
            Ok(id) => {
                records.push(Body::Send {
                    id,
                    len,
                    safe: g == Guarantee::Safe,
                });
                q.pop_front();
                *taken += len;
            }
            Err(SubmitError::QueueFull { .. }) => return false,
            Err(e) => {
                // Never silently: the control socket refuses what cannot fit, so this is a bug.
                tracing::warn!(error = %e, len, "the ring refused a sync-layer message; dropped");
                q.pop_front();
                *taken += len;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Control, ControlContext, ControlError};
    use crate::engine::{Outbox, Progress, SyncContext};
    use ringlab_ring::{Delivery, MsgId, RingId};
    use std::sync::{Arc, Mutex};

    /// A service whose operation `[n]` starts `n` slices of work; it logs what it sees.
    struct Busy {
        left: u8,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Service for Busy {
        fn id(&self) -> ServiceId {
            9
        }
        fn name(&self) -> &'static str {
            "busy"
        }
        fn sync_init(&mut self, _: &SyncContext) {}
        fn sync_process(&mut self, _: &mut Outbox<'_>) -> Progress {
            Progress::Done
        }
        fn sync_deliver(&mut self, _: NodeId, _: &[u8]) -> Option<String> {
            None
        }
        fn sync_activate(&mut self) {}
        fn sync_abort(&mut self) {}
        fn deliver_op(&mut self, _: NodeId, payload: &[u8]) {
            assert_eq!(self.left, 0, "an input reached a busy service");
            self.log.lock().unwrap().push(format!("op {}", payload[0]));
            self.left = payload[0];
        }
        fn control(
            &mut self,
            _: &serde_json::Value,
            _: &ControlContext,
        ) -> Result<Control, ControlError> {
            Err(ControlError::BadCommand("none".into()))
        }
        fn digest(&self) -> [u8; 32] {
            [0; 32]
        }
        fn has_work(&self) -> bool {
            self.left > 0
        }
        fn do_work(&mut self, _: u64) {
            self.left -= 1;
            self.log.lock().unwrap().push(format!("work {}", self.left));
        }
    }

    fn op(counter: u64, n: u8) -> Event {
        Event::Deliver(Delivery {
            id: MsgId {
                node: 2,
                inc: 1,
                counter,
            },
            ring_id: RingId { rep: 1, seq: 4 },
            seq: counter,
            safe: false,
            sent_t_ns: 0,
            data: SyncEngine::op_message(9, &[n]),
        })
    }

    #[test]
    fn inputs_wait_while_a_service_works_and_run_in_order_after() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let busy = Busy {
            left: 0,
            log: log.clone(),
        };
        let mut app = ServiceApp {
            engine: SyncEngine::new(1, vec![Box::new(busy)]),
            pending: VecDeque::new(),
            ops: VecDeque::new(),
            ops_bytes: 0,
            backlog: VecDeque::new(),
            backlog_peak: 0,
        };
        let mut records = Vec::new();
        app.on_event(&op(1, 2), &mut records);
        assert!(app.has_work());
        // Taken while it works: held, in order.
        app.on_event(&op(2, 1), &mut records);
        app.on_event(&op(3, 0), &mut records);
        assert!(app.handle_datagram(0, 2, b"RS\x00\x09x", &mut records));
        assert_eq!(app.backlog(), 3);
        assert!(!app.is_idle());
        app.handle_work(0, &mut records);
        assert_eq!(app.backlog(), 3, "one slice, work left");
        // The last slice, then the backlog until an input starts new work.
        app.handle_work(0, &mut records);
        assert!(app.has_work());
        assert_eq!(
            app.backlog(),
            2,
            "the datagram and op 0 wait behind op 1's work"
        );
        app.handle_work(0, &mut records);
        assert!(!app.has_work());
        assert_eq!(app.backlog(), 0);
        assert_eq!(app.backlog_peak(), 3);
        assert_eq!(
            *log.lock().unwrap(),
            ["op 2", "work 1", "work 0", "op 1", "work 0", "op 0"]
        );
        assert!(app.is_idle());
    }
}
