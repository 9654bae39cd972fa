-- Preference pairs: for cloud-answered requests where the edge proposed a
-- different call, the cloud's call is chosen and the edge's rejected.
SELECT
    a.request_id,
    p.request_prompt AS prompt,
    a.tool_call_json AS chosen,
    p.call_json AS rejected,
    p.schema_valid AS rejected_schema_valid,
    p.mean_logprob AS rejected_mean_logprob,
    p.model_version AS edge_model_version,
    a.model_version AS cloud_model
FROM answers a
JOIN proposals p ON p.request_request_id = a.request_id
WHERE a.origin = 'CLOUD' AND NOT a.network_down_fallback AND a.schema_valid
  AND NOT COALESCE(json_same(a.tool_call_json, p.call_json), false)
ORDER BY a.request_id
