"""Optional py-spy sampling of the server during a phase, and a summary of its stacks.

`python -m bench --profile-dir DIR` records the server while the spread-issuance phase runs
(`py-spy record --subprocesses --format raw`, collapsed stacks of `smartstart serve` and
every process under it, so SMARTSTART_WORKERS workers too) to DIR/issuance_spread.txt; the
read path (GetProfile) goes to DIR/get_profile.txt. Sampling costs CPU on a small machine,
so the JSON marks a profiled run and its figures are not the ones to quote.

`python -m bench.profile FILE [--top N] [--match SUBSTR ...]` prints inclusive and self
time per function from a collapsed-stack file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Path prefixes cut from frames: installed packages, this checkout, the main checkout.
_MARKERS = ("site-packages/", str(Path(__file__).resolve().parents[1]) + "/", "/work/main/")


def py_spy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    return str(exe) if exe.exists() else shutil.which("py-spy")


def start_record(
    pid: int, duration_s: float, out: Path, rate: int = 200
) -> subprocess.Popen[bytes]:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (a dev extra: make .venv/.installed)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(duration_s))),
            "--rate",
            str(rate),
            "--subprocesses",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number so
    # one function is one row.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in _MARKERS:
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def _package(frame: str) -> str:
    """The library (or server module) a frame's code belongs to."""
    where = frame.partition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    for marker in _MARKERS:
        if marker in where:
            where = where.split(marker, 1)[1]
    parts = where.split("/")
    if parts[0] in ("server", "bench"):
        return where.rsplit(".", 1)[0].replace("/", ".")
    if len(parts) > 1:
        return parts[0]  # a library or a stdlib package (asyncio, json, ...)
    return f"stdlib {parts[0].removesuffix('.py')}" if parts[0] else "?"


def _is_process(frame: str) -> bool:
    """`py-spy --subprocesses` roots each stack in frames `process PID:"command line"`."""
    return frame.startswith("process ") and ':"' in frame


def _process_name(frame: str) -> str:
    pid, _, command = frame.removeprefix("process ").partition(':"')
    command = command.removesuffix('"')
    return f"{pid} {command[-80:]}"


def summarize(path: Path, top: int = 30, match: list[str] | None = None) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    by_process: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        raw = [f for f in stack.split(";") if f]
        processes = [f for f in raw if _is_process(f)]
        if processes:
            by_process[_process_name(processes[-1])] += count
            raw = [f for f in raw if not _is_process(f)]
        frames = [_frame_name(f) for f in raw]
        if frames and ("select" in frames[-1] or "epoll" in frames[-1]):
            idle += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
            by_package[_package(raw[-1])] += count
    if total == 0:
        return "no samples"
    lines = [f"samples: {total} (idle in select/epoll: {100 * idle / total:.1f} %)"]
    if by_process:
        lines.append("\nsamples by process:")
        for name, n in by_process.most_common():
            lines.append(f"  {100 * n / total:5.1f} %  {name}")
    lines.append("\nself time by package (leaf frame):")
    for name, n in by_package.most_common(top):
        lines.append(f"  {100 * n / total:5.1f} %  {name}")
    lines.append(f"\ninclusive (top {top}):")
    for name, n in inclusive.most_common(top):
        lines.append(f"  {100 * n / total:5.1f} %  {name}")
    lines.append(f"\nself (top {top}):")
    for name, n in own.most_common(top):
        lines.append(f"  {100 * n / total:5.1f} %  {name}")
    for needle in match or []:
        lines.append(f"\ninclusive matching {needle!r}:")
        for name, n in inclusive.most_common():
            if needle in name:
                lines.append(f"  {100 * n / total:5.1f} %  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--match", action="append", default=[])
    args = p.parse_args(argv)
    print(summarize(args.file, args.top, args.match))
    return 0


if __name__ == "__main__":
    sys.exit(main())
