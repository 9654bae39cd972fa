//! `netgpt bench`: benchmarks that print figures. Speed goals are checked
//! here, never in timed tests.

use std::hint::black_box;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use clap::Subcommand;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use netgpt_core::Config;
use netgpt_core::avro::SchemaRegistry;
use netgpt_core::broker::LocalBroker;
use netgpt_core::bus::Producer;
use netgpt_core::records::{Record, ToolRequest};
use netgpt_core::samples;
use netgpt_core::topics::TopicSpec;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rdkafka::Message;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Avro encode/decode of ToolRequest per core: netgpt's typed codec beside
    /// apache-avro's generic Value path.
    Codec {
        #[arg(long, default_value_t = 200_000)]
        records: usize,
    },
    /// Edge inference: per-request latency p50/p95 and proposals/s.
    Edge {
        /// Model directory [default: edge.model_dir].
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// Worker threads sharing the model for the throughput figure.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Router decisions per second on one core, per policy: scorer, fallback
    /// cost and policy (the pure path), then the whole stage step that also
    /// builds the decision and answer records.
    Router {
        #[arg(long, default_value_t = 100_000)]
        decisions: usize,
    },
    /// Building the datasets from a simulated offload log (`netgpt simulate`,
    /// written once and kept): DataFusion (`netgpt dataset build`) beside
    /// DuckDB running the same SQL text on the same Parquet files.
    Datasets {
        #[arg(long, default_value_t = 10_000_000)]
        requests: u64,
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// Where the log is kept [default: $NETGPT_HOME/bench/offload-REQUESTS-SEED].
        #[arg(long)]
        lake: Option<std::path::PathBuf>,
        /// Runs per engine, alternating; the best of each is compared.
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// Seconds per trainer round (RL, gate) and per router refit, on the
    /// datasets of a simulated offload log (written once and kept).
    Trainer {
        #[arg(long, default_value_t = 20_000)]
        requests: u64,
        #[arg(long, default_value_t = 11)]
        seed: u64,
        #[arg(long, default_value_t = 2)]
        runs: usize,
    },
    /// Archiver throughput: the records of a simulated offload log produced to
    /// the local broker, then archived into Parquet on a local folder.
    Archive {
        #[arg(long, default_value_t = 200_000)]
        requests: u64,
    },
    /// Raw produce and consume throughput against the broker (the local one
    /// when no cluster is configured).
    Broker {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 200)]
        size: usize,
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
}

pub async fn run(app: &crate::AppConfig, which: BenchCommand) -> anyhow::Result<()> {
    let config = &app.core;
    match which {
        BenchCommand::Edge { model, requests, threads } => {
            let dir = model.unwrap_or_else(|| app.edge.model_dir.clone());
            tokio::task::spawn_blocking(move || edge(&dir, requests, threads)).await?
        }
        BenchCommand::Codec { records } => codec(records),
        BenchCommand::Router { decisions } => router(app, decisions),
        BenchCommand::Datasets { requests, seed, lake, runs } => crate::bench_logs::datasets(app, requests, seed, lake, runs).await,
        BenchCommand::Trainer { requests, seed, runs } => crate::bench_trainer::trainer(app, requests, seed, runs).await,
        BenchCommand::Archive { requests } => crate::bench_logs::archive(app, requests).await,
        BenchCommand::Broker { messages, size, partitions } => broker(config.clone(), messages, size, partitions).await,
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn timed<F: FnMut()>(mut f: F) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn codec(n: usize) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(1);
    let recs: Vec<ToolRequest> = (0..n).map(|_| samples::tool_request(&mut rng)).collect();
    let registry = SchemaRegistry::embedded();
    let schema: &Schema = &registry.latest(ToolRequest::FULL_NAME).ok_or_else(|| anyhow::anyhow!("no ToolRequest schema"))?.schema;

    let mut ours: Vec<Vec<u8>> = Vec::with_capacity(n);
    let enc = timed(|| ours.extend(recs.iter().map(|r| r.to_bytes())));
    let dec = timed(|| {
        for b in &ours {
            black_box(ToolRequest::from_bytes(b).ok());
        }
    });

    // apache-avro's generic path: record -> Value -> datum, datum -> Value -> record.
    let mut theirs: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut failures = 0usize;
    let generic_enc = timed(|| {
        for r in &recs {
            match apache_avro::to_avro_datum(schema, generic::to_value(r)) {
                Ok(b) => theirs.push(b),
                Err(_) => failures += 1,
            }
        }
    });
    let generic_dec = timed(|| {
        for b in &theirs {
            let r = apache_avro::from_avro_datum(schema, &mut &b[..], None).ok().and_then(generic::from_value);
            if r.is_none() {
                failures += 1;
            }
            black_box(r);
        }
    });
    anyhow::ensure!(failures == 0, "apache-avro failed on {failures} records");
    // The same bytes either way (the contract tests check this per field).
    anyhow::ensure!(ours.iter().zip(&theirs).all(|(a, b)| a[5..] == b[..]), "codecs disagree");
    anyhow::ensure!(
        theirs.iter().zip(&recs).all(|(b, r)| apache_avro::from_avro_datum(schema, &mut &b[..], None).ok().and_then(generic::from_value).as_ref() == Some(r)),
        "the generic path does not round-trip"
    );

    println!("ToolRequest codec, {n} records, one core (mean {} bytes/record)", ours.iter().map(Vec::len).sum::<usize>() / n.max(1));
    println!("{:<44} {:>14} {:>14}", "", "encode rec/s", "decode rec/s");
    println!("{:<44} {:>14.0} {:>14.0}", "netgpt typed codec (framed)", rate(n, enc), rate(n, dec));
    println!("{:<44} {:>14.0} {:>14.0}", "apache-avro generic Value (record <-> Value)", rate(n, generic_enc), rate(n, generic_dec));
    println!("{:<44} {:>14.1} {:>14.1}", "speed-up", generic_enc.as_secs_f64() / enc.as_secs_f64(), generic_dec.as_secs_f64() / dec.as_secs_f64());
    Ok(())
}

async fn broker(mut config: Config, messages: usize, size: usize, partitions: i32) -> anyhow::Result<()> {
    let local = LocalBroker::start_unless_configured(&mut config).await?;
    let topic = format!("netgpt.bench.{}", uuid::Uuid::new_v4().simple());
    let spec = TopicSpec { name: topic.clone(), record: "bytes".into(), partitions, retention_ms: 3_600_000, cleanup_policy: "delete".into() };
    netgpt_core::bus::create_topics(&config.kafka, &[spec]).await?;
    let payload = vec![b'x'; size];

    let producer = Producer::new(&config.kafka)?;
    let t = Instant::now();
    let mut acks = FuturesUnordered::new();
    let mut failed = 0usize;
    for i in 0..messages {
        acks.push(producer.send_bytes(&topic, (i as u64).to_le_bytes().as_slice(), &payload, None).await);
        // Keep the set of pending futures bounded; librdkafka keeps the pipeline full.
        while acks.len() > 50_000 {
            if let Some(Err(_)) = acks.next().await {
                failed += 1;
            }
        }
    }
    while let Some(r) = acks.next().await {
        if r.is_err() {
            failed += 1;
        }
    }
    let produce = t.elapsed();

    let consumer = netgpt_core::bus::reader(&config.kafka, "netgpt.bench")?;
    // Assign the partitions directly: the figure is fetch throughput, not the
    // few seconds a consumer group needs to form.
    let t = Instant::now();
    netgpt_core::bus::assign_from_beginning(&consumer, &topic, Duration::from_secs(10))?;
    let mut read = 0usize;
    let mut bytes = 0usize;
    while read < messages - failed {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(Ok(m)) => {
                read += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Ok(Err(e)) => anyhow::bail!("consume error: {e}"),
            Err(_) => anyhow::bail!("consume stalled after {read} of {messages} messages"),
        }
    }
    let consume = t.elapsed();
    netgpt_core::bus::close_reader(consumer, Duration::from_secs(5)).await;
    if let Some(b) = local {
        b.stop().await;
    }
    println!("broker {} ({} partitions), {messages} messages x {size} B", config.kafka.bootstrap_servers, partitions);
    println!("produce (idempotent, acks=all): {:>10.0} msg/s  {:>7.1} MB/s  ({failed} failed)", rate(messages, produce), (messages * size) as f64 / produce.as_secs_f64() / 1e6);
    println!("consume:                        {:>10.0} msg/s  {:>7.1} MB/s", rate(read, consume), bytes as f64 / consume.as_secs_f64() / 1e6);
    Ok(())
}

/// ToolRequest <-> apache-avro `Value`, written the way a user of the generic
/// API would (apache-avro's serde bridge cannot map `uuid::Uuid` to the
/// `uuid` logical type).
mod generic {
    use apache_avro::types::Value;
    use netgpt_core::avro::TimestampMillis;
    use netgpt_core::records::{Difficulty, ToolRequest};

    fn opt_str(v: &Option<String>) -> Value {
        match v {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
        }
    }

    pub fn to_value(r: &ToolRequest) -> Value {
        Value::Record(vec![
            ("request_id".into(), Value::Uuid(r.request_id)),
            ("site_id".into(), Value::String(r.site_id.clone())),
            ("tenant".into(), Value::String(r.tenant.clone())),
            ("prompt".into(), Value::String(r.prompt.clone())),
            ("tool_catalog_version".into(), Value::String(r.tool_catalog_version.clone())),
            ("upload_bytes".into(), Value::Long(r.upload_bytes)),
            ("download_bytes".into(), Value::Long(r.download_bytes)),
            ("expected_output_tokens".into(), Value::Int(r.expected_output_tokens)),
            ("created_at".into(), Value::TimestampMillis(r.created_at.0)),
            ("eval_reference_call".into(), opt_str(&r.eval_reference_call)),
            (
                "eval_difficulty".into(),
                match r.eval_difficulty {
                    None => Value::Union(0, Box::new(Value::Null)),
                    Some(d) => {
                        let i = Difficulty::VARIANTS.iter().position(|x| *x == d).unwrap_or(0);
                        Value::Union(1, Box::new(Value::Enum(i as u32, d.as_str().to_string())))
                    }
                },
            ),
        ])
    }

    pub fn from_value(v: Value) -> Option<ToolRequest> {
        let Value::Record(fields) = v else { return None };
        let mut it = fields.into_iter().map(|(_, v)| v);
        let mut next = || it.next();
        let s = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let request_id = match next()? {
            Value::Uuid(u) => u,
            _ => return None,
        };
        let (site_id, tenant, prompt, tool_catalog_version) = (s(next())?, s(next())?, s(next())?, s(next())?);
        let (Value::Long(upload_bytes), Value::Long(download_bytes), Value::Int(expected_output_tokens), Value::TimestampMillis(created)) =
            (next()?, next()?, next()?, next()?)
        else {
            return None;
        };
        let eval_reference_call = match next()? {
            Value::Union(_, b) => match *b {
                Value::String(s) => Some(s),
                _ => None,
            },
            _ => return None,
        };
        let eval_difficulty = match next()? {
            Value::Union(_, b) => match *b {
                Value::Enum(i, _) => Difficulty::VARIANTS.get(i as usize).copied(),
                _ => None,
            },
            _ => return None,
        };
        Some(ToolRequest {
            request_id,
            site_id,
            tenant,
            prompt,
            tool_catalog_version,
            upload_bytes,
            download_bytes,
            expected_output_tokens,
            created_at: TimestampMillis(created),
            eval_reference_call,
            eval_difficulty,
        })
    }
}

fn edge(dir: &std::path::Path, n: usize, threads: usize) -> anyhow::Result<()> {
    use netgpt_edge::agent::EdgeAgent;
    use netgpt_edge::catalog::ToolCatalog;
    use netgpt_edge::workload::{Split, WorkloadGenerator};

    let agent = EdgeAgent::load(dir, "bench")?;
    let g = WorkloadGenerator::new(ToolCatalog::embedded(), Split::HeldOut)?;
    let mut rng = StdRng::seed_from_u64(3);
    let prompts: Vec<String> = (0..n).map(|_| g.sample(&mut rng).prompt).collect();
    // Warm-up, then one request at a time: latency.
    for p in prompts.iter().take(10) {
        agent.propose(p)?;
    }
    let mut lat: Vec<f64> = Vec::with_capacity(n);
    for p in &prompts {
        lat.push(agent.propose(p)?.latency.as_secs_f64() * 1e3);
    }
    let (p50, p95) = crate::stats::percentiles(&mut lat);
    // Several threads sharing the model: throughput.
    let t = Instant::now();
    std::thread::scope(|scope| {
        for chunk in prompts.chunks(n.div_ceil(threads.max(1))) {
            let agent = &agent;
            scope.spawn(move || {
                for p in chunk {
                    let _ = agent.propose(p);
                }
            });
        }
    });
    let elapsed = t.elapsed();
    println!("edge inference, {} held-out requests, model {} ({} layers, d={})", n, dir.display(), agent.model.config.n_layers, agent.model.config.d_model);
    println!("latency, one request at a time: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms", p50, p95, lat[lat.len() - 1]);
    println!("throughput with {threads} threads: {:.0} proposals/s", rate(n, elapsed));
    Ok(())
}

fn router(app: &crate::AppConfig, n: usize) -> anyhow::Result<()> {
    use netgpt_router::bundle::{RouterBundle, load_proposals};
    use netgpt_router::fit::{sample_states, simulate_samples};
    use netgpt_router::policy::POLICY_NAMES;
    use netgpt_router::scorer::ProposalFeatures;

    let dir = &app.router.router.bundle_dir;
    let bundle = RouterBundle::load(dir)?;
    let proposals = load_proposals(dir)?;
    let schedules: Vec<String> = app.router.cost.price_schedules.iter().map(|s| s.id.clone()).collect();
    let states = sample_states(1024, 7, &app.router.network.regimes, &app.router.network.trace, &schedules);
    let per = n.div_ceil(proposals.len().max(1));
    let mut samples = simulate_samples(&proposals, &bundle.scorer, &states, per, &app.router.cost, 0.97, 7);
    samples.truncate(n);
    let features: Vec<ProposalFeatures> = proposals.iter().cycle().take(samples.len()).map(|p| p.features.clone()).collect();
    println!("router decisions, {} requests (bundle {}), one core", samples.len(), bundle.version);
    println!("{:<12} {:>16} {:>12}", "policy", "decisions/s", "ns/decision");
    for name in POLICY_NAMES {
        let policy = bundle.policy(name)?.build()?;
        let t = timed(|| {
            for (s, f) in samples.iter().zip(&features) {
                let score = bundle.scorer.score(f);
                let cost = app.router.cost.fallback_cost(&s.state, &s.shape, 0);
                let mut input = s.input();
                input.score = score;
                input.cost = &cost;
                black_box(policy.decide(&input));
            }
        });
        println!("{:<12} {:>16.0} {:>12.0}", name, rate(samples.len(), t), t.as_nanos() as f64 / samples.len() as f64);
    }
    // The whole stage step: site lookup, decision record, answer or cloud request.
    let sites = netgpt_router::stage::SiteTable::default();
    let mut stage = netgpt_router::stage::RouterStage::load(app.router.clone(), sites.clone())?;
    let mut rng = StdRng::seed_from_u64(3);
    let proposals_recs: Vec<_> = (0..samples.len().min(50_000)).map(|_| samples::edge_proposal(&mut rng)).collect();
    for p in &proposals_recs {
        sites.update(&netgpt_core::records::SiteTelemetry {
            site_id: p.request.site_id.clone(),
            uplink_mbps: 20.0,
            downlink_mbps: 40.0,
            rtt_ms: 80.0,
            loss_rate: 0.0,
            price_schedule_id: "flat".into(),
            link_regime: None,
            observed_at: p.proposed_at,
        });
    }
    let t = timed(|| {
        for p in &proposals_recs {
            black_box(stage.route(p.clone()));
        }
    });
    println!("{:<12} {:>16.0} {:>12.0}   (RouterStage::route with {}, records built, idempotence cache)", "stage step", rate(proposals_recs.len(), t), t.as_nanos() as f64 / proposals_recs.len() as f64, app.router.router.policy);
    Ok(())
}
