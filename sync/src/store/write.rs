//! A write to the store, as it travels (an operation of the `store` service on the ring, an
//! entry of the log, a message of the sync's recent path): versioned, bounded, decoded with
//! the one [`Reader`] of every codec.

use ringlab_ring::wire::{put_blob, DecodeError, Reader};

/// The encoding's version.
pub const WRITE_VERSION: u8 = 1;

/// The longest key (bytes).
pub const MAX_KEY: usize = 1024;

/// The longest value carried by one write (bytes): one ring message.
pub const MAX_VALUE: usize = 60 * 1024;

/// Why a write does not decode: the codec's typed error.
pub type WriteError = DecodeError;

/// A put (`value: Some`) or a delete (`None`) of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The key.
    pub key: Vec<u8>,
    /// The new value; none deletes the key.
    pub value: Option<Vec<u8>>,
}

impl Write {
    /// Returns its encoding: version, kind (1 put, 2 delete), key, and for a put the value.
    pub fn encode(&self) -> Vec<u8> {
        let mut b =
            Vec::with_capacity(14 + self.key.len() + self.value.as_ref().map_or(0, Vec::len));
        b.push(WRITE_VERSION);
        b.push(if self.value.is_some() { 1 } else { 2 });
        put_blob(&mut b, &self.key);
        if let Some(v) = &self.value {
            put_blob(&mut b, v);
        }
        b
    }

    /// Decodes one from `r` (a typed error for garbage, never a panic).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.u8("write version")? != WRITE_VERSION {
            return Err(DecodeError::Invalid("write version"));
        }
        let kind = r.u8("write kind")?;
        let key = r.blob("write key", MAX_KEY)?.to_vec();
        let value = match kind {
            1 => Some(r.blob("write value", MAX_VALUE)?.to_vec()),
            2 => None,
            _ => return Err(DecodeError::Invalid("write kind")),
        };
        Ok(Self { key, value })
    }

    /// Decodes exactly one write.
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let w = Self::read(&mut r)?;
        r.end()?;
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_round_trip_and_garbage_is_a_typed_error() {
        for w in [
            Write {
                key: b"k".to_vec(),
                value: Some(vec![7; 100]),
            },
            Write {
                key: vec![],
                value: None,
            },
        ] {
            assert_eq!(Write::decode(&w.encode()).unwrap(), w);
        }
        assert!(Write::decode(&[]).is_err());
        assert!(Write::decode(&[2, 1]).is_err());
        assert!(Write::decode(&[1, 3, 0, 0, 0, 0]).is_err());
        let mut long = vec![1, 2];
        long.extend_from_slice(&(MAX_KEY as u32 + 1).to_be_bytes());
        assert!(matches!(
            Write::decode(&long),
            Err(DecodeError::TooLong { .. })
        ));
        let mut extra = Write {
            key: b"k".to_vec(),
            value: None,
        }
        .encode();
        extra.push(0);
        assert!(Write::decode(&extra).is_err());
    }
}
