-- Spec 000 §6.3: one session's summary.
CREATE OR REPLACE MACRO session_summary(sid) AS TABLE
    SELECT
        r.session_id,
        r.mode,
        r.started_at,
        r.duration_ms,
        r.candidates_found,
        r.kills_successful,
        COUNT(DISTINCT o.pid) AS outcomes_recorded
    FROM runs r
    LEFT JOIN outcomes o ON r.session_id = o.session_id
    WHERE r.session_id = sid
    GROUP BY 1, 2, 3, 4, 5, 6;
