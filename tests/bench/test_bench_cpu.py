"""bench/cpu.py: CPU and memory summed over a real process tree (no server, no database)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from bench.cpu import CpuDelta, ProcessTree, Snapshot, TreeCpu, postmaster_pid

BURN_S = 0.3
TICK = 0.03  # /proc counts CPU in clock ticks (10 ms): allow a few

# The grandchild burns BURN_S of CPU, says so, and waits for its stdin to close.
GRANDCHILD = f"""
import sys, time
while time.process_time() < {BURN_S}:
    pass
print("burned", flush=True)
sys.stdin.read()
"""

# The child starts the grandchild, then on a line from the test closes the grandchild's stdin,
# waits for it (so its CPU moves to the child's children_* times) and says "reaped".
CHILD = f"""
import subprocess, sys
g = subprocess.Popen([sys.executable, "-c", {GRANDCHILD!r}], stdin=subprocess.PIPE)
sys.stdin.readline()
g.stdin.close()
g.wait()
print("reaped", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            p.kill()
        proc.kill()
        proc.wait(10)


def _own_cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def test_tree_sums_cpu_and_memory_of_descendants(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None and child.stdout is not None
    tree = ProcessTree([child.pid])  # made before the grandchild exists
    assert child.stdout.readline().strip() == "burned"

    cpu = tree.cpu()
    assert cpu.processes == 2
    grandchildren = psutil.Process(child.pid).children(recursive=True)
    assert len(grandchildren) == 1
    grandchild = grandchildren[0].pid
    assert _own_cpu(grandchild) >= BURN_S - TICK
    assert cpu.cpu_s is not None
    assert cpu.cpu_s >= _own_cpu(child.pid) + BURN_S - TICK  # the tree, not the root alone

    mem = tree.memory()
    assert mem.processes == 2
    rss = [psutil.Process(p).memory_info().rss for p in (child.pid, grandchild)]
    assert mem.rss_bytes > max(rss)  # summed, not one process
    assert mem.uss_bytes is not None and 0 < mem.uss_bytes <= mem.rss_bytes

    # The grandchild exits and is reaped: its CPU stays in the tree's total (children_*).
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "reaped"
    after = tree.cpu()
    assert after.processes == 1
    assert after.cpu_s is not None and after.cpu_s >= cpu.cpu_s - TICK


def test_gone_root_reads_as_empty() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    assert ProcessTree([proc.pid]).cpu() == TreeCpu(0.0, 0)


def test_breakdown_per_request_and_cores() -> None:
    a = Snapshot(10.0, {"server": TreeCpu(1.0, 1), "postgres": TreeCpu(None, 0)}, 100.0, 200.0)
    b = Snapshot(12.0, {"server": TreeCpu(2.0, 3), "postgres": TreeCpu(None, 0)}, 103.0, 204.0)
    delta = CpuDelta.between(a, b, {"pgbench": 0.5})
    out = delta.breakdown(requests=500)
    assert out["ms_per_request"] == {
        "server": 2.0,
        "postgres": None,  # unreadable: said so, and so is the remainder
        "pgbench": 1.0,
        "other": None,
        "machine": 6.0,
    }
    assert out["cores_used"]["server"] == 0.5
    assert out["machine_busy_pct"] == 75.0
    assert out["processes"] == {"server": 3, "postgres": 0}
    summed = (delta + delta).breakdown(requests=1000)
    assert summed["ms_per_request"]["server"] == 2.0
    assert summed["window_s"] == 4.0


def test_other_cores_name_processes_outside_the_trees() -> None:
    gone = 2**22 + 7  # no such pid: labelled by its name
    kworker = gone + 2  # a kernel worker renames itself after its current work item
    a = Snapshot(
        0.0,
        {"server": TreeCpu(1.0, 1, frozenset({gone + 1}))},
        0.0,
        0.0,
        0.0,
        {kworker: ("kworker/u8:0-writeback", 50.0, 1.0)},
    )
    procs = {
        gone: ("stress", 3.0, 5.0),
        gone + 1: ("server", 9.0, 1.0),
        kworker: ("kworker/u8:0-flush", 50.2, 1.0),
    }
    b = Snapshot(2.0, {"server": TreeCpu(2.0, 1, frozenset({gone + 1}))}, 3.0, 4.0, 0.5, procs)
    cores = CpuDelta.between(a, b).breakdown(requests=10)["other_cores"]
    # started in the window: all of it counts; the renamed worker: only its growth
    assert cores == {"irq+softirq": 0.25, "stress": 1.5, "kworker/u8:0-flush": 0.1}


def test_postmaster_pid(tmp_path: Path) -> None:
    assert postmaster_pid(tmp_path) is None
    (tmp_path / "postmaster.pid").write_text("4242\n/data\n")
    assert postmaster_pid(tmp_path) == 4242
