"""Goals, the JSON document's ratio section, the stderr table and the README table.

`python -m bench.report RESULT.json` prints the README's Markdown table for a saved run.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Goal:
    key: str
    figure: str  # what is measured
    baseline: str  # against what
    unit: str
    minimum: float | None = None  # ratio >= minimum passes
    maximum: float | None = None  # ratio <= maximum passes

    def text(self) -> str:
        if self.minimum is not None:
            return f">= {self.minimum:g}x"
        if self.maximum is not None:
            return f"<= {self.maximum:g}x"
        return "-"

    def passes(self, ratio: float | None) -> bool | None:
        if ratio is None:
            return None
        if self.minimum is not None and ratio < self.minimum:
            return False
        return not (self.maximum is not None and ratio > self.maximum)


GOALS: tuple[Goal, ...] = (
    Goal(
        "issuance_vs_pgbench",
        "RecordTaskAccepted, 64 callers over all users (req/s)",
        "pgbench tpcb-like, 8 clients (tps)",
        "req/s",
        minimum=0.25,
    ),
    Goal(
        "hot_vs_spread",
        "RecordTaskAccepted, 64 callers, one user (req/s)",
        "the spread issuance figure (req/s)",
        "req/s",
        minimum=0.3,
    ),
    Goal(
        "read_vs_check",
        "GetProfile, 64 callers (req/s)",
        "health Check RPC on the same server (req/s)",
        "req/s",
        minimum=0.5,
    ),
    Goal(
        "memory_growth",
        "server RSS after the larger mixed-request count (MiB)",
        "server RSS after the smaller count (MiB)",
        "MiB",
        maximum=1.1,  # our threshold: more than 10 % growth over 9x the requests smells of a leak
    ),
)


def ratios_section(values: dict[str, tuple[float | None, float | None]]) -> dict[str, Any]:
    """{key: (figure, baseline)} -> the JSON `ratios` section with goals and pass/fail."""
    out: dict[str, Any] = {}
    for goal in GOALS:
        figure, baseline = values.get(goal.key, (None, None))
        ratio = round(figure / baseline, 3) if figure is not None and baseline else None
        out[goal.key] = {
            "figure": goal.figure,
            "value": figure,
            "baseline": goal.baseline,
            "baseline_value": baseline,
            "unit": goal.unit,
            "ratio": ratio,
            "goal": goal.text(),
            "pass": goal.passes(ratio),
        }
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:,.3g}"
    return str(value)


def _pass(value: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[value]


def text_table(doc: dict[str, Any]) -> str:
    """The short human table (the parent prints it to stderr)."""
    rows = [("ratio", "value", "baseline", "ratio", "goal", "")]
    for key, r in doc["ratios"].items():
        rows.append(
            (
                key,
                _fmt(r["value"]),
                _fmt(r["baseline_value"]),
                _fmt(r["ratio"]),
                r["goal"],
                _pass(r["pass"]),
            )
        )
    rows.append(("", "", "", "", "", ""))
    rows.append(("phase", "req/s", "p50 ms", "p99 ms", "errors", "cpu ms/req"))
    for name, p in doc["phases"].items():
        rows.append(
            (
                name,
                _fmt(p.get("rps", p.get("tps"))),
                _fmt(p.get("p50_ms")),
                _fmt(p.get("p99_ms")),
                _fmt(p.get("errors", p.get("failed"))),
                _fmt(p.get("server_cpu_ms_per_request")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    m = doc["machine"]
    lines.append(
        f"machine: {m['cpu_count']} CPU, Python {m['python']}, PostgreSQL {m['postgres']},"
        f" {m['date']}, quick={doc['quick']}, wall {doc['wall_s']:.1f} s,"
        f" {'OK' if doc['ok'] else 'FAILED: ' + '; '.join(doc['problems'])}"
    )
    return "\n".join(lines)


def markdown_table(doc: dict[str, Any]) -> str:
    """The README performance table: figure, value, baseline, ratio, goal, machine, date."""
    m = doc["machine"]
    machine = f"{m['cpu_count']} vCPU, {m['memory_gib']} GiB, PG {m['postgres']}, Py {m['python']}"
    date = m["date"][:10]
    lines = [
        "| figure | value | baseline | ratio | goal | machine | date |",
        "|---|---|---|---|---|---|---|",
    ]
    ph = doc["phases"]
    extra = {
        "issuance_vs_pgbench": ph.get("issuance_spread", {}),
        "hot_vs_spread": ph.get("issuance_hot", {}),
        "read_vs_check": ph.get("get_profile", {}),
    }
    for key, r in doc["ratios"].items():
        p = extra.get(key, {})
        lat = f" (p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms)" if p.get("p50_ms") else ""
        value = f"{_fmt(r['value'])} {r['unit']}{lat}"
        baseline = f"{_fmt(r['baseline_value'])} {r['unit']} — {r['baseline']}"
        verdict = _pass(r["pass"])
        lines.append(
            f"| {r['figure']} | {value} | {baseline} | {_fmt(r['ratio'])}x"
            f" | {r['goal']} ({verdict}) | {machine} | {date} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.report RESULT.json", file=sys.stderr)
        return 2
    print(markdown_table(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
