-- Routing samples: what the router saw (proposal features, network state,
-- score, threshold), what it did (placement, reason, propensity) and what it
-- cost (price, latency). edge_correct is known only where the cloud answered:
-- the edge call agreeing with the cloud's. One row per request.
SELECT
    d.request_id,
    d.site_id,
    p.request_prompt AS prompt,
    p.request_upload_bytes AS upload_bytes,
    p.request_download_bytes AS download_bytes,
    p.request_expected_output_tokens AS expected_output_tokens,
    p.mean_logprob,
    p.min_logprob,
    p.mean_entropy,
    p.schema_valid AS edge_schema_valid,
    p.output_tokens AS edge_output_tokens,
    p.unknown_word_share AS edge_unknown_word_share,
    d.network_uplink_mbps AS uplink_mbps,
    d.network_downlink_mbps AS downlink_mbps,
    d.network_rtt_ms AS rtt_ms,
    d.network_loss_rate AS loss_rate,
    d.network_price_schedule_id AS price_schedule_id,
    d.network_conservative_default AS conservative_state,
    d.score,
    d.threshold,
    d.fallback_cost,
    d.placement,
    d.reason,
    d.propensity,
    d.policy_name,
    d.policy_version,
    d.model_version,
    d.scorer_version,
    a.origin AS answered_by,
    a.network_down_fallback,
    a.cost,
    a.latency_ms,
    CASE WHEN a.origin = 'CLOUD' THEN json_same(a.tool_call_json, p.call_json) END AS edge_correct,
    d.decided_at
FROM decisions d
JOIN proposals p ON p.request_request_id = d.request_id
LEFT JOIN answers a ON a.request_id = d.request_id
ORDER BY d.request_id
