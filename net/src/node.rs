//! One node: a single-threaded mio event loop around a [`Ring`], and the datagram path.
//!
//! The loop waits for the earliest of the ring's deadline and the load generator's next
//! send, reads every socket until `WouldBlock`, feeds the ring, then drains it: event
//! records are written and flushed *before* the datagrams of the same turn go out, so a
//! node killed at any point never has a message on the wire without its `send` record.
//! `quit` stops the load and drains: the node exits once its send queue is empty and its own
//! messages are delivered to it, or after [`QUIT_DRAIN_TOKENS`] token timeouts, then with a
//! `stop` record that counts what is still undelivered. With services, `quit` first has them
//! give up what they hold ([`ServiceApp::quit`]: the resources service stops its groups and
//! multicasts its refusals), and the node exits only once they are idle too, or at a bound
//! that adds the longest timeout of their actions to the drain's.
//! The services' actions (a resource's start or stop command) run in `node/actions.rs`: taken
//! after every drain, reaped without blocking, handed back through
//! [`ServiceApp::action_done`]; every command still running when the node exits is killed
//! with its process group.
//! Services that keep files (`kml`) are mirrored into `STATE_DIR/<service>/`
//! ([`crate::mirror`]): made afresh at start, queued changes applied after every drain (at
//! most [`crate::mirror::DRAIN_MAX`] a turn, the loop polling without waiting while more
//! remain), the directory compared with the service's tree digest at most every few seconds
//! once nothing is queued, and at the exit after every change is applied (a difference is
//! logged as an error and counted in `stats`).
//! A service's long local work (kml's merge) runs one slice a turn
//! ([`ServiceApp::handle_work`]), after the turn's I/O, the loop polling without waiting
//! while work remains: the ring keeps passing the token meanwhile (a merge of 10,000 records
//! done in one step stalled a node about 1.07 s, past the token timeout).
//! The control channel ([`crate::control`]) and the load generator ([`crate::load`]) live in
//! the same loop; nothing else runs beside it. What each control request does to the node is
//! in `node/commands.rs`.

mod actions;
mod commands;

pub use actions::{CHILD_POLL, MAX_CHILDREN};

use crate::clock::monotonic_ns;
use crate::config::{NodeConfig, Transport};
use crate::control::server::Server;
use crate::drops::{Dropped, NodeDrops};
use crate::load::LoadGen;
use crate::sockets::{self, RecvBatch, Sockets};
use crate::stable::{Stable, StableError};
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use ringlab_records::{Body, Record, Writer};
use ringlab_ring::auth::{AuthError, Authenticator, TRAILER_LEN};
use ringlab_ring::{Dest, DropReason, Event, MembState, NodeId, PacketOutcome, Ring};
use ringlab_sync::ServiceApp;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

const UNICAST: Token = Token(0);
const MULTICAST: Token = Token(1);
const CONTROL: Token = Token(2);
const MAX_DATAGRAM: usize = 65_536;

/// Token-loss timeouts a `quit` drains at most (see [`Node::run`]).
pub const QUIT_DRAIN_TOKENS: u64 = 3;

/// One running node.
pub struct Node {
    cfg: NodeConfig,
    ring: Ring,
    inc: u32,
    poll: Poll,
    sockets: Sockets,
    control: Server,
    /// Node list by (ip, port): an IPv6 source also carries a flow label and scope id,
    /// which say nothing about who sent it.
    by_addr: HashMap<(std::net::IpAddr, u16), NodeId>,
    addr_of: HashMap<NodeId, SocketAddr>,
    auth: Option<Authenticator>,
    records: Option<Writer<std::fs::File>>,
    drops: NodeDrops,
    latency: Histogram<u64>,
    delivered: u64,
    delivered_bytes: u64,
    load: LoadGen,
    /// The `send` record bodies of the load's last turn (kept to reuse its allocation).
    load_sent: Vec<Body>,
    started_ns: u64,
    stable: Stable,
    exit: Option<&'static str>,
    /// Set by `quit`: the node exits once drained, or at this time (monotonic ns).
    quit_by: Option<u64>,
    /// This incarnation's own messages submitted to the ring, and those delivered to it.
    own_sent: u64,
    own_delivered: u64,
    batch: Option<RecvBatch>,
    /// A turn's datagrams, sent together at the end of [`Self::drain`] (`batched_io`).
    outgoing: sockets::SendBatch,
    fanout: Vec<SocketAddr>,
    app: Option<ServiceApp>,
    /// Runs the services' actions.
    actions: actions::Executor,
    /// Set by `quit` with services: the drain's own bound (ns), which the longest timeout
    /// of an action asked for meanwhile extends `quit_by` past.
    quit_drain_ns: Option<u64>,
    /// The real directories of the services that keep files.
    mirror: Option<crate::mirror::Mirror>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The ring refused a knob.
    #[error(transparent)]
    Ring(#[from] ringlab_ring::ConfigError),
    /// A socket, file or poll could not be set up.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed (in the message, so not repeated as a source).
        cause: std::io::Error,
    },
    /// Stable storage could not be opened: a damaged state file, an exhausted incarnation,
    /// a file or directory that cannot be read or written (the message names it).
    #[error(transparent)]
    Stable(#[from] StableError),
    /// The events file could not be opened.
    #[error(transparent)]
    Records(#[from] ringlab_records::WriteError),
    /// `services` names a service the registry does not know.
    #[error("services: {0}")]
    Service(#[from] ringlab_sync::UnknownService),
    /// A service refused its `service_config` section.
    #[error("service_config: {0}")]
    ServiceConfig(#[from] ringlab_sync::ServiceConfigError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |cause| StartError::Io { what, cause }
}

impl Node {
    /// Sets up sockets, stable storage, records and the control channel.
    pub fn start(cfg: NodeConfig) -> Result<Self, StartError> {
        if cfg.key_file.is_none() {
            tracing::warn!(
                node = cfg.node_id,
                "running without a key (key_file unset): datagrams are not authenticated, so \
                 anyone who can send to this node's address can forge tokens and joins, split \
                 or stall the ring, inject or replay messages as any member, and make members \
                 leave; set key_file on every node of a cluster that is not on a private segment"
            );
        }
        // The services and the key are checked before anything is taken or made: a bad
        // service or key_file costs
        // no incarnation and leaves no socket behind.
        let services = ringlab_sync::registry::resolve(&cfg.services)?;
        let sections = cfg.service_sections();
        let store_section = sections.get("store");
        if let Some(d) = store_section
            .and_then(|s| s.get("datagram_bytes"))
            .and_then(|d| d.as_u64())
        {
            if d > cfg.totem.netmtu as u64 {
                return Err(StartError::ServiceConfig(
                    ringlab_sync::ServiceConfigError {
                        service: "store",
                        reason: format!(
                            "datagram_bytes {d} is above netmtu {} (the node reads no larger \
                         datagram)",
                            cfg.totem.netmtu
                        ),
                    },
                ));
            }
        }
        let mut app = if services.is_empty() {
            None
        } else {
            // A service may keep files there (the store's database).
            crate::stable::create_private_dir(&cfg.state_dir).map_err(io(format!(
                "creating state_dir {}",
                cfg.state_dir.display()
            )))?;
            let nodes: Vec<NodeId> = cfg.nodes.iter().map(|p| p.id).collect();
            Some(ServiceApp::with_storage(
                cfg.node_id,
                &services,
                &nodes,
                &sections,
                &ringlab_sync::Storage::Dir(cfg.state_dir.clone()),
            )?)
        };
        // A node starts with empty files: each such service's directory is made afresh.
        let mirror = match app.as_mut() {
            Some(a) => crate::mirror::Mirror::open(&cfg.state_dir, a).map_err(io(format!(
                "the services' directories in {}",
                cfg.state_dir.display()
            )))?,
            None => None,
        };
        let key = match &cfg.key_file {
            Some(p) => {
                let key =
                    std::fs::read(p).map_err(io(format!("reading key_file {}", p.display())))?;
                if key.len() < ringlab_ring::auth::KEY_MIN {
                    return Err(StartError::Io {
                        what: format!("key_file {}", p.display()),
                        cause: std::io::Error::new(
                            ErrorKind::InvalidData,
                            ringlab_ring::auth::KeyError(key.len()),
                        ),
                    });
                }
                Some(key)
            }
            None => None,
        };
        let stable = Stable::open(&cfg.state_dir, cfg.node_id)?;
        let now = monotonic_ns();
        let ring = Ring::new(
            cfg.node_id,
            stable.incarnation(),
            cfg.totem.clone(),
            stable.ring_seq(),
            now,
        )?;
        let poll = Poll::new().map_err(io("creating the poll"))?;
        let mut sockets = Sockets::open(&cfg).map_err(io("opening sockets"))?;
        poll.registry()
            .register(&mut sockets.unicast, UNICAST, Interest::READABLE)
            .map_err(io("registering the unicast socket"))?;
        if let Some(m) = sockets.multicast.as_mut() {
            poll.registry()
                .register(m, MULTICAST, Interest::READABLE)
                .map_err(io("registering the multicast socket"))?;
        }
        let mut control = crate::control::server::bind(&cfg.control)
            .map_err(io(format!("binding {}", cfg.control.display())))?;
        poll.registry()
            .register(&mut control, CONTROL, Interest::READABLE)
            .map_err(io("registering the control socket"))?;
        let auth = key.map(|key| {
            Authenticator::new(
                key,
                cfg.node_id,
                stable.incarnation(),
                stable.auth_marks().clone(),
            )
            .expect("the key's length was checked")
        });
        let records = match &cfg.events {
            Some(p) => Some(Writer::append(p)?),
            None => None,
        };
        let port = cfg.port;
        let by_addr = cfg
            .nodes
            .iter()
            .map(|p| {
                let a = p.socket_addr(port);
                ((a.ip(), a.port()), p.id)
            })
            .collect();
        let addr_of = cfg
            .nodes
            .iter()
            .map(|p| (p.id, p.socket_addr(port)))
            .collect();
        tracing::info!(
            node = cfg.node_id,
            inc = stable.incarnation(),
            transport = ?cfg.transport,
            recv_buffer = sockets.granted.0,
            send_buffer = sockets.granted.1,
            "node started"
        );
        let mut node = Self {
            inc: stable.incarnation(),
            ring,
            poll,
            sockets,
            control: Server::new(control),
            by_addr,
            addr_of,
            auth,
            records,
            drops: NodeDrops::default(),
            latency: Histogram::new_with_bounds(1, 60_000_000_000, 3)
                .expect("valid histogram bounds"),
            delivered: 0,
            delivered_bytes: 0,
            load: LoadGen::default(),
            load_sent: Vec::new(),
            started_ns: now,
            stable,
            exit: None,
            quit_by: None,
            own_sent: 0,
            own_delivered: 0,
            batch: cfg.batched_io.then(|| {
                RecvBatch::new(
                    cfg.totem.netmtu
                        + if cfg.key_file.is_some() {
                            TRAILER_LEN
                        } else {
                            0
                        },
                )
            }),
            outgoing: sockets::SendBatch::default(),
            app,
            actions: actions::Executor::new(cfg.node_id, &cfg.state_dir),
            quit_drain_ns: None,
            mirror,
            fanout: cfg
                .nodes
                .iter()
                .filter(|p| p.id != cfg.node_id)
                .map(|p| p.socket_addr(cfg.port))
                .collect(),
            cfg,
        };
        node.drain();
        Ok(node)
    }

    /// Runs the event loop until a `leave` or `quit` command (once drained); returns which.
    pub fn run(mut self) -> Result<&'static str, StartError> {
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let now = monotonic_ns();
            let deadline = [
                self.ring.poll_timeout(),
                self.load.deadline(now, self.load_waits()),
                self.quit_by,
                self.app.as_ref().and_then(|a| a.poll_deadline()),
            ]
            .into_iter()
            .flatten()
            .min();
            let mut timeout = deadline.map(|d| Duration::from_nanos(d.saturating_sub(now)));
            if self.actions.has_done() || self.busy() {
                timeout = Some(Duration::ZERO);
            } else if self.actions.is_busy() {
                // A child's exit is seen by polling (`try_wait`), never waited for.
                timeout = Some(timeout.map_or(CHILD_POLL, |t| t.min(CHILD_POLL)));
            }
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.shut_down();
                    return Err(StartError::Io {
                        what: "polling".into(),
                        cause: e,
                    });
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    UNICAST => self.read_socket(false, &mut buf),
                    MULTICAST => self.read_socket(true, &mut buf),
                    CONTROL => self.control.accept(self.poll.registry()),
                    t => self.serve(t),
                }
            }
            let now = monotonic_ns();
            if self.ring.poll_timeout().is_some_and(|d| d <= now) {
                self.ring.handle_timeout(now);
            }
            self.run_load(now);
            self.drain();
            self.work_slice();
            self.finish_actions();
            self.quit_when_drained(monotonic_ns());
            if let Some(why) = self.exit {
                self.shut_down();
                return Ok(why);
            }
        }
    }

    /// Returns whether the loop must not wait: a service has local work pending, or file
    /// changes may still be queued for the mirror.
    fn busy(&self) -> bool {
        self.app.as_ref().is_some_and(ServiceApp::has_work)
            || self
                .mirror
                .as_ref()
                .is_some_and(crate::mirror::Mirror::pending)
    }

    /// Runs one slice of the services' local work (see [`ServiceApp::handle_work`]), records
    /// what it made, and drains as after any input.
    fn work_slice(&mut self) {
        let Some(app) = self.app.as_mut() else { return };
        if !app.has_work() {
            return;
        }
        let now = monotonic_ns();
        let mut bodies = Vec::new();
        app.handle_work(now, &mut bodies);
        self.record_app(now, bodies);
        self.drain();
    }

    /// Closes every control connection, removes the control socket's file and flushes the
    /// records (a failure is counted by the writer): what every exit does.
    fn shut_down(&mut self) {
        if let (Some(m), Some(app)) = (self.mirror.as_mut(), self.app.as_mut()) {
            m.drain_all(app);
            m.check(monotonic_ns(), app, true);
        }
        let killed = self.actions.kill_all();
        if killed > 0 {
            tracing::warn!(killed, "killed the commands still running at the exit");
        }
        self.control.close_all();
        if let Err(e) = std::fs::remove_file(&self.cfg.control) {
            tracing::warn!(socket = %self.cfg.control.display(), error = %e, "could not remove the control socket");
        }
        if let Some(w) = self.records.as_mut() {
            let _ = w.flush();
        }
    }

    fn socket(&self, multicast: bool) -> Option<&mio::net::UdpSocket> {
        if multicast {
            self.sockets.multicast.as_ref()
        } else {
            Some(&self.sockets.unicast)
        }
    }

    fn read_socket(&mut self, multicast: bool, buf: &mut [u8]) {
        if let Some(mut batch) = self.batch.take() {
            self.read_batched(multicast, &mut batch);
            self.batch = Some(batch);
            return;
        }
        loop {
            let Some(sock) = self.socket(multicast) else {
                return;
            };
            match sock.recv_from(buf) {
                Ok((n, from)) => {
                    self.on_datagram(&buf[..n], from);
                    self.drain();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "recv error");
                    return;
                }
            }
        }
    }

    fn read_batched(&mut self, multicast: bool, batch: &mut RecvBatch) {
        loop {
            let Some(sock) = self.socket(multicast) else {
                return;
            };
            match batch.recv(sock) {
                Ok(n) => {
                    for i in 0..n {
                        match batch.get(i) {
                            (data, Some(from)) => self.on_datagram(data, from),
                            // No source address: nobody the node list knows.
                            (_, None) => self.drops.count(Dropped::Foreign),
                        }
                    }
                    self.drain();
                    if n < sockets::BATCH {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg error");
                    return;
                }
            }
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        if let Err(why) = self.take_datagram(data, from) {
            self.drops.count(why);
        }
    }

    /// Hands a datagram to the ring once its source and (with a key) its authentication
    /// check out; returns why it was not taken.
    fn take_datagram(&mut self, data: &[u8], from: SocketAddr) -> Result<(), Dropped> {
        // The source first: a stranger's datagram is foreign, whatever its size.
        let Some(&by_addr) = self.by_addr.get(&(from.ip(), from.port())) else {
            tracing::debug!(%from, "datagram from an address not in the node list");
            return Err(Dropped::Foreign);
        };
        // Not worth authenticating: the ring would refuse it anyway (and a service's own
        // datagrams are at most netmtu bytes, see `start`).
        let limit = self.cfg.totem.netmtu + if self.auth.is_some() { TRAILER_LEN } else { 0 };
        if data.len() > limit {
            return Err(Dropped::Ring(DropReason::Oversized));
        }
        let packet = match self.auth.as_mut() {
            Some(a) => {
                let opened = a.open(data, Some(by_addr)).map_err(|e| match e {
                    AuthError::Replayed => Dropped::Replayed,
                    AuthError::NotForMe => Dropped::NotForMe,
                    AuthError::OldIncarnation => Dropped::OldIncarnation,
                    AuthError::WrongSender => Dropped::Foreign,
                    AuthError::Missing | AuthError::BadMac => Dropped::Unauthenticated,
                })?;
                // The replay marks reach stable storage before the datagram is acted on,
                // so a restart never takes it again; a datagram whose marks could not be
                // kept is dropped (its sender re-sends what matters), and the marks are
                // written again with the next one.
                if let Some(marks) = a.marks_to_persist() {
                    if self.stable.set_auth_marks(marks).is_err() {
                        a.marks_unsaved();
                        return Err(Dropped::MarksUnsaved);
                    }
                }
                opened.packet
            }
            None => data,
        };
        // A service's own datagram (the store's chunk transfers), authenticated like the
        // ring's own unicast datagrams when the cluster has a key.
        if ringlab_sync::app::is_service_datagram(packet) {
            let now = monotonic_ns();
            let mut bodies = Vec::new();
            if let Some(app) = self.app.as_mut() {
                app.handle_datagram(now, by_addr, packet, &mut bodies);
            }
            self.record_app(now, bodies);
            return Ok(());
        }
        let outcome = self.ring.handle_packet(
            monotonic_ns(),
            Some(by_addr),
            bytes::Bytes::copy_from_slice(packet),
        );
        match outcome {
            PacketOutcome::Accepted => Ok(()),
            PacketOutcome::Dropped(r) => Err(Dropped::Ring(r)),
        }
    }

    /// Writes the ring's events, then sends its datagrams.
    fn drain(&mut self) {
        let now = monotonic_ns();
        let mut bodies = Vec::new();
        while let Some(e) = self.ring.poll_event() {
            if let Some(app) = self.app.as_mut() {
                app.on_event(&e, &mut bodies);
            }
            if let Event::Deliver(d) = &e {
                if d.id.node == self.cfg.node_id && d.id.inc == self.inc {
                    self.own_delivered += 1;
                }
                self.delivered += 1;
                self.delivered_bytes += d.data.len() as u64;
                let _ = self.latency.record(now.saturating_sub(d.sent_t_ns).max(1));
                if !self.cfg.records_message(&d.id) {
                    continue;
                }
            }
            self.record(now, Body::from_event(&e));
        }
        if let Some(app) = self.app.as_mut() {
            app.pump(now, &mut self.ring, &mut bodies);
        }
        self.mirror_changes(now, &mut bodies);
        self.record_app(now, bodies);
        if let Some(w) = self.records.as_mut() {
            let _ = w.flush();
        }
        self.take_actions(now);
        while let Some(t) = self.ring.poll_transmit() {
            self.send(t.dest, &t.payload);
        }
        while let Some((to, d)) = self.app.as_mut().and_then(|a| a.poll_datagram(now)) {
            self.send(Dest::Node(to), &d);
        }
        self.flush_sends();
        let _ = self.stable.set_ring_seq(self.ring.stable_ring_seq());
        if self.ring.state() == MembState::Left && self.exit.is_none() {
            self.exit = Some("left");
        }
    }

    /// Applies the file changes the services queued to their real directories (at most
    /// [`crate::mirror::DRAIN_MAX`]); once none is left, (at most every few seconds)
    /// compares each directory with its service's tree and fills in the `mirror` digest of
    /// each `fileset` record whose tree is the service's tree now. While changes remain the
    /// directory lags the tree: no comparison, and `fileset` records go without a `mirror`.
    fn mirror_changes(&mut self, now: u64, bodies: &mut [Body]) {
        let (Some(m), Some(app)) = (self.mirror.as_mut(), self.app.as_mut()) else {
            return;
        };
        m.drain(app);
        if m.pending() {
            return;
        }
        m.check(now, app, false);
        m.annotate(app, bodies);
    }

    /// Records what the services' app returned (`send` bodies count as own messages and are
    /// written only with `record_messages`, sampled by `record_every`).
    fn record_app(&mut self, now: u64, bodies: Vec<Body>) {
        for b in bodies {
            if matches!(b, Body::Send { .. }) {
                self.own_sent += 1;
            }
            let keep = match &b {
                Body::Send { id, .. } => self.cfg.records_message(id),
                _ => true,
            };
            if keep {
                self.record(now, b);
            }
        }
    }

    /// Hands every action the services ask for to the executor (a file action ends at
    /// once; its result is handed back by [`Self::finish_actions`]). While quitting, the
    /// exit waits for each at most its timeout past the drain's bound.
    fn take_actions(&mut self, now: u64) {
        let Some(app) = self.app.as_mut() else { return };
        while let Some((service, action)) = app.poll_action() {
            if let (Some(by), Some(drain)) = (self.quit_by.as_mut(), self.quit_drain_ns) {
                let need = now
                    .saturating_add(action.timeout_ms.saturating_mul(1_000_000))
                    .saturating_add(drain);
                *by = (*by).max(need);
            }
            self.actions.submit(now, service, action);
        }
    }

    /// Reaps ended commands and hands every ended action back to its service; records what
    /// the services make of it and drains as after any input. Bounded: what ends meanwhile
    /// waits for the next turn (the loop then polls at once).
    fn finish_actions(&mut self) {
        for _ in 0..4 {
            self.actions.poll(monotonic_ns());
            let done = self.actions.take_done();
            if done.is_empty() {
                return;
            }
            let now = monotonic_ns();
            let mut bodies = Vec::new();
            if let Some(app) = self.app.as_mut() {
                for (service, id, result) in done {
                    app.action_done(now, service, id, result, &mut bodies);
                }
            }
            self.record_app(now, bodies);
            self.drain();
        }
    }

    /// Writes one event record (buffered; `drain` flushes): every record the node writes
    /// goes through here.
    fn record(&mut self, now: u64, body: Body) {
        if let Some(w) = self.records.as_mut() {
            // A failure is counted and logged once by the writer.
            let _ = w.write(&Record {
                t_ns: now,
                node: self.cfg.node_id,
                inc: self.inc,
                body,
            });
        }
    }

    /// Sends a datagram: with `batched_io`, queues it for [`Self::flush_sends`] (a turn's
    /// datagrams go out together, in order); else sends it at once.
    fn send(&mut self, dest: Dest, payload: &bytes::Bytes) {
        let data: bytes::Bytes = match self.auth.as_mut() {
            Some(a) => {
                // Sealed in its own buffer, which becomes the datagram without a copy.
                let mut sealed =
                    Vec::with_capacity(payload.len() + ringlab_ring::auth::TRAILER_LEN);
                sealed.extend_from_slice(payload);
                a.seal(dest, &mut sealed);
                bytes::Bytes::from(sealed)
            }
            None => payload.clone(),
        };
        let one;
        let to: &[SocketAddr] = match (dest, self.cfg.transport) {
            (Dest::Node(id), _) => match self.addr_of.get(&id) {
                Some(a) => {
                    one = [*a];
                    &one
                }
                None => &[],
            },
            (Dest::Multicast, Transport::Multicast) => {
                one = [self.sockets.group];
                &one
            }
            (Dest::Multicast, Transport::Unicast) => &self.fanout,
        };
        for a in to {
            if self.cfg.batched_io {
                self.outgoing.push(data.clone(), *a);
            } else {
                sockets::send(&self.sockets.unicast, &data, *a, &mut self.drops);
            }
        }
    }

    /// Sends the datagrams [`Self::send`] queued, with as few system calls as it can.
    fn flush_sends(&mut self) {
        if !self.outgoing.is_empty() {
            self.outgoing.flush(&self.sockets.unicast, &mut self.drops);
        }
    }

    /// Whether the load waits: off the ring, and while sync runs (sync traffic goes first).
    fn load_waits(&self) -> bool {
        self.ring.state() != MembState::Operational
            || self.app.as_ref().is_some_and(|a| a.engine.is_syncing())
    }

    /// Runs the load generator's turn, then records the messages it sent.
    fn run_load(&mut self, now: u64) {
        let waits = self.load_waits();
        let mut sent = std::mem::take(&mut self.load_sent);
        let window = self.cfg.totem.window_size as usize;
        self.load.run(now, waits, &mut self.ring, window, &mut sent);
        if let Some(app) = self.app.as_mut() {
            let max = self.cfg.max_fill_bytes;
            self.load.run_service(now, waits, app, window, max);
        }
        self.own_sent += sent.len() as u64;
        for b in sent.drain(..) {
            if matches!(&b, Body::Send { id, .. } if self.cfg.records_message(id)) {
                self.record(now, b);
            }
        }
        sent.clear();
        self.load_sent = sent;
    }

    /// After a `quit`: sets the node to exit once its send queue is empty and its own
    /// messages are delivered to it, or once the drain's bound passed; then, if some of its
    /// own messages are still undelivered, writes a `stop` record saying how many (the
    /// checker treats it like a crash for self delivery).
    fn quit_when_drained(&mut self, now: u64) {
        let Some(by) = self.quit_by else { return };
        if self.exit.is_some() {
            return;
        }
        let undelivered = self.own_sent.saturating_sub(self.own_delivered);
        let services_idle = self.app.as_ref().is_none_or(ServiceApp::is_idle);
        let drained = self.ring.queue_depth().0 == 0
            && undelivered == 0
            && services_idle
            && self.actions.is_idle();
        if !drained && now < by {
            return;
        }
        if !services_idle || !self.actions.is_idle() {
            tracing::warn!(
                abandoned = ?self.actions.describe(),
                services_idle,
                "quitting past the drain's bound with services' work unfinished"
            );
        }
        if undelivered > 0 {
            tracing::warn!(
                undelivered,
                "quitting with own messages undelivered after the drain's bound; recorded"
            );
            self.record(now, Body::Stop { undelivered });
            if let Some(w) = self.records.as_mut() {
                let _ = w.flush();
            }
        }
        self.exit = Some("quit");
    }

    /// Answers every complete request waiting on control connection `t`.
    fn serve(&mut self, t: Token) {
        let Some(mut session) = self.control.read(t) else {
            return;
        };
        while let Some(req) = session.next_request() {
            let reply = match req {
                Ok(req) => self.handle(req),
                Err(bad) => bad,
            };
            session.reply(&reply);
        }
        self.control.finish(session);
    }
}
