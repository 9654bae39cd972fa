//! Avro on the wire: the typed codec, Confluent framing and the schema registry
//! built from `schemas/manifest.toml`.
//!
//! Wire format of every record value (Confluent): magic byte `0`, the schema id
//! as a 4-byte big-endian integer, then the Avro binary datum. Any Kafka/Avro
//! tool that knows our `.avsc` files and ids can read our topics.

pub mod binary;
mod registry;
mod resolve;
mod types;

pub use registry::{EmbeddedSchema, RegisteredSchema, SchemaRegistry};
pub use resolve::Transcoder;
pub use types::{AvroType, Bytes, Names, TimestampMillis, resolve};

/// First byte of a Confluent-framed record.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("record is {len} bytes, shorter than the 5-byte Confluent header")]
    NoHeader { len: usize },
    #[error("magic byte is {0:#04x}, expected 0x00 (not a Confluent-framed Avro record)")]
    BadMagic(u8),
    #[error("schema id {0} is not in schemas/manifest.toml")]
    UnknownSchema(u32),
    #[error("record has schema id {id} ({found}), expected a {expected}")]
    UnexpectedRecord { id: u32, found: String, expected: String },
    #[error("record ends early: needed {wanted} more bytes at byte {at}")]
    Truncated { wanted: usize, at: usize },
    #[error("invalid Avro data: {0}")]
    Invalid(String),
    #[error("in {field}: {source}")]
    InField { field: &'static str, source: Box<DecodeError> },
    #[error("cannot resolve writer schema {id} to the current schema: {reason}")]
    Unresolvable { id: u32, reason: String },
}

impl DecodeError {
    /// Adds the field being decoded, innermost first, so errors read like a path.
    pub fn in_field(self, field: &'static str) -> Self {
        DecodeError::InField { field, source: Box::new(self) }
    }

    /// The dead-letter class of this error.
    pub fn is_unknown_schema(&self) -> bool {
        matches!(self, DecodeError::UnknownSchema(_))
    }
}

/// Splits a Confluent frame into schema id and datum.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::NoHeader { len: bytes.len() });
    }
    if bytes[0] != MAGIC_BYTE {
        return Err(DecodeError::BadMagic(bytes[0]));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

/// Writes the Confluent header for `id`.
pub fn write_header(out: &mut Vec<u8>, id: u32) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
}
