CREATE TABLE agent_runs (
    run_id TEXT PRIMARY KEY,
    schema_version INTEGER NOT NULL,
    agent_name TEXT NOT NULL,
    agent_owner TEXT,
    job_type TEXT,
    trigger_type TEXT,
    start_time TEXT NOT NULL,
    end_time TEXT,
    status TEXT NOT NULL,
    items_discovered INTEGER,
    items_succeeded INTEGER,
    items_failed INTEGER,
    duration_ms INTEGER,
    metrics_json TEXT,
    input_summary TEXT,
    output_summary TEXT,
    error_summary TEXT,
    insight_id TEXT,
    product TEXT,
    platform TEXT,
    product_family TEXT,
    subdomain TEXT,
    git_repo TEXT,
    git_branch TEXT,
    git_run_tag TEXT,
    host TEXT,
    api_posted INTEGER NOT NULL CHECK (api_posted IN (0,1)),
    api_posted_at TEXT,
    api_retry_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE run_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES agent_runs(run_id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    payload_json TEXT,
    UNIQUE (run_id, event_type, timestamp)
);

CREATE TABLE commits (
    commit_hash TEXT PRIMARY KEY,
    run_id TEXT REFERENCES agent_runs(run_id) ON DELETE CASCADE,
    repo TEXT,
    branch TEXT,
    author TEXT,
    message TEXT,
    committed_at TEXT,
    files_changed INTEGER,
    insertions INTEGER,
    deletions INTEGER
);

CREATE INDEX idx_runs_agent
    ON agent_runs(agent_name);

CREATE INDEX idx_runs_status
    ON agent_runs(status);

CREATE INDEX idx_runs_start
    ON agent_runs(start_time);

CREATE INDEX idx_runs_api_posted
    ON agent_runs(api_posted);

CREATE INDEX idx_runs_insight
    ON agent_runs(insight_id);

CREATE INDEX idx_events_run
    ON run_events(run_id);

CREATE INDEX idx_commits_run
    ON commits(run_id);
