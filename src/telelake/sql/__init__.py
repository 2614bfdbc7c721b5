"""The sql tier: relational tables in the store's SQL database (SQLite embedded)."""
