-- Request-to-answer latency percentiles by where the answer came from.
SELECT
    origin,
    network_down_fallback,
    count(*) AS answers,
    round(approx_percentile_cont(latency_ms, 0.5), 1) AS p50_ms,
    round(approx_percentile_cont(latency_ms, 0.95), 1) AS p95_ms,
    round(max(latency_ms), 1) AS max_ms
FROM answers
GROUP BY origin, network_down_fallback
ORDER BY origin, network_down_fallback
