-- Request-to-answer latency percentiles by where the answer came from.
SELECT
    origin,
    network_down_fallback,
    count(*) AS answers,
    round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), 1) AS p50_ms,
    round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), 1) AS p95_ms,
    round(max(latency_ms), 1) AS max_ms
FROM answers
GROUP BY origin, network_down_fallback
ORDER BY origin, network_down_fallback
