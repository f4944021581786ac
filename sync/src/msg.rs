//! What the sync layer puts in ring messages: a channel byte, then either a sync-engine
//! message (carrying the ring id it belongs to) or a service operation.
//!
//! `0x01 ring_id(12) kind u8 ...`: sync engine (kind 0 barrier: service u16; 1 service list:
//! count u16, (id u16, state token u64)...; 2 service data: service u16, payload). `0x02 service u16 payload`:
//! an operation of a service outside sync. Big-endian, bounded, decoding never panics:
//! one reader ([`ringlab_ring::wire::Reader`]) and one typed error ([`DecodeError`]) for the
//! ring's packets, these messages and every service's operations and sync messages.

use bytes::{BufMut, Bytes};
use ringlab_ring::wire::{put_ring_id, DecodeError, Reader};
use ringlab_ring::RingId;

/// A service's number; services sync in ascending order.
pub type ServiceId = u16;

const SYNC: u8 = 0x01;
const OP: u8 = 0x02;
/// Most services one list may name.
pub const SERVICES_MAX: usize = 256;

/// A decoded message of the sync layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Sync engine: this sender is done with `service` on `ring`.
    Barrier {
        /// The ring the sync belongs to.
        ring: RingId,
        /// The service.
        service: ServiceId,
    },
    /// Sync engine: the services this sender runs, each with a token of its state (equal
    /// tokens: identical state).
    ServiceList {
        /// The ring the sync belongs to.
        ring: RingId,
        /// Its services, ascending, with their state tokens.
        services: Vec<(ServiceId, u64)>,
    },
    /// A service's sync data.
    ServiceData {
        /// The ring the sync belongs to.
        ring: RingId,
        /// The service.
        service: ServiceId,
        /// Opaque to the engine.
        payload: Bytes,
    },
    /// A service operation outside sync.
    Op {
        /// The service.
        service: ServiceId,
        /// Opaque to the engine.
        payload: Bytes,
    },
}

impl Msg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Self::Barrier { ring, service } => {
                b.put_u8(SYNC);
                put_ring_id(&mut b, *ring);
                b.put_u8(0);
                b.put_u16(*service);
            }
            Self::ServiceList { ring, services } => {
                b.put_u8(SYNC);
                put_ring_id(&mut b, *ring);
                b.put_u8(1);
                b.put_u16(services.len() as u16);
                for (id, token) in services {
                    b.put_u16(*id);
                    b.put_u64(*token);
                }
            }
            Self::ServiceData {
                ring,
                service,
                payload,
            } => {
                b.put_u8(SYNC);
                put_ring_id(&mut b, *ring);
                b.put_u8(2);
                b.put_u16(*service);
                b.put_slice(payload);
            }
            Self::Op { service, payload } => {
                b.put_u8(OP);
                b.put_u16(*service);
                b.put_slice(payload);
            }
        }
        b
    }

    /// Decodes a message; never panics. A payload is a zero-copy slice of `data`.
    pub fn decode(data: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        match r.u8("sync channel")? {
            SYNC => {
                let ring = r.ring_id("sync ring id")?;
                match r.u8("sync kind")? {
                    0 => {
                        let service = r.u16("barrier service")?;
                        r.end()?;
                        Ok(Self::Barrier { ring, service })
                    }
                    1 => {
                        let n = r.count("service list", SERVICES_MAX)?;
                        let mut services = Vec::with_capacity(n);
                        for _ in 0..n {
                            let s = r.u16("service list id")?;
                            let token = r.u64("service list token")?;
                            if services.last().is_some_and(|&(l, _)| l >= s) {
                                return Err(DecodeError::NotSorted("service list"));
                            }
                            services.push((s, token));
                        }
                        r.end()?;
                        Ok(Self::ServiceList { ring, services })
                    }
                    2 => {
                        let service = r.u16("service data service")?;
                        Ok(Self::ServiceData {
                            ring,
                            service,
                            payload: data.slice(r.pos()..),
                        })
                    }
                    k => Err(DecodeError::UnknownType(k)),
                }
            }
            OP => {
                let service = r.u16("operation service")?;
                Ok(Self::Op {
                    service,
                    payload: data.slice(r.pos()..),
                })
            }
            c => Err(DecodeError::UnknownType(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let ring = RingId { rep: 3, seq: 44 };
        for m in [
            Msg::Barrier { ring, service: 7 },
            Msg::ServiceList {
                ring,
                services: vec![(1, 7), (2, 0), (9, u64::MAX)],
            },
            Msg::ServiceData {
                ring,
                service: 1,
                payload: Bytes::from_static(b"abc"),
            },
            Msg::Op {
                service: 1,
                payload: Bytes::from_static(b"op"),
            },
        ] {
            let b = Bytes::from(m.encode());
            assert_eq!(Msg::decode(&b).unwrap(), m);
            for cut in 0..b.len().min(16) {
                let _ = Msg::decode(&b.slice(..cut));
            }
        }
        assert_eq!(
            Msg::decode(&Bytes::from_static(&[9])),
            Err(DecodeError::UnknownType(9))
        );
        let unsorted = Msg::ServiceList {
            ring,
            services: vec![(2, 0), (1, 0)],
        };
        assert_eq!(
            Msg::decode(&Bytes::from(unsorted.encode())),
            Err(DecodeError::NotSorted("service list"))
        );
    }
}
