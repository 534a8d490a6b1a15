"""Task reward rules (BUZ and task XP) and the wallet's value types: pure, no I/O.

An accepted task yields `points = round_half_up(tierBase × quality × reviewerCred)`. The same
factors give BUZ and XP, so both come from `task_points`; BUZ is then subject to the gates
and the daily cap, XP is not. Every factor comes from RewardParams / GateParams
(server/core/params.py), decoded from the business settings.

Exactness: reviewerCred = clamp(sqrt(avgReviewerTrust / 100), low, high) is floored to the
thousandth with integer `isqrt` (the same function as the trust weight), so the product
tierBase × quality × reviewerCred is a terminating decimal and is computed exactly in a
Decimal context that traps inexact results. round_half_up therefore sees exact .5 ties
(e.g. 150 × 1.0 × 0.710 = 106.5 → 107) and replays are deterministic.
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from server.core.chain import payload_hash
from server.core.context import RequestContext
from server.core.errors import InvalidArgument, Reason
from server.core.params import MILLI, GateParams, RewardParams
from server.core.validation import not_future, parse_uuid, request_key, required_time
from server.profile.domain import KycStatus
from server.profile.gamification import sqrt_rep_over_100_milli
from server.wallet.entries import EntryView

MAX_REVIEWERS = 50


class Tier(StrEnum):
    S = "S"
    A = "A"
    B = "B"
    C = "C"


_TIERS = frozenset(Tier)


class WithheldReason(StrEnum):
    """Why less BUZ than computed was issued (each is also an ErrorInfo reason's name)."""

    KYC_REQUIRED = Reason.KYC_REQUIRED.value
    REPUTATION_TOO_LOW = Reason.REPUTATION_TOO_LOW.value
    DEVICE_NOT_COMPLIANT = Reason.DEVICE_NOT_COMPLIANT.value
    DAILY_CAP_REACHED = Reason.DAILY_CAP_REACHED.value


def round_half_up(value: Decimal | int) -> int:
    """Round to the nearest integer, ties away from zero (2.5 → 3; values here are >= 0).

    Decimal-based, so an exact x.5 is a tie (no binary-float surprises like 2.675).
    """
    quantized = Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return int(quantized)


def _exact() -> decimal.Context:
    """A Decimal context in which any inexact operation raises instead of rounding."""
    return decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])


def reviewer_cred_milli(reviewer_reps_milli: Sequence[int], rewards: RewardParams) -> int:
    """reviewerCred in thousandths: clamp(sqrt(mean reviewer rep / 100), low, high), floored.

    The rule: "reviewerCred = clamp(sqrt(avgReviewerTrust/100), 0.7, 1.1), avgReviewerTrust being
    the reviewers' mean reputation". The mean is of the reviewers' exact reputations
    (rep_milli, not the floored shown value) and is not rounded separately:
    floor(1000 × sqrt(mean/100)) = isqrt(10 × Σrep_milli // n).
    No reviewers → mean 0 → the lower clamp (0.7 by default).
    With the default clamp: rep 49 → 0.7, rep 100 → 1.0, rep 121 and above → 1.1.
    """
    low_milli, high_milli = rewards.cred_low_milli, rewards.cred_high_milli
    if not reviewer_reps_milli:
        return low_milli
    if any(r < 0 for r in reviewer_reps_milli):
        raise ValueError("reviewer reputations must be >= 0")
    cred = sqrt_rep_over_100_milli(sum(reviewer_reps_milli), len(reviewer_reps_milli))
    return min(high_milli, max(low_milli, cred))


def task_points(tier: str, quality: int, cred_milli: int, rewards: RewardParams) -> int:
    """round_half_up(tierBase × quality × reviewerCred): the task's BUZ and also its XP.

    "Task accepted": `buz = round_half_up(tierBase × quality × reviewerCred)`, and the task's
    XP is the same number (no daily cap). Computed exactly (see the module docstring); an
    override table with, say, quality 1.25 stays exact.
    """
    try:
        base = rewards.tier_base[tier]
    except KeyError:
        raise ValueError(f"unknown tier {tier!r}") from None
    try:
        multiplier = rewards.quality_multiplier[quality]
    except KeyError:
        raise ValueError(f"unknown quality {quality!r}") from None
    if cred_milli < 0:
        raise ValueError("reviewer cred must be >= 0")
    ctx = _exact()
    product = ctx.multiply(
        ctx.multiply(Decimal(base), multiplier), Decimal(cred_milli).scaleb(-3, ctx)
    )
    return round_half_up(product)


# --- gates and cap ------------------------------------------------------------------------


def evaluate_gates(
    kyc_status: str, rep_milli: int, device_compliant: bool, gates: GateParams
) -> tuple[WithheldReason, ...]:
    """Reasons the BUZ part is withheld, in a fixed order; empty when all gates hold.

    "Gates (all must hold)": KYC PASSED, reputation ≥ min_rep, device-compliant; the KYC and
    device gates can be switched off by settings. Every failing gate is reported (not just
    the first), always in the order KYC_REQUIRED, REPUTATION_TOO_LOW, DEVICE_NOT_COMPLIANT.
    Reputation compares the exact value: rep_milli ≥ min_rep × 1000, which is the same as
    shown floor(rep) ≥ min_rep.
    """
    reasons: list[WithheldReason] = []
    if gates.require_kyc and kyc_status != KycStatus.PASSED:
        reasons.append(WithheldReason.KYC_REQUIRED)
    if rep_milli < gates.min_rep * MILLI:
        reasons.append(WithheldReason.REPUTATION_TOO_LOW)
    if gates.require_device and not device_compliant:
        reasons.append(WithheldReason.DEVICE_NOT_COMPLIANT)
    return tuple(reasons)


def apply_daily_cap(computed: int, issued_today: int, cap: int) -> tuple[int, int]:
    """(awarded, capped): award up to what is left of the day's cap; the rest is dropped.

    "Daily cap per user per UTC day of acceptance: award up to the cap, the rest is not
    carried over". `issued_today` is the BUZ already issued for tasks accepted
    that UTC day. awarded + capped == computed; awarded ≤ max(0, cap − issued_today).
    """
    if computed < 0 or issued_today < 0 or cap < 0:
        raise ValueError("amounts must be >= 0")
    remaining = max(0, cap - issued_today)
    awarded = min(computed, remaining)
    return awarded, computed - awarded


@dataclass(frozen=True, slots=True)
class RewardDecision:
    """Everything the task-accepted use case records and returns.

    computed: round_half_up(tierBase × quality × reviewerCred) BUZ before gates and cap.
    awarded: BUZ to ISSUE. capped: BUZ dropped by the daily cap. withheld_buz: BUZ not
    issued because a gate failed (then awarded = capped = 0). withheld: the failing gates.
    xp: XP for the task (always awarded, never capped). cred_milli: reviewerCred used.
    Invariant: awarded + capped + withheld_buz == computed.
    """

    computed: int
    awarded: int
    capped: int
    withheld_buz: int
    withheld: tuple[WithheldReason, ...]
    xp: int
    cred_milli: int

    @property
    def reasons(self) -> tuple[WithheldReason, ...]:
        """Why less than `computed` was issued: the gates, then DAILY_CAP_REACHED."""
        return self.withheld + ((WithheldReason.DAILY_CAP_REACHED,) if self.capped else ())


def decide_reward(
    *,
    tier: str,
    quality: int,
    reviewer_reps_milli: Sequence[int],
    kyc_status: str,
    rep_milli: int,
    device_compliant: bool,
    issued_today: int,
    rewards: RewardParams,
    gates: GateParams,
) -> RewardDecision:
    """The reward for one accepted task ("Task accepted", "Gates", "Daily cap").

    Gates are checked first: if any fails, all BUZ is withheld (and does not use up the
    day's cap); XP is awarded either way. Otherwise the daily cap splits the BUZ into
    awarded and capped.
    """
    cred = reviewer_cred_milli(reviewer_reps_milli, rewards)
    points = task_points(tier, quality, cred, rewards)
    withheld = evaluate_gates(kyc_status, rep_milli, device_compliant, gates)
    if withheld:
        awarded, capped, withheld_buz = 0, 0, points
    else:
        awarded, capped = apply_daily_cap(points, issued_today, rewards.daily_cap)
        withheld_buz = 0
    return RewardDecision(
        computed=points,
        awarded=awarded,
        capped=capped,
        withheld_buz=withheld_buz,
        withheld=withheld,
        xp=points,
        cred_milli=cred,
    )


# --- task accepted: the call, checked ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskAccepted:
    """A "task accepted" event as the caller sent it (checked by `validate_task_accepted`)."""

    task_id: str
    user_id: str
    tier: str
    quality: int
    reviewer_ids: Sequence[str]
    venture_id: str
    accepted_at: datetime | None


@dataclass(frozen=True, slots=True)
class ValidCall:
    """One checked RecordTaskAccepted call, with the hash of its normalised payload."""

    ctx: RequestContext
    task_id: str
    user_id: uuid.UUID
    tier: str
    quality: int
    reviewer_ids: tuple[uuid.UUID, ...]
    venture_id: uuid.UUID
    accepted_at: datetime
    accepted_day: date
    payload_hash: str


def validate_task_accepted(ctx: RequestContext, event: TaskAccepted, now: datetime) -> ValidCall:
    """The call checked field by field (INVALID_ARGUMENT naming the first bad one).

    The payload hash covers every field after normalisation (task id, assignee, tier,
    quality, reviewer ids in the given order, venture, acceptance time), with the canonical
    encoding of server/core/chain.py, so it is the same whether the call came over gRPC or
    from another service: a retry with the same payload is a replay, another payload under
    the same task id a conflict.
    """
    task_id = request_key(event.task_id, "task_id")
    user_id = parse_uuid(event.user_id, "user_id")
    if event.tier not in _TIERS:
        raise InvalidArgument.field("tier", "must be S, A, B or C")
    if not 1 <= event.quality <= 5:
        raise InvalidArgument.field("quality", "must be 1..5")
    if not 1 <= len(event.reviewer_ids) <= MAX_REVIEWERS:
        raise InvalidArgument.field("reviewer_ids", f"must name 1..{MAX_REVIEWERS} reviewers")
    reviewers = tuple(parse_uuid(r, f"reviewer_ids[{i}]") for i, r in enumerate(event.reviewer_ids))
    if len(set(reviewers)) != len(reviewers):
        raise InvalidArgument.field("reviewer_ids", "must be distinct")
    if user_id in reviewers:
        raise InvalidArgument.field("reviewer_ids", "must not include the assignee")
    if not event.venture_id:
        raise InvalidArgument.field("venture_id", "is required")
    venture_id = parse_uuid(event.venture_id, "venture_id")
    accepted_at = not_future(required_time(event.accepted_at, "accepted_at"), "accepted_at", now)
    digest = payload_hash(
        {
            "task_id": task_id,
            "user_id": str(user_id),
            "tier": event.tier,
            "quality": event.quality,
            "reviewer_ids": [str(r) for r in reviewers],
            "venture_id": str(venture_id),
            "accepted_at": accepted_at,
        }
    )
    return ValidCall(
        ctx=ctx,
        task_id=task_id,
        user_id=user_id,
        tier=event.tier,
        quality=event.quality,
        reviewer_ids=reviewers,
        venture_id=venture_id,
        accepted_at=accepted_at,
        accepted_day=accepted_at.date(),
        payload_hash=digest,
    )


# --- what the use cases answer ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalletView:
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    buz_balance: int
    pending_lock: int
    head_seq: int
    head_hash: str
    created_at: datetime
    updated_at: datetime

    def after(self, entry: EntryView) -> WalletView:
        """The wallet as it was right after `entry` (a retry answers what the first call did)."""
        return WalletView(
            user_id=self.user_id,
            wallet_id=self.wallet_id,
            buz_balance=entry.balance_after,
            pending_lock=entry.pending_after,
            head_seq=entry.seq,
            head_hash=entry.hash,
            created_at=self.created_at,
            updated_at=entry.created_at,
        )


@dataclass(frozen=True, slots=True)
class Adjustment:
    wallet: WalletView
    entry: EntryView


@dataclass(frozen=True, slots=True)
class RewardView:
    task_id: str
    user_id: uuid.UUID
    venture_id: uuid.UUID | None
    tier: str
    quality: int
    reviewer_ids: tuple[str, ...]
    accepted_at: datetime
    accepted_day: date
    reviewer_cred_milli: int
    buz_computed: int
    buz_awarded: int
    buz_capped: int
    withheld_reasons: tuple[str, ...]
    xp_awarded: int
    ledger_entry: EntryView | None
    replay: bool
    created_at: datetime

    @property
    def withheld(self) -> bool:
        return self.buz_awarded < self.buz_computed
