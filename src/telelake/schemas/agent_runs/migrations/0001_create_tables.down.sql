-- Undo 0001: drop every table, children first.
DROP TABLE IF EXISTS commits;
DROP TABLE IF EXISTS run_events;
DROP TABLE IF EXISTS agent_runs;
