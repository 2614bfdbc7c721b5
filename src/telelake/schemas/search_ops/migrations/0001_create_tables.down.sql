-- Undo 0001: drop every table, children first.
DROP TABLE IF EXISTS evidence_links;
DROP TABLE IF EXISTS alerts_timeline;
DROP TABLE IF EXISTS resource_samples;
DROP TABLE IF EXISTS index_inventory_snapshots;
DROP TABLE IF EXISTS embedding_job_snapshots;
DROP TABLE IF EXISTS search_summaries;
DROP TABLE IF EXISTS search_events;
DROP TABLE IF EXISTS instances;
DROP TABLE IF EXISTS projects;
