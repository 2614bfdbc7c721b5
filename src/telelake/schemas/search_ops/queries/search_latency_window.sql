SELECT window_start_ms, p50_latency_us, p95_latency_us, p99_latency_us, search_count
FROM search_summaries
WHERE project_key = :project_key AND instance_id = :instance_id AND window = :window
  AND window_start_ms BETWEEN :start_ms AND :end_ms
ORDER BY window_start_ms ASC
