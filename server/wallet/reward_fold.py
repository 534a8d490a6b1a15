"""The reward batch's decisions, call by call in arrival order: pure, no I/O.

`Fold` holds what the batch's transaction locked and read (the assignees' wallets, XP and
KYC, the day's issued BUZ, the stored task ids, ventures, reviewer reputations, device
reports) and applies each call as if it were alone: a task id already stored (before this
batch or earlier in it) → replay (same payload hash) or IdempotencyConflict; an unknown
assignee, venture or reviewer → NotFound for that call alone; else the decision
(server.wallet.domain.decide_reward, with the day's BUZ including this batch's earlier
awards), the level after the XP, the ISSUE ledger entry chained to the wallet's head and the
`task.accepted` audit event, drafted. Only then does the batch's state move past the call.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from server.audit.domain import AuditEvent, DraftEvent, NewEvent, draft
from server.core.errors import DomainError, IdempotencyConflict, NotFound
from server.core.params import BusinessParams
from server.profile.domain import DeviceReport, is_device_compliant, utc_day
from server.profile.gamification import gain_day, level_for_xp
from server.wallet.domain import RewardDecision, RewardView, ValidCall, decide_reward
from server.wallet.entries import (
    EntryType,
    EntryView,
    NewEntry,
    RefKind,
    WalletState,
    advance,
    prepare_entry,
)

AUDIT_SCOPE = "task"


@dataclass(frozen=True, slots=True)
class Recorded:
    """A reward this transaction wrote (the service builds its RewardView from it)."""

    call: ValidCall
    decision: RewardDecision
    entry: EntryView | None
    created_at: datetime

    def view(self) -> RewardView:
        call, decision = self.call, self.decision
        return RewardView(
            task_id=call.task_id,
            user_id=call.user_id,
            venture_id=call.venture_id,
            tier=call.tier,
            quality=call.quality,
            reviewer_ids=tuple(str(r) for r in call.reviewer_ids),
            accepted_at=call.accepted_at,
            accepted_day=call.accepted_day,
            reviewer_cred_milli=decision.cred_milli,
            buz_computed=decision.computed,
            buz_awarded=decision.awarded,
            buz_capped=decision.capped,
            withheld_reasons=tuple(str(r) for r in decision.reasons),
            xp_awarded=decision.xp,
            ledger_entry=self.entry,
            replay=False,
            created_at=self.created_at,
        )


@dataclass(frozen=True, slots=True)
class Replay:
    """The call names a task id already stored (before this batch or earlier in it) with
    the same payload: the caller answers with the stored reward, replay = true."""

    task_id: str


Outcome = Recorded | Replay | DomainError


@dataclass(slots=True)
class Write:
    call: ValidCall
    decision: RewardDecision
    level: int
    xp_day: date  # the day the XP counts for in dailyGain (gamification.gain_day)
    entry: NewEntry | None
    draft: DraftEvent
    event: NewEvent | None = None  # chained once the heads are locked (S3)


@dataclass(slots=True)
class Fold:
    """The batch's state as calls are applied in order: locked wallets move past each
    call's entry, XP and the day's issued BUZ accumulate."""

    params: BusinessParams
    now: datetime
    assignees: Mapping[uuid.UUID, Any]
    wallets: dict[uuid.UUID, WalletState]
    xp: dict[uuid.UUID, int]
    stored: Mapping[str, str]  # task id → payload hash, stored before this transaction
    issued: dict[tuple[uuid.UUID, date], int]
    ventures: frozenset[uuid.UUID]
    reviewer_reps: Mapping[uuid.UUID, int]
    devices: Mapping[uuid.UUID, DeviceReport]
    writes: list[Write] = field(default_factory=list)
    written: dict[str, str] = field(default_factory=dict)  # task id → payload hash, this batch

    def apply(self, call: ValidCall) -> Replay | Write:
        seen = self.written.get(call.task_id) or self.stored.get(call.task_id)
        if seen is not None:  # a recorded task id answers before an unknown assignee
            if seen != call.payload_hash:
                raise task_conflict(call)
            return Replay(call.task_id)
        assignee = self.assignees.get(call.user_id)
        if assignee is None:
            raise NotFound("assignee not found", metadata={"user_id": str(call.user_id)})
        if call.venture_id not in self.ventures:
            raise NotFound("venture not found", metadata={"venture_id": str(call.venture_id)})
        for reviewer in call.reviewer_ids:
            if reviewer not in self.reviewer_reps:
                raise NotFound("reviewer not found", metadata={"reviewer_id": str(reviewer)})
        params = self.params
        day_key = (call.user_id, call.accepted_day)
        decision = decide_reward(
            tier=call.tier,
            quality=call.quality,
            reviewer_reps_milli=[self.reviewer_reps[r] for r in call.reviewer_ids],
            kyc_status=assignee.kyc_status,
            rep_milli=int(assignee.rep_milli),
            device_compliant=is_device_compliant(
                self.devices.get(call.user_id), self.now, params.device.max_report_age
            ),
            issued_today=self.issued.get(day_key, 0),
            rewards=params.rewards,
            gates=params.gates,
        )
        xp = self.xp[call.user_id] + decision.xp
        level = level_for_xp(xp, params.levels.thresholds)
        wallet = self.wallets[call.user_id]
        entry = None
        if decision.awarded > 0:
            entry = prepare_entry(
                wallet,
                call.ctx,
                type=EntryType.ISSUE,
                amount=decision.awarded,
                ref_kind=RefKind.TASK,
                ref_id=call.task_id,
            )
        event_draft = draft(
            call.ctx,
            AuditEvent(
                action="task.accepted",
                scope=AUDIT_SCOPE,
                ref_id=call.task_id,
                details=_audit_details(call, decision, entry, level),
            ),
        )
        # Everything for this call is computed: only now move the batch's state past it.
        if entry is not None:
            advance(wallet, entry)
        self.xp[call.user_id] = xp
        self.issued[day_key] = self.issued.get(day_key, 0) + decision.awarded
        self.written[call.task_id] = call.payload_hash
        xp_day = gain_day(utc_day(self.now), assignee.rep_through)
        write = Write(call, decision, level, xp_day, entry, event_draft)
        self.writes.append(write)
        return write


def task_conflict(call: ValidCall) -> IdempotencyConflict:
    return IdempotencyConflict(
        "task_id was already recorded with a different payload",
        metadata={"task_id": call.task_id},
    )


def _audit_details(
    call: ValidCall, decision: RewardDecision, entry: NewEntry | None, level: int
) -> dict[str, Any]:
    return {
        "user_id": str(call.user_id),
        "venture_id": str(call.venture_id),
        "tier": call.tier,
        "quality": call.quality,
        "reviewer_count": len(call.reviewer_ids),
        "accepted_day": call.accepted_day.isoformat(),
        "reviewer_cred_milli": decision.cred_milli,
        "buz_computed": decision.computed,
        "buz_awarded": decision.awarded,
        "buz_capped": decision.capped,
        "buz_withheld": decision.withheld_buz,
        "reasons": [str(r) for r in decision.reasons],
        "xp_awarded": decision.xp,
        "level": level,
        "ledger_seq": entry.seq if entry else None,
    }
