"""`python -m bench [--quick] [--json-out PATH]`: run every phase, print one JSON document.

Order of a run (each figure is a ratio against a baseline measured in this same run):

1. PostgreSQL: the embedded server under .data/bench (or DATABASE_URL), a fresh migrated
   database smartstart_bench_<pid>; `pgbench -i` of pgbench_<pid> runs in the background.
2. `smartstart serve` as a subprocess on a free 127.0.0.1 port: jobs off, rate limits raised,
   a development JWT secret; client processes (spawn) with 64 grpc.aio callers in total.
3. Onboarding through the API: RegisterUser, SetKycStatus(PASSED), ReportDevicePosture
   (compliant, now) per user; reputation 100 in SQL (no API sets it); one venture in SQL.
4. Issuance, spread over all users; pgbench tpcb-like (8 clients, same duration); issuance
   with every call for one user. accepted_at is a random instant of the past N UTC days,
   so the daily cap is not what is measured (the output says so and counts non-awards).
5. Read path: health Check and GetProfile, alternated.
6. Memory: server RSS after two counts of mixed requests (1 issuance : 2 GetProfile :
   1 Check) and the growth ratio.
7. Gamification jobs in-process (bench/gamification.py): daily maintenance over 1,000,000
   profiles (20,000 quick) against a bare UPDATE of the table, badge evaluation over 100,000
   users (5,000 quick) against a bare SELECT of their metrics.

Every measured phase also says where the CPU went (bench/cpu.py): CPU ms per request of the
server process tree (`smartstart serve` and all its descendants, so SMARTSTART_WORKERS
supervisors count whole), of PostgreSQL, of the bench's client processes (pgbench for the
pgbench phase), of everything else and of the whole machine, and the cores each used.

JSON on stdout, the human table on stderr; exit 1 on any request error or a failed step.
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import platform
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import psutil  # type: ignore[import-untyped]
from smartstart.conversion.v1 import conversion_service_pb2 as conversion_pb
from smartstart.conversion.v1 import conversion_service_pb2_grpc as conversion_grpc

from bench import database, gamification, pgbench, profile
from bench.client import (
    CHECK,
    DEFAULT_MIX,
    GET_PROFILE,
    ISSUE_HOT,
    ISSUE_SPREAD,
    MIXED,
    ONBOARD,
    PROBE_ISSUE,
    Phase,
)
from bench.cpu import CpuDelta, ProcessTree, Snapshot, postgres_tree, snapshot
from bench.plan import Plan
from bench.pool import BenchError, PhaseResult, WorkerPool
from bench.report import markdown_table, ratios_section, text_table
from bench.server import JWT_SECRET, ServerProcess, start_server
from server.interceptors.tokens import HS256, mint_token

REP_MILLI = 100_000  # reputation 100: passes the >= 60 gate; reviewer credibility 1.0
MIB = 1024 * 1024
PGB = "pgbench_tpcb_like"
PROFILED = {"issuance_spread": "issuance_spread", "get_profile_1": "get_profile"}


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Run:
    def __init__(
        self,
        plan: Plan,
        log_level: str,
        profile_dir: Path | None = None,
        workers: int | None = None,
    ) -> None:
        self.plan = plan
        self.workers = workers
        self.profile_dir = profile_dir
        self.profiles: dict[str, str] = {}
        self.log_level = log_level
        self.started = time.monotonic()
        self.tag = f"b{os.getpid()}x{int(time.time()) % 1_000_000}"
        self.problems: list[str] = []
        self.phases: dict[str, dict[str, Any]] = {}
        self.memory: dict[str, Any] = {}
        self.setup: dict[str, Any] = {}
        self.verification: dict[str, Any] = {}
        self.gamification: dict[str, Any] = {}
        self.issuance_available = True
        self.seed = 0
        self.db: database.BenchDatabase | None = None
        self.server: ServerProcess | None = None
        self.pool: WorkerPool | None = None
        self.users: tuple[str, ...] = ()
        self.pg_version = "unknown"
        self.cpu: dict[str, CpuDelta] = {}  # CPU seconds per process group, per phase
        self.trees: dict[str, ProcessTree | None] = {}  # server, postgres, clients
        self.postgres_processes = "not measured"
        self.server_processes_at_start: int | None = None

    # ------------------------------------------------------------------ helpers

    def _phase(
        self,
        name: str,
        kind: str,
        *,
        requests: int | None = None,
        duration_s: float = 0.0,
        max_s: float | None = None,
        record: bool = True,
        **extra: Any,
    ) -> PhaseResult:
        assert self.pool is not None and self.server is not None
        self.seed += 1
        phase = Phase(
            name=name,
            kind=kind,
            callers=self.plan.concurrency,
            max_requests=0,
            duration_s=duration_s,
            max_s=max_s if max_s is not None else duration_s,
            seed=self.seed,
            history_days=self.plan.history_days,
            **extra,
        )
        recorder = None
        if self.profile_dir is not None and name in PROFILED:
            out = self.profile_dir / f"{PROFILED[name]}.txt"
            recorder = profile.start_record(self.server.pid, duration_s, out)
            self.profiles[name] = str(out)
        before = self._snapshot()
        result = self.pool.run(
            phase,
            total_requests=requests if requests is not None else self.plan.phase_max_requests,
            callers=self.plan.concurrency,
        )
        cpu = CpuDelta.between(before, self._snapshot(end=True))
        self.cpu[name] = cpu
        if recorder is not None:
            _, err = recorder.communicate(timeout=60)
            if recorder.returncode:
                self.problems.append(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
        if result.error_count:
            self.problems.append(
                f"{name}: {result.error_count} errors {result.errors} {result.error_samples[:2]}"
            )
        if kind in (ISSUE_SPREAD, ISSUE_HOT, MIXED) and result.not_awarded:
            self.problems.append(f"{name}: {result.not_awarded} issuance calls awarded no BUZ")
        if record:
            summary = result.summary()
            summary.update(_cpu_keys(cpu, result.ok))
            summary["not_awarded"] = result.not_awarded
            self.phases[name] = summary
        say(
            f"{name}: {result.ok} ok, {result.error_count} errors,"
            f" {result.rps:,.0f}/s over {result.wall_s:.1f} s"
        )
        return result

    def _snapshot(self, *, end: bool = False) -> Snapshot:
        return snapshot(self.trees, end=end)

    # ------------------------------------------------------------------ steps

    def start(self) -> None:
        plan = self.plan
        say(f"database: {'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded'}")
        self.db = database.provision(os.environ.get("DATABASE_URL", "").strip())
        self.pg_version = database.server_version(self.db)
        self.pgbench_log = self.db.data_dir / f"pgbench-init-{os.getpid()}.log"
        self.pgbench_init = pgbench.start_init(self.db, plan.pgbench_scale, self.pgbench_log)
        if self.db.embedded:
            pg_tree, self.postgres_processes = postgres_tree(pgdata=self.db.data_dir / "pg")
        else:
            pg_tree, self.postgres_processes = postgres_tree(url=self.db.admin)
        self.pool = WorkerPool(plan.client_procs)
        self.pool.start()  # spawning overlaps with the server's start
        self.server = start_server(self.db.url, self.db.data_dir, self.log_level, self.workers)
        self.trees = {
            "server": self.server.tree,
            "postgres": pg_tree,
            "clients": ProcessTree(self.pool.pids, "clients"),
        }
        self.server_processes_at_start = self.server.tree.cpu().processes
        say(
            f"server pid {self.server.pid} on {self.server.target}"
            f" ({self.server_processes_at_start} processes, SMARTSTART_WORKERS="
            f"{self.workers if self.workers is not None else 'unset'});"
            f" PostgreSQL: {self.postgres_processes}"
        )
        token = mint_token(
            sub=str(uuid.UUID(int=1)),
            roles=["system", "board"],
            ttl_s=6 * 3600,
            key=JWT_SECRET,
            algorithm=HS256,
        )
        self.venture_id = create_venture(self.server.target, token)
        self.pool.init(self.server.target, plan.channels_per_proc, token, self.venture_id, self.tag)
        self.memory["rss_start_mib"] = round(self.server.memory().rss_bytes / MIB, 1)

    def onboard(self) -> None:
        assert self.db is not None and self.pool is not None
        plan = self.plan
        result = self._phase(
            "onboard", ONBOARD, requests=plan.users, max_s=plan.onboard_max_s, record=False
        )
        if result.ok != plan.users:
            raise BenchError(f"onboarded {result.ok} of {plan.users} users: {result.errors}")
        self.users = tuple(uid for _, uid in sorted(result.registered))
        updated = database.raise_reputation(self.db, self.users, REP_MILLI)
        self.pool.set_users(self.users)
        summary = result.summary()
        self.setup = {
            "users": len(self.users),
            "onboarding": "through the API: RegisterUser + SetKycStatus(PASSED) +"
            " ReportDevicePosture(compliant, now) per user",
            "onboard_users_per_s": summary["rps"],
            "onboard_p50_ms_per_user": summary["p50_ms"],
            "onboard_wall_s": summary["wall_s"],
            "reputation": f"profiles.rep_milli = {REP_MILLI} in SQL for {updated} users"
            " (activity and two runs of the daily job would reach the gate; not what is measured)",
            "venture": "one, through ConversionService.CreateVenture",
            "task": "tier C, quality 3, one reviewer (the next user): 50 BUZ per call",
            "daily_cap": f"accepted_at is a random instant in the past {plan.history_days}"
            " UTC days, so the 2,000 BUZ/day cap (40 such tasks per user-day) is not what is"
            " measured; calls that award no BUZ are counted and fail the run",
        }

    def probe_issuance(self) -> None:
        result = self._phase("probe", PROBE_ISSUE, requests=1, max_s=30, record=False)
        if result.errors.get("UNIMPLEMENTED"):
            self.issuance_available = False
            # Expected while the RPC is not served yet: reported, not counted as an error.
            self.problems = [p for p in self.problems if not p.startswith("probe:")]
            self.problems.append(
                "RecordTaskAccepted answers UNIMPLEMENTED: issuance figures not measured"
            )
            say("RecordTaskAccepted is UNIMPLEMENTED: skipping the issuance phases")

    def issuance(self) -> None:
        plan = self.plan
        assert self.db is not None
        # `pgbench -i` must not share the machine (and PostgreSQL) with a measured phase.
        waited = time.monotonic()
        pgbench.wait_init(self.pgbench_init, self.pgbench_log)
        if time.monotonic() - waited > 0.5:
            say(f"waited {time.monotonic() - waited:.1f} s for pgbench -i")
        if self.issuance_available:
            self._phase("warmup_issue", ISSUE_SPREAD, duration_s=plan.warmup_s, record=False)
            spread = self._phase("issuance_spread", ISSUE_SPREAD, duration_s=plan.issue_s)
            duration = max(2, round(spread.wall_s))
        else:
            duration = max(2, round(plan.issue_s))
        say(f"pgbench tpcb-like, {plan.pgbench_clients} clients, {duration} s")
        before = self._snapshot()
        pgb = pgbench.run(
            self.db,
            duration_s=duration,
            clients=plan.pgbench_clients,
            threads=plan.pgbench_threads,
            scale=plan.pgbench_scale,
        )
        cpu = CpuDelta.between(before, self._snapshot(end=True), {"pgbench": pgb.cpu_s})
        self.cpu[PGB] = cpu
        self.phases[PGB] = {**pgb.summary(), **_cpu_keys(cpu, pgb.transactions)}
        if pgb.failed:
            self.problems.append(f"pgbench: {pgb.failed} failed transactions")
        say(f"pgbench: {pgb.tps:,.0f} tps")
        if self.issuance_available:
            self._phase("issuance_hot", ISSUE_HOT, duration_s=plan.issue_s, hot_user=0)

    def reads(self) -> None:
        plan = self.plan
        merged: dict[str, list[PhaseResult]] = {"health_check": [], "get_profile": []}
        self._phase("warmup_read", GET_PROFILE, duration_s=plan.warmup_s, record=False)
        for r in range(plan.read_rounds):
            order = [("health_check", CHECK), ("get_profile", GET_PROFILE)]
            if r % 2:
                order.reverse()
            for name, kind in order:
                merged[name].append(
                    self._phase(f"{name}_{r + 1}", kind, duration_s=plan.read_s, record=False)
                )
        for name, results in merged.items():
            combined = PhaseResult(
                name=name,
                kind=results[0].kind,
                ok=sum(x.ok for x in results),
                errors={},
                error_samples=[],
                wall_s=sum(x.wall_s for x in results),
                latencies_us=[v for x in results for v in x.latencies_us],
                not_awarded=0,
                registered=[],
            )
            summary = combined.summary()
            summary["errors"] = sum(x.error_count for x in results)
            summary["rounds"] = len(results)
            cpu = functools.reduce(operator.add, (self.cpu[x.name] for x in results))
            summary.update(_cpu_keys(cpu, combined.ok))
            self.phases[name] = summary

    def memory_phase(self) -> None:
        assert self.server is not None
        plan = self.plan
        mix = DEFAULT_MIX if self.issuance_available else (GET_PROFILE, CHECK, GET_PROFILE)
        first, second = plan.memory_checkpoints
        self.memory["rss_before_mib"] = round(self.server.memory().rss_bytes / MIB, 1)
        a = self._phase(
            "memory_1", MIXED, requests=first, max_s=plan.memory_max_s, record=False, mix=mix
        )
        mem_a = self.server.memory()
        b = self._phase(
            "memory_2",
            MIXED,
            requests=second - first,
            max_s=plan.memory_max_s,
            record=False,
            mix=mix,
        )
        mem_b = self.server.memory()
        rss_a, rss_b = mem_a.rss_bytes, mem_b.rss_bytes
        done_a, done_b = a.ok + a.error_count, a.ok + a.error_count + b.ok + b.error_count
        if done_b < second:
            self.problems.append(f"memory: only {done_b} of {second} requests within the limit")
        self.memory.update(
            {
                "mix": "1 RecordTaskAccepted : 2 GetProfile : 1 Check"
                if self.issuance_available
                else "2 GetProfile : 1 Check (RecordTaskAccepted not served)",
                "counted_from": "the start of the memory phase (after every other phase)",
                "measure": "rss_*: RSS summed over the server process tree (pages shared"
                " between its processes count once per process), the growth ratio's figure;"
                " uss_*: unique set size summed (memory only that tree holds)",
                "server_processes": mem_b.processes,
                "checkpoint_1_requests": done_a,
                "rss_1_mib": round(rss_a / MIB, 1),
                "checkpoint_2_requests": done_b,
                "rss_2_mib": round(rss_b / MIB, 1),
                "growth_ratio": round(rss_b / rss_a, 3),
                "uss_1_mib": _mib(mem_a.uss_bytes),
                "uss_2_mib": _mib(mem_b.uss_bytes),
                "uss_growth_ratio": (
                    round(mem_b.uss_bytes / mem_a.uss_bytes, 3)
                    if mem_a.uss_bytes and mem_b.uss_bytes is not None
                    else None
                ),
                "mixed_rps": round((a.ok + b.ok) / (a.wall_s + b.wall_s), 1),
                **_cpu_keys(self.cpu["memory_1"] + self.cpu["memory_2"], a.ok + b.ok),
            }
        )

    def verify(self) -> None:
        assert self.db is not None
        counts = database.issue_counts(self.db)
        awarded = sum(
            p.get("requests_ok", 0) - p.get("not_awarded", 0)
            for n, p in self.phases.items()
            if n.startswith("issuance")
        )
        self.verification = {**counts, "measured_issuance_calls_awarded": awarded}
        if self.issuance_available and counts["issue_entries"] != counts["rewards_awarded"]:
            self.problems.append(f"ledger ISSUE entries != awarded rewards: {counts}")

    def gamification_jobs(self) -> None:
        assert self.db is not None
        self.gamification = gamification.run(self.db.url, self.plan.quick, say)

    def stop(self, keep_db: bool) -> None:
        if self.pool is not None:
            self.pool.stop()
        if self.server is not None:
            code = self.server.stop()
            if code not in (0, None):
                self.problems.append(f"server exited with {code}: {self.server.log_tail(500)}")
            elif not self.problems:
                self.server.log_path.unlink(missing_ok=True)
        if getattr(self, "pgbench_init", None) is not None and self.pgbench_init.poll() is None:
            self.pgbench_init.kill()
            self.pgbench_init.wait(10)
        if self.db is not None:
            database.teardown(self.db, keep=keep_db)
            if not self.problems:
                self.pgbench_log.unlink(missing_ok=True)

    # ------------------------------------------------------------------ output

    def document(self) -> dict[str, Any]:
        ph = self.phases
        spread = ph.get("issuance_spread", {}).get("rps")
        hot = ph.get("issuance_hot", {}).get("rps")
        pgb = ph.get("pgbench_tpcb_like", {}).get("tps")
        check = ph.get("health_check", {}).get("rps")
        profile = ph.get("get_profile", {}).get("rps")
        ratios = ratios_section(
            {
                "issuance_vs_pgbench": (spread, pgb),
                "hot_vs_spread": (hot, spread),
                "read_vs_check": (profile, check),
                "memory_growth": (self.memory.get("rss_2_mib"), self.memory.get("rss_1_mib")),
                "daily_maintenance_vs_update": (
                    self.gamification.get("daily_maintenance", {}).get("job_s"),
                    self.gamification.get("daily_maintenance", {}).get("bare_update_s"),
                ),
                "badge_evaluation_vs_select": (
                    self.gamification.get("badge_evaluation", {}).get("eval_s"),
                    self.gamification.get("badge_evaluation", {}).get("bare_select_s"),
                ),
            },
            quick=self.plan.quick,
        )
        latency_ratios = {
            "issuance_p50_vs_pgbench_p50": _ratio(
                ph, "issuance_spread", "pgbench_tpcb_like", "p50_ms"
            ),
            "issuance_p99_vs_pgbench_p99": _ratio(
                ph, "issuance_spread", "pgbench_tpcb_like", "p99_ms"
            ),
            "get_profile_p50_vs_check_p50": _ratio(ph, "get_profile", "health_check", "p50_ms"),
            "get_profile_p99_vs_check_p99": _ratio(ph, "get_profile", "health_check", "p99_ms"),
        }
        return {
            "bench": "smartstart-core",
            "quick": self.plan.quick,
            "ok": not self.problems,
            "problems": self.problems,
            "wall_s": round(time.monotonic() - self.started, 1),
            "machine": {
                "cpu_count": os.cpu_count(),
                "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "postgres": self.pg_version,
                "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
                "smartstart_workers": self.workers,
                "server_processes_at_start": self.server_processes_at_start,
                "postgres_processes": self.postgres_processes,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            "config": {
                "callers": self.plan.concurrency,
                "client_processes": self.plan.client_procs,
                "channels_per_process": self.plan.channels_per_proc,
                "client_event_loop": "uvloop",
                "server_log_level": self.log_level,
                "jobs_enabled": False,
                "rate_limits": "raised to 1e9 (out of the way)",
                "issue_phase_s": self.plan.issue_s,
                "read_phase_s": self.plan.read_s,
                "read_rounds": self.plan.read_rounds,
                "warmup_s": self.plan.warmup_s,
                "profiled_with_py_spy": self.profiles or None,
            },
            "setup": self.setup,
            "ratios": ratios,
            "latency_ratios": latency_ratios,
            "phases": self.phases,
            "memory": self.memory,
            "verification": self.verification,
            "gamification": self.gamification,
        }


def _cpu_keys(cpu: CpuDelta, requests: int) -> dict[str, Any]:
    """`server_cpu_ms_per_request` (the server tree; kept from before) and the `cpu` section."""
    breakdown = cpu.breakdown(requests)
    return {
        "server_cpu_ms_per_request": breakdown["ms_per_request"].get("server"),
        "cpu": breakdown,
    }


def _mib(n: int | None) -> float | None:
    return round(n / MIB, 1) if n is not None else None


def _ratio(ph: dict[str, dict[str, Any]], a: str, b: str, key: str) -> float | None:
    x, y = ph.get(a, {}).get(key), ph.get(b, {}).get(key)
    return round(x / y, 3) if x is not None and y else None


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def create_venture(target: str, token: str) -> str:
    """The venture every task is rewarded under, made by the board through the API."""
    with grpc.insecure_channel(target) as channel:
        venture = conversion_grpc.ConversionServiceStub(channel).CreateVenture(
            conversion_pb.CreateVentureRequest(
                request_id=str(uuid.uuid4()),
                name=f"bench venture {os.getpid()}",
                conversion_pool_bps=1000,
            ),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=30,
        )
    return str(venture.id)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller counts; under 60 s")
    p.add_argument("--json-out", type=Path, help="also write the JSON document here")
    p.add_argument("--markdown-out", type=Path, help="write the README table here")
    p.add_argument("--users", type=int, help="override the number of users")
    p.add_argument(
        "--server-log-level", default="warning", help="SMARTSTART_LOG_LEVEL of the server"
    )
    p.add_argument("--keep-db", action="store_true", help="do not drop the run's databases")
    p.add_argument(
        "--profile-dir",
        type=Path,
        help="py-spy the server and all its processes during spread issuance and GetProfile"
        " (collapsed stacks here)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=0,
        help="SMARTSTART_WORKERS=N for the server: N server processes under a supervisor;"
        " 0 (the default) = one per CPU core, the deployment the README recommends",
    )
    args = p.parse_args(argv)
    if args.workers < 0:
        p.error("--workers must be 0 (one per core) or more")
    plan = Plan.quick_plan() if args.quick else Plan.full()
    if args.users:
        from dataclasses import replace

        plan = replace(plan, users=args.users)
    signal.signal(signal.SIGTERM, _on_sigterm)
    run = Run(plan, args.server_log_level, args.profile_dir, args.workers)
    try:
        try:
            run.start()
            run.onboard()
            run.probe_issuance()
            run.issuance()
            run.reads()
            run.memory_phase()
            run.verify()
            run.gamification_jobs()
        finally:
            run.stop(args.keep_db)
    except (BenchError, RuntimeError, OSError) as exc:
        run.problems.append(f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        run.problems.append("interrupted")
    doc = run.document()
    text = json.dumps(doc, indent=2)
    print(text, flush=True)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    if args.markdown_out:
        args.markdown_out.write_text(markdown_table(doc) + "\n")
    print("\n" + text_table(doc), file=sys.stderr, flush=True)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
