"""Counts and durations of one run (full or --quick)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    quick: bool
    users: int  # users onboarded through the API (register, KYC, device posture)
    concurrency: int  # concurrent callers over all client processes
    client_procs: int  # client processes (multiprocessing spawn), callers split evenly
    channels_per_proc: int  # HTTP/2 connections per client process
    warmup_s: float  # unmeasured load before each measured phase
    issue_s: float  # issuance phases (spread and hot), and the pgbench run
    read_s: float  # each read-path phase (Check, GetProfile)
    read_rounds: int  # Check/GetProfile alternations (noise: both see the same conditions)
    phase_max_requests: int  # hard cap per timed phase
    memory_checkpoints: tuple[int, int]  # mixed requests after which the server RSS is read
    memory_max_s: float  # time limit of the memory phase
    onboard_max_s: float  # time limit of onboarding
    pgbench_scale: int
    pgbench_clients: int
    pgbench_threads: int
    history_days: int  # accepted_at spread over this many past UTC days

    @classmethod
    def full(cls) -> Plan:
        return cls(
            quick=False,
            users=10_000,
            concurrency=64,
            client_procs=2,
            channels_per_proc=4,
            warmup_s=2.0,
            issue_s=20.0,
            read_s=10.0,
            read_rounds=2,
            phase_max_requests=1_000_000,
            memory_checkpoints=(10_000, 100_000),
            memory_max_s=900.0,
            onboard_max_s=900.0,
            pgbench_scale=10,
            pgbench_clients=8,
            pgbench_threads=2,
            history_days=3650,
        )

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            users=300,
            concurrency=64,
            client_procs=2,
            channels_per_proc=4,
            warmup_s=0.5,
            issue_s=3.5,
            read_s=2.0,
            read_rounds=1,
            phase_max_requests=200_000,
            memory_checkpoints=(1_000, 5_000),
            memory_max_s=20.0,
            onboard_max_s=30.0,
            pgbench_scale=10,
            pgbench_clients=8,
            pgbench_threads=2,
            history_days=3650,
        )
