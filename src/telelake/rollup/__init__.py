"""Window rollups: declared aggregates of a table, kept up to date on every write."""
