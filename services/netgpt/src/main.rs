//! `netgpt`: one binary, one subcommand per stage and tool.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use netgpt_core::Config;
use netgpt_edge::stage::EdgeConfig;
use serde::{Deserialize, Serialize};

mod bench;
mod bench_logs;
mod bench_trainer;
mod demo;
mod eval;
mod eval_kafka;
mod loadgen;
mod logs;
mod stats;
mod tail;
mod tally;
mod train;
mod trainer;

/// Every section of netgpt.toml: the core ones and each stage's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppConfig {
    #[serde(flatten)]
    pub core: Config,
    pub edge: EdgeConfig,
    /// `[network]`, `[cost]`, `[router]`.
    #[serde(flatten)]
    pub router: netgpt_router::RouterSettings,
    pub cloud: netgpt_cloud::CloudConfig,
    pub archive: netgpt_archive::ArchiveConfig,
    #[serde(default)]
    pub trainer: netgpt_trainer::TrainerConfig,
}

#[derive(Parser)]
#[command(name = "netgpt", version, about = "Network-aware edge/cloud routing of LLM tool calls over Kafka")]
struct Cli {
    /// TOML file layered over the defaults (netgpt.toml); environment variables
    /// NETGPT__SECTION__KEY override both.
    #[arg(long, global = true, env = "NETGPT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or list the Kafka topics declared in infra/topics.toml.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Print the records of a topic as JSON lines (Avro decoded).
    Tail(tail::TailArgs),
    /// Produce synthetic tool requests and per-site telemetry.
    Loadgen(loadgen::LoadgenArgs),
    /// Run one stage as a long-running service against the configured cluster,
    /// with /metrics and /healthz on admin.listen, until SIGINT/SIGTERM.
    Run {
        #[arg(value_enum)]
        stage: StageName,
    },
    /// Run the whole pipeline on embedded defaults: local broker, topics, every
    /// implemented stage, load; prints a summary and stops what it started.
    Demo(demo::DemoArgs),
    /// Benchmarks that print figures (never run as tests).
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Train models (the edge model's supervised base).
    Train {
        #[command(subcommand)]
        what: train::TrainCommand,
    },
    /// Trainer rounds: RL of the edge model on the cloud's answers, gated,
    /// stored and announced as a ModelUpdate.
    Trainer(trainer::TrainerArgs),
    /// The trainer's published edge models: list them, roll back to the previous one.
    Model {
        #[command(subcommand)]
        action: trainer::ModelCommand,
    },
    /// The evaluation's experiments, in-process (same edge, router, cloud and
    /// trainer code, no Kafka): numbers printed and written as CSV.
    Eval {
        #[command(subcommand)]
        experiment: eval::EvalCommand,
    },
    /// Held-out accuracy of an edge model, optionally with schema-constrained decoding.
    EvalEdge(train::EvalEdgeArgs),
    /// SQL over the offload logs (every archived topic is a table).
    Sql(logs::SqlArgs),
    /// Datasets built from the offload logs.
    Dataset {
        #[command(subcommand)]
        action: logs::DatasetCommand,
    },
    /// Write an offload log of simulated traffic straight into the lake, without
    /// a broker: a synthetic edge (right at the edge model's measured rates),
    /// the real router, the simulated cloud. For trying SQL and benchmarks.
    Simulate(logs::SimulateArgs),
    /// Print the effective configuration (defaults < --config < environment).
    Config,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StageName {
    /// The edge agent: tool-requests → edge-proposals.
    Edge,
    /// The router: edge-proposals (+ site telemetry) → routing-decisions,
    /// agent-responses (kept edge answers), cloud-requests (fallbacks).
    Router,
    /// The cloud gateway: cloud-requests → agent-responses.
    Cloud,
    /// The archiver: every record topic → Parquet on the object store.
    Archive,
}

/// Runs one stage until SIGINT/SIGTERM, with /metrics and /healthz.
async fn serve(app: &AppConfig, which: StageName) -> anyhow::Result<()> {
    use netgpt_core::stage::{RunReport, Stage, run_stage};
    let config = &app.core;
    let metrics = netgpt_core::metrics::Metrics::new();
    let shutdown = netgpt_core::shutdown_on_signals();
    let addr = netgpt_core::metrics::serve_admin(&config.admin.listen, metrics.clone(), shutdown.clone()).await?;
    tracing::info!("admin server on http://{addr} (/metrics, /healthz)");
    async fn go<S: Stage>(stage: S, config: &Config, metrics: std::sync::Arc<netgpt_core::metrics::Metrics>, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<RunReport> {
        let group = format!("{}.{}", config.kafka.group_prefix, stage.name());
        run_stage(stage, &config.kafka, &group, metrics, shutdown).await
    }
    let report = match which {
        StageName::Edge => {
            let mut stage = netgpt_edge::stage::EdgeStage::load(&app.edge)?.with_remote(netgpt_core::fetch::RemoteFolders::new(app.archive.options.clone()));
            stage.catch_up(&config.kafka).await?;
            go(stage, config, metrics, shutdown).await?
        }
        StageName::Router => {
            let (stage, follower) = demo::start_router(app, &shutdown).await?;
            let report = go(stage, config, metrics, shutdown).await?;
            follower.await??;
            report
        }
        StageName::Archive => {
            let lake = std::sync::Arc::new(logs::open_lake(app)?);
            let archiver = netgpt_archive::archiver::Archiver::new(app.archive.clone(), lake).await?;
            let group = format!("{}.{}", config.kafka.group_prefix, netgpt_archive::archiver::STAGE);
            let r = archiver.run(&config.kafka, &group, metrics, shutdown).await?;
            RunReport { records_in: r.records_in, records_out: r.records_written, dead_lettered: r.dead_lettered }
        }
        StageName::Cloud => go(netgpt_cloud::stage::CloudGateway::from_config(&app.cloud, app.router.cost.clone())?, config, metrics, shutdown).await?,
    };
    println!("stopped: read {}, wrote {}, dead-lettered {}", report.records_in, report.records_out, report.dead_lettered);
    Ok(())
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create every declared topic that does not exist yet.
    Create,
    /// List the topics on the cluster.
    List,
}

/// candle's CPU kernels split every matmul over `RAYON_NUM_THREADS` threads
/// (default: all cores). For the edge model's small matrices the hand-off
/// costs more than it saves: measured with `netgpt bench edge` on 2 cores,
/// one thread is ~5x faster per request (p50 1.8 ms vs 9.0 ms) and training
/// speed is unchanged (6.7 vs 7.1 steps/s). So netgpt runs candle on one
/// thread unless the operator sets RAYON_NUM_THREADS; parallelism comes from
/// stages and partitions instead.
fn single_threaded_kernels_by_default() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before the runtime or any other
        // thread exists, so nothing can read the environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", "1");
        }
    }
}

fn main() -> std::process::ExitCode {
    single_threaded_kernels_by_default();
    netgpt_core::init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netgpt: error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netgpt: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let app: AppConfig = netgpt_core::config::load_layered(cli.config.as_deref())?;
    let config = app.core.clone();
    match cli.command {
        Command::Topics { action: TopicsAction::Create } => {
            let specs = netgpt_core::topics::declared()?;
            let created = netgpt_core::bus::create_topics(&config.kafka, &specs).await?;
            for s in &specs {
                let state = if created.contains(&s.name) { "created" } else { "exists" };
                println!("{:<28} {:>2} partitions  {:<8} {state}", s.name, s.partitions, s.cleanup_policy);
            }
            Ok(())
        }
        Command::Topics { action: TopicsAction::List } => {
            let kafka = config.kafka.clone();
            let topics = tokio::task::spawn_blocking(move || netgpt_core::bus::list_topics(&kafka, std::time::Duration::from_secs(10))).await??;
            for (name, partitions) in topics {
                println!("{name:<28} {partitions:>2} partitions");
            }
            Ok(())
        }
        Command::Tail(args) => tail::run(&config, args).await,
        Command::Loadgen(args) => loadgen::run(&config, &app.router.network, args).await,
        Command::Demo(args) => demo::run(app, args).await,
        Command::Run { stage } => serve(&app, stage).await,
        Command::Bench { which } => bench::run(&app, which).await,
        Command::Train { what } => tokio::task::spawn_blocking(move || train::run(&app, what)).await?,
        Command::EvalEdge(args) => {
            let dir = app.edge.model_dir.clone();
            tokio::task::spawn_blocking(move || train::eval_edge(&dir, args)).await?
        }
        Command::Eval { experiment } => eval::run(&app, experiment).await,
        Command::Sql(args) => logs::sql(&app, args).await,
        Command::Dataset { action } => logs::dataset(&app, action).await,
        Command::Simulate(args) => logs::simulate(&app, args).await,
        Command::Trainer(args) => trainer::run(&app, args).await,
        Command::Model { action } => trainer::model(&app, action).await,
        Command::Config => {
            println!("{}", toml::to_string_pretty(&app)?);
            Ok(())
        }
    }
}
