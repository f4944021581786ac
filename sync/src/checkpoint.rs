//! The checkpoint service (corosync's README.recovery): named checkpoints of sections, with a
//! cluster-wide reference count built from per-node open counts, synchronised after every
//! configuration change.
//!
//! Operations (create, open, close, unlink, write a section, delete a section) go through the
//! ring as service operations and are applied in total order; reads are local.
//!
//! As a plug-in ([`Plugin`], registered as `checkpoint`): its control commands are
//! [`Command`] (`ringlab ctl SOCK svc checkpoint write name=c section=s size=100`, `read`,
//! `fill bytes=N`, `digest`, `status`, ...), each argument checked against [`SECTION_MAX`],
//! one ring message and the node's `max_fill_bytes`, refusals typed ([`ControlError`]); its
//! workload ([`random_op`]) is random traffic on eight names with sections of about
//! `state_bytes / 128` bytes; its digest hashes the committed state, and its counters are the
//! reference counts, each the sum of the members' own open counts. Its operations
//! ([`Op`]) and sync messages ([`SyncChunk`]) are read with the one reader of
//! [`ringlab_ring::wire`] and fail with its typed [`DecodeError`].
//!
//! Sync, as in the seed: SYNC_CHECKPOINT then SYNC_REFCOUNT. The seed has the lowest node id
//! of each old ring transmit (so each old partition's state is sent once). That assumes every
//! member of an old ring holds the same state, which is false when that ring's own sync was
//! aborted: its members keep the different states they came with, and all but the
//! transmitter's would be lost (the simulator found this). Here each member's service list
//! carries a token of its state (from its digest); members with equal tokens form a group, and
//! the lowest id of each group transmits: every checkpoint, then its sections, resuming where
//! it stopped when the ring's queue is full; then the reference counts of its group's nodes.
//! After a completed sync the groups are the old rings, as in the seed. Receivers build a
//! temporary state; reference counts merge as per-node sets (each node's count comes from its
//! own old ring's transmitter, so the sets are disjoint); the global checkpoint id moves past
//! the highest seen; activate replaces the committed state with the temporary one; abort
//! throws the temporary state away.
//!
//! Conflicts: when two old partitions both hold a checkpoint of the same name, the seed keeps
//! "the first copy" to arrive. Here the copy sent by the transmitter with the lowest node id
//! wins, whatever the arrival order, and the decision is reported (a `sync` record with
//! phase `conflict`). Reference counts are not part of the conflict: each node's own count
//! survives. Deviation: unlinking removes a checkpoint at once, open or not (the seed keeps an
//! unlinked checkpoint alive by its number until its last close).

use crate::control::{Ack, Args, Control, ControlContext, ControlError, OP_OVERHEAD};
use crate::engine::{Outbox, Progress, SyncContext};
use crate::msg::ServiceId;
use crate::service::{Counters, Plugin, Service, StateSize, Workload};
use crate::SyncEngine;
use bytes::{BufMut, Bytes};
use rand::Rng;
use ringlab_ring::pack::MESSAGE_MAX;
use ringlab_ring::wire::{put_blob, DecodeError, Reader};
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The checkpoint service's number.
pub const CHECKPOINT_SERVICE: ServiceId = 2;
/// Largest section accepted.
pub const SECTION_MAX: usize = 512 * 1024;

/// One checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its number.
    pub id: u64,
    /// Its sections.
    pub sections: BTreeMap<Vec<u8>, Bytes>,
    /// Open count per node.
    pub refs: BTreeMap<NodeId, u32>,
    /// The transmitter this copy came from during sync.
    from: NodeId,
}

impl Checkpoint {
    /// Returns the cluster-wide reference count.
    pub fn refcount(&self) -> u64 {
        self.refs.values().map(|&r| r as u64).sum()
    }
}

/// An operation on checkpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a checkpoint (no-op if it exists).
    Create(Vec<u8>),
    /// Open it (this node's count +1).
    Open(Vec<u8>),
    /// Close it (this node's count -1).
    Close(Vec<u8>),
    /// Remove it.
    Unlink(Vec<u8>),
    /// Write a section.
    Write(Vec<u8>, Vec<u8>, Bytes),
    /// Delete a section.
    Delete(Vec<u8>, Vec<u8>),
}

/// Reads a checkpoint's name.
fn name(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.blob("checkpoint name", SECTION_MAX)?.to_vec())
}

/// Reads a section's name.
fn section(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    Ok(r.blob("section name", SECTION_MAX)?.to_vec())
}

impl Op {
    /// Encodes the operation (the payload of a service operation message). A name, section
    /// name or section above [`SECTION_MAX`] bytes encodes, but does not decode.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Self::Create(n) | Self::Open(n) | Self::Close(n) | Self::Unlink(n) => {
                b.put_u8(match self {
                    Self::Create(_) => 0,
                    Self::Open(_) => 1,
                    Self::Close(_) => 2,
                    _ => 3,
                });
                put_blob(&mut b, n);
            }
            Self::Write(n, s, d) => {
                b.put_u8(4);
                put_blob(&mut b, n);
                put_blob(&mut b, s);
                put_blob(&mut b, d);
            }
            Self::Delete(n, s) => {
                b.put_u8(5);
                put_blob(&mut b, n);
                put_blob(&mut b, s);
            }
        }
        b
    }

    /// Decodes an operation; never panics.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let op = match r.u8("checkpoint op")? {
            0 => Self::Create(name(&mut r)?),
            1 => Self::Open(name(&mut r)?),
            2 => Self::Close(name(&mut r)?),
            3 => Self::Unlink(name(&mut r)?),
            4 => Self::Write(
                name(&mut r)?,
                section(&mut r)?,
                Bytes::copy_from_slice(r.blob("section data", SECTION_MAX)?),
            ),
            5 => Self::Delete(name(&mut r)?, section(&mut r)?),
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.end()?;
        Ok(op)
    }
}

/// A message of the checkpoint service's sync (the payload of a service-data message of the
/// sync layer). A transmitter sends its global id first, then every checkpoint followed by
/// its sections, then every checkpoint's reference counts.
///
/// `0 name id u64`: a checkpoint; `1 name section data`: one of its sections; `2 name id u64
/// count u32 (node u32, refs u32)...`: its reference counts; `3 id u64`: the global id.
/// Names, section names and sections are `len u32` then bytes, at most [`SECTION_MAX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncChunk {
    /// A checkpoint.
    Checkpoint {
        /// Its name.
        name: Vec<u8>,
        /// Its number.
        id: u64,
    },
    /// One section of a checkpoint.
    Section {
        /// The checkpoint's name.
        name: Vec<u8>,
        /// The section's name.
        section: Vec<u8>,
        /// Its data.
        data: Bytes,
    },
    /// A checkpoint's open counts, for the nodes of the transmitter's group.
    Refcounts {
        /// The checkpoint's name.
        name: Vec<u8>,
        /// Its number.
        id: u64,
        /// Open count per node.
        refs: Vec<(NodeId, u32)>,
    },
    /// The transmitter's global checkpoint id.
    GlobalId(u64),
}

fn chunk_checkpoint(name: &[u8], id: u64) -> Vec<u8> {
    let mut b = vec![0u8];
    put_blob(&mut b, name);
    b.put_u64(id);
    b
}

fn chunk_section(name: &[u8], section: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = vec![1u8];
    put_blob(&mut b, name);
    put_blob(&mut b, section);
    put_blob(&mut b, data);
    b
}

fn chunk_refcounts(name: &[u8], id: u64, refs: &[(NodeId, u32)]) -> Vec<u8> {
    let mut b = vec![2u8];
    put_blob(&mut b, name);
    b.put_u64(id);
    b.put_u32(refs.len() as u32);
    for (n, r) in refs {
        b.put_u32(*n);
        b.put_u32(*r);
    }
    b
}

fn chunk_global_id(id: u64) -> Vec<u8> {
    let mut b = vec![3u8];
    b.put_u64(id);
    b
}

impl SyncChunk {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Checkpoint { name, id } => chunk_checkpoint(name, *id),
            Self::Section {
                name,
                section,
                data,
            } => chunk_section(name, section, data),
            Self::Refcounts { name, id, refs } => chunk_refcounts(name, *id, refs),
            Self::GlobalId(id) => chunk_global_id(*id),
        }
    }

    /// Decodes a message; never panics.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let chunk = match r.u8("checkpoint sync type")? {
            0 => Self::Checkpoint {
                name: name(&mut r)?,
                id: r.u64("checkpoint id")?,
            },
            1 => Self::Section {
                name: name(&mut r)?,
                section: section(&mut r)?,
                data: Bytes::copy_from_slice(r.blob("section data", SECTION_MAX)?),
            },
            2 => {
                let name = name(&mut r)?;
                let id = r.u64("checkpoint id")?;
                let n = r.u32("reference counts")? as usize;
                // Bounded by what the message can hold, not by what it claims.
                let mut refs = Vec::with_capacity(n.min(r.remaining() / 8));
                for _ in 0..n {
                    refs.push((r.u32("reference node")?, r.u32("reference count")?));
                }
                Self::Refcounts { name, id, refs }
            }
            3 => Self::GlobalId(r.u64("global id")?),
            t => return Err(DecodeError::UnknownType(t)),
        };
        r.end()?;
        Ok(chunk)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncState {
    Global,
    Checkpoints,
    Refcounts,
    Done,
}

/// The checkpoint service of one node.
pub struct CheckpointService {
    me: NodeId,
    committed: BTreeMap<Vec<u8>, Checkpoint>,
    global_id: u64,
    own_opens: BTreeMap<Vec<u8>, u32>,
    // Sync.
    temp: BTreeMap<Vec<u8>, Checkpoint>,
    temp_global: u64,
    transmitter: bool,
    trans: Vec<NodeId>,
    state: SyncState,
    /// Resume point: (checkpoint name, next section), or the next checkpoint for refcounts.
    cursor: Option<(Vec<u8>, Option<Vec<u8>>)>,
    /// Bad operations or sync messages dropped.
    pub malformed: u64,
    /// The state token of the committed state, computed once per change (it hashes all of it).
    token: std::cell::Cell<Option<u64>>,
}

impl CheckpointService {
    /// Creates the service for node `me`.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            committed: BTreeMap::new(),
            global_id: 0,
            own_opens: BTreeMap::new(),
            temp: BTreeMap::new(),
            temp_global: 0,
            transmitter: false,
            trans: vec![],
            state: SyncState::Done,
            cursor: None,
            malformed: 0,
            token: std::cell::Cell::new(None),
        }
    }

    /// Returns the committed checkpoints.
    pub fn checkpoints(&self) -> &BTreeMap<Vec<u8>, Checkpoint> {
        &self.committed
    }

    /// Returns this node's own open count per checkpoint.
    pub fn own_opens(&self) -> &BTreeMap<Vec<u8>, u32> {
        &self.own_opens
    }

    /// Returns the global checkpoint id.
    pub fn global_id(&self) -> u64 {
        self.global_id
    }

    /// Reads a section.
    pub fn read(&self, name: &[u8], section: &[u8]) -> Option<&Bytes> {
        self.committed.get(name)?.sections.get(section)
    }

    /// Returns the bytes held in sections.
    pub fn state_bytes(&self) -> usize {
        self.committed
            .values()
            .flat_map(|c| c.sections.values())
            .map(|d| d.len())
            .sum()
    }

    fn apply(&mut self, sender: NodeId, op: Op) {
        self.token.set(None);
        match op {
            Op::Create(n) => {
                if !self.committed.contains_key(&n) {
                    self.global_id += 1;
                    self.committed.insert(
                        n,
                        Checkpoint {
                            id: self.global_id,
                            ..Checkpoint::default()
                        },
                    );
                }
            }
            Op::Open(n) => {
                if let Some(c) = self.committed.get_mut(&n) {
                    *c.refs.entry(sender).or_default() += 1;
                    if sender == self.me {
                        *self.own_opens.entry(n).or_default() += 1;
                    }
                }
            }
            Op::Close(n) => {
                if let Some(c) = self.committed.get_mut(&n) {
                    if let Some(r) = c.refs.get_mut(&sender).filter(|r| **r > 0) {
                        *r -= 1;
                        if *r == 0 {
                            c.refs.remove(&sender);
                        }
                        if sender == self.me {
                            if let Some(o) = self.own_opens.get_mut(&n) {
                                *o = o.saturating_sub(1);
                            }
                        }
                    }
                }
            }
            Op::Unlink(n) => {
                self.committed.remove(&n);
                self.own_opens.remove(&n);
            }
            Op::Write(n, s, d) => {
                if let Some(c) = self.committed.get_mut(&n) {
                    c.sections.insert(s, d);
                }
            }
            Op::Delete(n, s) => {
                if let Some(c) = self.committed.get_mut(&n) {
                    c.sections.remove(&s);
                }
            }
        }
        self.own_opens.retain(|_, v| *v > 0);
    }
}

// Sync messages: see `SyncChunk`.
impl Service for CheckpointService {
    fn id(&self) -> ServiceId {
        Self::ID
    }

    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn sync_init(&mut self, _ctx: &SyncContext) {
        self.temp.clear();
        self.temp_global = 0;
        // Who transmits is decided in `sync_members`, from the members' state tokens; the
        // engine calls it before the first `sync_process`.
        self.state = SyncState::Global;
        self.cursor = None;
    }

    fn state_token(&self) -> u64 {
        if let Some(t) = self.token.get() {
            return t;
        }
        let d = Service::digest(self);
        let t = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        self.token.set(Some(t));
        t
    }

    fn sync_members(&mut self, tokens: &BTreeMap<NodeId, u64>) {
        // The members holding exactly this node's state form its group; the lowest of the
        // group transmits it, with the group's reference counts. After a completed sync the
        // group is the old ring (the seed's rule); after an aborted one, members of one old
        // ring may hold different states, and each of those states is sent.
        let mine = self.state_token();
        self.trans = tokens
            .iter()
            .filter(|(_, t)| **t == mine)
            .map(|(m, _)| *m)
            .collect();
        if !self.trans.contains(&self.me) {
            self.trans.push(self.me);
        }
        self.transmitter = self.trans.iter().min() == Some(&self.me);
    }

    fn sync_process(&mut self, out: &mut Outbox<'_>) -> Progress {
        if !self.transmitter {
            return Progress::Done;
        }
        if self.state == SyncState::Global {
            if !out.push(Bytes::from(chunk_global_id(self.global_id))) {
                return Progress::NotDone;
            }
            self.state = SyncState::Checkpoints;
        }
        if self.state == SyncState::Checkpoints {
            let start = self.cursor.take();
            let names: Vec<Vec<u8>> = match &start {
                Some((n, _)) => self
                    .committed
                    .range(n.clone()..)
                    .map(|(k, _)| k.clone())
                    .collect(),
                None => self.committed.keys().cloned().collect(),
            };
            for (k, name) in names.iter().enumerate() {
                let c = &self.committed[name];
                // A checkpoint's own message, unless resuming inside its sections.
                let resume_section = match (&start, k) {
                    (Some((_, s)), 0) => s.clone(),
                    _ => None,
                };
                if resume_section.is_none() && !out.push(Bytes::from(chunk_checkpoint(name, c.id)))
                {
                    self.cursor = Some((name.clone(), None));
                    return Progress::NotDone;
                }
                let sections: Vec<(&Vec<u8>, &Bytes)> = match &resume_section {
                    Some(s) => c.sections.range(s.clone()..).collect(),
                    None => c.sections.iter().collect(),
                };
                for (s, d) in sections {
                    if !out.push(Bytes::from(chunk_section(name, s, d))) {
                        self.cursor = Some((name.clone(), Some(s.clone())));
                        return Progress::NotDone;
                    }
                }
            }
            self.state = SyncState::Refcounts;
        }
        if self.state == SyncState::Refcounts {
            let start = self.cursor.take().map(|(n, _)| n);
            let names: Vec<Vec<u8>> = match &start {
                Some(n) => self
                    .committed
                    .range(n.clone()..)
                    .map(|(k, _)| k.clone())
                    .collect(),
                None => self.committed.keys().cloned().collect(),
            };
            for name in names {
                let c = &self.committed[&name];
                let refs: Vec<(NodeId, u32)> = c
                    .refs
                    .iter()
                    .filter(|(n, _)| self.trans.contains(n))
                    .map(|(n, r)| (*n, *r))
                    .collect();
                if !out.push(Bytes::from(chunk_refcounts(&name, c.id, &refs))) {
                    self.cursor = Some((name, None));
                    return Progress::NotDone;
                }
            }
            self.state = SyncState::Done;
        }
        Progress::Done
    }

    fn sync_deliver(&mut self, sender: NodeId, payload: &[u8]) -> Option<String> {
        let Ok(chunk) = SyncChunk::decode(payload) else {
            self.malformed += 1;
            return None;
        };
        match chunk {
            SyncChunk::Checkpoint { name, id } => {
                self.temp_global = self.temp_global.max(id);
                match self.temp.get(&name) {
                    Some(existing) if existing.from <= sender => Some(format!(
                        "checkpoint {:?}: kept the copy of node {}, dropped node {}'s",
                        String::from_utf8_lossy(&name),
                        existing.from,
                        sender
                    )),
                    Some(existing) => {
                        let loser = existing.from;
                        let refs = existing.refs.clone();
                        let detail = format!(
                            "checkpoint {:?}: kept the copy of node {}, dropped node {}'s",
                            String::from_utf8_lossy(&name),
                            sender,
                            loser
                        );
                        self.temp.insert(
                            name,
                            Checkpoint {
                                id,
                                sections: BTreeMap::new(),
                                refs,
                                from: sender,
                            },
                        );
                        Some(detail)
                    }
                    None => {
                        self.temp.insert(
                            name,
                            Checkpoint {
                                id,
                                from: sender,
                                ..Checkpoint::default()
                            },
                        );
                        None
                    }
                }
            }
            SyncChunk::Section {
                name,
                section,
                data,
            } => {
                if let Some(c) = self.temp.get_mut(&name).filter(|c| c.from == sender) {
                    c.sections.insert(section, data);
                }
                None
            }
            SyncChunk::Refcounts { name, id, refs } => {
                self.temp_global = self.temp_global.max(id);
                if let Some(c) = self.temp.get_mut(&name) {
                    c.refs.extend(refs);
                }
                None
            }
            SyncChunk::GlobalId(id) => {
                self.temp_global = self.temp_global.max(id);
                None
            }
        }
    }

    fn sync_activate(&mut self) {
        self.token.set(None);
        self.committed = std::mem::take(&mut self.temp);
        // Every old partition's transmitter sent its global id: the result is the same
        // everywhere, whatever this node's partition had used.
        self.global_id = self.temp_global;
        // This node's own open counts are its local truth (its handles) and are never taken
        // from the replicated state: the reference counts must come out equal to them.
        self.state = SyncState::Done;
    }

    fn sync_abort(&mut self) {
        self.temp.clear();
        self.temp_global = 0;
        self.cursor = None;
        self.state = SyncState::Done;
    }

    fn deliver_op(&mut self, sender: NodeId, payload: &[u8]) {
        match Op::decode(payload) {
            Ok(op) => self.apply(sender, op),
            Err(_) => self.malformed += 1,
        }
    }

    fn control(
        &mut self,
        request: &serde_json::Value,
        ctx: &ControlContext,
    ) -> Result<Control, ControlError> {
        let cmd: Command = serde_json::from_value(request.clone())
            .map_err(|e| ControlError::BadCommand(format!("{CMD}: {e}")))?;
        match cmd {
            Command::Fill { bytes } => {
                let ops = fill_ops(bytes, ctx)?;
                let sections = bytes.div_ceil(bytes.clamp(1, SECTION_MAX)) as u64;
                Ok(Control::new(ops, &FillReply { ok: true, sections }))
            }
            Command::Digest => Ok(Control::new(
                vec![],
                &DigestReply {
                    ok: true,
                    syncing: ctx.syncing,
                    digest: hex(&self.digest()),
                },
            )),
            Command::Status => Ok(Control::new(
                vec![],
                &StatusReply {
                    ok: true,
                    syncing: ctx.syncing,
                    checkpoints: self.committed.len() as u64,
                    state_bytes: self.state_bytes() as u64,
                    global_id: self.global_id,
                    malformed: self.malformed,
                },
            )),
            Command::Read { name, section } => {
                let data = self.read(name.as_bytes(), section.as_bytes());
                Ok(Control::new(
                    vec![],
                    &ReadReply {
                        ok: true,
                        found: data.is_some(),
                        data: data.map(|d| hex(d)).unwrap_or_default(),
                    },
                ))
            }
            write => {
                let op = command_op(write)?;
                let payload = op.encode();
                let len = SyncEngine::op_message(Self::ID, &payload).len() as u64;
                if len + OP_OVERHEAD > ctx.room() {
                    return Err(bad(
                        "size",
                        match &op {
                            Op::Write(_, _, d) => d.len().to_string(),
                            _ => "0".into(),
                        },
                        format!(
                            "operations already waiting take {} of max_fill_bytes={} bytes; \
                             retry once they are sent",
                            ctx.queued, ctx.max_fill_bytes
                        ),
                    ));
                }
                Ok(Control::new(vec![payload], &Ack::ok()))
            }
        }
    }

    /// Returns a digest of the committed state (ids, sections, reference counts, global id).
    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.global_id.to_be_bytes());
        for (name, c) in &self.committed {
            h.update((name.len() as u32).to_be_bytes());
            h.update(name);
            h.update(c.id.to_be_bytes());
            for (s, d) in &c.sections {
                h.update((s.len() as u32).to_be_bytes());
                h.update(s);
                h.update((d.len() as u32).to_be_bytes());
                h.update(d);
            }
            for (n, r) in &c.refs {
                h.update(n.to_be_bytes());
                h.update(r.to_be_bytes());
            }
        }
        h.finalize().into()
    }

    fn size(&self) -> StateSize {
        StateSize {
            items: self.committed.len() as u64,
            bytes: self.state_bytes() as u64,
        }
    }

    fn counters(&self) -> Counters {
        Counters {
            what: "reference count",
            totals: self
                .committed
                .iter()
                .map(|(n, c)| (n.clone(), c.refcount()))
                .collect(),
            shares: self
                .own_opens
                .iter()
                .map(|(n, o)| (n.clone(), *o as u64))
                .collect(),
        }
    }

    fn malformed(&self) -> u64 {
        self.malformed
    }
}

impl Plugin for CheckpointService {
    const NAME: &'static str = "checkpoint";
    const ID: ServiceId = CHECKPOINT_SERVICE;

    fn new(me: NodeId) -> Self {
        Self::new(me)
    }

    fn parse_args(args: &Args<'_>) -> Result<serde_json::Value, ControlError> {
        let op = args.text("op").unwrap_or_else(|| "status".into());
        let name = || args.required("name");
        let section = || args.text("section").unwrap_or_default();
        let cmd = match op.as_str() {
            "create" | "open" | "close" | "unlink" => {
                args.allow(&["op", "name"])?;
                let name = name()?;
                match op.as_str() {
                    "create" => Command::Create { name },
                    "open" => Command::Open { name },
                    "close" => Command::Close { name },
                    _ => Command::Unlink { name },
                }
            }
            "write" => {
                args.allow(&["op", "name", "section", "size"])?;
                Command::Write {
                    name: name()?,
                    section: section(),
                    size: args.number("size")?.unwrap_or(0),
                }
            }
            "delete" | "read" => {
                args.allow(&["op", "name", "section"])?;
                let (name, section) = (name()?, section());
                match op.as_str() {
                    "delete" => Command::Delete { name, section },
                    _ => Command::Read { name, section },
                }
            }
            "fill" => {
                args.allow(&["op", "bytes"])?;
                Command::Fill {
                    bytes: args
                        .number("bytes")?
                        .ok_or_else(|| args.required("bytes").unwrap_err())?,
                }
            }
            "digest" | "status" => {
                args.allow(&["op"])?;
                if op == "digest" {
                    Command::Digest
                } else {
                    Command::Status
                }
            }
            other => {
                return Err(ControlError::BadCommand(format!(
                    "{}: op={other}: expected one of {}",
                    args.cmd(),
                    COMMANDS.join(", ")
                )))
            }
        };
        Ok(serde_json::to_value(cmd).expect("a command serialises"))
    }

    fn workload_op(rng: &mut dyn rand::RngCore, w: &Workload) -> Bytes {
        Bytes::from(random_op(rng, (w.state_bytes / 128).max(1)).encode())
    }
}

/// The verbs of [`Command`], as `svc checkpoint VERB` takes them.
const COMMANDS: [&str; 10] = [
    "create", "open", "close", "unlink", "write", "delete", "read", "fill", "digest", "status",
];

/// The command, in messages.
const CMD: &str = "svc checkpoint";

/// Room kept in one ring message for the headers of the sync message that carries a
/// section (name, section and data travel together in one).
pub const HEADROOM: usize = 64;

/// A control command of the checkpoint service (`ringlab ctl SOCK svc checkpoint VERB
/// key=value...`; on the socket `{"cmd":"svc","service":"checkpoint","request":{"op":...}}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Creates a checkpoint (no-op if it exists); replies [`Ack`].
    Create {
        /// Its name.
        name: String,
    },
    /// Opens it (this node's count +1); replies [`Ack`].
    Open {
        /// Its name.
        name: String,
    },
    /// Closes it (this node's count -1); replies [`Ack`].
    Close {
        /// Its name.
        name: String,
    },
    /// Removes it; replies [`Ack`].
    Unlink {
        /// Its name.
        name: String,
    },
    /// Writes `size` bytes into a section; replies [`Ack`].
    Write {
        /// The checkpoint.
        name: String,
        /// The section.
        #[serde(default)]
        section: String,
        /// Bytes to write ([`SECTION_MAX`] at most).
        #[serde(default)]
        size: usize,
    },
    /// Deletes a section; replies [`Ack`].
    Delete {
        /// The checkpoint.
        name: String,
        /// The section.
        #[serde(default)]
        section: String,
    },
    /// Reads a section of the committed state (local); replies [`ReadReply`].
    Read {
        /// The checkpoint.
        name: String,
        /// The section.
        #[serde(default)]
        section: String,
    },
    /// Writes `bytes` of sections ([`SECTION_MAX`] each at most) into checkpoints c0, c1,
    /// ...; replies [`FillReply`].
    Fill {
        /// How many bytes in all.
        bytes: usize,
    },
    /// Asks for the digest of the committed state (hashes all of it); replies
    /// [`DigestReply`].
    Digest,
    /// Asks for the committed state's size; replies [`StatusReply`].
    Status,
}

/// The reply to `fill`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillReply {
    /// Always true.
    pub ok: bool,
    /// Sections queued.
    pub sections: u64,
}

/// The reply to `digest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestReply {
    /// Always true.
    pub ok: bool,
    /// Whether a sync runs (the digest may then change).
    pub syncing: bool,
    /// SHA-256 of the committed state, in hex.
    pub digest: String,
}

/// The reply to `read`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReply {
    /// Always true.
    pub ok: bool,
    /// Whether the section exists.
    pub found: bool,
    /// Its data, in hex (empty when not found).
    pub data: String,
}

/// The reply to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// Always true.
    pub ok: bool,
    /// Whether a sync runs.
    pub syncing: bool,
    /// Committed checkpoints.
    pub checkpoints: u64,
    /// Bytes of committed sections.
    pub state_bytes: u64,
    /// The global checkpoint id.
    pub global_id: u64,
    /// Operations and sync messages dropped as malformed.
    pub malformed: u64,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn bad(arg: &'static str, value: String, bound: String) -> ControlError {
    ControlError::BadArgument {
        cmd: CMD.into(),
        arg,
        value,
        bound,
    }
}

/// Builds the operation of an operation command, each argument checked against what the
/// service and one ring message take.
fn command_op(cmd: Command) -> Result<Op, ControlError> {
    let bytes = |n: usize| format!("<{n} bytes>");
    let service_max = || format!("at most {SECTION_MAX} bytes (the checkpoint service's bound)");
    let check = |name: &str, section: &str| {
        if name.len() > SECTION_MAX {
            return Err(bad("name", bytes(name.len()), service_max()));
        }
        if section.len() > SECTION_MAX {
            return Err(bad("section", bytes(section.len()), service_max()));
        }
        Ok(())
    };
    let op = match cmd {
        Command::Create { name } => {
            check(&name, "")?;
            Op::Create(name.into_bytes())
        }
        Command::Open { name } => {
            check(&name, "")?;
            Op::Open(name.into_bytes())
        }
        Command::Close { name } => {
            check(&name, "")?;
            Op::Close(name.into_bytes())
        }
        Command::Unlink { name } => {
            check(&name, "")?;
            Op::Unlink(name.into_bytes())
        }
        Command::Delete { name, section } => {
            check(&name, &section)?;
            Op::Delete(name.into_bytes(), section.into_bytes())
        }
        Command::Write {
            name,
            section,
            size,
        } => {
            check(&name, &section)?;
            if size > SECTION_MAX {
                return Err(bad("size", size.to_string(), service_max()));
            }
            Op::Write(
                name.into_bytes(),
                section.into_bytes(),
                vec![0xC5; size].into(),
            )
        }
        other => unreachable!("{other:?} is not an operation"),
    };
    // Every operation travels in one ring message, with room for the sync message that
    // carries a section later.
    let len = SyncEngine::op_message(CHECKPOINT_SERVICE, &op.encode()).len();
    let together = MESSAGE_MAX - HEADROOM;
    if len > together {
        return Err(bad(
            "name+section+size",
            len.to_string(),
            format!("at most {together} bytes encoded (one ring message)"),
        ));
    }
    Ok(op)
}

/// Builds the operations of `fill`: `bytes` of sections into checkpoints c0, c1, ..., if
/// they fit the room left under `max_fill_bytes`.
fn fill_ops(bytes: usize, ctx: &ControlContext) -> Result<Vec<Vec<u8>>, ControlError> {
    let sections = bytes.div_ceil(SECTION_MAX.max(1)) as u64;
    let cost = (bytes as u64).saturating_add(sections.saturating_mul(OP_OVERHEAD));
    if bytes == 0 || cost > ctx.room() {
        return Err(bad(
            "bytes",
            bytes.to_string(),
            format!(
                "1 to max_fill_bytes={} bytes in all, less what operations already waiting \
                 take ({})",
                ctx.max_fill_bytes, ctx.queued
            ),
        ));
    }
    let section = bytes.clamp(1, SECTION_MAX);
    let mut ops = Vec::new();
    for i in 0..bytes.div_ceil(section) {
        let name = format!("c{}", i / 64).into_bytes();
        if i % 64 == 0 {
            ops.push(Op::Create(name.clone()).encode());
        }
        let data = vec![i as u8; section];
        ops.push(Op::Write(name, (i as u32).to_be_bytes().to_vec(), data.into()).encode());
    }
    Ok(ops)
}

/// Returns a random checkpoint operation on a small set of names (eight checkpoints of up to
/// sixteen sections), with sections of `section` bytes: the workload that makes partitions
/// diverge.
pub fn random_op(rng: &mut (impl Rng + ?Sized), section: usize) -> Op {
    let name = format!("ckpt-{}", rng.gen_range(0..8)).into_bytes();
    let sec = format!("s{}", rng.gen_range(0..16)).into_bytes();
    match rng.gen_range(0..100) {
        0..=19 => Op::Create(name),
        20..=39 => Op::Open(name),
        40..=54 => Op::Close(name),
        55..=89 => {
            let fill: u8 = rng.gen();
            Op::Write(
                name,
                sec,
                Bytes::from(vec![fill; section.clamp(1, SECTION_MAX)]),
            )
        }
        90..=94 => Op::Delete(name, sec),
        _ => Op::Unlink(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(op: &str, name: usize, section: usize, size: usize) -> String {
        let n = "n".repeat(name);
        let s = "s".repeat(section);
        let cmd = match op {
            "create" => Command::Create { name: n },
            "delete" => Command::Delete {
                name: n,
                section: s,
            },
            _ => Command::Write {
                name: n,
                section: s,
                size,
            },
        };
        command_op(cmd).unwrap_err().to_string()
    }

    #[test]
    fn checkpoint_arguments_past_their_bounds_are_refused_with_their_name() {
        assert!(
            err("create", SECTION_MAX + 1, 0, 0).contains("svc checkpoint: name=<524289 bytes>")
        );
        assert!(err("write", 1, SECTION_MAX + 1, 0).contains("section="));
        assert!(err("write", 1, 1, SECTION_MAX + 1).contains("size=524289"));
        let e = err("write", SECTION_MAX, SECTION_MAX, 1);
        assert!(e.contains("name+section+size"), "{e}");
        // Every operation, not only a write, must fit one ring message.
        let e = err("delete", SECTION_MAX, SECTION_MAX, 0);
        assert!(e.contains("name+section+size"), "{e}");
        // At the bounds: accepted, and the operation fits one ring message with room for
        // the sync message that carries it later.
        let together = MESSAGE_MAX - HEADROOM;
        let w = command_op(Command::Write {
            name: "n".repeat(SECTION_MAX),
            section: "s".repeat(together - SECTION_MAX - 1000 - 64),
            size: 1000,
        })
        .unwrap();
        assert!(SyncEngine::op_message(CHECKPOINT_SERVICE, &w.encode()).len() <= MESSAGE_MAX);
        assert!(command_op(Command::Create {
            name: "n".repeat(SECTION_MAX)
        })
        .is_ok());
    }

    #[test]
    fn control_commands_parse_check_their_bounds_and_queue_operations() {
        let parse = |a: &[&str]| {
            let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            crate::registry::find(CheckpointService::NAME)
                .unwrap()
                .parse_args(&a)
        };
        let w = parse(&["op=write", "name=\"c0\"", "section=s", "size=10"]).unwrap();
        assert_eq!(
            serde_json::from_value::<Command>(w.clone()).unwrap(),
            Command::Write {
                name: "c0".into(),
                section: "s".into(),
                size: 10
            }
        );
        assert_eq!(
            w.to_string(),
            r#"{"name":"c0","op":"write","section":"s","size":10}"#
        );
        assert_eq!(
            serde_json::from_value::<Command>(parse(&["status"]).unwrap()).unwrap(),
            Command::Status
        );
        assert_eq!(
            serde_json::from_value::<Command>(parse(&["fill", "bytes=2097152"]).unwrap()).unwrap(),
            Command::Fill { bytes: 2_097_152 }
        );
        let e = |a: &[&str]| parse(a).unwrap_err().to_string();
        assert!(e(&["op=open"]).contains("name=... missing"));
        assert!(e(&["op=shred", "name=c0"]).contains("op=shred"));
        assert!(e(&["fill"]).contains("bytes=... missing"));
        assert!(e(&["open", "name=c", "size=1"]).contains("unknown argument \"size\""));
        assert!(e(&["write", "name=c", "size=big"]).contains("size=big"));

        let mut s = CheckpointService::new(1);
        let ctx = ControlContext {
            syncing: false,
            queued: 0,
            max_fill_bytes: 4_000_000,
        };
        let out = s.control(&w, &ctx).unwrap();
        assert_eq!(out.reply, serde_json::to_value(Ack::ok()).unwrap());
        assert_eq!(
            Op::decode(&out.ops[0]).unwrap(),
            Op::Write(b"c0".to_vec(), b"s".to_vec(), vec![0xC5; 10].into())
        );
        let fill = serde_json::to_value(Command::Fill { bytes: 2_097_152 }).unwrap();
        let out = s.control(&fill, &ctx).unwrap();
        assert_eq!(out.ops.len(), 5, "one create and four sections");
        let r: FillReply = serde_json::from_value(out.reply).unwrap();
        assert_eq!(r.sections, 4);
        let over = serde_json::to_value(Command::Fill { bytes: 4_000_000 }).unwrap();
        assert!(s
            .control(&over, &ctx)
            .unwrap_err()
            .to_string()
            .contains("svc checkpoint: bytes=4000000 refused"));
        let full = ControlContext {
            queued: 3_999_990,
            ..ctx
        };
        assert!(s
            .control(&w, &full)
            .unwrap_err()
            .to_string()
            .contains("max_fill_bytes=4000000"));
        let junk = serde_json::json!({"op": "write", "name": "c", "colour": 1});
        assert!(s
            .control(&junk, &ctx)
            .unwrap_err()
            .to_string()
            .contains("colour"));
        // Reads see the committed state.
        s.deliver_op(1, &Op::Create(b"c".to_vec()).encode());
        s.deliver_op(
            1,
            &Op::Write(b"c".to_vec(), b"s".to_vec(), vec![1, 2].into()).encode(),
        );
        let read = serde_json::to_value(Command::Read {
            name: "c".into(),
            section: "s".into(),
        })
        .unwrap();
        let r: ReadReply = serde_json::from_value(s.control(&read, &ctx).unwrap().reply).unwrap();
        assert_eq!((r.found, r.data.as_str()), (true, "0102"));
    }

    #[test]
    fn ops_round_trip_and_garbage_is_a_typed_error() {
        for op in [
            Op::Create(b"a".to_vec()),
            Op::Open(vec![]),
            Op::Close(b"c".to_vec()),
            Op::Unlink(b"d".to_vec()),
            Op::Write(b"n".to_vec(), b"s".to_vec(), Bytes::from_static(b"data")),
            Op::Delete(b"n".to_vec(), b"s".to_vec()),
        ] {
            let b = op.encode();
            assert_eq!(Op::decode(&b), Ok(op));
            for cut in 0..b.len() {
                assert!(matches!(
                    Op::decode(&b[..cut]),
                    Err(DecodeError::Truncated { .. })
                ));
            }
            let mut long = b.clone();
            long.push(0);
            assert_eq!(Op::decode(&long), Err(DecodeError::TrailingBytes(1)));
        }
        assert_eq!(Op::decode(&[6]), Err(DecodeError::UnknownType(6)));
        let mut huge = vec![0u8];
        huge.extend_from_slice(&(SECTION_MAX as u32 + 1).to_be_bytes());
        assert_eq!(
            Op::decode(&huge),
            Err(DecodeError::TooLong {
                field: "checkpoint name",
                len: SECTION_MAX + 1,
                max: SECTION_MAX
            })
        );
    }

    #[test]
    fn sync_chunks_round_trip_and_garbage_is_a_typed_error() {
        for c in [
            SyncChunk::GlobalId(u64::MAX),
            SyncChunk::Checkpoint {
                name: b"c0".to_vec(),
                id: 7,
            },
            SyncChunk::Section {
                name: b"c0".to_vec(),
                section: b"s".to_vec(),
                data: Bytes::from_static(b"xyz"),
            },
            SyncChunk::Refcounts {
                name: b"c0".to_vec(),
                id: 7,
                refs: vec![(1, 2), (3, u32::MAX)],
            },
            SyncChunk::Refcounts {
                name: vec![],
                id: 0,
                refs: vec![],
            },
        ] {
            let b = c.encode();
            assert_eq!(SyncChunk::decode(&b), Ok(c));
            for cut in 0..b.len() {
                assert!(matches!(
                    SyncChunk::decode(&b[..cut]),
                    Err(DecodeError::Truncated { .. })
                ));
            }
            let mut long = b.clone();
            long.push(0);
            assert_eq!(SyncChunk::decode(&long), Err(DecodeError::TrailingBytes(1)));
        }
        assert_eq!(SyncChunk::decode(&[4]), Err(DecodeError::UnknownType(4)));
        // A count far above what the message holds is truncated, not an allocation.
        let mut b = vec![2u8, 0, 0, 0, 0];
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            SyncChunk::decode(&b),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn a_malformed_sync_chunk_changes_nothing() {
        let mut s = CheckpointService::new(1);
        s.sync_init(&SyncContext {
            me: 1,
            ring: ringlab_ring::RingId { rep: 1, seq: 4 },
            members: vec![1, 2],
            trans: vec![1],
        });
        // A reference-count chunk cut short once raised the global id before failing.
        let mut b = SyncChunk::Refcounts {
            name: b"c".to_vec(),
            id: 99,
            refs: vec![(2, 1)],
        }
        .encode();
        b.pop();
        assert_eq!(s.sync_deliver(2, &b), None);
        assert_eq!(s.malformed, 1);
        s.sync_activate();
        assert_eq!(s.global_id(), 0);
    }
}
