"""The results table (rich) and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PASS = "PASS"
MISSED = "MISSED"
INFO = "info"
MIB = 1024 * 1024

# How a benchmark part reports a finished step: (name, seconds, note).
Progress = Callable[[str, float, str], None]


def quiet(name: str, seconds: float, note: str) -> None:
    """A Progress that says nothing (the default of every part's `run`)."""
    del name, seconds, note


@dataclass
class Line:
    """One line of the final table; `details` goes to the JSON only."""

    benchmark: str
    telelake: str
    peer: str = "-"
    ratio: float | None = None
    target: str = "-"
    status: str = INFO
    details: dict[str, Any] = field(default_factory=dict)


def rate(per_s: float, unit: str = "rows") -> str:
    return f"{per_s:,.0f} {unit}/s"


def ratio_line(
    benchmark: str,
    telelake_rows_per_s: float,
    peer_name: str,
    peer_rows_per_s: float,
    minimum: float,
    details: dict[str, Any],
) -> Line:
    """A throughput comparison whose target is `telelake / peer >= minimum`."""
    ratio = telelake_rows_per_s / peer_rows_per_s
    return Line(
        benchmark,
        rate(telelake_rows_per_s),
        f"{peer_name}: {rate(peer_rows_per_s)}",
        ratio,
        f">= {minimum:.1f}x",
        PASS if ratio >= minimum else MISSED,
        details,
    )


def mib(n: float) -> str:
    return f"{n / MIB:,.0f} MiB"


def render(lines: list[Line], console: Console, title: str) -> None:
    """Print the table, then a line naming every missed target."""
    table = Table(title=title, show_lines=False)
    table.add_column("benchmark")
    table.add_column("telelake", justify="right")
    table.add_column("peer", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_column("pass/fail", justify="center")
    styles = {PASS: "bold green", MISSED: "bold red", INFO: "dim"}
    for line in lines:
        table.add_row(
            line.benchmark,
            line.telelake,
            line.peer,
            "-" if line.ratio is None else f"{line.ratio:.2f}x",
            line.target,
            f"[{styles[line.status]}]{line.status}[/]",
        )
    console.print(table)
    missed = [line.benchmark for line in lines if line.status == MISSED]
    if missed:
        console.print(f"[bold red]MISSED {len(missed)} target(s):[/] " + "; ".join(missed))
    else:
        console.print("[bold green]All targets met.[/]")


def write_json(path: Path, lines: list[Line], extra: dict[str, Any]) -> None:
    """Write every line (with its details) and the run's context as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**extra, "results": [asdict(line) for line in lines]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
