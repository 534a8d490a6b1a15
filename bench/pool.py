"""The parent's side of the client processes: start them, run phases, merge results."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections import Counter
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from bench.client import Phase, WorkerInit, WorkerResult, worker_main
from bench.stats import percentile

REPLY_GRACE_S = 60.0  # beyond a phase's own time limit


class BenchError(RuntimeError):
    """The run cannot go on (a worker failed, a phase did not answer, set-up failed)."""


@dataclass(slots=True)
class PhaseResult:
    name: str
    kind: str
    ok: int
    errors: dict[str, int]
    error_samples: list[str]
    wall_s: float
    latencies_us: list[float] = field(repr=False)
    not_awarded: int
    registered: list[tuple[int, str]] = field(repr=False)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_us
        return {
            "requests_ok": self.ok,
            "errors": self.error_count,
            "errors_by_code": self.errors,
            "error_samples": self.error_samples,
            "wall_s": round(self.wall_s, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(percentile(lat, 50) / 1000, 3) if lat else None,
            "p99_ms": round(percentile(lat, 99) / 1000, 3) if lat else None,
            "mean_ms": round(sum(lat) / len(lat) / 1000, 3) if lat else None,
        }


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class WorkerPool:
    def __init__(self, procs: int) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess] = []
        self._conns: list[Connection] = []
        self.size = procs

    def start(self) -> None:
        for _ in range(self.size):
            parent, child = self._ctx.Pipe()
            proc = self._ctx.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)

    def pids(self) -> list[int]:
        """The client processes' pids (their CPU is the `clients` figure)."""
        return [p.pid for p in self._procs if p.pid is not None]

    def _ask_all(self, messages: list[tuple[str, Any]], timeout_s: float) -> list[Any]:
        for conn, message in zip(self._conns, messages, strict=True):
            conn.send(message)
        answers: list[Any] = []
        for i, conn in enumerate(self._conns):
            if not conn.poll(timeout_s):
                raise BenchError(f"client process {i} did not answer within {timeout_s:.0f} s")
            kind, payload = conn.recv()
            if kind == "error":
                raise BenchError(f"client process {i} failed:\n{payload}")
            answers.append(payload)
        return answers

    def init(self, target: str, channels: int, token: str, venture_id: str, tag: str) -> None:
        self._ask_all(
            [
                ("init", WorkerInit(i, target, channels, token, venture_id, tag))
                for i in range(self.size)
            ],
            REPLY_GRACE_S,
        )

    def set_users(self, users: tuple[str, ...]) -> None:
        self._ask_all([("users", users)] * self.size, REPLY_GRACE_S)

    def run(self, phase: Phase, *, total_requests: int, callers: int) -> PhaseResult:
        """Run `phase` on every client process; `total_requests` and `callers` are split."""
        shares = _split(total_requests, self.size)
        caller_shares = _split(callers, self.size)
        firsts = [sum(shares[:i]) for i in range(self.size)]
        phases = [
            replace(phase, max_requests=shares[i], callers=caller_shares[i], first_index=firsts[i])
            for i in range(self.size)
        ]
        results: list[WorkerResult] = self._ask_all(
            [("phase", p) for p in phases], phase.max_s + REPLY_GRACE_S
        )
        errors: Counter[str] = Counter()
        samples: list[str] = []
        latencies: list[float] = []
        registered: list[tuple[int, str]] = []
        for r in results:
            errors.update(r.errors)
            samples.extend(r.error_samples)
            latencies.extend(r.latencies_us)
            registered.extend(r.registered)
        started = min(r.started for r in results)
        finished = max(r.finished for r in results)
        return PhaseResult(
            name=phase.name,
            kind=phase.kind,
            ok=sum(r.ok for r in results),
            errors=dict(errors),
            error_samples=samples[:5],
            wall_s=finished - started,
            latencies_us=latencies,
            not_awarded=sum(r.not_awarded for r in results),
            registered=registered,
        )

    def stop(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("stop", None))
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for conn in self._conns:
            conn.close()
        self._procs.clear()
        self._conns.clear()


__all__ = ["BenchError", "PhaseResult", "WorkerPool"]
