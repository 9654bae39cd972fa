//! The topic contract: `.avsc` files, the manifest, the Rust types and the
//! wire format agree, and agree with apache-avro (the reference implementation).

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
    // The evolution rule: a newer version only adds fields with defaults. Derive
    // the "older" version of each record by removing its defaulted fields, write
    // with it through apache-avro, and read through our registry.
    let mut rng = StdRng::seed_from_u64(9);
    for rec in samples::one_of_each(&mut rng) {
        let current = registry().latest(rec.record_name()).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&current.text).unwrap();
        let fields = json["fields"].as_array_mut().unwrap();
        let dropped: Vec<String> = fields.iter().filter(|f| f.get("default").is_some()).map(|f| f["name"].as_str().unwrap().to_string()).collect();
        fields.retain(|f| f.get("default").is_none());
        let old_text: &'static str = Box::leak(json.to_string().into_boxed_str());

        // A registry holding the old version as id 100 beside every current schema.
        let mut entries: Vec<EmbeddedSchema> = registry()
            .all()
            .map(|s| EmbeddedSchema { id: s.id, record: leak(&s.record), file: leak(&s.file), refs: &[], text: leak(&s.text) })
            .collect();
        let refs: Vec<u32> = registry().all().filter(|s| s.id != current.id).map(|s| s.id).collect();
        // Refs of the old version are the current ones' refs (nested records).
        let current_refs: &'static [u32] = Box::leak(
            registry().all().filter(|s| current.ref_texts.contains(&s.text)).map(|s| s.id).collect::<Vec<_>>().into_boxed_slice(),
        );
        for e in entries.iter_mut() {
            let r = registry().get(e.id).unwrap();
            e.refs = Box::leak(registry().all().filter(|s| r.ref_texts.contains(&s.text)).map(|s| s.id).collect::<Vec<_>>().into_boxed_slice());
        }
        let _ = refs;
        entries.push(EmbeddedSchema { id: 100, record: leak(&current.record), file: "old.avsc", refs: current_refs, text: old_text });
        let with_old = SchemaRegistry::from_embedded(&entries).unwrap();
        let old = with_old.get(100).unwrap();

        // The newest id still wins for writers.
        assert_eq!(with_old.latest(rec.record_name()).unwrap().id, 100);
        // So here "newest" is the old one; read old-written bytes against the
        // current schema by building the transcoder directly.
        let value = to_value_without(&rec, current, &dropped);
        let parsed = Schema::parse_list(old.ref_texts.iter().chain([&old.text])).unwrap();
        let old_refs: Vec<&Schema> = parsed.iter().collect();
        let datum = apache_avro::to_avro_datum_schemata(&old.schema, old_refs, value).unwrap();
        let t = netgpt_core::avro::Transcoder::new(&old.schema, &old.names, &current.schema, &current.names).unwrap();
        let mut framed = vec![0, 0, 0, 0, current.id as u8];
        framed.extend(t.transcode(&datum).unwrap());
        let read = AnyRecord::from_bytes(&framed).unwrap();
        let expected = reset_defaults(rec.clone(), &dropped);
        assert_eq!(read, expected, "{} after dropping {dropped:?}", rec.record_name());
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// The record as an apache-avro value without `dropped` fields.
fn to_value_without(rec: &AnyRecord, current: &netgpt_core::avro::RegisteredSchema, dropped: &[String]) -> Value {
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
