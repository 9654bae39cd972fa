//! The typed codec: Rust types that encode to and decode from Avro binary
//! directly, without apache-avro's generic `Value` tree (the slow path).
//! `avro_record!` and `avro_enum!` declare a record/enum once; the field order
//! of the macro is the field order on the wire, and `AvroType::check` lets the
//! tests prove it matches the `.avsc` contract.

use std::collections::HashMap;

use apache_avro::Schema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::binary::{Reader, write_bytes, write_long};
use super::DecodeError;

/// Named types of a parsed schema set, by full name, to follow `Schema::Ref`.
pub type Names = HashMap<String, Schema>;

/// Follows `Ref`s to the named definition.
pub fn resolve<'a>(schema: &'a Schema, names: &'a Names) -> Result<&'a Schema, String> {
    match schema {
        Schema::Ref { name } => {
            let full = name.fullname(None);
            names.get(&full).ok_or_else(|| format!("unknown named type {full}"))
        }
        other => Ok(other),
    }
}

pub trait AvroType: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    /// `Ok` when `schema` is exactly the Avro type this Rust type reads and writes.
    fn check(schema: &Schema, names: &Names) -> Result<(), String>;
}

fn kind_error(expected: &str, schema: &Schema) -> String {
    format!("expected {expected}, schema has {:?}", apache_avro::schema::SchemaKind::from(schema))
}

macro_rules! primitive {
    ($t:ty, $expected:literal, $pat:pat, |$s:ident, $o:ident| $enc:expr, |$r:ident| $dec:expr) => {
        impl AvroType for $t {
            fn encode(&self, $o: &mut Vec<u8>) {
                let $s = self;
                $enc
            }
            fn decode($r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                $dec
            }
            fn check(schema: &Schema, names: &Names) -> Result<(), String> {
                match resolve(schema, names)? {
                    $pat => Ok(()),
                    other => Err(kind_error($expected, other)),
                }
            }
        }
    };
}

primitive!(bool, "boolean", Schema::Boolean, |s, o| o.push(u8::from(*s)), |r| r.read_bool());
primitive!(i32, "int", Schema::Int, |s, o| write_long(o, i64::from(*s)), |r| r.read_int());
primitive!(i64, "long", Schema::Long, |s, o| write_long(o, *s), |r| r.read_long());
primitive!(f32, "float", Schema::Float, |s, o| o.extend_from_slice(&s.to_le_bytes()), |r| r.read_f32());
primitive!(f64, "double", Schema::Double, |s, o| o.extend_from_slice(&s.to_le_bytes()), |r| r.read_f64());
primitive!(String, "string", Schema::String, |s, o| write_bytes(o, s.as_bytes()), |r| Ok(r.read_str()?.to_owned()));
primitive!(
    uuid::Uuid,
    "string with logicalType uuid",
    Schema::Uuid,
    |s, o| {
        let mut buf = uuid::Uuid::encode_buffer();
        write_bytes(o, s.hyphenated().encode_lower(&mut buf).as_bytes())
    },
    |r| {
        let s = r.read_str()?;
        uuid::Uuid::parse_str(s).map_err(|e| DecodeError::Invalid(format!("bad uuid {s:?}: {e}")))
    }
);

/// `timestamp-millis`: milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct TimestampMillis(pub i64);

impl TimestampMillis {
    pub fn now() -> Self {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

primitive!(
    TimestampMillis,
    "long with logicalType timestamp-millis",
    Schema::TimestampMillis,
    |s, o| write_long(o, s.0),
    |r| Ok(TimestampMillis(r.read_long()?))
);

/// Avro `bytes`. In JSON: the text when it is UTF-8 (the common case for a
/// dead-lettered payload a human wants to read), else `0x` and hex.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) if !text.starts_with("0x") => s.serialize_str(text),
            _ => {
                let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
                s.serialize_str(&format!("0x{hex}"))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.strip_prefix("0x") {
            Some(hex) => (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .map(Bytes)
                .ok_or_else(|| serde::de::Error::custom("bad hex after 0x")),
            None => Ok(Bytes(s.into_bytes())),
        }
    }
}

primitive!(Bytes, "bytes", Schema::Bytes, |s, o| write_bytes(o, &s.0), |r| Ok(Bytes(r.read_bytes()?.to_vec())));

/// `["null", T]`: null is always the first branch so that `null` can be the default.
impl<T: AvroType> AvroType for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(2); // zig-zag 1
                v.encode(out);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.read_long()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            i => Err(DecodeError::Invalid(format!("union branch {i} of a [null, T] union"))),
        }
    }

    fn check(schema: &Schema, names: &Names) -> Result<(), String> {
        match resolve(schema, names)? {
            Schema::Union(u) if u.variants().len() == 2 && u.variants()[0] == Schema::Null => T::check(&u.variants()[1], names),
            other => Err(kind_error("union [null, T]", other)),
        }
    }
}

/// Declares an Avro enum: a Rust fieldless enum whose variants are the symbols in order.
#[macro_export]
macro_rules! avro_enum {
    ($(#[$m:meta])* pub enum $name:ident : $avro:literal { $($(#[$vm:meta])* $variant:ident = $sym:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $sym)] $variant),+
        }

        impl $name {
            pub const FULL_NAME: &'static str = $avro;
            pub const VARIANTS: &'static [$name] = &[$($name::$variant),+];
            pub const SYMBOLS: &'static [&'static str] = &[$($sym),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $sym),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::avro::AvroType for $name {
            fn encode(&self, out: &mut Vec<u8>) {
                let index = Self::VARIANTS.iter().position(|v| v == self).unwrap_or(0);
                $crate::avro::binary::write_long(out, index as i64);
            }

            fn decode(r: &mut $crate::avro::binary::Reader<'_>) -> Result<Self, $crate::avro::DecodeError> {
                let i = r.read_long()?;
                usize::try_from(i).ok().and_then(|i| Self::VARIANTS.get(i).copied()).ok_or_else(|| {
                    $crate::avro::DecodeError::Invalid(format!("enum {} has no symbol #{}", $avro, i))
                })
            }

            fn check(schema: &apache_avro::Schema, names: &$crate::avro::Names) -> Result<(), String> {
                match $crate::avro::resolve(schema, names)? {
                    apache_avro::Schema::Enum(e) if e.name.fullname(None) == $avro => {
                        if e.symbols.iter().map(String::as_str).eq(Self::SYMBOLS.iter().copied()) {
                            Ok(())
                        } else {
                            Err(format!("enum {} symbols {:?} != Rust {:?}", $avro, e.symbols, Self::SYMBOLS))
                        }
                    }
                    other => Err(format!("expected enum {}, schema has {:?}", $avro, apache_avro::schema::SchemaKind::from(other))),
                }
            }
        }
    };
}

/// Declares an Avro record: a Rust struct whose fields, in order, are the record's fields.
#[macro_export]
macro_rules! avro_record {
    ($(#[$m:meta])* pub struct $name:ident : $avro:literal { $($(#[$fm:meta])* pub $field:ident : $ty:ty),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $name {
            $($(#[$fm])* pub $field: $ty),+
        }

        impl $name {
            pub const FULL_NAME: &'static str = $avro;
        }

        impl $crate::avro::AvroType for $name {
            fn encode(&self, out: &mut Vec<u8>) {
                $($crate::avro::AvroType::encode(&self.$field, out);)+
            }

            fn decode(r: &mut $crate::avro::binary::Reader<'_>) -> Result<Self, $crate::avro::DecodeError> {
                Ok(Self {
                    $($field: <$ty as $crate::avro::AvroType>::decode(r)
                        .map_err(|e| e.in_field(concat!($avro, ".", stringify!($field))))?),+
                })
            }

            fn check(schema: &apache_avro::Schema, names: &$crate::avro::Names) -> Result<(), String> {
                let record = match $crate::avro::resolve(schema, names)? {
                    apache_avro::Schema::Record(r) if r.name.fullname(None) == $avro => r,
                    other => return Err(format!("expected record {}, schema has {:?}", $avro, apache_avro::schema::SchemaKind::from(other))),
                };
                let rust_fields: &[&str] = &[$(stringify!($field)),+];
                let avro_fields: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
                if avro_fields != rust_fields {
                    return Err(format!("record {} fields {:?} != Rust {:?}", $avro, avro_fields, rust_fields));
                }
                let mut fields = record.fields.iter();
                $(
                    let f = fields.next().ok_or("field count")?;
                    <$ty as $crate::avro::AvroType>::check(&f.schema, names)
                        .map_err(|e| format!("{}.{}: {}", $avro, stringify!($field), e))?;
                )+
                Ok(())
            }
        }
    };
}
