//! The SQL files of `sql/`, compiled in so the binary works from any directory.

/// Deduplicated views (one row per request id: the bus is at-least-once),
/// created in every session before the other SQL runs.
pub const VIEWS: &[(&str, &str)] = &[
    ("requests", include_str!("../../../sql/views/requests.sql")),
    ("proposals", include_str!("../../../sql/views/proposals.sql")),
    ("decisions", include_str!("../../../sql/views/decisions.sql")),
    ("answers", include_str!("../../../sql/views/answers.sql")),
];

/// (name, SQL) of every dataset query, written by `netgpt dataset build`.
pub const DATASETS: &[(&str, &str)] = &[
    ("sft_targets", include_str!("../../../sql/datasets/sft_targets.sql")),
    ("preference_pairs", include_str!("../../../sql/datasets/preference_pairs.sql")),
    ("routing_samples", include_str!("../../../sql/datasets/routing_samples.sql")),
];

/// (name, SQL) of every analytics query.
pub const ANALYTICS: &[(&str, &str)] = &[
    ("offload_by_site_hour_regime", include_str!("../../../sql/analytics/offload_by_site_hour_regime.sql")),
    ("cost_by_schedule", include_str!("../../../sql/analytics/cost_by_schedule.sql")),
    ("latency_by_placement", include_str!("../../../sql/analytics/latency_by_placement.sql")),
    ("quality_by_policy_and_model", include_str!("../../../sql/analytics/quality_by_policy_and_model.sql")),
];
