//! The Kafka backbone against a real broker: at-least-once delivery across
//! clean restarts and crashes, dead-lettering, and Confluent interop.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::HashSet;
use std::time::Duration;

use netgpt_core::AnyRecord;
use netgpt_core::avro::SchemaRegistry;
use netgpt_core::bus::Producer;
use netgpt_core::metrics::Metrics;
use netgpt_core::records::{DeadLetterKind, Record, ToolRequest};
use netgpt_core::samples;
use netgpt_core::stage::{RunReport, run_stage};
use netgpt_core::topics::DEAD_LETTER;
use netgpt_tests::{Forward, Landed, TestBroker, read_topic, read_until, request_ids};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

async fn produce_requests(kafka: &netgpt_core::config::KafkaConfig, topic: &str, n: usize, seed: u64) -> Vec<ToolRequest> {
    let producer = Producer::new(kafka).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let recs: Vec<ToolRequest> = (0..n).map(|_| samples::tool_request(&mut rng)).collect();
    for r in &recs {
        producer.send(topic, r).await.await.unwrap();
    }
    recs
}

/// Runs a stage that stops itself, failing the test if it has not within 60 s.
async fn run_to_end(tb: &TestBroker, stage: Forward, group: &str, stop: CancellationToken) -> RunReport {
    tokio::time::timeout(Duration::from_secs(60), run_stage(stage, &tb.kafka, group, Metrics::new(), stop))
        .await
        .expect("the stage did not finish within 60 s")
        .unwrap()
}

/// The requests that landed are exactly the ones sent (duplicates allowed).
fn assert_same_requests(landed: &[Landed], sent: &[ToolRequest], what: &str) {
    let landed: HashSet<_> = request_ids(landed).into_iter().collect();
    let sent: HashSet<_> = sent.iter().map(|r| r.request_id).collect();
    assert_eq!(landed, sent, "{what}");
}

fn group() -> String {
    format!("test.group.{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_resumes_exactly_after_the_last_processed_record() {
    let tb = TestBroker::start().await.unwrap();
    let (input, output) = tb.in_out(3).await.unwrap();
    let sent = produce_requests(&tb.kafka, &input, 100, 1).await;
    let group = group();

    // First run stops itself after 40 records: drain, commit, close.
    let stop = CancellationToken::new();
    let stage = Forward::new(&input, &output).stop_after(40, &stop);
    let first = run_stage(stage, &tb.kafka, &group, Metrics::new(), stop).await.unwrap();
    assert_eq!(first.records_in, 40);
    assert_eq!(first.records_out, 40);

    // Second run takes the rest and nothing else.
    let stop = CancellationToken::new();
    let stage = Forward::new(&input, &output).stop_after(60, &stop);
    let second = run_to_end(&tb, stage, &group, stop).await;
    assert_eq!(second.records_in, 60, "the restarted consumer re-read or skipped records");

    let landed = read_topic(&tb.kafka, &output, 100, Duration::from_secs(5)).await.unwrap();
    assert_eq!(request_ids(&landed).len(), 100, "duplicates or losses on the output topic");
    assert_same_requests(&landed, &sent, "after a clean restart");
    tb.broker.stop().await;
}

/// Runs the forwarding stage in a child process (this test binary re-executed)
/// so that it can be killed with SIGKILL: a real crash, no close, no commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_before_committing_gets_its_records_again() {
    let tb = TestBroker::start().await.unwrap();
    let (input, output) = tb.in_out(3).await.unwrap();
    let sent = produce_requests(&tb.kafka, &input, 100, 2).await;
    let group = group();

    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_worker", "--nocapture", "--include-ignored"])
        .env("NETGPT_TEST_WORKER", "1")
        .env("NETGPT_TEST_BOOTSTRAP", &tb.kafka.bootstrap_servers)
        .env("NETGPT_TEST_IN", &input)
        .env("NETGPT_TEST_OUT", &output)
        .env("NETGPT_TEST_GROUP", &group)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait until the worker has produced outputs for some records, then kill it.
    let partial = read_topic(&tb.kafka, &output, 30, Duration::from_secs(60)).await.unwrap();
    assert!(partial.len() >= 30, "the worker produced only {} outputs", partial.len());
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    // The worker never committed (auto-commit interval of 10 minutes), so a new
    // consumer in the same group gets every record again.
    let stop = CancellationToken::new();
    let stage = Forward::new(&input, &output).stop_after(100, &stop);
    let rerun = run_to_end(&tb, stage, &group, stop).await;
    assert_eq!(rerun.records_in, 100);

    let landed = read_topic(&tb.kafka, &output, 200, Duration::from_secs(5)).await.unwrap();
    assert_same_requests(&landed, &sent, "a record was lost across the crash");
    assert!(request_ids(&landed).len() >= 100 + partial.len(), "records processed before the crash were not redelivered");
    tb.broker.stop().await;
}

/// The child process of the crash test; does nothing in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_worker() {
    if std::env::var("NETGPT_TEST_WORKER").is_err() {
        return;
    }
    let env = |k: &str| std::env::var(k).unwrap();
    let mut kafka = netgpt_core::Config::defaults().unwrap().kafka;
    kafka.bootstrap_servers = env("NETGPT_TEST_BOOTSTRAP");
    kafka.statistics_interval_ms = 0;
    kafka.properties.insert("auto.commit.interval.ms".into(), "600000".into());
    // Slow enough that the parent kills it mid-stream.
    let stage = Forward::new(&env("NETGPT_TEST_IN"), &env("NETGPT_TEST_OUT")).delay(Duration::from_millis(20));
    let _ = run_stage(stage, &kafka, &env("NETGPT_TEST_GROUP"), Metrics::new(), CancellationToken::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_rejected_records_are_dead_lettered_and_the_loop_goes_on() {
    let tb = TestBroker::start().await.unwrap();
    let (input, output) = tb.in_out(1).await.unwrap();
    let producer = Producer::new(&tb.kafka).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let good_a = samples::tool_request(&mut rng);
    let mut rejected = samples::tool_request(&mut rng);
    rejected.prompt = "reject me".into();
    let good_b = samples::tool_request(&mut rng);
    producer.send(&input, &good_a).await.await.unwrap();
    producer.send_bytes(&input, b"k1", b"\xff\xfe garbage", None).await.await.unwrap();
    producer.send_bytes(&input, b"k2", &[0, 0, 0, 0x30, 0x39, 1, 2], None).await.await.unwrap();
    producer.send(&input, &rejected).await.await.unwrap();
    producer.send(&input, &good_b).await.await.unwrap();

    let stop = CancellationToken::new();
    let stage = Forward::new(&input, &output).stop_after(2, &stop);
    let report = run_to_end(&tb, stage, &group(), stop).await;
    assert_eq!(report.records_in, 5);
    assert_eq!(report.dead_lettered, 3);

    let out = read_topic(&tb.kafka, &output, 2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(request_ids(&out), vec![good_a.request_id, good_b.request_id]);

    let dead = read_topic(&tb.kafka, DEAD_LETTER, 3, Duration::from_secs(5)).await.unwrap();
    assert_eq!(dead.len(), 3);
    let letters: Vec<_> = dead
        .iter()
        .map(|l| match &l.record {
            Ok(AnyRecord::DeadLetter(d)) => (d.clone(), l.headers.clone()),
            other => panic!("not a dead letter: {other:?}"),
        })
        .collect();
    let kinds: Vec<_> = letters.iter().map(|(d, _)| d.error_kind).collect();
    assert_eq!(kinds, vec![DeadLetterKind::Undecodable, DeadLetterKind::UnknownSchema, DeadLetterKind::Rejected]);
    let (garbage, headers) = &letters[0];
    assert_eq!(garbage.payload.0, b"\xff\xfe garbage", "the payload is kept unchanged");
    assert_eq!(garbage.source_topic, input);
    assert_eq!(garbage.source_offset, 1);
    assert!(garbage.error.contains("magic byte"), "{}", garbage.error);
    assert_eq!(headers.get("netgpt.source.topic"), Some(&input));
    assert_eq!(headers.get("netgpt.source.offset").map(String::as_str), Some("1"));
    assert_eq!(headers.get("netgpt.error"), Some(&garbage.error));
    assert!(letters[1].0.error.contains("12345"));
    assert!(letters[2].0.error.contains("rejected"));
    tb.broker.stop().await;
}

/// Another Kafka client writes a record with the Confluent framing, using only
/// our `.avsc` and the manifest id (apache-avro's generic writer, raw rdkafka
/// producer); our stage decodes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_another_confluent_client_decodes() {
    use apache_avro::types::Value;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let tb = TestBroker::start().await.unwrap();
    let (input, output) = tb.in_out(1).await.unwrap();
    let avsc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/ToolRequest.avsc")).unwrap();
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/manifest.toml")).unwrap();
    let manifest: toml_like::Manifest = toml_like::parse(&manifest);
    let id = manifest.id_of("ToolRequest.avsc");
    let schema = apache_avro::Schema::parse_str(&avsc).unwrap();
    let request_id = uuid::Uuid::new_v4();
    let value = Value::Record(vec![
        ("request_id".into(), Value::Uuid(request_id)),
        ("site_id".into(), Value::String("S042".into())),
        ("tenant".into(), Value::String("noc".into())),
        ("prompt".into(), Value::String("list alarms at S042".into())),
        ("tool_catalog_version".into(), Value::String("v1".into())),
        ("upload_bytes".into(), Value::Long(6100)),
        ("download_bytes".into(), Value::Long(300)),
        ("expected_output_tokens".into(), Value::Int(24)),
        ("created_at".into(), Value::TimestampMillis(1_790_000_000_000)),
        ("eval_reference_call".into(), Value::Union(0, Box::new(Value::Null))),
        ("eval_difficulty".into(), Value::Union(1, Box::new(Value::Enum(2, "HARD".into())))),
    ]);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend(apache_avro::to_avro_datum(&schema, value).unwrap());
    let raw: FutureProducer = tb.kafka.client_config().unwrap().create().unwrap();
    raw.send(FutureRecord::to(&input).key(&request_id.to_string()).payload(&framed), Duration::from_secs(5)).await.unwrap();

    let stop = CancellationToken::new();
    let stage = Forward::new(&input, &output).stop_after(1, &stop);
    let report = run_to_end(&tb, stage, &group(), stop).await;
    assert_eq!(report.dead_lettered, 0);
    let out = read_topic(&tb.kafka, &output, 1, Duration::from_secs(5)).await.unwrap();
    match &out[0].record {
        Ok(AnyRecord::ToolRequest(r)) => {
            assert_eq!(r.request_id, request_id);
            assert_eq!(r.site_id, "S042");
            assert_eq!(r.eval_difficulty, Some(netgpt_core::records::Difficulty::Hard));
            assert_eq!(r.key(), request_id.to_string());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(SchemaRegistry::embedded().latest(ToolRequest::FULL_NAME).unwrap().id, id);
    tb.broker.stop().await;
}

/// A second consumer joins the group mid-stream: partitions move, every record
/// is still processed (at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_loses_no_record() {
    let tb = TestBroker::start().await.unwrap();
    let (input, output) = tb.in_out(4).await.unwrap();
    let sent = produce_requests(&tb.kafka, &input, 240, 4).await;
    let group = group();
    let stop = CancellationToken::new();
    let spawn_consumer = || {
        let (kafka, group, stop) = (tb.kafka.clone(), group.clone(), stop.clone());
        // 240 records x 40 ms: ~10 s of work, longer than a group rebalance here.
        let stage = Forward::new(&input, &output).delay(Duration::from_millis(40));
        tokio::spawn(async move { run_stage(stage, &kafka, &group, Metrics::new(), stop).await })
    };
    let first = spawn_consumer();
    // The second consumer joins once the first is well into the stream.
    let head = read_topic(&tb.kafka, &output, 30, Duration::from_secs(30)).await.unwrap();
    assert!(head.len() >= 30);
    let second = spawn_consumer();
    let expected: HashSet<_> = sent.iter().map(|r| r.request_id).collect();
    let landed = read_until(&tb.kafka, &output, Duration::from_secs(30), |l| {
        request_ids(l).into_iter().collect::<HashSet<_>>().len() >= expected.len()
    })
    .await
    .unwrap();
    stop.cancel();
    let (a, b) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    assert_same_requests(&landed, &sent, "a record was lost in the rebalance");
    assert!(a.records_in > 0 && b.records_in > 0, "the second consumer never got partitions: {a:?} {b:?}");
    assert!(a.records_in + b.records_in >= 240);
    tb.broker.stop().await;
}

/// The manifest read as plain text, the way a foreign client would.
mod toml_like {
    pub struct Manifest(Vec<(u32, String)>);

    pub fn parse(text: &str) -> Manifest {
        let mut out = Vec::new();
        let mut id = None;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("id = ") {
                id = v.trim().parse().ok();
            }
            if let (Some(v), Some(i)) = (line.strip_prefix("file = "), id) {
                out.push((i, v.trim().trim_matches('"').to_string()));
            }
        }
        Manifest(out)
    }

    impl Manifest {
        pub fn id_of(&self, file: &str) -> u32 {
            self.0.iter().find(|(_, f)| f == file).map(|(i, _)| *i).unwrap()
        }
    }
}
