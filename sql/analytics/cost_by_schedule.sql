-- Cloud spend by the sites' pricing schedule.
SELECT
    d.network_price_schedule_id AS price_schedule,
    count(*) AS requests,
    sum(CASE WHEN a.origin = 'CLOUD' THEN 1 ELSE 0 END) AS cloud_answers,
    round(sum(a.cost), 6) AS total_cost,
    round(sum(a.cost) / count(*) * 1000, 6) AS cost_per_1k_requests
FROM decisions d
JOIN answers a ON a.request_id = d.request_id
GROUP BY d.network_price_schedule_id
ORDER BY price_schedule
