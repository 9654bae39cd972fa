//! Schema resolution compiled once per writer schema id.
//!
//! apache-avro resolves a writer schema against a reader schema on every
//! record, walking both schemas and building a `Value` tree; that is its known
//! slow path. Here the resolution is compiled once into a [`Transcoder`] that
//! rewrites a datum written with an older schema into the current schema's
//! binary layout, which the typed codec then decodes directly. Supported
//! evolution: fields added (with a default), removed, or reordered; enum
//! symbols added; a type made nullable. Anything else is refused when the
//! transcoder is built, with the reason.

use apache_avro::Schema;
use serde_json::Value as Json;

use super::binary::{Reader, write_bytes, write_long};
use super::types::{Names, resolve};
use super::DecodeError;

/// The shape of a writer datum, enough to skip over it.
#[derive(Debug, Clone)]
enum Shape {
    Null,
    Bool,
    Varint,
    F32,
    F64,
    Len,
    Fixed(usize),
    Array(Box<Shape>),
    Map(Box<Shape>),
    Union(Vec<Shape>),
    Record(Vec<Shape>),
}

/// How one writer value becomes one reader value.
#[derive(Debug, Clone)]
enum Step {
    /// Same encoding on both sides: copy the bytes.
    Copy(Shape),
    Record { writer_fields: Vec<WriterField>, reader_fields: Vec<ReaderField> },
    Enum(Vec<Option<i64>>),
    /// Writer value of a plain type read into a reader union branch.
    IntoUnion { branch: i64, step: Box<Step> },
    /// Writer union: each branch maps to a reader branch (or to a plain reader type when `None`).
    FromUnion(Vec<(Option<i64>, Step)>),
    FloatToDouble,
    IntToDouble,
}

#[derive(Debug, Clone)]
enum WriterField {
    Skip(Shape),
    Keep { reader_index: usize, step: Step },
}

#[derive(Debug, Clone)]
enum ReaderField {
    FromWriter,
    Default(Vec<u8>),
}

/// A compiled writer→reader resolution.
#[derive(Debug, Clone)]
pub struct Transcoder {
    step: Step,
}

const MAX_DEPTH: usize = 32;

impl Transcoder {
    pub fn new(writer: &Schema, writer_names: &Names, reader: &Schema, reader_names: &Names) -> Result<Self, String> {
        let cx = Cx { wn: writer_names, rn: reader_names };
        Ok(Self { step: cx.step(writer, reader, 0)? })
    }

    /// Rewrites `datum` (writer layout) into the reader layout.
    pub fn transcode(&self, datum: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let mut r = Reader::new(datum);
        let mut out = Vec::with_capacity(datum.len() + 16);
        run(&self.step, &mut r, &mut out)?;
        if r.remaining() != 0 {
            return Err(DecodeError::Invalid(format!("{} trailing bytes after the record", r.remaining())));
        }
        Ok(out)
    }
}

struct Cx<'a> {
    wn: &'a Names,
    rn: &'a Names,
}

/// Avro's binary encoding does not depend on logical types; this is what does.
fn encoding_kind(s: &Schema) -> Option<&'static str> {
    Some(match s {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Long | Schema::Date | Schema::TimeMillis | Schema::TimeMicros
        | Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos
        | Schema::LocalTimestampMillis | Schema::LocalTimestampMicros | Schema::LocalTimestampNanos => "varint",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes | Schema::String | Schema::Uuid | Schema::BigDecimal => "len",
        _ => return None,
    })
}

impl Cx<'_> {
    fn shape(&self, s: &Schema, depth: usize) -> Result<Shape, String> {
        if depth > MAX_DEPTH {
            return Err("schema nesting too deep (recursive type?)".into());
        }
        let s = resolve(s, self.wn)?;
        Ok(match s {
            Schema::Null => Shape::Null,
            Schema::Boolean => Shape::Bool,
            Schema::Float => Shape::F32,
            Schema::Double => Shape::F64,
            Schema::Enum(_) => Shape::Varint,
            Schema::Fixed(f) => Shape::Fixed(f.size),
            Schema::Duration => Shape::Fixed(12),
            Schema::Decimal(d) => match &*d.inner {
                Schema::Fixed(f) => Shape::Fixed(f.size),
                _ => Shape::Len,
            },
            Schema::Array(a) => Shape::Array(Box::new(self.shape(&a.items, depth + 1)?)),
            Schema::Map(m) => Shape::Map(Box::new(self.shape(&m.types, depth + 1)?)),
            Schema::Union(u) => Shape::Union(u.variants().iter().map(|v| self.shape(v, depth + 1)).collect::<Result<_, _>>()?),
            Schema::Record(r) => Shape::Record(r.fields.iter().map(|f| self.shape(&f.schema, depth + 1)).collect::<Result<_, _>>()?),
            other => match encoding_kind(other) {
                Some("varint") => Shape::Varint,
                Some("len") => Shape::Len,
                _ => return Err(format!("cannot skip schema {other:?}")),
            },
        })
    }

    fn step(&self, w: &Schema, r: &Schema, depth: usize) -> Result<Step, String> {
        if depth > MAX_DEPTH {
            return Err("schema nesting too deep (recursive type?)".into());
        }
        let w = resolve(w, self.wn)?;
        let r = resolve(r, self.rn)?;
        match (w, r) {
            (Schema::Record(wr), Schema::Record(rr)) => {
                if wr.name.name != rr.name.name {
                    return Err(format!("record {} cannot be read as {}", wr.name.fullname(None), rr.name.fullname(None)));
                }
                let mut matched = vec![false; rr.fields.len()];
                let mut writer_fields = Vec::with_capacity(wr.fields.len());
                for wf in &wr.fields {
                    let reader_index = rr.fields.iter().position(|rf| {
                        rf.name == wf.name || rf.aliases.as_ref().is_some_and(|a| a.contains(&wf.name))
                    });
                    writer_fields.push(match reader_index {
                        Some(i) => {
                            matched[i] = true;
                            let step = self.step(&wf.schema, &rr.fields[i].schema, depth + 1).map_err(|e| format!("{}.{}: {e}", rr.name.name, wf.name))?;
                            WriterField::Keep { reader_index: i, step }
                        }
                        None => WriterField::Skip(self.shape(&wf.schema, depth + 1)?),
                    });
                }
                let reader_fields = rr
                    .fields
                    .iter()
                    .zip(&matched)
                    .map(|(rf, &m)| {
                        if m {
                            return Ok(ReaderField::FromWriter);
                        }
                        let default = rf.default.as_ref().ok_or_else(|| {
                            format!("field {}.{} is missing from the writer schema and has no default", rr.name.name, rf.name)
                        })?;
                        let mut bytes = Vec::new();
                        encode_default(&rf.schema, default, self.rn, &mut bytes, depth + 1)
                            .map_err(|e| format!("default of {}.{}: {e}", rr.name.name, rf.name))?;
                        Ok(ReaderField::Default(bytes))
                    })
                    .collect::<Result<_, String>>()?;
                Ok(Step::Record { writer_fields, reader_fields })
            }
            (Schema::Enum(we), Schema::Enum(re)) => {
                let fallback = re.default.as_ref().and_then(|d| re.symbols.iter().position(|s| s == d));
                let map = we
                    .symbols
                    .iter()
                    .map(|s| re.symbols.iter().position(|x| x == s).or(fallback).map(|i| i as i64))
                    .collect();
                Ok(Step::Enum(map))
            }
            (Schema::Union(wu), Schema::Union(_)) => {
                let branches = wu
                    .variants()
                    .iter()
                    .map(|wv| self.reader_union_branch(wv, r, depth).map(|(i, s)| (Some(i), s)))
                    .collect::<Result<_, _>>()?;
                Ok(Step::FromUnion(branches))
            }
            (Schema::Union(wu), _) => {
                let branches = wu
                    .variants()
                    .iter()
                    .map(|wv| self.step(wv, r, depth + 1).map(|s| (None, s)))
                    .collect::<Result<_, _>>()?;
                Ok(Step::FromUnion(branches))
            }
            (_, Schema::Union(_)) => {
                let (branch, step) = self.reader_union_branch(w, r, depth)?;
                Ok(Step::IntoUnion { branch, step: Box::new(step) })
            }
            (Schema::Float, Schema::Double) => Ok(Step::FloatToDouble),
            (Schema::Int | Schema::Long, Schema::Double) => Ok(Step::IntToDouble),
            (Schema::Int, Schema::Long) => Ok(Step::Copy(Shape::Varint)),
            _ => match (encoding_kind(w), encoding_kind(r)) {
                (Some(a), Some(b)) if a == b && std::mem::discriminant(w) == std::mem::discriminant(r) => Ok(Step::Copy(self.shape(w, depth)?)),
                _ if w == r => Ok(Step::Copy(self.shape(w, depth)?)),
                _ => Err(format!(
                    "writer type {:?} cannot be read as {:?}",
                    apache_avro::schema::SchemaKind::from(w),
                    apache_avro::schema::SchemaKind::from(r)
                )),
            },
        }
    }

    /// The first reader union branch the writer type resolves to (Avro's rule).
    fn reader_union_branch(&self, w: &Schema, reader_union: &Schema, depth: usize) -> Result<(i64, Step), String> {
        let Schema::Union(ru) = reader_union else { unreachable!("called with a union") };
        let mut last_err = String::from("empty union");
        for (i, rv) in ru.variants().iter().enumerate() {
            match self.step(w, rv, depth + 1) {
                Ok(step) => return Ok((i as i64, step)),
                Err(e) => last_err = e,
            }
        }
        Err(format!("no branch of the reader union accepts the writer type: {last_err}"))
    }
}

fn skip(shape: &Shape, r: &mut Reader<'_>) -> Result<(), DecodeError> {
    match shape {
        Shape::Null => {}
        Shape::Bool => {
            r.read_bool()?;
        }
        Shape::Varint => {
            r.read_long()?;
        }
        Shape::F32 => {
            r.take(4)?;
        }
        Shape::F64 => {
            r.take(8)?;
        }
        Shape::Len => {
            r.read_bytes()?;
        }
        Shape::Fixed(n) => {
            r.take(*n)?;
        }
        Shape::Array(item) | Shape::Map(item) => loop {
            let count = r.read_long()?;
            if count == 0 {
                break;
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                let size = r.read_len()?;
                r.take(size)?;
                continue;
            }
            for _ in 0..count {
                if matches!(shape, Shape::Map(_)) {
                    r.read_bytes()?;
                }
                skip(item, r)?;
            }
        },
        Shape::Union(branches) => {
            let i = r.read_long()?;
            let b = usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or_else(|| DecodeError::Invalid(format!("union branch {i}")))?;
            skip(b, r)?;
        }
        Shape::Record(fields) => {
            for f in fields {
                skip(f, r)?;
            }
        }
    }
    Ok(())
}

fn run(step: &Step, r: &mut Reader<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    match step {
        Step::Copy(shape) => {
            let start = r.position();
            skip(shape, r)?;
            out.extend_from_slice(r.since(start));
        }
        Step::Record { writer_fields, reader_fields } => {
            let mut slots: Vec<Option<Vec<u8>>> = vec![None; reader_fields.len()];
            for wf in writer_fields {
                match wf {
                    WriterField::Skip(shape) => skip(shape, r)?,
                    WriterField::Keep { reader_index, step } => {
                        let mut buf = Vec::new();
                        run(step, r, &mut buf)?;
                        slots[*reader_index] = Some(buf);
                    }
                }
            }
            for (rf, slot) in reader_fields.iter().zip(slots) {
                match (rf, slot) {
                    (_, Some(bytes)) => out.extend_from_slice(&bytes),
                    (ReaderField::Default(bytes), None) => out.extend_from_slice(bytes),
                    (ReaderField::FromWriter, None) => return Err(DecodeError::Invalid("writer field missing".into())),
                }
            }
        }
        Step::Enum(map) => {
            let i = r.read_long()?;
            let mapped = usize::try_from(i)
                .ok()
                .and_then(|i| map.get(i).copied().flatten())
                .ok_or_else(|| DecodeError::Invalid(format!("writer enum symbol #{i} is unknown to the reader and it has no default")))?;
            write_long(out, mapped);
        }
        Step::IntoUnion { branch, step } => {
            write_long(out, *branch);
            run(step, r, out)?;
        }
        Step::FromUnion(branches) => {
            let i = r.read_long()?;
            let (reader_branch, step) = usize::try_from(i)
                .ok()
                .and_then(|i| branches.get(i))
                .ok_or_else(|| DecodeError::Invalid(format!("union branch {i}")))?;
            if let Some(b) = reader_branch {
                write_long(out, *b);
            }
            run(step, r, out)?;
        }
        Step::FloatToDouble => {
            let v = f64::from(r.read_f32()?);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Step::IntToDouble => {
            let v = r.read_long()? as f64;
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(())
}

/// Encodes a field default (JSON, per the Avro spec) under its schema.
fn encode_default(schema: &Schema, value: &Json, names: &Names, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("default nesting too deep".into());
    }
    let schema = resolve(schema, names)?;
    let bad = || format!("default {value} does not fit {:?}", apache_avro::schema::SchemaKind::from(schema));
    match schema {
        Schema::Null if value.is_null() => {}
        Schema::Boolean => out.push(u8::from(value.as_bool().ok_or_else(bad)?)),
        Schema::Float => out.extend_from_slice(&(value.as_f64().ok_or_else(bad)? as f32).to_le_bytes()),
        Schema::Double => out.extend_from_slice(&value.as_f64().ok_or_else(bad)?.to_le_bytes()),
        Schema::Bytes => {
            // Spec: bytes defaults are strings whose code points 0-255 are the bytes.
            let s = value.as_str().ok_or_else(bad)?;
            let b: Vec<u8> = s.chars().map(|c| u8::try_from(u32::from(c)).map_err(|_| bad())).collect::<Result<_, _>>()?;
            write_bytes(out, &b);
        }
        Schema::Enum(e) => {
            let s = value.as_str().ok_or_else(bad)?;
            let i = e.symbols.iter().position(|x| x == s).ok_or_else(bad)?;
            write_long(out, i as i64);
        }
        Schema::Union(u) => {
            // Spec: the default of a union field is a value of its first branch.
            out.push(0);
            encode_default(u.variants().first().ok_or_else(bad)?, value, names, out, depth + 1)?;
        }
        Schema::Record(r) => {
            let obj = value.as_object().ok_or_else(bad)?;
            for f in &r.fields {
                let v = obj.get(&f.name).or(f.default.as_ref()).ok_or_else(|| format!("default lacks field {}", f.name))?;
                encode_default(&f.schema, v, names, out, depth + 1)?;
            }
        }
        Schema::Array(a) => {
            let items = value.as_array().ok_or_else(bad)?;
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for v in items {
                    encode_default(&a.items, v, names, out, depth + 1)?;
                }
            }
            out.push(0);
        }
        other => match encoding_kind(other) {
            Some("varint") => write_long(out, value.as_i64().ok_or_else(bad)?),
            Some("len") => write_bytes(out, value.as_str().ok_or_else(bad)?.as_bytes()),
            _ => return Err(bad()),
        },
    }
    Ok(())
}
