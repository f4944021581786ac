//! Fuzz target: node 1's sync engine with the checkpoint service, fed what a ring could
//! deliver to it: configuration changes and messages from members 1-3, each either raw bytes
//! or a well-formed sync-layer message around raw bytes (a service list, a barrier, sync data,
//! an operation), and its own submissions when it polls. Never panics; everything the node
//! submits decodes, and its sync data decodes as checkpoint sync messages.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use ringlab_ring::{ConfigChange, ConfigKind, Delivery, Event, MsgId, NodeId, RingId};
use ringlab_sync::{
    CheckpointService, Msg, Plugin, Service, SyncChunk, SyncEngine, CHECKPOINT_SERVICE,
};

struct Node {
    engine: SyncEngine,
    ring: RingId,
    counter: u64,
}

impl Node {
    fn deliver(&mut self, sender: NodeId, data: Bytes) {
        self.counter += 1;
        self.engine.handle_event(&Event::Deliver(Delivery {
            id: MsgId {
                node: sender,
                inc: 1,
                counter: self.counter,
            },
            ring_id: self.ring,
            seq: self.counter,
            safe: false,
            sent_t_ns: 0,
            data,
        }));
    }

    fn config(&mut self, kind: ConfigKind, members: Vec<NodeId>) {
        self.engine.handle_event(&Event::Config(ConfigChange {
            kind,
            ring_id: self.ring,
            members,
            left: vec![],
            joined: vec![],
        }));
    }
}

fn members(u: &mut Unstructured<'_>) -> Result<Vec<NodeId>> {
    let bits: u8 = u.arbitrary()?;
    Ok((1..=3)
        .filter(|m| *m == 1 || bits & (1 << m) != 0)
        .collect())
}

fn blob(u: &mut Unstructured<'_>) -> Result<Bytes> {
    let n = u.int_in_range(0..=u8::MAX)? as usize;
    Ok(Bytes::copy_from_slice(u.bytes(n.min(u.len()))?))
}

fn step(n: &mut Node, u: &mut Unstructured<'_>) -> Result<()> {
    let sender = u.int_in_range(1..=3)?;
    let ring = n.ring;
    let service = CHECKPOINT_SERVICE;
    match u.int_in_range(0..=8u8)? {
        0 => {
            n.ring.seq += 4;
            let m = members(u)?;
            n.config(ConfigKind::Regular, m);
        }
        1 => {
            let m = members(u)?;
            n.config(ConfigKind::Transitional, m);
        }
        2 => {
            let b = blob(u)?;
            n.deliver(sender, b);
        }
        3 => {
            let services = vec![(service, u.arbitrary()?)];
            n.deliver(sender, Msg::ServiceList { ring, services }.encode().into());
        }
        4 => n.deliver(sender, Msg::Barrier { ring, service }.encode().into()),
        5 => {
            let payload = blob(u)?;
            n.deliver(
                sender,
                Msg::ServiceData {
                    ring,
                    service,
                    payload,
                }
                .encode()
                .into(),
            );
        }
        6 => {
            let payload = blob(u)?;
            n.deliver(sender, Msg::Op { service, payload }.encode().into());
        }
        7 => {
            if let Some(op) = ringlab_fuzz::any_op(u)? {
                n.deliver(
                    sender,
                    ringlab_sync::SyncEngine::op_message(service, &op.encode()),
                );
            }
        }
        _ => {
            let room = u.int_in_range(0..=4096usize)?;
            n.engine.poll(room);
            let mut own = Vec::new();
            while let Some(m) = n.engine.poll_submit() {
                match Msg::decode(&m) {
                    Ok(Msg::ServiceData { payload, .. }) => {
                        SyncChunk::decode(&payload).expect("own sync data decodes");
                    }
                    Ok(_) => {}
                    Err(e) => panic!("own message does not decode: {e}"),
                }
                own.push(m);
            }
            for m in own {
                n.deliver(1, m);
            }
        }
    }
    Ok(())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let services: Vec<Box<dyn Service>> = vec![Box::new(<CheckpointService as Plugin>::new(1))];
    let mut n = Node {
        engine: SyncEngine::new(1, services),
        ring: RingId { rep: 1, seq: 0 },
        counter: 0,
    };
    let mut u = Unstructured::new(data);
    while !u.is_empty() && step(&mut n, &mut u).is_ok() {}
    while n.engine.poll_event().is_some() {}
    let s = n.engine.service(CHECKPOINT_SERVICE).expect("the service");
    let _ = s.state_token();
    let _ = (s.digest(), s.size(), s.counters(), s.malformed());
});
