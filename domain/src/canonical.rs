//! Canonical MessagePack: the one byte form of a value that ids and signatures cover.
//!
//! Encoding is rmp-serde with named struct fields (maps), the smallest integer forms and
//! `bin` for byte strings. MessagePack by itself is not canonical: the same number has
//! several encodings, keys can come in any order, and a decoder accepts trailing bytes.
//! So decoding is strict: decode, re-encode, and refuse unless the bytes are identical.
//! Floats never appear in our types, so a float anywhere is refused by the decoder.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why bytes are not the canonical encoding of a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("malformed MessagePack: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("not canonical: the value re-encodes to different bytes (wide integers, key order or duplicate keys)")]
    NotCanonical,
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encodes a value canonically.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Encodes a value canonically, appending to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
    value.serialize(&mut ser).map_err(|e| CanonicalError::Encode(e.to_string()))
}

/// Decodes bytes known to be canonical (their hash was checked against what was stored):
/// no re-encoding, but still no trailing bytes.
pub fn decode_lenient<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CanonicalError> {
    let mut rest = bytes;
    let value = {
        let mut de = rmp_serde::Deserializer::new(&mut rest);
        T::deserialize(&mut de).map_err(|e| CanonicalError::Malformed(e.to_string()))?
    };
    if !rest.is_empty() {
        return Err(CanonicalError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Decodes bytes that must be exactly the canonical encoding of the value.
pub fn decode<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<T, CanonicalError> {
    let value = decode_lenient(bytes)?;
    let mut again = Vec::with_capacity(bytes.len());
    encode_into(&value, &mut again)?;
    if again != bytes {
        return Err(CanonicalError::NotCanonical);
    }
    Ok(value)
}

/// Byte strings that encode as MessagePack `bin` and as unpadded base64 in JSON.
pub mod bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    pub fn serialize<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&STANDARD_NO_PAD.encode(bytes)) } else { s.serialize_bytes(bytes) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        struct V<const N: usize>;
        impl<const N: usize> Visitor<'_> for V<N> {
            type Value = [u8; N];
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} bytes as MessagePack bin or base64")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<[u8; N], E> {
                v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<[u8; N], E> {
                let raw = STANDARD_NO_PAD.decode(v).map_err(|_| E::custom("invalid base64"))?;
                self.visit_bytes(&raw)
            }
        }
        if d.is_human_readable() { d.deserialize_str(V::<N>) } else { d.deserialize_bytes(V::<N>) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        a: u64,
        b: String,
        #[serde(with = "bytes")]
        c: [u8; 2],
    }

    fn sample_bytes() -> Vec<u8> {
        encode(&Sample { a: 5, b: "x".into(), c: [1, 2] }).unwrap()
    }

    /// Hand-built MessagePack map with the given encoding of `a` and key order.
    fn build(a: &[u8], reorder: bool) -> Vec<u8> {
        let mut out = vec![0x83];
        let fa = [&[0xa1, b'a'][..], a].concat();
        let fb = vec![0xa1, b'b', 0xa1, b'x'];
        let fc = vec![0xa1, b'c', 0xc4, 2, 1, 2];
        if reorder {
            out.extend(fb);
            out.extend(fa);
        } else {
            out.extend(fa);
            out.extend(fb);
        }
        out.extend(fc);
        out
    }

    #[test]
    fn the_canonical_form_decodes() {
        assert_eq!(build(&[0x05], false), sample_bytes());
        let v: Sample = decode(&sample_bytes()).unwrap();
        assert_eq!(v.a, 5);
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // 5 as uint64 instead of a positive fixint.
        let wide = build(&[0xcf, 0, 0, 0, 0, 0, 0, 0, 5], false);
        assert_eq!(decode::<Sample>(&wide), Err(CanonicalError::NotCanonical));
        // Keys in another order.
        assert_eq!(decode::<Sample>(&build(&[0x05], true)), Err(CanonicalError::NotCanonical));
        // Trailing bytes.
        let mut trailing = sample_bytes();
        trailing.push(0xc0);
        assert_eq!(decode::<Sample>(&trailing), Err(CanonicalError::TrailingBytes(1)));
        // A float where an integer belongs.
        let float = build(&[0xcb, 0x40, 0x14, 0, 0, 0, 0, 0, 0], false);
        assert!(matches!(decode::<Sample>(&float), Err(CanonicalError::Malformed(_))));
        // Bytes as an array of integers instead of bin.
        let mut arr = build(&[0x05], false);
        let n = arr.len();
        arr.splice(n - 4.., [0x92, 1, 2]);
        assert!(matches!(decode::<Sample>(&arr), Err(CanonicalError::Malformed(_))));
    }
}
