-- alert_id breaks ties so equal update times come back in the same order every time.
SELECT alert_id, severity, category, reason_code, summary, opened_at_ms, updated_at_ms
FROM alerts_timeline
WHERE project_key = :project_key AND state != 'resolved'
ORDER BY updated_at_ms DESC, alert_id ASC
LIMIT :limit
