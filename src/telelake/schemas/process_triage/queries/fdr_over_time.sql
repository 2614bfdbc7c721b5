-- Spec 000 §6.2 "FDR Over Time": false discovery rate by week.
SELECT
    DATE_TRUNC('week', outcome_ts) AS week,
    COUNT(*) AS total_kills,
    SUM(CASE WHEN user_feedback = 'incorrect' THEN 1 ELSE 0 END) AS false_discoveries,
    SUM(CASE WHEN user_feedback = 'incorrect' THEN 1 ELSE 0 END)::FLOAT / NULLIF(COUNT(*), 0) AS fdr
FROM outcomes
WHERE decision = 'kill' AND user_feedback IS NOT NULL
GROUP BY 1
ORDER BY 1;
