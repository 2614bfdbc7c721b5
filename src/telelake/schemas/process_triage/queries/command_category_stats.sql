-- Spec 000 §6.2 "Command Category Statistics": kill/spare ratios by command category.
SELECT
    cmd_category,
    COUNT(*) AS n,
    AVG(score) AS avg_score,
    SUM(CASE WHEN decision = 'kill' THEN 1 ELSE 0 END) AS kills,
    SUM(CASE WHEN decision = 'spare' THEN 1 ELSE 0 END) AS spares
FROM proc_features f
JOIN outcomes o USING (session_id, pid)
GROUP BY 1
ORDER BY n DESC;
