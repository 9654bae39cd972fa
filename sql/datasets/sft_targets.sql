-- SFT targets: requests answered by the cloud, with the cloud's tool call as
-- the target for the edge model. One row per request (first answer wins when
-- a request was delivered more than once). Network-down fallbacks are not
-- cloud answers and are left out; so are schema-invalid cloud answers.
SELECT
    a.request_id,
    p.request_site_id AS site_id,
    p.request_prompt AS prompt,
    a.tool_call_json AS target_call,
    p.call_json AS edge_call,
    json_same(a.tool_call_json, p.call_json) AS edge_agrees,
    p.model_version AS edge_model_version,
    a.model_version AS cloud_model,
    a.responded_at
FROM answers a
JOIN proposals p ON p.request_request_id = a.request_id
WHERE a.origin = 'CLOUD' AND NOT a.network_down_fallback AND a.schema_valid
ORDER BY a.request_id
