//! Fuzz target: the chunk protocol's message (`ChunkMsg::decode`): never panics; what
//! decodes re-encodes to the same bytes; `verify_crc` never panics, and the CRC of a decoded
//! chunk is the CRC32C of the chunk section as it travelled (the message's tail).
#![no_main]
use ringlab_sync::store::chunk_msg::{ChunkMsg, CrcError};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = ChunkMsg::decode(data) {
        assert_eq!(m.encode(), data);
        assert_eq!(m.encoded_len(), data.len());
        let section = &data[data.len() - m.chunk.encoded_len()..];
        let computed = m.chunk.crc();
        assert_eq!(crc32c::crc32c(section), computed);
        match (m.verify_crc(), m.crc) {
            (Ok(()), Some(c)) => assert_eq!(c, computed),
            (Err(CrcError::Missing), None) => {}
            (
                Err(CrcError::Mismatch {
                    carried,
                    computed: c,
                }),
                Some(x),
            ) => {
                assert_eq!((carried, c), (x, computed));
                assert_ne!(carried, computed);
            }
            (r, c) => panic!("verify_crc gave {r:?} with crc {c:?}"),
        }
    }
});
