-- Spec 000 §10.1 "Cross-Host Aggregation": fleet-wide statistics per host and day.
SELECT
    host_id,
    DATE_TRUNC('day', started_at) AS day,
    COUNT(*) AS sessions,
    SUM(kills_successful) AS total_kills
FROM runs
GROUP BY 1, 2
ORDER BY 1, 2;
