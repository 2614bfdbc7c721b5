"""The lake tier: hive-partitioned Parquet files queried through DuckDB."""
