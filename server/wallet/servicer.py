"""WalletService transport: each RPC maps its request (mappers), calls its use case and maps
the answer back. No SQL, no rules, nothing built here."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
from smartstart.wallet.v1 import wallet_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as pb_grpc

from server.core.idempotency import fingerprint
from server.core.proto import ServicerContext
from server.interceptors import current_context
from server.wallet import mappers
from server.wallet.service import WalletService


class WalletServicer(pb_grpc.WalletServiceServicer):
    def __init__(self, wallets: WalletService) -> None:
        self._wallets = wallets

    async def GetMyWallet(
        self, request: pb.GetMyWalletRequest, context: ServicerContext
    ) -> pb.Wallet:
        return mappers.wallet_pb(await self._wallets.get_my_wallet(current_context()))

    async def GetWallet(self, request: pb.GetWalletRequest, context: ServicerContext) -> pb.Wallet:
        return mappers.wallet_pb(await self._wallets.get_wallet(current_context(), request.user_id))

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: ServicerContext
    ) -> pb.ListLedgerEntriesResponse:
        page = await self._wallets.list_ledger_entries(
            current_context(),
            user_id=request.user_id,
            types=mappers.entry_types(list(request.types)),
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListLedgerEntriesResponse(
            entries=[mappers.entry_pb(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def VerifyWallet(
        self, request: pb.VerifyWalletRequest, context: ServicerContext
    ) -> pb.WalletVerification:
        view = await self._wallets.verify_wallet(current_context(), user_id=request.user_id)
        return mappers.verification_pb(view)

    async def AdjustBalance(
        self, request: pb.AdjustBalanceRequest, context: ServicerContext
    ) -> pb.AdjustBalanceResponse:
        result = await self._wallets.adjust_balance(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            user_id=request.user_id,
            delta=request.delta,
            reason=request.reason,
        )
        return pb.AdjustBalanceResponse(
            wallet=mappers.wallet_pb(result.wallet), entry=mappers.entry_pb(result.entry)
        )

    async def RecordTaskAccepted(
        self, request: pb.RecordTaskAcceptedRequest, context: ServicerContext
    ) -> pb.TaskReward:
        event = mappers.task_accepted(request)
        return mappers.reward_pb(await self._wallets.record_task_accepted(current_context(), event))

    async def GetTaskReward(
        self, request: pb.GetTaskRewardRequest, context: ServicerContext
    ) -> pb.TaskReward:
        view = await self._wallets.get_task_reward(current_context(), request.task_id)
        return mappers.reward_pb(view)

    async def ListMyTaskRewards(
        self, request: pb.ListMyTaskRewardsRequest, context: ServicerContext
    ) -> pb.ListMyTaskRewardsResponse:
        page = await self._wallets.list_my_rewards(
            current_context(), page_size_requested=request.page_size, page_token=request.page_token
        )
        return pb.ListMyTaskRewardsResponse(
            rewards=[mappers.reward_pb(r) for r in page.items],
            next_page_token=page.next_page_token,
        )


def register(server: grpc.aio.Server, service: WalletService) -> Sequence[str]:
    pb_grpc.add_WalletServiceServicer_to_server(WalletServicer(service), server)
    return [pb.DESCRIPTOR.services_by_name["WalletService"].full_name]
