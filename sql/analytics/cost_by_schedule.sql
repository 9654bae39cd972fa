-- Cloud spend by the sites' pricing schedule.
WITH decisions AS (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY _timestamp, _partition, _offset) AS copy
    FROM routing_decisions
),
answers AS (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY _timestamp, _partition, _offset) AS copy
    FROM agent_responses
)
SELECT
    d.network_price_schedule_id AS price_schedule,
    count(*) AS requests,
    sum(CASE WHEN a.origin = 'CLOUD' THEN 1 ELSE 0 END) AS cloud_answers,
    round(sum(a.cost), 6) AS total_cost,
    round(sum(a.cost) / count(*) * 1000, 6) AS cost_per_1k_requests
FROM decisions d
JOIN answers a ON a.request_id = d.request_id AND a.copy = 1
WHERE d.copy = 1
GROUP BY d.network_price_schedule_id
ORDER BY price_schedule
