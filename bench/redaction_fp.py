"""False positives of the secret-pattern rules on ordinary command lines.

    python -m bench.redaction_fp [--snapshots N]

Two corpora of command lines that hold no secret:

1. this machine's processes as the collector samples them (`telelake.collect.sampler`:
   argv from /proc, joined with spaces), N snapshots a second apart, each distinct
   command line counted once;
2. `tests/fixtures/ordinary_cmdlines.txt`: 180 hand-written ordinary command lines,
   many of them near misses (ports after -p, users after -u, the words token/password,
   user@host); lines marked `!` there are known false positives and count as such.

A line is a false positive when redaction changes it. For this machine's lines the
report names the rules and the program only, never the line (it may hold a real secret:
then it is not a false positive, and you should look).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections import Counter
from pathlib import Path

from telelake.collect.sampler import Sampler
from telelake.redact.patterns import redact_text
from telelake.redact.policy import default_rules

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ordinary_cmdlines.txt"
KNOWN = "! "  # a fixture line that is a known false positive


def machine_cmdlines(snapshots: int) -> list[str]:
    """The distinct command lines of this machine's processes over `snapshots` samples."""
    sampler = Sampler()
    seen: dict[str, None] = {}
    for seq in range(snapshots):
        rows = sampler.snapshot("fp", seq, dt.datetime.now(dt.UTC))
        for row in rows:
            if row.get("cmdline"):
                seen.setdefault(row["cmdline"], None)
        if seq + 1 < snapshots:
            time.sleep(1)
    return list(seen)


def fixture_cmdlines(path: Path = FIXTURE) -> list[str]:
    """The fixture's command lines (known false positives without their mark)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix(KNOWN) for line in lines if line and not line.startswith("#")]


def changed(lines: list[str]) -> list[tuple[str, list[str]]]:
    """The lines redaction changes, each with the rules that fired."""
    rules = default_rules()
    out = []
    for line in lines:
        fired = redact_text(line, rules)[1]
        if fired:
            out.append((line, fired))
    return out


def report(name: str, lines: list[str], *, show_text: bool) -> tuple[int, int]:
    """Print one corpus's false-positive rate; (changed, total)."""
    hits = changed(lines)
    rate = len(hits) / len(lines) if lines else 0.0
    print(f"{name}: {len(hits)}/{len(lines)} command lines changed = {rate:.2%}")
    for line, fired in hits:
        what = line if show_text else (line.split() or ["?"])[0]
        print(f"  {', '.join(fired)}: {what}")
    return len(hits), len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=3, help="collector samples to take")
    args = parser.parse_args()
    print(f"{len(default_rules())} rules")
    totals = Counter[str]()
    for name, lines, show in (
        ("this machine (collector samples)", machine_cmdlines(args.snapshots), False),
        (f"fixture {FIXTURE.name}", fixture_cmdlines(), True),
    ):
        hits, total = report(name, lines, show_text=show)
        totals["changed"] += hits
        totals["total"] += total
    rate = totals["changed"] / max(totals["total"], 1)
    print(f"overall: {totals['changed']}/{totals['total']} = {rate:.2%}")


if __name__ == "__main__":
    main()
