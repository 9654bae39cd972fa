//! The topic contract as Rust types. Each type mirrors one `.avsc` in
//! `schemas/` field for field (checked by `tests::rust_types_match_the_avsc`).

use crate::avro::{AvroType, Bytes, DecodeError, SchemaRegistry, TimestampMillis};
use crate::{avro_enum, avro_record};

avro_enum! {
    /// Difficulty tier of a synthetic request (evaluation only).
    pub enum Difficulty: "netgpt.Difficulty" { Easy = "EASY", Medium = "MEDIUM", Hard = "HARD" }
}

avro_enum! {
    /// Coarse link class of the network model.
    pub enum LinkRegime: "netgpt.LinkRegime" { Good = "GOOD", Mid = "MID", Bad = "BAD" }
}

avro_enum! {
    /// Where a request's final answer comes from.
    pub enum Placement: "netgpt.Placement" { Edge = "EDGE", Cloud = "CLOUD" }
}

avro_enum! {
    /// Why the router chose a placement.
    pub enum DecisionReason: "netgpt.DecisionReason" {
        ScoreAboveThreshold = "SCORE_ABOVE_THRESHOLD",
        ScoreBelowThreshold = "SCORE_BELOW_THRESHOLD",
        Exploration = "EXPLORATION",
        FixedPlacement = "FIXED_PLACEMENT",
        InvalidEdgeCall = "INVALID_EDGE_CALL",
        PreEdgeClassifier = "PRE_EDGE_CLASSIFIER",
    }
}

avro_enum! {
    /// Which model produced an answer.
    pub enum Origin: "netgpt.Origin" { Edge = "EDGE", Cloud = "CLOUD" }
}

avro_enum! {
    /// Class of a dead-lettered record's failure.
    pub enum DeadLetterKind: "netgpt.DeadLetterKind" {
        Undecodable = "UNDECODABLE",
        UnknownSchema = "UNKNOWN_SCHEMA",
        UnexpectedRecord = "UNEXPECTED_RECORD",
        Rejected = "REJECTED",
    }
}

avro_record! {
    /// A tool-calling request as it enters netgpt at a site.
    pub struct ToolRequest: "netgpt.ToolRequest" {
        pub request_id: uuid::Uuid,
        pub site_id: String,
        pub tenant: String,
        pub prompt: String,
        pub tool_catalog_version: String,
        pub upload_bytes: i64,
        pub download_bytes: i64,
        pub expected_output_tokens: i32,
        pub created_at: TimestampMillis,
        /// Evaluation only: never read by routing or model code.
        pub eval_reference_call: Option<String>,
        /// Evaluation only: never read by routing or model code.
        pub eval_difficulty: Option<Difficulty>,
    }
}

avro_record! {
    /// One network measurement of a site's link to the cloud.
    pub struct SiteTelemetry: "netgpt.SiteTelemetry" {
        pub site_id: String,
        pub uplink_mbps: f64,
        pub downlink_mbps: f64,
        pub rtt_ms: f64,
        pub loss_rate: f64,
        pub price_schedule_id: String,
        pub link_regime: Option<LinkRegime>,
        pub observed_at: TimestampMillis,
    }
}

avro_record! {
    /// The edge model's proposed tool call with its scoring features.
    pub struct EdgeProposal: "netgpt.EdgeProposal" {
        pub request: ToolRequest,
        pub model_version: String,
        pub call_json: String,
        pub tool_name: Option<String>,
        pub schema_valid: bool,
        pub schema_error: Option<String>,
        pub mean_logprob: f64,
        pub min_logprob: f64,
        pub mean_entropy: f64,
        pub output_tokens: i32,
        pub unknown_word_share: Option<f64>,
        pub edge_latency_ms: f64,
        pub proposed_at: TimestampMillis,
    }
}

avro_record! {
    /// The network state S a decision used.
    pub struct NetworkSnapshot: "netgpt.NetworkSnapshot" {
        pub uplink_mbps: f64,
        pub downlink_mbps: f64,
        pub rtt_ms: f64,
        pub loss_rate: f64,
        pub price_schedule_id: String,
        pub telemetry_age_ms: Option<i64>,
        pub conservative_default: bool,
    }
}

avro_record! {
    /// The router's keep-or-fall-back decision for one request.
    pub struct RoutingDecision: "netgpt.RoutingDecision" {
        pub request_id: uuid::Uuid,
        pub site_id: String,
        pub placement: Placement,
        pub score: f64,
        pub threshold: f64,
        pub reason: DecisionReason,
        pub reason_detail: Option<String>,
        pub network: NetworkSnapshot,
        pub fallback_cost: f64,
        pub policy_name: String,
        pub policy_version: String,
        pub model_version: String,
        pub scorer_version: String,
        pub propensity: f64,
        pub shadow_policy: Option<String>,
        pub shadow_placement: Option<Placement>,
        pub shadow_threshold: Option<f64>,
        pub decided_at: TimestampMillis,
    }
}

avro_record! {
    /// A fallback sent to the cloud gateway.
    pub struct CloudRequest: "netgpt.CloudRequest" {
        pub proposal: EdgeProposal,
        pub decision: RoutingDecision,
    }
}

avro_record! {
    /// The final answer to a request.
    pub struct AgentResponse: "netgpt.AgentResponse" {
        pub request_id: uuid::Uuid,
        pub site_id: String,
        pub origin: Origin,
        pub tool_call_json: String,
        pub schema_valid: bool,
        pub network_down_fallback: bool,
        pub latency_ms: f64,
        pub tokens_in: i32,
        pub tokens_out: i32,
        pub cost: f64,
        pub model_version: String,
        pub policy_version: Option<String>,
        pub responded_at: TimestampMillis,
    }
}

avro_record! {
    /// A new routing policy / scorer version.
    pub struct PolicyUpdate: "netgpt.PolicyUpdate" {
        pub channel: String,
        pub version: String,
        pub policy_name: String,
        pub params_json: String,
        pub weights_uri: Option<String>,
        pub scorer_version: String,
        pub scorer_uri: Option<String>,
        pub model_version: String,
        pub published_at: TimestampMillis,
    }
}

avro_record! {
    /// A new edge model version.
    pub struct ModelUpdate: "netgpt.ModelUpdate" {
        pub channel: String,
        pub version: String,
        pub parent_version: Option<String>,
        pub weights_uri: String,
        pub weights_sha256: String,
        pub metrics_json: String,
        pub published_at: TimestampMillis,
    }
}

avro_record! {
    /// An input record a stage could not process.
    pub struct DeadLetter: "netgpt.DeadLetter" {
        pub id: uuid::Uuid,
        pub stage: String,
        pub source_topic: String,
        pub source_partition: i32,
        pub source_offset: i64,
        pub source_key: Option<Bytes>,
        pub payload: Bytes,
        pub error_kind: DeadLetterKind,
        pub error: String,
        pub failed_at: TimestampMillis,
    }
}

/// A top-level record of the contract: it has a topic key and a schema id.
pub trait Record: AvroType + Send + Sync + 'static {
    const FULL_NAME: &'static str;
    /// Kafka key: site id for telemetry, the update channel for updates, the
    /// request id otherwise, so consumers can deduplicate and compaction works.
    fn key(&self) -> String;

    fn to_bytes(&self) -> Vec<u8> {
        SchemaRegistry::embedded().encode_as(Self::FULL_NAME, self)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        SchemaRegistry::embedded().decode_as(Self::FULL_NAME, bytes)
    }
}

macro_rules! records {
    ($($ty:ident => |$s:ident| $key:expr),+ $(,)?) => {
        $(impl Record for $ty {
            const FULL_NAME: &'static str = $ty::FULL_NAME;
            fn key(&self) -> String {
                let $s = self;
                $key
            }
        })+

        /// Any top-level record, for code that handles every topic (tail, archive, tests).
        #[derive(Debug, Clone, PartialEq, serde::Serialize)]
        #[serde(untagged)]
        // Records are moved once per message; boxing the big ones would cost an
        // allocation each for no measurable gain.
        #[allow(clippy::large_enum_variant)]
        pub enum AnyRecord {
            $($ty($ty)),+
        }

        impl AnyRecord {
            /// Decodes any framed record of the contract, whatever its schema id.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
                Self::decode_with(SchemaRegistry::embedded(), bytes)
            }

            /// Decodes with the schema ids of `registry`.
            pub fn decode_with(registry: &SchemaRegistry, bytes: &[u8]) -> Result<Self, DecodeError> {
                let name = registry.record_of(bytes)?.record.as_str();
                match name {
                    $($ty::FULL_NAME => Ok(AnyRecord::$ty(registry.decode_as($ty::FULL_NAME, bytes)?)),)+
                    other => Err(DecodeError::Invalid(format!("record {other} has no Rust type"))),
                }
            }

            pub fn to_bytes(&self) -> Vec<u8> {
                match self { $(AnyRecord::$ty(r) => r.to_bytes()),+ }
            }

            pub fn key(&self) -> String {
                match self { $(AnyRecord::$ty(r) => r.key()),+ }
            }

            pub fn record_name(&self) -> &'static str {
                match self { $(AnyRecord::$ty(_) => $ty::FULL_NAME),+ }
            }

            /// Checks every Rust type against its newest registered schema.
            pub fn check_contract(registry: &SchemaRegistry) -> Result<(), String> {
                $(
                    let s = registry.latest($ty::FULL_NAME).ok_or(concat!("no schema for ", stringify!($ty)))?;
                    <$ty as AvroType>::check(&s.schema, &s.names)?;
                )+
                Ok(())
            }
        }

        $(impl From<$ty> for AnyRecord {
            fn from(r: $ty) -> Self { AnyRecord::$ty(r) }
        })+
    };
}

records! {
    ToolRequest => |r| r.request_id.to_string(),
    SiteTelemetry => |r| r.site_id.clone(),
    EdgeProposal => |r| r.request.request_id.to_string(),
    RoutingDecision => |r| r.request_id.to_string(),
    CloudRequest => |r| r.decision.request_id.to_string(),
    AgentResponse => |r| r.request_id.to_string(),
    PolicyUpdate => |r| r.channel.clone(),
    ModelUpdate => |r| r.channel.clone(),
    DeadLetter => |r| r.source_key.as_ref().map(|k| String::from_utf8_lossy(&k.0).into_owned()).unwrap_or_default(),
}
