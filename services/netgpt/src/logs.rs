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
