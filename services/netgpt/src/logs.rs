//! `netgpt sql` and `netgpt dataset build`: DataFusion over the offload logs.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use netgpt_archive::store::Lake;
use netgpt_dataset::OutputFormat;
use netgpt_dataset::engine::LogEngine;

use crate::AppConfig;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct SqlArgs {
    /// The statement, e.g. "SELECT count(*) FROM routing_decisions".
    pub query: Option<String>,
    /// Read the statement from a file instead (e.g. sql/analytics/cost_by_schedule.sql).
    #[arg(long, conflicts_with = "query")]
    pub file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Run the dataset SQL (sql/datasets/) over the logs and write each result as
    /// Parquet under datasets/VERSION/ in the lake, with a manifest.
    Build {
        /// Version name [default: v<UTC time>].
        #[arg(long)]
        version: Option<String>,
    },
}

pub fn open_lake(app: &AppConfig) -> anyhow::Result<Lake> {
    Lake::open(&app.archive.url, &app.archive.options)
}

pub async fn sql(app: &AppConfig, args: SqlArgs) -> anyhow::Result<()> {
    let statement = match (args.query, args.file) {
        (Some(q), None) => q,
        (None, Some(f)) => std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?,
        _ => anyhow::bail!("give a statement or --file FILE"),
    };
    let lake = open_lake(app)?;
    let engine = LogEngine::open(&lake).await?;
    let batches = engine.query(&statement).await.map_err(|e| anyhow::anyhow!("SQL error: {e}"))?;
    let format = match args.format {
        Format::Table => OutputFormat::Table,
        Format::Csv => OutputFormat::Csv,
        Format::Json => OutputFormat::Json,
    };
    print!("{}", netgpt_dataset::render(&batches, format)?);
    if format == OutputFormat::Table {
        println!("\n{} row(s); tables: {}; views (one row per request): {}", batches.iter().map(|b| b.num_rows()).sum::<usize>(), engine.tables.join(", "), engine.views.join(", "));
    }
    Ok(())
}

pub async fn dataset(app: &AppConfig, cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Build { version } => {
            let lake = open_lake(app)?;
            let engine = LogEngine::open(&lake).await?;
            let started = std::time::Instant::now();
            let m = netgpt_dataset::build::build(&engine, &lake, netgpt_dataset::sql::DATASETS, version, true).await?;
            println!("datasets {} from the logs at {} ({:.1} s):", m.version, lake.location(), started.elapsed().as_secs_f64());
            for (name, d) in &m.datasets {
                println!("  {name:<18} {:>9} rows  {}", d.rows, d.url);
            }
            println!("sources:");
            for (t, s) in &m.sources {
                println!("  {t:<18} {:>9} rows", s.rows);
            }
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Requests to simulate.
    #[arg(long, default_value_t = 10_000)]
    pub requests: u64,
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    #[arg(long, default_value_t = 8)]
    pub sites: u32,
    /// Between two requests, in simulated milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: i64,
    /// Where to write (a path or URL; archive.options apply). Must hold no
    /// offload log yet: simulated objects beside real ones would mix into
    /// queries and datasets, and their offsets would make an archiver skip real records.
    #[arg(long)]
    pub lake: String,
}

impl SimulateArgs {
    pub fn spec(&self) -> netgpt_sim::offload::OffloadLogSpec {
        netgpt_sim::offload::OffloadLogSpec { requests: self.requests, seed: self.seed, sites: self.sites, interval_ms: self.interval_ms, ..Default::default() }
    }
}

/// The simulated pipeline's parts, from the configuration.
pub fn sim_world(app: &AppConfig) -> anyhow::Result<netgpt_sim::offload::World> {
    netgpt_sim::offload::World::load(app.router.clone(), app.cloud.simulated.clone())
}

/// Errors when `lake` already holds archived objects.
pub async fn refuse_non_empty(lake: &Lake) -> anyhow::Result<()> {
    for t in netgpt_core::topics::declared()? {
        let table = netgpt_archive::schema::table_name(&t.name);
        if !lake.objects(&table).await?.is_empty() {
            anyhow::bail!("{} already holds offload logs (table {table}); simulate into an empty place", lake.location());
        }
    }
    Ok(())
}

/// `netgpt simulate`: an offload log of simulated traffic straight into the lake.
pub async fn simulate(app: &AppConfig, args: SimulateArgs) -> anyhow::Result<()> {
    let lake = Lake::open(&args.lake, &app.archive.options)?;
    refuse_non_empty(&lake).await?;
    let world = sim_world(app)?;
    let report = netgpt_sim::offload::write(&args.spec(), &world, &lake, true).await?;
    println!("simulated {} requests into {}: {} records in {} Parquet files, {:.1} s ({:.0} records/s)", report.requests, lake.location(), report.records, report.files, report.seconds, report.records as f64 / report.seconds);
    for (table, rows) in &report.rows {
        println!("  {table:<18} {rows:>10} rows");
    }
    Ok(())
}
