"""ListMyTaskRewards: the caller's own rewards, withheld and capped ones included, paged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import grpc.aio
from smartstart.wallet.v1 import wallet_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2_grpc as pb_grpc

from server.db.session import Database
from tests.fixtures_server import MintToken, bearer, error_info
from tests.profile.support import fails, ts
from tests.wallet.support import make_user, make_venture

SYSTEM = str(uuid.UUID(int=1))


def task(
    user: uuid.UUID, reviewer: uuid.UUID, venture: uuid.UUID, at: datetime
) -> pb.RecordTaskAcceptedRequest:
    return pb.RecordTaskAcceptedRequest(
        task_id=f"task-{uuid.uuid4()}",
        user_id=str(user),
        tier=pb.TASK_TIER_S,
        quality=5,
        reviewer_ids=[str(reviewer)],
        venture_id=str(venture),
        accepted_at=ts(at),
    )


async def test_the_caller_sees_every_own_reward_and_only_those(
    channel: grpc.aio.Channel, db: Database, mint_token: MintToken
) -> None:
    stub = pb_grpc.WalletServiceStub(channel)
    system = bearer(mint_token(SYSTEM, roles=("system",)))
    venture = await make_venture(db)
    reviewer = await make_user(db, rep=121)  # cred 1.1: 616 BUZ per task
    user = await make_user(db)
    unverified = await make_user(db, kyc="NONE")
    at = datetime.now(UTC) - timedelta(minutes=1)
    recorded = [
        await stub.RecordTaskAccepted(task(user, reviewer, venture, at), metadata=system)
        for _ in range(4)
    ]
    assert [r.buz_awarded for r in recorded] == [616, 616, 616, 152]  # the fourth is capped
    withheld = await stub.RecordTaskAccepted(
        task(unverified, reviewer, venture, at), metadata=system
    )
    assert withheld.withheld and not withheld.HasField("ledger_entry")

    mine = await stub.ListMyTaskRewards(
        pb.ListMyTaskRewardsRequest(), metadata=bearer(mint_token(str(user)))
    )
    assert [r.task_id for r in mine.rewards] == [r.task_id for r in reversed(recorded)]
    capped = mine.rewards[0]
    assert (capped.buz_capped, list(capped.withheld_reasons)) == (
        464,
        [pb.WITHHELD_REASON_DAILY_CAP_REACHED],
    )
    assert capped.ledger_entry.amount == 152 and not capped.replay
    theirs = await stub.ListMyTaskRewards(
        pb.ListMyTaskRewardsRequest(), metadata=bearer(mint_token(str(unverified)))
    )
    assert [r.task_id for r in theirs.rewards] == [withheld.task_id]
    assert list(theirs.rewards[0].withheld_reasons) == [pb.WITHHELD_REASON_KYC_REQUIRED]

    pages: list[str] = []
    token = ""
    while True:
        page = await stub.ListMyTaskRewards(
            pb.ListMyTaskRewardsRequest(page_size=3, page_token=token),
            metadata=bearer(mint_token(str(user))),
        )
        pages.append(",".join(r.task_id for r in page.rewards))
        token = page.next_page_token
        if not token:
            break
    assert len(pages) == 2 and ",".join(pages).split(",") == [r.task_id for r in reversed(recorded)]

    # another user's token cannot reuse the page token; no token is UNAUTHENTICATED
    first = await stub.ListMyTaskRewards(
        pb.ListMyTaskRewardsRequest(page_size=1), metadata=bearer(mint_token(str(user)))
    )
    err = await fails(
        stub.ListMyTaskRewards(
            pb.ListMyTaskRewardsRequest(page_token=first.next_page_token),
            metadata=bearer(mint_token(str(unverified))),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="page_token",
    )
    assert error_info(err) is not None
    await fails(
        stub.ListMyTaskRewards(pb.ListMyTaskRewardsRequest()), grpc.StatusCode.UNAUTHENTICATED
    )
    await fails(
        stub.ListMyTaskRewards(
            pb.ListMyTaskRewardsRequest(page_size=-1), metadata=bearer(mint_token(str(user)))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="page_size",
    )
