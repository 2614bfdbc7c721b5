"""The built-in collector: samples this host's real processes into a process_triage store.

import telelake
from telelake.collect import collect, summary

with telelake.open(schema="process_triage") as store:
    result = collect(store, samples=3, interval=1.0)
    tables = summary(store, result.session_id)
"""

from telelake.collect.report import render, summary
from telelake.collect.session import CollectResult, collect

__all__ = ["CollectResult", "collect", "render", "summary"]
