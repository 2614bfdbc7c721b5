"""The log tier: append-only NDJSON event files (`raw/events_YYYYMMDD.ndjson`).

`telelake.log.ndjson` holds the file format: encoding, locked durable appends and a
reader that survives torn lines left by crashed writers.
"""
