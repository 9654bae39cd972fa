-- Schema-valid and task-success rates of final answers by policy and edge
-- model version. Task success needs the request's evaluation reference, which
-- only synthetic (loadgen) requests carry; it is NULL for real traffic.
SELECT
    d.policy_name,
    d.model_version,
    count(*) AS answers,
    round(avg(CASE WHEN a.origin = 'CLOUD' THEN 1.0 ELSE 0.0 END), 4) AS cloud_rate,
    round(avg(CASE WHEN a.schema_valid THEN 1.0 ELSE 0.0 END), 4) AS schema_valid_rate,
    round(avg(CASE WHEN r.eval_reference_call IS NULL THEN NULL WHEN json_same(a.tool_call_json, r.eval_reference_call) THEN 1.0 ELSE 0.0 END), 4) AS task_success_rate
FROM decisions d
JOIN answers a ON a.request_id = d.request_id
LEFT JOIN requests r ON r.request_id = d.request_id
GROUP BY d.policy_name, d.model_version
ORDER BY d.policy_name, d.model_version
