//! A DataFusion session over the lake.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use netgpt_archive::schema::{arrow_schema, table_name};
use netgpt_archive::store::Lake;

pub struct LogEngine {
    pub ctx: SessionContext,
    /// One per archived topic.
    pub tables: Vec<String>,
    /// The deduplicated views over them.
    pub views: Vec<String>,
}

/// Are two JSON documents the same tool call? Object keys in any order,
/// numbers compared as numbers (the edge writes arguments in catalog order,
/// other writers sort keys). NULL when either side is NULL or not JSON.
pub fn json_same_udf() -> ScalarUDF {
    create_udf(
        "json_same",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Boolean,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let cast = |a: &ArrayRef| arrow::compute::cast(a, &DataType::Utf8);
            let (a, b) = (cast(&arrays[0])?, cast(&arrays[1])?);
            let (a, b) = (
                a.as_any().downcast_ref::<StringArray>().ok_or_else(|| datafusion::error::DataFusionError::Internal("json_same: not strings".into()))?,
                b.as_any().downcast_ref::<StringArray>().ok_or_else(|| datafusion::error::DataFusionError::Internal("json_same: not strings".into()))?,
            );
            let out: BooleanArray = a
                .iter()
                .zip(b.iter())
                .map(|(x, y)| {
                    let (x, y) = (x?, y?);
                    if x == y {
                        // Same text: the same call if it is JSON at all (the common case: an agreeing edge).
                        return serde_json::from_str::<serde::de::IgnoredAny>(x).is_ok().then_some(true);
                    }
                    let (x, y): (serde_json::Value, serde_json::Value) = (serde_json::from_str(x).ok()?, serde_json::from_str(y).ok()?);
                    Some(netgpt_core::json::same_json(&x, &y))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

impl LogEngine {
    /// Every declared topic as a table named after it (`tool_requests`, ...),
    /// plus the deduplicated views of `sql/views/` (`requests`, `proposals`,
    /// `decisions`, `answers`). The engine reads the lake as listed when it was
    /// opened (a test saw files written later stay out of its counts): open a
    /// new engine for each round of work, as the trainer does.
    pub async fn open(lake: &Lake) -> anyhow::Result<Self> {
        let ctx = SessionContext::new();
        ctx.register_object_store(&lake.base_url, lake.store.clone());
        ctx.register_udf(json_same_udf());
        let mut tables = Vec::new();
        for topic in netgpt_core::topics::declared()? {
            let name = table_name(&topic.name);
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8), ("hour".to_string(), DataType::Utf8)]);
            ctx.register_listing_table(name.as_str(), lake.table_url(&name), options, Some(arrow_schema(&topic.record)?), None).await?;
            tables.push(name);
        }
        let mut views = Vec::new();
        for (name, sql) in crate::sql::VIEWS {
            ctx.sql(sql).await.map_err(|e| anyhow::anyhow!("view {name}: {e}"))?;
            views.push(name.to_string());
        }
        Ok(Self { ctx, tables, views })
    }

    /// Runs one statement; errors carry DataFusion's message.
    pub async fn query(&self, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
        let df = self.ctx.sql(sql).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        df.collect().await.map_err(|e| anyhow::anyhow!("{e}"))
    }
}
