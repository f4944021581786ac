//! Shared by the fuzz targets.
//!
//! Each codec target checks both directions on every input: the bytes, decoded, never panic
//! and what decodes re-encodes to the same bytes; and a value built from the same bytes (with
//! `arbitrary`), encoded, decodes to itself.

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use ringlab_ring::RingId;
use ringlab_sync::checkpoint::{Op, SyncChunk};
use ringlab_sync::msg::{Msg, SERVICES_MAX};

/// Puts `body` behind a valid header of type `kind` and decodes it: never panics, and what
/// decodes re-encodes to the same bytes. Lets the fuzzer spend its time on one body decoder.
pub fn body_round_trip(kind: u8, body: &[u8]) {
    // Magic "RL", version, type; sender 2; ring rep 1, seq 8.
    let mut b = vec![0x52, 0x4C, ringlab_ring::wire::VERSION, kind];
    b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8]);
    b.extend_from_slice(body);
    if let Ok(p) = ringlab_ring::wire::decode(&b) {
        assert_eq!(ringlab_ring::wire::encode(&p), b);
    }
}

/// Builds a value from `data` with `build` (`None` when the bytes run out or the value is
/// outside what the encoder promises to round-trip) and checks `decode(encode(x)) == x`.
pub fn value_round_trip<T: PartialEq + std::fmt::Debug, E: std::fmt::Debug>(
    data: &[u8],
    build: impl FnOnce(&mut Unstructured<'_>) -> Result<Option<T>>,
    encode: impl FnOnce(&T) -> Vec<u8>,
    decode: impl FnOnce(&[u8]) -> std::result::Result<T, E>,
) {
    if let Ok(Some(x)) = build(&mut Unstructured::new(data)) {
        let b = encode(&x);
        assert_eq!(decode(&b).as_ref().ok(), Some(&x), "{b:02x?}");
    }
}

fn blob(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let n = u.int_in_range(0..=u8::MAX)? as usize;
    Ok(u.bytes(n.min(u.len()))?.to_vec())
}

fn ring_id(u: &mut Unstructured<'_>) -> Result<RingId> {
    Ok(RingId {
        rep: u.arbitrary()?,
        seq: u.arbitrary()?,
    })
}

/// A sync-layer message; `None` for a service list the decoder refuses by design (unsorted,
/// or longer than [`SERVICES_MAX`]).
pub fn any_msg(u: &mut Unstructured<'_>) -> Result<Option<Msg>> {
    Ok(Some(match u.int_in_range(0..=3u8)? {
        0 => Msg::Barrier {
            ring: ring_id(u)?,
            service: u.arbitrary()?,
        },
        1 => {
            let ring = ring_id(u)?;
            let services: Vec<(u16, u64)> = u.arbitrary()?;
            if services.len() > SERVICES_MAX || services.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Ok(None);
            }
            Msg::ServiceList { ring, services }
        }
        2 => Msg::ServiceData {
            ring: ring_id(u)?,
            service: u.arbitrary()?,
            payload: Bytes::from(blob(u)?),
        },
        _ => Msg::Op {
            service: u.arbitrary()?,
            payload: Bytes::from(blob(u)?),
        },
    }))
}

/// A checkpoint operation (every field is far below the decoder's bound here).
pub fn any_op(u: &mut Unstructured<'_>) -> Result<Option<Op>> {
    Ok(Some(match u.int_in_range(0..=5u8)? {
        0 => Op::Create(blob(u)?),
        1 => Op::Open(blob(u)?),
        2 => Op::Close(blob(u)?),
        3 => Op::Unlink(blob(u)?),
        4 => Op::Write(blob(u)?, blob(u)?, Bytes::from(blob(u)?)),
        _ => Op::Delete(blob(u)?, blob(u)?),
    }))
}

/// A message of the checkpoint service's sync.
pub fn any_chunk(u: &mut Unstructured<'_>) -> Result<Option<SyncChunk>> {
    Ok(Some(match u.int_in_range(0..=3u8)? {
        0 => SyncChunk::Checkpoint {
            name: blob(u)?,
            id: u.arbitrary()?,
        },
        1 => SyncChunk::Section {
            name: blob(u)?,
            section: blob(u)?,
            data: Bytes::from(blob(u)?),
        },
        2 => SyncChunk::Refcounts {
            name: blob(u)?,
            id: u.arbitrary()?,
            refs: u.arbitrary()?,
        },
        _ => SyncChunk::GlobalId(u.arbitrary()?),
    }))
}
