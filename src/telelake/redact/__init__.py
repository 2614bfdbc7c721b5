"""Secret redaction: pattern rules kept as data (``rules.toml``) and a small engine.

See :mod:`telelake.redact.patterns`.
"""
