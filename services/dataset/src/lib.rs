//! netgpt-dataset: SQL over the offload logs with DataFusion.
//!
//! [`engine::LogEngine`] registers every archived topic as a table (Parquet
//! listing tables over the lake, Hive partitions `date` and `hour` as columns,
//! the schema from the Avro contract so empty tables work too) plus the
//! `json_same` function and the deduplicated views of `sql/views/`. [`build`] runs the dataset SQL of `sql/datasets/` and
//! writes each result as Parquet under a versioned path with a manifest.

pub mod build;
pub mod engine;
pub mod sql;

use arrow::array::RecordBatch;

/// How `netgpt sql` prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    Csv,
    /// One JSON object per line.
    Json,
}

/// Renders result batches in `format`.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> anyhow::Result<String> {
    Ok(match format {
        OutputFormat::Table => arrow::util::pretty::pretty_format_batches(batches)?.to_string(),
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in batches {
                    w.write(b)?;
                }
            }
            String::from_utf8(out)?
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs)?;
                w.finish()?;
            }
            String::from_utf8(out)?
        }
    })
}
