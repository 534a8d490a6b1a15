"""WalletService transport: proto ⇄ use-case arguments and views. No SQL, no rules."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
from smartstart.wallet.v1 import wallet_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as pb_grpc

from server.convert import ServicerContext, from_timestamp, to_timestamp
from server.deps import Deps
from server.idempotency import fingerprint
from server.interceptors import current_context
from server.wallet.ledger import EntryView, ProblemKind, Verification
from server.wallet.rewards import RewardService, RewardView, TaskAccepted
from server.wallet.service import WalletService, WalletView

_TYPE_TO_PB = {
    "ISSUE": pb.LEDGER_ENTRY_TYPE_ISSUE,
    "LOCK": pb.LEDGER_ENTRY_TYPE_LOCK,
    "UNLOCK": pb.LEDGER_ENTRY_TYPE_UNLOCK,
    "BURN": pb.LEDGER_ENTRY_TYPE_BURN,
    "ADJUST": pb.LEDGER_ENTRY_TYPE_ADJUST,
}
_TYPE_FROM_PB = {v: k for k, v in _TYPE_TO_PB.items()}
_REF_TO_PB = {
    "TASK": pb.LEDGER_REFERENCE_KIND_TASK,
    "CONVERSION": pb.LEDGER_REFERENCE_KIND_CONVERSION,
    "ADJUSTMENT": pb.LEDGER_REFERENCE_KIND_ADJUSTMENT,
}
_TIER_TO_PB = {
    "S": pb.TASK_TIER_S,
    "A": pb.TASK_TIER_A,
    "B": pb.TASK_TIER_B,
    "C": pb.TASK_TIER_C,
}
_TIER_FROM_PB = {v: k for k, v in _TIER_TO_PB.items()}
_REASON_TO_PB = {
    "KYC_REQUIRED": pb.WITHHELD_REASON_KYC_REQUIRED,
    "REPUTATION_TOO_LOW": pb.WITHHELD_REASON_REPUTATION_TOO_LOW,
    "DEVICE_NOT_COMPLIANT": pb.WITHHELD_REASON_DEVICE_NOT_COMPLIANT,
    "DAILY_CAP_REACHED": pb.WITHHELD_REASON_DAILY_CAP_REACHED,
}
_PROBLEM_TO_PB = {
    ProblemKind.HASH_MISMATCH: pb.WALLET_PROBLEM_KIND_HASH_MISMATCH,
    ProblemKind.CHAIN_BROKEN: pb.WALLET_PROBLEM_KIND_CHAIN_BROKEN,
    ProblemKind.SEQ_GAP: pb.WALLET_PROBLEM_KIND_SEQ_GAP,
    ProblemKind.REPLAY_MISMATCH: pb.WALLET_PROBLEM_KIND_REPLAY_MISMATCH,
    ProblemKind.HEAD_MISMATCH: pb.WALLET_PROBLEM_KIND_HEAD_MISMATCH,
    ProblemKind.BALANCE_MISMATCH: pb.WALLET_PROBLEM_KIND_BALANCE_MISMATCH,
}


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
            kind=_REF_TO_PB.get(view.ref_kind or "", pb.LEDGER_REFERENCE_KIND_UNSPECIFIED),
            id=view.ref_id or "",
        )
        if view.ref_kind or view.ref_id
        else None
    )
    return pb.LedgerEntry(
        id=str(view.id),
        user_id=str(view.user_id),
        seq=view.seq,
        type=_TYPE_TO_PB[view.type],
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
        tier=_TIER_TO_PB[view.tier],
        quality=view.quality,
        reviewer_ids=list(view.reviewer_ids),
        accepted_at=to_timestamp(view.accepted_at),
        reviewer_credibility=view.reviewer_cred_milli / 1000,
        buz_computed=view.buz_computed,
        buz_awarded=view.buz_awarded,
        buz_capped=view.buz_capped,
        withheld=view.withheld,
        withheld_reasons=[_REASON_TO_PB[r] for r in view.withheld_reasons],
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
        problem_kind=(
            _PROBLEM_TO_PB[view.problem] if view.problem else pb.WALLET_PROBLEM_KIND_UNSPECIFIED
        ),
        detail=view.detail,
        verified_at=to_timestamp(view.verified_at),
    )


class WalletServicer(pb_grpc.WalletServiceServicer):
    def __init__(self, wallets: WalletService, rewards: RewardService) -> None:
        self._wallets = wallets
        self._rewards = rewards

    async def GetMyWallet(
        self, request: pb.GetMyWalletRequest, context: ServicerContext
    ) -> pb.Wallet:
        return wallet_pb(await self._wallets.get_mine(current_context()))

    async def GetWallet(self, request: pb.GetWalletRequest, context: ServicerContext) -> pb.Wallet:
        return wallet_pb(await self._wallets.get(current_context(), request.user_id))

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: ServicerContext
    ) -> pb.ListLedgerEntriesResponse:
        page = await self._wallets.list_entries(
            current_context(),
            user_id=request.user_id,
            types=[_TYPE_FROM_PB.get(t, "UNSPECIFIED") for t in request.types],
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListLedgerEntriesResponse(
            entries=[entry_pb(e) for e in page.entries], next_page_token=page.next_page_token
        )

    async def VerifyWallet(
        self, request: pb.VerifyWalletRequest, context: ServicerContext
    ) -> pb.WalletVerification:
        return verification_pb(
            await self._wallets.verify(current_context(), user_id=request.user_id)
        )

    async def AdjustBalance(
        self, request: pb.AdjustBalanceRequest, context: ServicerContext
    ) -> pb.AdjustBalanceResponse:
        result = await self._wallets.adjust(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            user_id=request.user_id,
            delta=request.delta,
            reason=request.reason,
        )
        return pb.AdjustBalanceResponse(
            wallet=wallet_pb(result.wallet), entry=entry_pb(result.entry)
        )

    async def RecordTaskAccepted(
        self, request: pb.RecordTaskAcceptedRequest, context: ServicerContext
    ) -> pb.TaskReward:
        event = TaskAccepted(
            task_id=request.task_id,
            user_id=request.user_id,
            tier=_TIER_FROM_PB.get(request.tier, ""),
            quality=request.quality,
            reviewer_ids=list(request.reviewer_ids),
            venture_id=request.venture_id,
            accepted_at=from_timestamp(request, "accepted_at"),
        )
        return reward_pb(await self._rewards.record_task_accepted(current_context(), event))

    async def GetTaskReward(
        self, request: pb.GetTaskRewardRequest, context: ServicerContext
    ) -> pb.TaskReward:
        return reward_pb(await self._rewards.get_task_reward(current_context(), request.task_id))


def register(server: grpc.aio.Server, deps: Deps) -> Sequence[str]:
    rewards = RewardService(
        deps.database,
        deps.params,
        batch_max_size=deps.settings.batch_max_size,
        batch_max_inflight=deps.settings.batch_max_inflight,
    )
    deps.on_stop.append(rewards.batcher.drain)
    servicer = WalletServicer(WalletService(deps.database, deps.page_tokens), rewards)
    pb_grpc.add_WalletServiceServicer_to_server(servicer, server)
    return [pb.DESCRIPTOR.services_by_name["WalletService"].full_name]
