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
    full_only: bool = False  # the goal is stated for the full run's sizes; --quick reports n/a

    def text(self) -> str:
        scope = " (full run)" if self.full_only else ""
        if self.minimum is not None:
            return f">= {self.minimum:g}x{scope}"
        if self.maximum is not None:
            return f"<= {self.maximum:g}x{scope}"
        return "-"

    def passes(self, ratio: float | None, quick: bool = False) -> bool | None:
        if ratio is None or (self.minimum is None and self.maximum is None):
            return None
        if quick and self.full_only:
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
        "daily_maintenance_vs_update",
        "daily maintenance job over every profile (s)",
        "bare UPDATE of the same profiles table (s)",
        "s",
        maximum=2.0,
        # at --quick's 20,000 profiles the job's fixed costs (a few statements, commits and
        # audit events) weigh as much as the fold; the goal is for 1,000,000
        full_only=True,
    ),
    Goal(
        "badge_evaluation_vs_select",
        "badge evaluation of the bench's badge users (s)",
        "bare SELECT of the same users' metrics (s)",
        "s",
    ),
    Goal(
        "memory_growth",
        "server RSS after the larger mixed-request count (MiB)",
        "server RSS after the smaller count (MiB)",
        "MiB",
        maximum=1.1,  # our threshold: more than 10 % growth over 9x the requests smells of a leak
    ),
)


def ratios_section(
    values: dict[str, tuple[float | None, float | None]], quick: bool = False
) -> dict[str, Any]:
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
            "pass": goal.passes(ratio, quick),
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


PHASE_HEADER = (
    "phase",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "srv ms",
    "pg ms",
    "cli ms",
    "other",
    "all ms",
    "busy %",
)


def cpu_cells(cpu: dict[str, Any] | None) -> tuple[str, ...]:
    """srv, pg, cli, other, all (ms per request) and busy % from a phase's `cpu` section."""
    if not cpu:
        return ("n/a",) * 6
    ms = cpu["ms_per_request"]
    client = ms.get("pgbench", ms.get("clients"))
    return (
        _fmt(ms.get("server")),
        _fmt(ms.get("postgres")),
        _fmt(client),
        _fmt(ms.get("other")),
        _fmt(ms.get("machine")),
        _fmt(cpu.get("machine_busy_pct")),
    )


def text_table(doc: dict[str, Any]) -> str:
    """The short human table (the parent prints it to stderr)."""
    rows: list[tuple[str, ...]] = [("ratio", "value", "baseline", "ratio", "goal", "")]
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
    width = len(rows[0])
    rows = [row + ("",) * (len(PHASE_HEADER) - width) for row in rows]
    rows.append(("",) * len(PHASE_HEADER))
    rows.append(PHASE_HEADER)
    for name, p in doc["phases"].items():
        rows.append(
            (
                name,
                _fmt(p.get("rps", p.get("tps"))),
                _fmt(p.get("p50_ms")),
                _fmt(p.get("p99_ms")),
                _fmt(p.get("errors", p.get("failed"))),
                *cpu_cells(p.get("cpu")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(PHASE_HEADER))]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    for name, p in doc["phases"].items():
        other = (p.get("cpu") or {}).get("other_cores") or {}
        if other:
            listed = ", ".join(f"{k} {v:g}" for k, v in other.items())
            lines.append(f"other CPU in {name}, cores: {listed}")
    lines.append(
        "CPU ms per request (per transaction for pgbench): srv = server process tree, pg ="
        " PostgreSQL, cli = bench client processes (pgbench for pgbench), other = rest of the"
        " machine, all = whole machine busy; busy % of all cores."
    )
    m = doc["machine"]
    lines.append(
        f"machine: {m['cpu_count']} CPU, Python {m['python']}, PostgreSQL {m['postgres']},"
        f" {m['date']}, quick={doc['quick']}, wall {doc['wall_s']:.1f} s,"
        f" SMARTSTART_WORKERS={_workers(m.get('smartstart_workers'))},"
        f" server processes at start {m.get('server_processes_at_start', '?')},"
        f" {'OK' if doc['ok'] else 'FAILED: ' + '; '.join(doc['problems'])}"
    )
    return "\n".join(lines)


def _num(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def markdown_table(doc: dict[str, Any]) -> str:
    """The README performance table: figure, value, baseline, ratio, goal, machine, date."""
    m = doc["machine"]
    machine = f"{m['cpu_count']} vCPU, {m['memory_gib']:.0f} GiB, PG {m['postgres']}"
    date = m["date"][:10]
    ph = doc["phases"]
    mem = doc.get("memory", {})
    r = doc["ratios"]

    def lat(name: str) -> str:
        p = ph.get(name, {})
        if p.get("p50_ms") is None:
            return ""
        return f" (p50 {_num(p['p50_ms'])} ms, p99 {_num(p['p99_ms'])} ms)"

    def row(key: str, figure: str, value: str, baseline: str) -> str:
        x = r[key]
        ratio = "n/a" if x["ratio"] is None else f"{x['ratio']:.3f}x"
        return (
            f"| {figure} | {value} | {baseline} | {ratio}"
            f" | {x['goal']} ({_pass(x['pass'])}) | {machine} | {date} |"
        )

    g = doc.get("gamification") or {}
    maintenance, badges = g.get("daily_maintenance", {}), g.get("badge_evaluation", {})
    n1 = mem.get("checkpoint_1_requests", "?")
    n2 = mem.get("checkpoint_2_requests", "?")
    lines = [
        "| figure | value | baseline | ratio | goal | machine | date |",
        "|---|---|---|---|---|---|---|",
        row(
            "issuance_vs_pgbench",
            "Issuance: RecordTaskAccepted, 64 callers over all users",
            f"{_num(r['issuance_vs_pgbench']['value'])} req/s{lat('issuance_spread')}",
            f"pgbench tpcb-like, 8 clients: {_num(r['issuance_vs_pgbench']['baseline_value'])}"
            f" tps{lat('pgbench_tpcb_like')}",
        ),
        row(
            "hot_vs_spread",
            "Hot wallet: RecordTaskAccepted, 64 callers, one user",
            f"{_num(r['hot_vs_spread']['value'])} req/s{lat('issuance_hot')}",
            f"spread issuance: {_num(r['hot_vs_spread']['baseline_value'])} req/s",
        ),
        row(
            "read_vs_check",
            "Read path: GetProfile, 64 callers",
            f"{_num(r['read_vs_check']['value'])} req/s{lat('get_profile')}",
            f"health Check: {_num(r['read_vs_check']['baseline_value'])} req/s"
            f"{lat('health_check')}",
        ),
        row(
            "daily_maintenance_vs_update",
            f"Daily maintenance over {g.get('profiles_in_table', 0):,} profiles",
            f"{_num(maintenance.get('job_s'))} s",
            f"bare UPDATE of the table: {_num(maintenance.get('bare_update_s'))} s",
        ),
        row(
            "badge_evaluation_vs_select",
            f"Badge evaluation of {badges.get('users', 0):,} users",
            f"{_num(badges.get('users_per_s'))} users/s",
            f"bare SELECT of their metrics: {_num(badges.get('bare_select_users_per_s'))} users/s",
        ),
        row(
            "memory_growth",
            f"Memory: server RSS after {n2:,} mixed requests",
            f"{r['memory_growth']['value']:.1f} MiB",
            f"RSS after {n1:,}: {r['memory_growth']['baseline_value']:.1f} MiB",
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.report RESULT.json", file=sys.stderr)
        return 2
    print(markdown_table(json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def _workers(value: Any) -> str:
    if value is None:
        return "unset"
    return "0 (one per core)" if value == 0 else str(value)
