//! The topic contract: `.avsc` files, the manifest, the Rust types and the
//! wire format agree, and agree with apache-avro (the reference implementation).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use apache_avro::Schema;
use apache_avro::types::Value;
use netgpt_core::avro::{DecodeError, EmbeddedSchema, SchemaRegistry, split_frame};
use netgpt_core::records::*;
use netgpt_core::samples;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn registry() -> &'static SchemaRegistry {
    SchemaRegistry::embedded()
}

#[test]
fn rust_types_match_the_avsc() {
    AnyRecord::check_contract(registry()).unwrap();
}

#[test]
fn every_field_is_documented_and_typed_as_the_contract_says() {
    for s in registry().all() {
        let json: serde_json::Value = serde_json::from_str(&s.text).unwrap();
        assert_eq!(json["namespace"], "netgpt", "{}", s.file);
        assert!(json["doc"].as_str().is_some_and(|d| !d.is_empty()), "{} lacks a doc", s.file);
        let mut stack = vec![json.clone()];
        while let Some(rec) = stack.pop() {
            for f in rec["fields"].as_array().into_iter().flatten() {
                let name = f["name"].as_str().unwrap();
                assert!(f["doc"].as_str().is_some_and(|d| !d.is_empty()), "{}: field {name} lacks a doc", s.file);
                if name.ends_with("_at") {
                    assert_eq!(f["type"]["logicalType"], "timestamp-millis", "{}: {name}", s.file);
                }
                if name == "request_id" || name == "id" {
                    assert_eq!(f["type"]["logicalType"], "uuid", "{}: {name}", s.file);
                }
                if f["type"]["type"] == "record" {
                    stack.push(f["type"].clone());
                }
            }
        }
    }
}

#[test]
fn records_round_trip_through_the_wire_format() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..50 {
        for rec in samples::one_of_each(&mut rng) {
            let bytes = rec.to_bytes();
            let (id, _) = split_frame(&bytes).unwrap();
            assert_eq!(registry().get(id).unwrap().record, rec.record_name());
            assert_eq!(AnyRecord::from_bytes(&bytes).unwrap(), rec);
        }
    }
}

/// Our encoder writes exactly the bytes apache-avro writes for the same record,
/// and apache-avro reads ours: standard Avro tooling can read our topics.
#[test]
fn bytes_are_identical_to_apache_avro() {
    let mut rng = StdRng::seed_from_u64(8);
    for _ in 0..20 {
        for rec in samples::one_of_each(&mut rng) {
            let s = registry().latest(rec.record_name()).unwrap();
            let refs: Vec<Schema> = Schema::parse_list(s.ref_texts.iter().chain([&s.text])).unwrap();
            let refs: Vec<&Schema> = refs.iter().collect();
            let ours = rec.to_bytes();
            let datum = &ours[5..];
            let value = apache_avro::from_avro_datum_schemata(&s.schema, refs.clone(), &mut &datum[..], None).unwrap();
            let theirs = apache_avro::to_avro_datum_schemata(&s.schema, refs, value).unwrap();
            assert_eq!(datum, &theirs[..], "{}", rec.record_name());
        }
    }
}

#[test]
fn a_record_written_with_an_older_schema_reads_with_the_newer_one() {
    // The evolution rule: a newer version only adds fields with defaults. For
    // each record, derive its "older" version by removing the defaulted fields,
    // register old (id 1000+n) and current (id 2000+n, the newest) beside the
    // embedded schemas, write with the old one through apache-avro, and read
    // through the registry: the cached transcoder path.
    let mut rng = StdRng::seed_from_u64(9);
    let mut entries: Vec<EmbeddedSchema> = registry()
        .all()
        .map(|s| EmbeddedSchema { id: s.id, record: leak(&s.record), file: leak(&s.file), refs: refs_of(s), text: leak(&s.text) })
        .collect();
    let mut cases = Vec::new();
    for rec in samples::one_of_each(&mut rng) {
        let current = registry().latest(rec.record_name()).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&current.text).unwrap();
        let fields = json["fields"].as_array_mut().unwrap();
        let dropped: Vec<String> = fields.iter().filter(|f| f.get("default").is_some()).map(|f| f["name"].as_str().unwrap().to_string()).collect();
        fields.retain(|f| f.get("default").is_none());
        let (old_id, new_id) = (1000 + current.id, 2000 + current.id);
        entries.push(EmbeddedSchema { id: old_id, record: leak(&current.record), file: "old.avsc", refs: refs_of(current), text: leak(&json.to_string()) });
        entries.push(EmbeddedSchema { id: new_id, record: leak(&current.record), file: "new.avsc", refs: refs_of(current), text: leak(&current.text) });
        cases.push((rec, old_id, new_id, dropped));
    }
    let evolved = SchemaRegistry::from_embedded(&entries).unwrap();
    for (rec, old_id, new_id, dropped) in cases {
        assert_eq!(evolved.latest(rec.record_name()).unwrap().id, new_id, "writers use the newest id");
        let old = evolved.get(old_id).unwrap();
        let parsed = Schema::parse_list(old.ref_texts.iter().chain([&old.text])).unwrap();
        let datum = apache_avro::to_avro_datum_schemata(&old.schema, parsed.iter().collect(), to_value_without(&rec, &dropped)).unwrap();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&old_id.to_be_bytes());
        framed.extend(datum);
        for _ in 0..2 {
            // Twice: the second read uses the cached transcoder.
            let read = AnyRecord::decode_with(&evolved, &framed).unwrap();
            assert_eq!(read, reset_defaults(rec.clone(), &dropped), "{} without {dropped:?}", rec.record_name());
        }
    }
}

#[test]
fn records_written_with_the_retired_edge_proposal_ids_still_read() {
    // Ids 3 (EdgeProposal) and 5 (CloudRequest nesting it) were what writers
    // used before `unknown_word_share`; lakes and topics hold records of both.
    fn without_unknown_share(v: Value) -> Value {
        match v {
            Value::Record(fields) => Value::Record(fields.into_iter().filter(|(n, _)| n != "unknown_word_share").map(|(n, v)| (n, without_unknown_share(v))).collect()),
            other => other,
        }
    }
    let mut rng = StdRng::seed_from_u64(11);
    for rec in samples::one_of_each(&mut rng) {
        let old_id = match rec.record_name() {
            "netgpt.EdgeProposal" => 3,
            "netgpt.CloudRequest" => 5,
            _ => continue,
        };
        let old = registry().get(old_id).unwrap();
        assert!(registry().latest(rec.record_name()).unwrap().id > old_id, "writers moved on from id {old_id}");
        let parsed = Schema::parse_list(old.ref_texts.iter().chain([&old.text])).unwrap();
        let datum = apache_avro::to_avro_datum_schemata(&old.schema, parsed.iter().collect(), without_unknown_share(to_value_without(&rec, &[]))).unwrap();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&old_id.to_be_bytes());
        framed.extend(datum);
        let mut want = serde_json::to_value(&rec).unwrap();
        match &mut want {
            serde_json::Value::Object(m) if m.contains_key("proposal") => m["proposal"]["unknown_word_share"] = serde_json::Value::Null,
            serde_json::Value::Object(m) => {
                m.insert("unknown_word_share".into(), serde_json::Value::Null);
            }
            other => panic!("{other:?}"),
        }
        let read = AnyRecord::decode_with(registry(), &framed).unwrap();
        assert_eq!(serde_json::to_value(&read).unwrap(), want, "{} written with id {old_id}", rec.record_name());
    }
}

/// The ids of the schemas `s` refers to.
fn refs_of(s: &netgpt_core::avro::RegisteredSchema) -> &'static [u32] {
    let ids: Vec<u32> = registry().all().filter(|r| s.ref_texts.contains(&r.text)).map(|r| r.id).collect();
    Box::leak(ids.into_boxed_slice())
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// The record as an apache-avro value without `dropped` fields.
fn to_value_without(rec: &AnyRecord, dropped: &[String]) -> Value {
    let current = registry().latest(rec.record_name()).unwrap();
    let bytes = rec.to_bytes();
    let parsed = Schema::parse_list(current.ref_texts.iter().chain([&current.text])).unwrap();
    let refs: Vec<&Schema> = parsed.iter().collect();
    let v = apache_avro::from_avro_datum_schemata(&current.schema, refs, &mut &bytes[5..], None).unwrap();
    match v {
        Value::Record(fields) => Value::Record(fields.into_iter().filter(|(n, _)| !dropped.contains(n)).collect()),
        other => panic!("expected a record, got {other:?}"),
    }
}

/// What a reader sees for fields the writer did not have: their defaults.
fn reset_defaults(rec: AnyRecord, dropped: &[String]) -> AnyRecord {
    let mut json = serde_json::to_value(&rec).unwrap();
    for d in dropped {
        json[d] = match d.as_str() {
            "network_down_fallback" => serde_json::Value::Bool(false),
            _ => serde_json::Value::Null,
        };
    }
    macro_rules! back {
        ($($t:ident),+) => {
            match rec { $(AnyRecord::$t(_) => AnyRecord::$t(serde_json::from_value(json).unwrap())),+ }
        };
    }
    back!(ToolRequest, SiteTelemetry, EdgeProposal, RoutingDecision, CloudRequest, AgentResponse, PolicyUpdate, ModelUpdate, DeadLetter)
}

#[test]
fn incompatible_evolution_is_refused_with_a_reason() {
    let writer = Schema::parse_str(r#"{"type":"record","name":"R","namespace":"netgpt","fields":[{"name":"a","type":"string"}]}"#).unwrap();
    let reader = Schema::parse_str(r#"{"type":"record","name":"R","namespace":"netgpt","fields":[{"name":"a","type":"string"},{"name":"b","type":"long"}]}"#).unwrap();
    let err = netgpt_core::avro::Transcoder::new(&writer, &Default::default(), &reader, &Default::default()).unwrap_err();
    assert!(err.contains("no default"), "{err}");
    let reader = Schema::parse_str(r#"{"type":"record","name":"R","namespace":"netgpt","fields":[{"name":"a","type":"int"}]}"#).unwrap();
    assert!(netgpt_core::avro::Transcoder::new(&writer, &Default::default(), &reader, &Default::default()).is_err());
}

#[test]
fn transcoder_handles_reordered_removed_and_promoted_fields() {
    let writer = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"x","type":"int"},{"name":"gone","type":{"type":"array","items":"string"}},{"name":"y","type":"string"},{"name":"e","type":{"type":"enum","name":"E","symbols":["B","A"]}}]}"#,
    )
    .unwrap();
    let reader = Schema::parse_str(
        r#"{"type":"record","name":"R","fields":[{"name":"y","type":["null","string"]},{"name":"x","type":"double"},{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},{"name":"z","type":"string","default":"zz"}]}"#,
    )
    .unwrap();
    let value = Value::Record(vec![
        ("x".into(), Value::Int(-3)),
        ("gone".into(), Value::Array(vec![Value::String("a".into()), Value::String("b".into())])),
        ("y".into(), Value::String("why".into())),
        ("e".into(), Value::Enum(0, "B".into())),
    ]);
    let datum = apache_avro::to_avro_datum(&writer, value).unwrap();
    let t = netgpt_core::avro::Transcoder::new(&writer, &Default::default(), &reader, &Default::default()).unwrap();
    let out = t.transcode(&datum).unwrap();
    let read = apache_avro::from_avro_datum(&reader, &mut &out[..], None).unwrap();
    assert_eq!(
        read,
        Value::Record(vec![
            ("y".into(), Value::Union(1, Box::new(Value::String("why".into())))),
            ("x".into(), Value::Double(-3.0)),
            ("e".into(), Value::Enum(1, "B".into())),
            ("z".into(), Value::String("zz".into())),
        ])
    );
}

#[test]
fn garbage_never_panics_and_names_the_problem() {
    let mut rng = StdRng::seed_from_u64(10);
    assert!(matches!(AnyRecord::from_bytes(b"{\"json\": true}"), Err(DecodeError::BadMagic(b'{'))));
    assert!(matches!(AnyRecord::from_bytes(&[0, 0]), Err(DecodeError::NoHeader { len: 2 })));
    assert!(matches!(AnyRecord::from_bytes(&[0, 0, 0, 0x30, 0x39, 1]), Err(DecodeError::UnknownSchema(12345))));
    let telemetry = samples::site_telemetry(&mut rng).to_bytes();
    assert!(matches!(ToolRequest::from_bytes(&telemetry), Err(DecodeError::UnexpectedRecord { .. })));
    let mut trailing = telemetry.clone();
    trailing.push(0);
    assert!(AnyRecord::from_bytes(&trailing).is_err());
    for rec in samples::one_of_each(&mut rng) {
        let bytes = rec.to_bytes();
        for cut in 0..bytes.len() {
            assert!(AnyRecord::from_bytes(&bytes[..cut]).is_err(), "{} truncated at {cut} decoded", rec.record_name());
        }
        for _ in 0..500 {
            let mut m = bytes.clone();
            let i = rand::Rng::random_range(&mut rng, 5..m.len());
            m[i] = rand::Rng::random(&mut rng);
            let _ = AnyRecord::from_bytes(&m); // must return, Ok or Err, never panic
        }
    }
}
