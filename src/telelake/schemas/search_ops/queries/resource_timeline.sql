SELECT ts_ms, cpu_pct, rss_bytes, io_read_bytes, io_write_bytes, queue_depth
FROM resource_samples
WHERE project_key = :project_key AND instance_id = :instance_id
  AND ts_ms BETWEEN :start_ms AND :end_ms
ORDER BY ts_ms ASC
