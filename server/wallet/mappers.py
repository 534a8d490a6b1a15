"""WalletService messages ⇄ the wallet's domain types. Enums map by name (core/proto.py)."""

from __future__ import annotations

from smartstart.wallet.v1 import wallet_service_pb2 as pb

from server.core.proto import ProtoEnum, from_timestamp, to_timestamp
from server.wallet.domain import RewardView, TaskAccepted, Tier, WalletView, WithheldReason
from server.wallet.entries import EntryType, EntryView, RefKind
from server.wallet.verify import ProblemKind, Verification

ENTRY_TYPES = ProtoEnum(EntryType, pb.LedgerEntryType.Value, "LEDGER_ENTRY_TYPE_")
REF_KINDS = ProtoEnum(RefKind, pb.LedgerReferenceKind.Value, "LEDGER_REFERENCE_KIND_")
TIERS = ProtoEnum(Tier, pb.TaskTier.Value, "TASK_TIER_")
WITHHELD_REASONS = ProtoEnum(WithheldReason, pb.WithheldReason.Value, "WITHHELD_REASON_")
PROBLEMS = ProtoEnum(ProblemKind, pb.WalletProblemKind.Value, "WALLET_PROBLEM_KIND_")


def entry_types(numbers: list[int]) -> list[str]:
    """Requested entry types; an unknown number stays visible to the use case's check."""
    return [str(ENTRY_TYPES.from_pb(n) or "UNSPECIFIED") for n in numbers]


def task_accepted(request: pb.RecordTaskAcceptedRequest) -> TaskAccepted:
    return TaskAccepted(
        task_id=request.task_id,
        user_id=request.user_id,
        tier=str(TIERS.from_pb(request.tier) or ""),
        quality=request.quality,
        reviewer_ids=list(request.reviewer_ids),
        venture_id=request.venture_id,
        accepted_at=from_timestamp(request, "accepted_at"),
    )


def wallet_pb(view: WalletView) -> pb.Wallet:
    return pb.Wallet(
        user_id=str(view.user_id),
        buz_balance=view.buz_balance,
        pending_lock=view.pending_lock,
        head_seq=view.head_seq,
        head_hash=view.head_hash,
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )


def entry_pb(view: EntryView) -> pb.LedgerEntry:
    reference = (
        pb.LedgerReference(
            kind=REF_KINDS.to_pb(view.ref_kind or ""),
            id=view.ref_id or "",
        )
        if view.ref_kind or view.ref_id
        else None
    )
    return pb.LedgerEntry(
        id=str(view.id),
        user_id=str(view.user_id),
        seq=view.seq,
        type=ENTRY_TYPES.to_pb(view.type),
        amount=view.amount,
        balance_after=view.balance_after,
        pending_after=view.pending_after,
        reference=reference,
        note=view.note or "",
        actor_id=view.actor_id or "",
        created_at=to_timestamp(view.created_at),
        prev_hash=view.prev_hash,
        hash=view.hash,
        wallet_id=str(view.wallet_id),
        request_id=view.request_id or "",
    )


def reward_pb(view: RewardView) -> pb.TaskReward:
    message = pb.TaskReward(
        task_id=view.task_id,
        user_id=str(view.user_id),
        venture_id=str(view.venture_id) if view.venture_id else "",
        tier=TIERS.to_pb(view.tier),
        quality=view.quality,
        reviewer_ids=list(view.reviewer_ids),
        accepted_at=to_timestamp(view.accepted_at),
        reviewer_credibility=view.reviewer_cred_milli / 1000,
        buz_computed=view.buz_computed,
        buz_awarded=view.buz_awarded,
        buz_capped=view.buz_capped,
        withheld=view.withheld,
        withheld_reasons=[WITHHELD_REASONS.to_pb(r) for r in view.withheld_reasons],
        xp_awarded=view.xp_awarded,
        ledger_entry=entry_pb(view.ledger_entry) if view.ledger_entry else None,
        replay=view.replay,
        created_at=to_timestamp(view.created_at),
    )
    day = view.accepted_day
    message.cap_day.year, message.cap_day.month, message.cap_day.day = day.year, day.month, day.day
    return message


def verification_pb(view: Verification) -> pb.WalletVerification:
    return pb.WalletVerification(
        user_id=str(view.user_id),
        ok=view.ok,
        entries_checked=view.entries_checked,
        stored_buz_balance=view.stored_buz_balance,
        replayed_buz_balance=view.replayed_buz_balance,
        stored_pending_lock=view.stored_pending_lock,
        replayed_pending_lock=view.replayed_pending_lock,
        stored_head_seq=view.stored_head_seq,
        stored_head_hash=view.stored_head_hash,
        replayed_head_hash=view.replayed_head_hash,
        first_bad_seq=view.first_bad_seq,
        problem_kind=PROBLEMS.to_pb(view.problem or ""),
        detail=view.detail,
        verified_at=to_timestamp(view.verified_at),
    )
