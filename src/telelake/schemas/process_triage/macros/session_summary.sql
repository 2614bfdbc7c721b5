-- Spec 000 §6.3: one session's summary. The spec filters `r.session_id = sid` after the
-- join; filtering each table by the session first gives the same rows, and lets a
-- lookup of one session read only the files that hold it (session_id is a lookup column).
CREATE OR REPLACE MACRO session_summary(sid) AS TABLE
    SELECT
        r.session_id,
        r.mode,
        r.started_at,
        r.duration_ms,
        r.candidates_found,
        r.kills_successful,
        COUNT(DISTINCT o.pid) AS outcomes_recorded
    FROM (SELECT * FROM runs WHERE session_id = sid) r
    LEFT JOIN (SELECT * FROM outcomes WHERE session_id = sid) o ON r.session_id = o.session_id
    GROUP BY 1, 2, 3, 4, 5, 6;
