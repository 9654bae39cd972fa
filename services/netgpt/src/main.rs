//! `netgpt`: one binary, one subcommand per stage and tool.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use netgpt_core::Config;
use netgpt_edge::stage::EdgeConfig;
use serde::{Deserialize, Serialize};

mod bench;
mod demo;
mod loadgen;
mod stats;
mod tail;
mod tally;
mod train;

/// Every section of netgpt.toml: the core ones and each stage's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppConfig {
    #[serde(flatten)]
    pub core: Config,
    pub edge: EdgeConfig,
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
    /// Held-out accuracy of an edge model, optionally with schema-constrained decoding.
    EvalEdge(train::EvalEdgeArgs),
    /// Print the effective configuration (defaults < --config < environment).
    Config,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StageName {
    /// The edge agent: tool-requests → edge-proposals.
    Edge,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create every declared topic that does not exist yet.
    Create,
    /// List the topics on the cluster.
    List,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    netgpt_core::init_tracing();
    let cli = Cli::parse();
    match run(cli).await {
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
        Command::Loadgen(args) => loadgen::run(&config, args).await,
        Command::Demo(args) => demo::run(app, args).await,
        Command::Run { stage: StageName::Edge } => {
            let metrics = netgpt_core::metrics::Metrics::new();
            let shutdown = netgpt_core::shutdown_on_signals();
            let addr = netgpt_core::metrics::serve_admin(&config.admin.listen, metrics.clone(), shutdown.clone()).await?;
            tracing::info!("admin server on http://{addr} (/metrics, /healthz)");
            let mut stage = netgpt_edge::stage::EdgeStage::load(&app.edge)?;
            stage.catch_up(&config.kafka).await?;
            let group = format!("{}.edge", config.kafka.group_prefix);
            let report = netgpt_core::stage::run_stage(stage, &config.kafka, &group, metrics, shutdown).await?;
            println!("edge stopped: read {}, wrote {}, dead-lettered {}", report.records_in, report.records_out, report.dead_lettered);
            Ok(())
        }
        Command::Bench { which } => bench::run(&app, which).await,
        Command::Train { what } => tokio::task::spawn_blocking(move || train::run(what)).await?,
        Command::EvalEdge(args) => {
            let dir = app.edge.model_dir.clone();
            tokio::task::spawn_blocking(move || train::eval_edge(&dir, args)).await?
        }
        Command::Config => {
            println!("{}", toml::to_string_pretty(&app)?);
            Ok(())
        }
    }
}
