-- Offload rate by site, hour and link regime. The regime is read off the RTT
-- the decision used (the GOOD / MID / BAD presets are 20 / 80 / 300 ms).
SELECT
    site_id,
    date,
    hour,
    CASE WHEN network_rtt_ms < 50 THEN 'GOOD' WHEN network_rtt_ms < 150 THEN 'MID' ELSE 'BAD' END AS regime,
    count(*) AS requests,
    sum(CASE WHEN placement = 'CLOUD' THEN 1 ELSE 0 END) AS to_cloud,
    round(avg(CASE WHEN placement = 'CLOUD' THEN 1.0 ELSE 0.0 END), 4) AS offload_rate
FROM decisions
GROUP BY site_id, date, hour, regime
ORDER BY site_id, date, hour, regime
