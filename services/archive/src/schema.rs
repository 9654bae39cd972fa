//! Arrow schemas from the Avro contract, and Arrow rows from records.
//!
//! Nested records are flattened: `EdgeProposal.request.site_id` becomes the
//! column `request_site_id`, `RoutingDecision.network.rtt_ms` becomes
//! `network_rtt_ms`, so the logs read as plain tables in any SQL engine.
//! Types: string/uuid/enum → Utf8, bytes → Utf8 (the text when UTF-8, else
//! `0x` hex, as in the JSON form), long/int/double/boolean as themselves,
//! timestamp-millis → Timestamp(ms, UTC); `[null, T]` unions are nullable.
//! Three columns say where each row came from: `_partition`, `_offset` and
//! `_timestamp` (the Kafka record's timestamp).

use std::sync::Arc;

use apache_avro::Schema as Avro;
use netgpt_core::avro::Names;
use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use netgpt_core::AnyRecord;
use netgpt_core::avro::SchemaRegistry;
use serde_json::Value;

pub const PARTITION_COLUMN: &str = "_partition";
pub const OFFSET_COLUMN: &str = "_offset";
pub const TIMESTAMP_COLUMN: &str = "_timestamp";

/// The table a topic is archived as: `netgpt.tool-requests` → `tool_requests`.
pub fn table_name(topic: &str) -> String {
    topic.strip_prefix("netgpt.").unwrap_or(topic).replace(['-', '.'], "_")
}

fn utc_millis() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn arrow_type(s: &Avro, names: &Names, record: &str) -> anyhow::Result<Option<DataType>> {
    Ok(Some(match s {
        Avro::String | Avro::Uuid | Avro::Enum(_) | Avro::Bytes => DataType::Utf8,
        Avro::Long => DataType::Int64,
        Avro::Int => DataType::Int32,
        Avro::Double | Avro::Float => DataType::Float64,
        Avro::Boolean => DataType::Boolean,
        Avro::TimestampMillis => utc_millis(),
        Avro::Ref { name } => match names.get(&name.fullname(None)) {
            Some(Avro::Enum(_)) => DataType::Utf8,
            Some(other) => return arrow_type(other, names, record),
            None => anyhow::bail!("{record}: unknown named type {name}"),
        },
        Avro::Record(_) => return Ok(None),
        other => anyhow::bail!("{record}: Avro type {other:?} has no column mapping"),
    }))
}

fn resolve<'a>(s: &'a Avro, names: &'a Names) -> &'a Avro {
    match s {
        Avro::Ref { name } => names.get(&name.fullname(None)).unwrap_or(s),
        _ => s,
    }
}

fn flatten(prefix: &str, s: &Avro, names: &Names, nullable: bool, record: &str, out: &mut Vec<Field>) -> anyhow::Result<()> {
    match resolve(s, names) {
        Avro::Record(r) => {
            for f in &r.fields {
                let name = if prefix.is_empty() { f.name.clone() } else { format!("{prefix}_{}", f.name) };
                flatten(&name, &f.schema, names, nullable, record, out)?;
            }
        }
        Avro::Union(u) => {
            let non_null: Vec<&Avro> = u.variants().iter().filter(|v| !matches!(v, Avro::Null)).collect();
            anyhow::ensure!(non_null.len() == 1, "{record}.{prefix}: only [null, T] unions map to columns");
            flatten(prefix, non_null[0], names, true, record, out)?;
        }
        other => {
            let Some(t) = arrow_type(other, names, record)? else { anyhow::bail!("{record}.{prefix}: unexpected record") };
            out.push(Field::new(prefix, t, nullable));
        }
    }
    Ok(())
}

/// The Arrow schema of a record type's table (newest registered Avro schema).
pub fn arrow_schema(record_full_name: &str) -> anyhow::Result<SchemaRef> {
    let reg = SchemaRegistry::embedded();
    let s = reg.latest(record_full_name).ok_or_else(|| anyhow::anyhow!("no schema registered for {record_full_name}"))?;
    let mut fields = Vec::new();
    flatten("", &s.schema, &s.names, false, record_full_name, &mut fields)?;
    fields.push(Field::new(PARTITION_COLUMN, DataType::Int32, false));
    fields.push(Field::new(OFFSET_COLUMN, DataType::Int64, false));
    fields.push(Field::new(TIMESTAMP_COLUMN, utc_millis(), false));
    Ok(Arc::new(Schema::new(fields)))
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
}

fn flatten_value(prefix: &str, v: Value, out: &mut serde_json::Map<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() { k } else { format!("{prefix}_{k}") };
                flatten_value(&name, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other);
        }
    }
}

/// One flattened row of a record (column name → JSON value).
pub fn row(record: &AnyRecord) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut out = serde_json::Map::new();
    flatten_value("", serde_json::to_value(record)?, &mut out);
    Ok(out)
}

/// Builds a batch of `schema` from flattened rows; a value that does not fit
/// its column is an error naming the column (a contract defect, not input).
pub fn batch(schema: &SchemaRef, rows: &[(serde_json::Map<String, Value>, Origin)]) -> anyhow::Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let get = |i: usize| -> Option<&Value> { rows[i].0.get(name).filter(|v| !v.is_null()) };
        let bad = |i: usize| anyhow::anyhow!("column {name}: value {:?} does not fit {}", rows[i].0.get(name), field.data_type());
        let array: ArrayRef = match (name, field.data_type()) {
            (PARTITION_COLUMN, _) => Arc::new(rows.iter().map(|r| Some(r.1.partition)).collect::<arrow::array::Int32Array>()),
            (OFFSET_COLUMN, _) => Arc::new(rows.iter().map(|r| Some(r.1.offset)).collect::<arrow::array::Int64Array>()),
            (TIMESTAMP_COLUMN, _) => Arc::new(rows.iter().map(|r| Some(r.1.timestamp_ms)).collect::<arrow::array::TimestampMillisecondArray>().with_timezone("UTC")),
            (_, DataType::Utf8) => {
                let mut b = StringBuilder::new();
                for i in 0..rows.len() {
                    match get(i) {
                        None => b.append_null(),
                        Some(Value::String(s)) => b.append_value(s),
                        Some(_) => return Err(bad(i)),
                    }
                }
                Arc::new(b.finish())
            }
            (_, DataType::Int64) => {
                let mut b = Int64Builder::new();
                for i in 0..rows.len() {
                    b.append_option(match get(i) {
                        None => None,
                        Some(v) => Some(v.as_i64().ok_or_else(|| bad(i))?),
                    });
                }
                Arc::new(b.finish())
            }
            (_, DataType::Int32) => {
                let mut b = Int32Builder::new();
                for i in 0..rows.len() {
                    b.append_option(match get(i) {
                        None => None,
                        Some(v) => Some(v.as_i64().and_then(|x| i32::try_from(x).ok()).ok_or_else(|| bad(i))?),
                    });
                }
                Arc::new(b.finish())
            }
            (_, DataType::Float64) => {
                let mut b = Float64Builder::new();
                for i in 0..rows.len() {
                    b.append_option(match get(i) {
                        // JSON has no NaN: serde writes a NaN double as null.
                        None if !field.is_nullable() => Some(f64::NAN),
                        None => None,
                        Some(v) => Some(v.as_f64().ok_or_else(|| bad(i))?),
                    });
                }
                Arc::new(b.finish())
            }
            (_, DataType::Boolean) => {
                let mut b = BooleanBuilder::new();
                for i in 0..rows.len() {
                    b.append_option(match get(i) {
                        None => None,
                        Some(v) => Some(v.as_bool().ok_or_else(|| bad(i))?),
                    });
                }
                Arc::new(b.finish())
            }
            (_, DataType::Timestamp(TimeUnit::Millisecond, _)) => {
                let mut b = TimestampMillisecondBuilder::new().with_timezone("UTC");
                for i in 0..rows.len() {
                    b.append_option(match get(i) {
                        None => None,
                        Some(v) => Some(v.as_i64().ok_or_else(|| bad(i))?),
                    });
                }
                Arc::new(b.finish())
            }
            (_, other) => anyhow::bail!("column {name}: no builder for {other}"),
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// The record type's full name per topic, from `infra/topics.toml`.
pub fn record_of_topic(topic: &str) -> anyhow::Result<String> {
    netgpt_core::topics::declared()?
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.record)
        .ok_or_else(|| anyhow::anyhow!("topic {topic} is not declared in infra/topics.toml"))
}


#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_record_type_maps_to_a_flat_table_and_sample_records_fill_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for rec in netgpt_core::samples::one_of_each(&mut rng) {
            let schema = arrow_schema(rec.record_name()).unwrap();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert!(names.iter().all(|n| !n.contains('.')));
            let r = row(&rec).unwrap();
            for k in r.keys() {
                assert!(names.contains(&k.as_str()), "{}: row key {k} has no column", rec.record_name());
            }
            let b = batch(&schema, &[(r, Origin { partition: 2, offset: 7, timestamp_ms: 1_700_000_000_000 })]).unwrap();
            assert_eq!(b.num_rows(), 1);
        }
        let s = arrow_schema("netgpt.RoutingDecision").unwrap();
        assert!(s.field_with_name("network_rtt_ms").is_ok());
        assert!(s.field_with_name("shadow_placement").unwrap().is_nullable());
        let s = arrow_schema("netgpt.EdgeProposal").unwrap();
        assert_eq!(s.field_with_name("request_created_at").unwrap().data_type(), &utc_millis());
        assert_eq!(table_name("netgpt.tool-requests"), "tool_requests");
    }
}
