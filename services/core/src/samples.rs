//! Deterministic, varied example records of every type, for tests, benchmarks
//! and the synthetic load generator's telemetry. Not used by any decision code.

use rand::Rng;
use uuid::Uuid;

use crate::avro::{Bytes, TimestampMillis};
use crate::records::*;

fn pick<'a, R: Rng>(rng: &mut R, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn uuid<R: Rng>(rng: &mut R) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

pub fn tool_request<R: Rng>(rng: &mut R) -> ToolRequest {
    let prompt = format!(
        "show me the {} of cell {}{:02} over the last {} hours",
        pick(rng, &["download throughput", "PRB utilisation", "call drop rate", "latency"]),
        (b'A' + rng.random_range(0..26u8)) as char,
        rng.random_range(0..100),
        rng.random_range(1..48)
    );
    ToolRequest {
        request_id: uuid(rng),
        site_id: format!("S{:03}", rng.random_range(0..8)),
        tenant: pick(rng, &["noc", "field-ops", "planning"]).to_string(),
        upload_bytes: 2048 + prompt.len() as i64,
        download_bytes: rng.random_range(200..800),
        expected_output_tokens: rng.random_range(20..60),
        prompt,
        tool_catalog_version: "v1".into(),
        created_at: TimestampMillis(1_790_000_000_000 + rng.random_range(0..10_000_000)),
        eval_reference_call: rng.random_bool(0.5).then(|| r#"{"tool":"get_cell_kpi","arguments":{"cell_id":"A01","kpi":"dl_tput"}}"#.to_string()),
        eval_difficulty: rng.random_bool(0.5).then(|| *pick_enum(rng, Difficulty::VARIANTS)),
    }
}

fn pick_enum<'a, R: Rng, T>(rng: &mut R, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

pub fn site_telemetry<R: Rng>(rng: &mut R) -> SiteTelemetry {
    SiteTelemetry {
        site_id: format!("S{:03}", rng.random_range(0..8)),
        uplink_mbps: rng.random_range(1.0..100.0),
        downlink_mbps: rng.random_range(1.0..200.0),
        rtt_ms: rng.random_range(10.0..300.0),
        loss_rate: rng.random_range(0.0..0.02),
        price_schedule_id: pick(rng, &["flat", "peak-offpeak"]).into(),
        link_regime: rng.random_bool(0.7).then(|| *pick_enum(rng, LinkRegime::VARIANTS)),
        observed_at: TimestampMillis(1_790_000_000_000 + rng.random_range(0..10_000_000)),
    }
}

pub fn edge_proposal<R: Rng>(rng: &mut R) -> EdgeProposal {
    let valid = rng.random_bool(0.8);
    EdgeProposal {
        request: tool_request(rng),
        model_version: "sft-0001".into(),
        call_json: r#"{"tool":"get_cell_kpi","arguments":{"cell_id":"A01"}}"#.into(),
        tool_name: valid.then(|| "get_cell_kpi".to_string()),
        schema_valid: valid,
        schema_error: (!valid).then(|| "missing required property kpi".to_string()),
        mean_logprob: -rng.random_range(0.0..2.0),
        min_logprob: -rng.random_range(0.0..8.0),
        mean_entropy: rng.random_range(0.0..3.0),
        output_tokens: rng.random_range(5..40),
        unknown_word_share: rng.random_bool(0.8).then(|| rng.random_range(0.0..1.0)),
        edge_latency_ms: rng.random_range(1.0..40.0),
        proposed_at: TimestampMillis(1_790_000_000_000),
    }
}

pub fn routing_decision<R: Rng>(rng: &mut R) -> RoutingDecision {
    let score = rng.random_range(0.0..1.0);
    let threshold = rng.random_range(0.0..1.0);
    RoutingDecision {
        request_id: uuid(rng),
        site_id: "S001".into(),
        placement: if score < threshold { Placement::Cloud } else { Placement::Edge },
        score,
        threshold,
        reason: *pick_enum(rng, DecisionReason::VARIANTS),
        reason_detail: rng.random_bool(0.3).then(|| "telemetry stale (12 s); used the conservative state".to_string()),
        network: NetworkSnapshot {
            uplink_mbps: 20.0,
            downlink_mbps: 40.0,
            rtt_ms: 80.0,
            loss_rate: 0.0,
            price_schedule_id: "flat".into(),
            telemetry_age_ms: rng.random_bool(0.9).then(|| rng.random_range(0..5000)),
            conservative_default: rng.random_bool(0.1),
        },
        fallback_cost: rng.random_range(0.0..0.5),
        policy_name: "funcdyn".into(),
        policy_version: "p-0001".into(),
        model_version: "sft-0001".into(),
        scorer_version: "s-0001".into(),
        propensity: 1.0,
        shadow_policy: rng.random_bool(0.5).then(|| "policynet".to_string()),
        shadow_placement: rng.random_bool(0.5).then_some(Placement::Edge),
        shadow_threshold: rng.random_bool(0.5).then_some(0.4),
        decided_at: TimestampMillis(1_790_000_000_123),
    }
}

pub fn cloud_request<R: Rng>(rng: &mut R) -> CloudRequest {
    CloudRequest { proposal: edge_proposal(rng), decision: routing_decision(rng) }
}

pub fn agent_response<R: Rng>(rng: &mut R) -> AgentResponse {
    let cloud = rng.random_bool(0.3);
    AgentResponse {
        request_id: uuid(rng),
        site_id: "S002".into(),
        origin: if cloud { Origin::Cloud } else { Origin::Edge },
        tool_call_json: r#"{"tool":"list_alarms","arguments":{"site_id":"S002"}}"#.into(),
        schema_valid: true,
        network_down_fallback: rng.random_bool(0.05),
        latency_ms: rng.random_range(5.0..900.0),
        tokens_in: if cloud { 812 } else { 0 },
        tokens_out: if cloud { 31 } else { 0 },
        cost: if cloud { 0.0021 } else { 0.0 },
        model_version: "sft-0001".into(),
        policy_version: Some("p-0001".into()),
        responded_at: TimestampMillis(1_790_000_000_456),
    }
}

pub fn policy_update<R: Rng>(rng: &mut R) -> PolicyUpdate {
    PolicyUpdate {
        channel: "active".into(),
        version: format!("p-{:04}", rng.random_range(0..10_000)),
        policy_name: "funcdyn".into(),
        params_json: r#"{"theta":[0.9,0.001,0.02,0.1]}"#.into(),
        weights_uri: rng.random_bool(0.5).then(|| "file:///tmp/netgpt/policies/abc.safetensors".to_string()),
        scorer_version: "s-0001".into(),
        scorer_uri: None,
        model_version: "sft-0001".into(),
        published_at: TimestampMillis(1_790_000_000_789),
    }
}

pub fn model_update<R: Rng>(rng: &mut R) -> ModelUpdate {
    ModelUpdate {
        channel: "edge".into(),
        version: format!("m-{:04}", rng.random_range(0..10_000)),
        parent_version: rng.random_bool(0.5).then(|| "sft-0001".to_string()),
        weights_uri: "file:///tmp/netgpt/models/abc".into(),
        weights_sha256: "00".repeat(32),
        metrics_json: r#"{"task_success":0.91}"#.into(),
        published_at: TimestampMillis(1_790_000_000_999),
    }
}

pub fn dead_letter<R: Rng>(rng: &mut R) -> DeadLetter {
    DeadLetter {
        id: uuid(rng),
        stage: "edge".into(),
        source_topic: "netgpt.tool-requests".into(),
        source_partition: rng.random_range(0..3),
        source_offset: rng.random_range(0..1_000_000),
        source_key: rng.random_bool(0.5).then(|| Bytes(b"key".to_vec())),
        payload: Bytes((0..rng.random_range(0..64)).map(|_| rng.random()).collect()),
        error_kind: *pick_enum(rng, DeadLetterKind::VARIANTS),
        error: "magic byte is 0x7b, expected 0x00".into(),
        failed_at: TimestampMillis(1_790_000_001_000),
    }
}

/// One sample of every top-level record type.
pub fn one_of_each<R: Rng>(rng: &mut R) -> Vec<AnyRecord> {
    vec![
        tool_request(rng).into(),
        site_telemetry(rng).into(),
        edge_proposal(rng).into(),
        routing_decision(rng).into(),
        cloud_request(rng).into(),
        agent_response(rng).into(),
        policy_update(rng).into(),
        model_update(rng).into(),
        dead_letter(rng).into(),
    ]
}
