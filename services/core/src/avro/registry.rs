//! The schema registry: schema ids → parsed schemas, from the manifest embedded
//! at build time. Writers always use the newest id of a record; readers accept
//! every id of that record, older ones through a [`Transcoder`] compiled once
//! per id and cached.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use apache_avro::Schema;

use super::binary::Reader;
use super::resolve::Transcoder;
use super::types::{AvroType, Names};
use super::{DecodeError, split_frame, write_header};

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));

/// A manifest entry as embedded in the binary.
#[derive(Debug)]
pub struct EmbeddedSchema {
    pub id: u32,
    pub record: &'static str,
    pub file: &'static str,
    pub refs: &'static [u32],
    pub text: &'static str,
}

/// A parsed manifest entry.
#[derive(Debug, Clone)]
pub struct RegisteredSchema {
    pub id: u32,
    pub record: String,
    pub file: String,
    pub text: String,
    pub schema: Schema,
    /// Named types visible to `schema`: its own and those of its references.
    pub names: Names,
    /// The schemas of its references, in dependency order (what `parse_list` needs).
    pub ref_texts: Vec<String>,
}

pub struct SchemaRegistry {
    by_id: HashMap<u32, RegisteredSchema>,
    latest: HashMap<String, u32>,
    transcoders: RwLock<HashMap<u32, Result<Arc<Transcoder>, String>>>,
}

/// Records every named type reachable in `schema`.
fn collect_names(schema: &Schema, names: &mut Names) {
    match schema {
        Schema::Record(r) if names.insert(r.name.fullname(None), schema.clone()).is_none() => {
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.fullname(None), schema.clone());
        }
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names)),
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        _ => {}
    }
}

impl SchemaRegistry {
    /// The registry of the contract this binary was built with.
    pub fn embedded() -> &'static SchemaRegistry {
        static REGISTRY: OnceLock<SchemaRegistry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            // The manifest is compiled in and checked by the schema tests, so a
            // failure here is a build defect, not bad input.
            #[allow(clippy::expect_used)]
            SchemaRegistry::from_embedded(EMBEDDED_SCHEMAS).expect("embedded schemas/manifest.toml is consistent")
        })
    }

    pub fn from_embedded(entries: &[EmbeddedSchema]) -> Result<Self, String> {
        let texts: HashMap<u32, (&EmbeddedSchema, Vec<u32>)> = entries.iter().map(|e| (e.id, (e, e.refs.to_vec()))).collect();
        if texts.len() != entries.len() {
            return Err("duplicate schema id in the manifest".into());
        }
        let mut by_id = HashMap::new();
        let mut latest: HashMap<String, u32> = HashMap::new();
        for e in entries {
            // Dependencies first (depth-first), each once.
            let mut order = Vec::new();
            fn visit(id: u32, texts: &HashMap<u32, (&EmbeddedSchema, Vec<u32>)>, order: &mut Vec<u32>, depth: usize) -> Result<(), String> {
                if depth > 16 {
                    return Err(format!("schema references form a cycle through id {id}"));
                }
                let (_, refs) = texts.get(&id).ok_or_else(|| format!("reference to unknown schema id {id}"))?;
                for r in refs {
                    visit(*r, texts, order, depth + 1)?;
                }
                if !order.contains(&id) {
                    order.push(id);
                }
                Ok(())
            }
            visit(e.id, &texts, &mut order, 0)?;
            let list: Vec<&str> = order.iter().map(|id| texts[id].0.text).collect();
            let parsed = Schema::parse_list(&list).map_err(|err| format!("{}: {err}", e.file))?;
            let schema = parsed.last().cloned().ok_or("empty parse")?;
            let mut names = Names::new();
            for s in &parsed {
                collect_names(s, &mut names);
            }
            match &schema {
                Schema::Record(r) if r.name.fullname(None) == e.record => {}
                _ => return Err(format!("{} does not define record {}", e.file, e.record)),
            }
            let entry = latest.entry(e.record.to_string()).or_insert(e.id);
            *entry = (*entry).max(e.id);
            by_id.insert(
                e.id,
                RegisteredSchema {
                    id: e.id,
                    record: e.record.to_string(),
                    file: e.file.to_string(),
                    text: e.text.to_string(),
                    schema,
                    names,
                    ref_texts: list[..list.len() - 1].iter().map(|s| s.to_string()).collect(),
                },
            );
        }
        Ok(Self { by_id, latest, transcoders: RwLock::new(HashMap::new()) })
    }

    pub fn get(&self, id: u32) -> Option<&RegisteredSchema> {
        self.by_id.get(&id)
    }

    /// The schema writers use for `record` (full name, e.g. `netgpt.ToolRequest`).
    pub fn latest(&self, record: &str) -> Option<&RegisteredSchema> {
        self.latest.get(record).and_then(|id| self.by_id.get(id))
    }

    pub fn all(&self) -> impl Iterator<Item = &RegisteredSchema> {
        let mut v: Vec<_> = self.by_id.values().collect();
        v.sort_by_key(|s| s.id);
        v.into_iter()
    }

    /// Encodes `value` with the Confluent header of the newest schema of `record`.
    pub fn encode_as<T: AvroType>(&self, record: &str, value: &T) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        // Every record type has an entry (checked by the schema tests); 0 would
        // be refused by every reader, never silently misread.
        write_header(&mut out, self.latest.get(record).copied().unwrap_or(0));
        value.encode(&mut out);
        out
    }

    /// The record name of a framed record, from its schema id.
    pub fn record_of(&self, bytes: &[u8]) -> Result<&RegisteredSchema, DecodeError> {
        let (id, _) = split_frame(bytes)?;
        self.by_id.get(&id).ok_or(DecodeError::UnknownSchema(id))
    }

    /// Decodes a framed record of `record` written with any of its schema versions.
    pub fn decode_as<T: AvroType>(&self, record: &str, bytes: &[u8]) -> Result<T, DecodeError> {
        let (id, datum) = split_frame(bytes)?;
        let writer = self.by_id.get(&id).ok_or(DecodeError::UnknownSchema(id))?;
        if writer.record != record {
            return Err(DecodeError::UnexpectedRecord { id, found: writer.record.clone(), expected: record.to_string() });
        }
        let latest = self.latest.get(record).copied().unwrap_or(id);
        if id == latest {
            decode_all(datum)
        } else {
            let current = self.transcoder(id, latest)?.transcode(datum)?;
            decode_all(&current)
        }
    }

    fn transcoder(&self, id: u32, latest: u32) -> Result<Arc<Transcoder>, DecodeError> {
        if let Some(t) = self.transcoders.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return t.clone().map_err(|reason| DecodeError::Unresolvable { id, reason });
        }
        let (w, r) = (&self.by_id[&id], &self.by_id[&latest]);
        let built = Transcoder::new(&w.schema, &w.names, &r.schema, &r.names).map(Arc::new);
        self.transcoders.write().unwrap_or_else(|p| p.into_inner()).insert(id, built.clone());
        built.map_err(|reason| DecodeError::Unresolvable { id, reason })
    }
}

fn decode_all<T: AvroType>(datum: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(datum);
    let v = T::decode(&mut r)?;
    if r.remaining() != 0 {
        return Err(DecodeError::Invalid(format!("{} trailing bytes after the record", r.remaining())));
    }
    Ok(v)
}
