-- Spec 000 §6.3: the n most recent sessions.
CREATE OR REPLACE MACRO recent_sessions(n) AS TABLE
    SELECT * FROM runs
    ORDER BY started_at DESC
    LIMIT n;
