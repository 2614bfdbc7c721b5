-- Spec 000 §6.2 "Calibration Curve": predicted vs actual kill rates by score bucket.
-- The score is the model's, so it is read from proc_inference (outcomes carries a copy too,
-- which would make a bare `score` ambiguous in the join).
SELECT
    FLOOR(i.score / 10) * 10 AS score_bucket,
    COUNT(*) AS n,
    AVG(CASE WHEN decision = 'kill' THEN 1.0 ELSE 0.0 END) AS kill_rate,
    AVG(CASE WHEN action_successful THEN 1.0 ELSE 0.0 END) AS success_rate
FROM proc_inference i
JOIN outcomes o USING (session_id, pid)
GROUP BY 1
ORDER BY 1;
