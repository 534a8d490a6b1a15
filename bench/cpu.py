"""Where the CPU goes: CPU time and memory of process trees, and the machine's busy time.

A `ProcessTree` is a set of root processes and all their descendants, enumerated afresh at
every sample (the server may start worker processes after it starts; PostgreSQL starts and
ends backends). A tree's CPU is the user + system time of its live processes plus the
children_user + children_system time they hold for descendants that exited and were waited
for, so a backend or worker that ends during a phase still counts (once: a live process
counts only its own time, an exited one only in the ancestor that reaped it).

`snapshot()` reads every tree, every other process and the machine's `psutil.cpu_times()`;
two snapshots make a `CpuDelta`, and `CpuDelta.breakdown(requests)` is the JSON a phase
reports: CPU ms per request of each tree, of the rest of the machine ("other": the bench's
parent, other users' work, interrupts) and of the whole machine, the cores each used on
average, and what "other" was (interrupt time and the busiest processes outside the trees).
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil  # type: ignore[import-untyped]

# psutil.cpu_times() fields that are busy time; guest and guest_nice are already counted in
# user and nice on Linux, steal is time the hypervisor gave to someone else.
_BUSY = ("user", "nice", "system", "irq", "softirq")
_IDLE = ("idle", "iowait", "steal")


@dataclass(frozen=True, slots=True)
class TreeCpu:
    cpu_s: float | None  # None: some process of the tree could not be read
    processes: int
    pids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class TreeMemory:
    rss_bytes: int  # summed: pages shared between the processes count once per process
    uss_bytes: int | None  # unique set size summed (None: smaps not readable)
    processes: int


class ProcessTree:
    """Roots (pids, or a function that finds them at each sample) and all their descendants."""

    def __init__(self, roots: Iterable[int] | Callable[[], Iterable[int]], label: str = "") -> None:
        self._roots = roots
        self.label = label

    def root_pids(self) -> list[int]:
        roots = self._roots() if callable(self._roots) else self._roots
        return list(roots)

    def processes(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for pid in self.root_pids():
            try:
                root = psutil.Process(pid)
                found.setdefault(root.pid, root)
                for child in root.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def cpu(self) -> TreeCpu:
        total = 0.0
        pids: set[int] = set()
        for proc in self.processes():
            try:
                t = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue  # exited meanwhile: its time moves to the parent's children_* fields
            except psutil.AccessDenied:
                return TreeCpu(None, len(pids), frozenset(pids))
            total += t.user + t.system + t.children_user + t.children_system
            pids.add(proc.pid)
        return TreeCpu(total, len(pids), frozenset(pids))

    def memory(self, *, uss: bool = True) -> TreeMemory:
        rss = 0
        unique: int | None = 0
        count = 0
        for proc in self.processes():
            try:
                if uss and unique is not None:
                    try:
                        info = proc.memory_full_info()
                        unique += int(info.uss)
                    except psutil.AccessDenied:
                        unique = None
                        info = proc.memory_info()
                else:
                    info = proc.memory_info()
            except psutil.NoSuchProcess:
                continue
            rss += int(info.rss)
            count += 1
        return TreeMemory(rss, unique if uss else None, count)


# ---------------------------------------------------------------------- PostgreSQL


def postmaster_pid(pgdata: Path) -> int | None:
    """The postmaster's pid from `<pgdata>/postmaster.pid` (None when it does not run)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _local_host(host: str) -> bool:
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listener(host: str, port: int) -> int | None:
    """The pid listening on the TCP port (or on the Unix socket `<host>/.s.PGSQL.<port>`)."""
    try:
        if host.startswith("/"):
            path = str(Path(host) / f".s.PGSQL.{port}")
            for conn in psutil.net_connections(kind="unix"):
                if conn.laddr == path and conn.pid:
                    return int(conn.pid)
            return None
        for conn in psutil.net_connections(kind="tcp"):
            listening = conn.status == psutil.CONN_LISTEN and conn.laddr
            if listening and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    except (psutil.AccessDenied, OSError):
        return None
    return None


def _named_postgres() -> list[int]:
    pids = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            pids.append(proc.pid)
    return pids


def postgres_tree(*, pgdata: Path | None = None, url: str = "") -> tuple[ProcessTree | None, str]:
    """The PostgreSQL cluster's processes, and how they were found (for the JSON).

    Embedded: the postmaster named by pgdata/postmaster.pid and its children. A URL: the
    postmaster listening on its (local) port and its children; failing that every process
    named postgres, of any user (other clusters on the machine included); a remote host is
    not measured (None).
    """
    if pgdata is not None:
        pid = postmaster_pid(pgdata)
        if pid is None:
            return None, f"not measured: no postmaster.pid under {pgdata}"
        return ProcessTree([pid], "postgres"), f"postmaster pid {pid} and its children"
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or ""])[0]
    try:
        port = int(query.get("port", [str(parts.port or 5432)])[0])
    except ValueError:
        port = 5432
    if not _local_host(host):
        return None, f"not measured: PostgreSQL runs on another host ({host})"
    pid = _listener(host, port)
    if pid is not None:
        try:
            name = psutil.Process(pid).name()
        except psutil.Error:
            name = ""
        if name in ("postgres", "postmaster"):
            return (
                ProcessTree([pid], "postgres"),
                f"postmaster pid {pid} (listening on port {port}) and its children",
            )
    return (
        ProcessTree(_named_postgres, "postgres"),
        "every process named postgres, of any user (other clusters on the machine included)",
    )


# ---------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class Snapshot:
    monotonic: float
    trees: dict[str, TreeCpu]
    busy_s: float
    total_s: float
    irq_s: float = 0.0  # irq + softirq: busy time no process is charged with
    # pid: (name, CPU, start time); kernel workers change their name with the work they do
    procs: dict[int, tuple[str, float, float]] = field(default_factory=dict)


def _machine() -> tuple[float, float, float]:
    t = psutil.cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in _BUSY)
    irq = getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, busy + sum(getattr(t, f, 0.0) for f in _IDLE), irq


def _all_processes() -> dict[int, tuple[str, float, float]]:
    """Every process's CPU, with what its exited children used (a test runner's short-lived
    servers show up under it); this process's own children are the trees and pgbench."""
    found: dict[int, tuple[str, float, float]] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["name", "cpu_times", "create_time"]):
        t = proc.info["cpu_times"]
        if t is not None:
            cpu = t.user + t.system
            if proc.pid != me:
                cpu += t.children_user + t.children_system
            found[proc.pid] = (proc.info["name"] or "?", cpu, proc.info["create_time"] or 0.0)
    return found


def snapshot(trees: Mapping[str, ProcessTree | None], *, end: bool = False) -> Snapshot:
    """Trees, machine and all processes; the slow scan of all processes is kept outside the
    window (first in a starting snapshot, last in an ending one, `end=True`)."""

    def read_trees() -> dict[str, TreeCpu]:
        return {n: t.cpu() if t is not None else TreeCpu(None, 0) for n, t in trees.items()}

    if end:
        now, (busy, total, irq) = time.monotonic(), _machine()
        read = read_trees()
        procs = _all_processes()
    else:
        procs = _all_processes()
        read = read_trees()
        busy, total, irq = _machine()
        now = time.monotonic()
    return Snapshot(now, read, busy, total, irq, procs)


def _label(pid: int, name: str) -> str:
    """A process as the JSON names it: its command line, shortened."""
    try:
        words = psutil.Process(pid).cmdline()
    except psutil.Error:
        words = []
    text = " ".join(Path(w).name if i == 0 else w for i, w in enumerate(words)) or name
    return text if len(text) <= 72 else text[:69] + "..."


def _others(a: Snapshot, b: Snapshot, keep: int = 5) -> dict[str, float]:
    """CPU seconds of the busiest processes outside every tree, between a and b."""
    inside: set[int] = set()
    for snap in (a, b):
        for tree in snap.trees.values():
            inside |= tree.pids
    used: dict[int, float] = {}
    for pid, (_, cpu, created) in b.procs.items():
        if pid in inside:
            continue
        before = a.procs.get(pid)
        if before is not None and before[2] != created:
            before = None  # the pid was reused
        used[pid] = cpu - (before[1] if before is not None else 0.0)
    top = sorted(used.items(), key=lambda kv: kv[1], reverse=True)[:keep]
    out: dict[str, float] = {}
    for pid, cpu in top:
        if cpu > 0:
            label = _label(pid, b.procs[pid][0])
            out[label] = out.get(label, 0.0) + cpu
    return out


def _round(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None


@dataclass(slots=True)
class CpuDelta:
    """CPU seconds each tree used between two snapshots (summable over rounds of a phase)."""

    window_s: float = 0.0
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    processes: dict[str, int] = field(default_factory=dict)  # at the later snapshot
    busy_s: float = 0.0
    total_s: float = 0.0
    irq_s: float = 0.0
    others: dict[str, float] = field(default_factory=dict)  # busiest processes outside

    @classmethod
    def between(
        cls, a: Snapshot, b: Snapshot, extra: Mapping[str, float | None] | None = None
    ) -> CpuDelta:
        """b - a; `extra` adds CPU seconds measured another way (pgbench's own rusage)."""
        cpu: dict[str, float | None] = {}
        for name, after in b.trees.items():
            before = a.trees.get(name)
            if before is None or before.cpu_s is None or after.cpu_s is None:
                cpu[name] = None
            else:
                cpu[name] = max(0.0, after.cpu_s - before.cpu_s)
        cpu.update(extra or {})
        return cls(
            window_s=b.monotonic - a.monotonic,
            cpu_s=cpu,
            processes={n: t.processes for n, t in b.trees.items()},
            busy_s=b.busy_s - a.busy_s,
            total_s=b.total_s - a.total_s,
            irq_s=b.irq_s - a.irq_s,
            others=_others(a, b),
        )

    def __add__(self, other: CpuDelta) -> CpuDelta:
        """Both windows together (a phase measured in rounds); unreadable in one: None."""
        cpu: dict[str, float | None] = {}
        for name in {**self.cpu_s, **other.cpu_s}:
            if name not in self.cpu_s or name not in other.cpu_s:
                cpu[name] = self.cpu_s.get(name, other.cpu_s.get(name))
                continue
            x, y = self.cpu_s[name], other.cpu_s[name]
            cpu[name] = x + y if x is not None and y is not None else None
        others = dict(self.others)
        for label, used in other.others.items():
            others[label] = others.get(label, 0.0) + used
        return CpuDelta(
            window_s=self.window_s + other.window_s,
            cpu_s=cpu,
            processes={
                n: max(self.processes.get(n, 0), other.processes.get(n, 0))
                for n in {**self.processes, **other.processes}
            },
            busy_s=self.busy_s + other.busy_s,
            total_s=self.total_s + other.total_s,
            irq_s=self.irq_s + other.irq_s,
            others=others,
        )

    def breakdown(self, requests: int) -> dict[str, Any]:
        """The phase's `cpu` section: ms per request and cores used, per tree and machine."""
        known = [v for v in self.cpu_s.values() if v is not None]
        other = self.busy_s - sum(known) if len(known) == len(self.cpu_s) else None
        per_s: dict[str, float | None] = {**self.cpu_s, "other": other, "machine": self.busy_s}
        return {
            "window_s": round(self.window_s, 3),
            "ms_per_request": {
                n: _round(v * 1000 / requests) if v is not None and requests else None
                for n, v in per_s.items()
            },
            "cores_used": {
                n: _round(v / self.window_s, 2) if v is not None and self.window_s > 0 else None
                for n, v in per_s.items()
            },
            "machine_busy_pct": (
                round(100 * self.busy_s / self.total_s, 1) if self.total_s > 0 else None
            ),
            "processes": dict(self.processes),
            "other_cores": self._other_cores(),
        }

    def _other_cores(self) -> dict[str, float]:
        """Cores used by interrupts and the busiest processes outside the trees (>= 0.01)."""
        if self.window_s <= 0:
            return {}
        items = [("irq+softirq", self.irq_s)]
        items += sorted(self.others.items(), key=lambda kv: kv[1], reverse=True)[:4]
        return {k: round(v / self.window_s, 2) for k, v in items if v / self.window_s >= 0.01}


__all__ = [
    "CpuDelta",
    "ProcessTree",
    "Snapshot",
    "TreeCpu",
    "TreeMemory",
    "postgres_tree",
    "postmaster_pid",
    "snapshot",
]
