"""Load-generating client process (started with multiprocessing "spawn").

The parent sends messages over a Pipe; the worker answers each:

    ("init", WorkerInit)  -> ("ready", None)          open the channels, keep the ids
    ("users", tuple[str]) -> ("ready", None)          the onboarded user ids
    ("phase", Phase)      -> ("result", WorkerResult) run one bounded phase of load
    ("stop", None)        -> (exit)

A phase runs `Phase.callers` coroutines on grpc.aio channels; each call's latency is kept
(microseconds) and every error is counted by status code. A phase stops at its request
count or its duration, whichever comes first, so every loop is bounded.

The clients share the machine with the server and PostgreSQL, so their own CPU per call is
kept low without changing the calls: the loop is uvloop, the metadata is one prebuilt
grpc.aio.Metadata (a tuple costs an ABC isinstance check and a conversion per call),
GetProfile requests are built once per user, the caller function is chosen once per phase,
and the objects alive after set-up are frozen out of the cyclic garbage collector, whose
young generation runs less often (grpc.aio allocates a lot per call).
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

import grpc
import grpc.aio
import uvloop
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from smartstart.profile.v1 import profile_service_pb2 as ppb
from smartstart.profile.v1 import profile_service_pb2_grpc as ppb_grpc
from smartstart.wallet.v1 import wallet_service_pb2 as wpb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as wpb_grpc

CALL_TIMEOUT_S = 30.0
DAY_S = 86_400
MAX_ERROR_SAMPLES = 5

# Phase kinds.
ONBOARD = "onboard"  # RegisterUser + SetKycStatus(PASSED) + ReportDevicePosture(compliant)
ISSUE_SPREAD = "issue_spread"  # RecordTaskAccepted, assignee drawn from all users
ISSUE_HOT = "issue_hot"  # RecordTaskAccepted, every call for one user
CHECK = "check"  # grpc.health.v1.Health/Check
GET_PROFILE = "get_profile"  # ProfileService/GetProfile (public, no token)
MIXED = "mixed"  # cycles through Phase.mix (default: 1 issuance : 2 GetProfile : 1 Check)
PROBE_ISSUE = "probe_issue"  # one RecordTaskAccepted, to see whether it is implemented
DEFAULT_MIX = (ISSUE_SPREAD, GET_PROFILE, CHECK, GET_PROFILE)
# The young generation of the cyclic GC is collected after this many net allocations of
# tracked objects (Python's default: 700); set-up objects are frozen out of it (gc.freeze).
GC_GEN0_THRESHOLD = 20_000


@dataclass(frozen=True, slots=True)
class WorkerInit:
    worker_id: int
    target: str
    channels: int
    system_token: str
    venture_id: str
    tag: str  # makes request ids, task ids and external ids unique per run


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    kind: str
    callers: int  # coroutines in this worker
    max_requests: int  # this worker's share
    duration_s: float  # 0: no time limit besides max_s
    max_s: float  # hard time limit
    seed: int
    first_index: int = 0  # ONBOARD: first user index of this worker's range
    hot_user: int = 0  # ISSUE_HOT: index of the hot user
    history_days: int = 3650  # accepted_at within this many past UTC days
    mix: tuple[str, ...] = ()  # MIXED: the kinds cycled through (request i does mix[i % len])


@dataclass(slots=True)
class WorkerResult:
    name: str
    worker_id: int
    started: float = 0.0  # time.monotonic(); comparable across processes on Linux
    finished: float = 0.0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    latencies_us: array[float] = field(default_factory=lambda: array("d"))
    not_awarded: int = 0  # issuance answered OK but issued no BUZ (gate or cap)
    registered: list[tuple[int, str]] = field(default_factory=list)  # ONBOARD: (index, user id)


def _timestamp(epoch_s: float) -> Timestamp:
    whole = int(epoch_s)
    return Timestamp(seconds=whole, nanos=int((epoch_s - whole) * 1e9))


# One call: (lane, rng, request index, phase, result).
CallFn = Callable[[int, random.Random, int, "Phase", WorkerResult], Awaitable[None]]


class Worker:
    def __init__(self, init: WorkerInit) -> None:
        self.init = init
        self.users: tuple[str, ...] = ()
        options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
        self.channels = [
            grpc.aio.insecure_channel(init.target, options=options) for _ in range(init.channels)
        ]
        self.health = [health_pb2_grpc.HealthStub(c) for c in self.channels]
        self.profile = [ppb_grpc.ProfileServiceStub(c) for c in self.channels]
        self.wallet = [wpb_grpc.WalletServiceStub(c) for c in self.channels]
        self.auth = grpc.aio.Metadata(("authorization", f"Bearer {init.system_token}"))
        self.check_request = health_pb2.HealthCheckRequest(service="")
        self.profile_requests: tuple[ppb.GetProfileRequest, ...] = ()

    def set_users(self, users: tuple[str, ...]) -> None:
        self.users = tuple(users)
        self.profile_requests = tuple(ppb.GetProfileRequest(user_id=u) for u in self.users)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    # ------------------------------------------------------------------ single calls

    async def _check(
        self, lane: int, rng: random.Random, i: int, phase: Phase, result: WorkerResult
    ) -> None:
        await self.health[lane].Check(self.check_request, timeout=CALL_TIMEOUT_S)

    async def _get_profile(
        self, lane: int, rng: random.Random, i: int, phase: Phase, result: WorkerResult
    ) -> None:
        requests = self.profile_requests
        await self.profile[lane].GetProfile(
            requests[rng.randrange(len(requests))], timeout=CALL_TIMEOUT_S
        )

    async def _issue(
        self, lane: int, rng: random.Random, i: int, phase: Phase, result: WorkerResult
    ) -> None:
        n = len(self.users)
        index = phase.hot_user if phase.kind == ISSUE_HOT else rng.randrange(n)
        # A random past UTC day per call: the 2,000 BUZ/day cap (40 C-tier tasks) is never
        # what is measured, even when every call goes to one user.
        days_back = rng.randrange(1, phase.history_days + 1)
        accepted = time.time() - days_back * DAY_S - rng.randrange(DAY_S)
        request = wpb.RecordTaskAcceptedRequest(
            task_id=f"{self.init.tag}-{phase.name}-{self.init.worker_id}-{i}",
            user_id=self.users[index],
            tier=wpb.TASK_TIER_C,
            quality=3,
            reviewer_ids=(self.users[(index + 1) % n],),
            venture_id=self.init.venture_id,
        )
        whole = int(accepted)
        stamp = request.accepted_at  # set in place: no Timestamp built and copied
        stamp.seconds = whole
        stamp.nanos = int((accepted - whole) * 1e9)
        reply = await self.wallet[lane].RecordTaskAccepted(
            request, metadata=self.auth, timeout=CALL_TIMEOUT_S
        )
        if reply.buz_awarded <= 0 or reply.replay:
            result.not_awarded += 1

    async def _onboard(
        self, lane: int, rng: random.Random, i: int, phase: Phase, result: WorkerResult
    ) -> None:
        index = phase.first_index + i
        tag = self.init.tag
        profile = self.profile[lane]
        user = await profile.RegisterUser(
            ppb.RegisterUserRequest(
                request_id=f"{tag}-reg-{index}",
                external_id=f"{tag}-{index}",
                email=f"{tag}-{index}@bench.invalid",
                display_name=f"Bench {index}",
            ),
            metadata=self.auth,
            timeout=CALL_TIMEOUT_S,
        )
        await profile.SetKycStatus(
            ppb.SetKycStatusRequest(
                request_id=f"{tag}-kyc-{index}",
                user_id=user.user_id,
                status=ppb.KYC_STATUS_PASSED,
                note="bench",
            ),
            metadata=self.auth,
            timeout=CALL_TIMEOUT_S,
        )
        await profile.ReportDevicePosture(
            ppb.ReportDevicePostureRequest(
                request_id=f"{tag}-dev-{index}",
                user_id=user.user_id,
                compliant=True,
                reported_at=_timestamp(time.time() - 1),
            ),
            metadata=self.auth,
            timeout=CALL_TIMEOUT_S,
        )
        result.registered.append((index, user.user_id))

    def _call(self, kind: str) -> CallFn:
        if kind == CHECK:
            return self._check
        if kind == GET_PROFILE:
            return self._get_profile
        if kind in (ISSUE_SPREAD, ISSUE_HOT, PROBE_ISSUE):
            return self._issue
        if kind == ONBOARD:
            return self._onboard
        raise ValueError(f"unknown phase kind {kind!r}")

    # ------------------------------------------------------------------ one phase

    async def run(self, phase: Phase) -> WorkerResult:
        result = WorkerResult(name=phase.name, worker_id=self.init.worker_id)
        errors: Counter[str] = Counter()
        latencies = result.latencies_us
        issued = 0
        start = time.monotonic()
        limit_s = phase.duration_s if phase.duration_s > 0 else phase.max_s
        deadline = start + min(limit_s, phase.max_s)
        # Request i makes calls[i % len(calls)] (MIXED cycles through Phase.mix).
        calls = tuple(self._call(k) for k in (phase.mix if phase.kind == MIXED else (phase.kind,)))
        ncalls = len(calls)

        async def caller(k: int) -> None:
            nonlocal issued
            rng = random.Random(phase.seed * 1_000_003 + self.init.worker_id * 1_009 + k)
            lane = k % len(self.channels)
            while issued < phase.max_requests and time.monotonic() < deadline:
                i = issued
                issued += 1
                t0 = time.perf_counter_ns()
                try:
                    await calls[i % ncalls](lane, rng, i, phase, result)
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] += 1
                    if len(result.error_samples) < MAX_ERROR_SAMPLES:
                        result.error_samples.append(f"{err.code().name}: {err.details()}")
                else:
                    latencies.append((time.perf_counter_ns() - t0) / 1000.0)

        result.started = start
        await asyncio.gather(*(caller(k) for k in range(max(1, phase.callers))))
        result.finished = time.monotonic()
        result.ok = len(latencies)
        result.errors = dict(errors)
        return result


async def _serve(conn: Connection) -> None:
    worker: Worker | None = None
    try:
        while True:
            kind, payload = await asyncio.to_thread(conn.recv)
            if kind == "stop":
                break
            try:
                if kind == "init":
                    worker = Worker(payload)
                    conn.send(("ready", None))
                elif kind == "users":
                    assert worker is not None
                    worker.set_users(tuple(payload))
                    _freeze_gc()
                    conn.send(("ready", None))
                elif kind == "phase":
                    assert worker is not None
                    conn.send(("result", await worker.run(payload)))
                else:
                    raise ValueError(f"unknown message {kind!r}")
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        if worker is not None:
            await worker.close()


def _freeze_gc() -> None:
    """Keep what set-up made (modules, channels, users) out of every later GC pass."""
    gc.collect()
    gc.freeze()


def worker_main(conn: Connection) -> None:
    """Entry point of a client process."""
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GC_GEN0_THRESHOLD), gen1, gen2)
    try:
        uvloop.run(_serve(conn))
    except (KeyboardInterrupt, EOFError):
        pass
    finally:
        conn.close()
