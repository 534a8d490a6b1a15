"""Portfolio through the real server: create, update (mask), delete, every field limit, the
task and document link rules, and who sees which item."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from smartstart.profile.v1 import profile_service_pb2 as pb
from smartstart.wallet.v1 import wallet_service_pb2 as wpb
from sqlalchemy import text

from server.db.session import Database
from tests.profile.support import (
    Api,
    Metadata,
    MovableClock,
    fails,
    sql_value,
)


async def create(api: Api, owner: str, **fields: Any) -> pb.PortfolioItem:
    request = pb.CreatePortfolioItemRequest(
        request_id=fields.pop("request_id", str(uuid.uuid4())),
        title=fields.pop("title", "My work"),
        **fields,
    )
    return await api.profiles.CreatePortfolioItem(request, metadata=api.user(owner))


def update(api: Api, owner: str, item_id: str, paths: list[str], **fields: Any) -> Any:
    return api.profiles.UpdatePortfolioItem(
        pb.UpdatePortfolioItemRequest(
            item=pb.PortfolioItem(item_id=item_id, **fields), update_mask=FieldMask(paths=paths)
        ),
        metadata=api.user(owner),
    )


async def listed(api: Api, user: str, metadata: Metadata = ()) -> list[str]:
    page = await api.profiles.ListPortfolio(
        pb.ListPortfolioRequest(user_id=user), metadata=metadata
    )
    return [i.title for i in page.items]


async def document_of(db: Database, owner: str, status: str = "ACTIVE") -> str:
    """A documents row as DocumentService (not built yet) would write it."""
    async with db.transaction() as session:
        found: uuid.UUID = (
            await session.execute(
                text(
                    "INSERT INTO documents (owner_id, title, filename, media_type, size_bytes,"
                    " sha256, blob_key, status, deleted_at) VALUES (:o, 't', 'f.pdf',"
                    " 'application/pdf', 1, :h, :h, :s, CASE WHEN :s = 'DELETED' THEN now() END)"
                    " RETURNING id"
                ),
                {"o": owner, "h": uuid.uuid4().hex, "s": status},
            )
        ).scalar_one()
    return str(found)


async def test_create_update_delete(api: Api, db: Database, clock: MovableClock) -> None:
    owner = await api.register()
    item = await create(
        api,
        owner,
        title="  Launch site ",
        description="Built **it**",
        urls=["https://example.com", "http://example.org/x"],
        impact_metrics={"users_reached": 1200, "nps": 61.5},
        is_public=True,
    )
    assert (item.title, item.owner_user_id, item.buz_earned, item.task_id) == (
        "Launch site",
        owner,
        0,
        "",
    )
    assert dict(item.impact_metrics) == {"users_reached": 1200, "nps": 61.5}
    clock.now += timedelta(minutes=1)
    changed = await update(
        api, owner, item.item_id, ["urls", "is_public", "impact_metrics"], is_public=False
    )
    assert (list(changed.urls), changed.is_public, dict(changed.impact_metrics)) == ([], False, {})
    assert changed.title == "Launch site"  # not in the mask
    got = await api.profiles.GetPortfolioItem(
        pb.GetPortfolioItemRequest(item_id=item.item_id), metadata=api.user(owner)
    )
    assert got == changed
    await api.profiles.DeletePortfolioItem(
        pb.DeletePortfolioItemRequest(item_id=item.item_id), metadata=api.user(owner)
    )
    await fails(
        api.profiles.DeletePortfolioItem(
            pb.DeletePortfolioItemRequest(item_id=item.item_id), metadata=api.user(owner)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    actions = await sql_value(
        db, "SELECT count(*) FROM audit_events WHERE action LIKE 'portfolio.%'"
    )
    assert actions == 3
    key = str(uuid.uuid4())
    first = await create(api, owner, request_id=key, title="Once")
    assert await create(api, owner, request_id=key, title="Once") == first
    await fails(
        create(api, owner, request_id=key, title="Twice"),
        grpc.StatusCode.ALREADY_EXISTS,
        "IDEMPOTENCY_CONFLICT",
    )


async def test_field_limits(api: Api) -> None:
    owner = await api.register()
    bad: list[tuple[dict[str, Any], str]] = [
        ({"title": ""}, "title"),
        ({"title": "t" * 121}, "title"),
        ({"description": "d" * 4001}, "description"),
        ({"urls": ["https://x.test"] * 11}, "urls"),
        ({"urls": ["ftp://x.test"]}, "urls[0]"),
        ({"urls": ["https://x.test", ""]}, "urls[1]"),
        ({"urls": ["https://" + "x" * 293 + ".test"]}, "urls[0]"),
        ({"document_ids": [str(uuid.uuid4()) for _ in range(21)]}, "document_ids"),
        ({"document_ids": ["doc-1"]}, "document_ids[0]"),
        ({"document_ids": [str(uuid.UUID(int=5))] * 2}, "document_ids"),
        ({"task_id": "t" * 129}, "task_id"),
        ({"impact_metrics": {f"m{i}": 1.0 for i in range(21)}}, "impact_metrics"),
        ({"impact_metrics": {"bad name": 1.0}}, "impact_metrics[bad name]"),
        ({"impact_metrics": {"x" * 41: 1.0}}, f"impact_metrics[{'x' * 40}]"),
        ({"impact_metrics": {"inf": math.inf}}, "impact_metrics[inf]"),
        ({"impact_metrics": {"nan": math.nan}}, "impact_metrics[nan]"),
    ]
    for fields, field in bad:
        await fails(create(api, owner, **fields), grpc.StatusCode.INVALID_ARGUMENT, field=field)
    at_limits = await create(
        api,
        owner,
        title="t" * 120,
        description="d" * 4000,
        urls=["https://" + "x" * 287 + ".test"] * 10,
        impact_metrics={f"m.{i}-_X": float(i) for i in range(20)},
    )
    assert len(at_limits.urls) == 10 and len(at_limits.impact_metrics) == 20
    for paths in ([], ["owner_user_id"], ["buz_earned"]):
        await fails(
            update(api, owner, at_limits.item_id, paths),
            grpc.StatusCode.INVALID_ARGUMENT,
            field="update_mask",
        )
    await fails(
        update(api, owner, "not-a-uuid", ["title"], title="x"),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="item.item_id",
    )
    await fails(
        update(api, owner, at_limits.item_id, ["title"], title=""),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="title",
    )


async def test_a_linked_task_must_be_one_the_owner_was_rewarded_for(api: Api, db: Database) -> None:
    venture = await api.venture()
    owner, other, reviewer = await api.register(), await api.register(), await api.register()
    withheld = await api.task(owner, reviewer, venture, tier=wpb.TASK_TIER_C, quality=3)
    assert withheld.withheld and withheld.buz_awarded == 0  # KYC NONE: still a reward record
    foreign = await api.task(other, reviewer, venture)
    item = await create(api, owner, task_id=withheld.task_id)
    assert (item.task_id, item.buz_earned) == (withheld.task_id, 0)
    for task_id in (foreign.task_id, "never-recorded"):
        await fails(
            create(api, owner, task_id=task_id),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INVALID_STATE",
        )
        await fails(
            update(api, owner, item.item_id, ["task_id"], task_id=task_id),
            grpc.StatusCode.FAILED_PRECONDITION,
            "INVALID_STATE",
        )
    # BUZ earned is the reward's issued BUZ, not the caller's word
    async with db.transaction() as session:  # the gates' facts (no API sets a reputation)
        await session.execute(
            text("UPDATE profiles SET rep_milli = 100000 WHERE user_id = :u"), {"u": owner}
        )
    await api.set_kyc(owner)
    await api.report_posture(owner)
    paid = await api.task(owner, reviewer, venture, tier=wpb.TASK_TIER_C, quality=3)
    assert paid.buz_awarded == 35
    moved = await update(api, owner, item.item_id, ["task_id"], task_id=paid.task_id)
    assert (moved.task_id, moved.buz_earned) == (paid.task_id, 35)
    cleared = await update(api, owner, item.item_id, ["task_id"], task_id="")
    assert (cleared.task_id, cleared.buz_earned) == ("", 0)


async def test_linked_documents_must_be_the_owners(api: Api, db: Database) -> None:
    owner, other = await api.register(), await api.register()
    mine, theirs = await document_of(db, owner), await document_of(db, other)
    gone = await document_of(db, owner, "DELETED")
    item = await create(api, owner, document_ids=[mine])
    assert list(item.document_ids) == [mine]
    for doc in (theirs, gone, str(uuid.uuid4())):
        await fails(
            create(api, owner, document_ids=[mine, doc]), grpc.StatusCode.NOT_FOUND, "NOT_FOUND"
        )
        await fails(
            update(api, owner, item.item_id, ["document_ids"], document_ids=[doc]),
            grpc.StatusCode.NOT_FOUND,
        )


async def test_who_sees_which_item(api: Api, clock: MovableClock) -> None:
    owner, other = await api.register(), await api.register()
    public = await create(api, owner, title="public", is_public=True)
    clock.now += timedelta(seconds=1)
    private = await create(api, owner, title="private")
    assert await listed(api, owner) == ["public"]
    assert await listed(api, owner, api.user(other)) == ["public"]
    assert await listed(api, "me", api.user(owner)) == ["private", "public"]
    assert await listed(api, owner, api.admin) == ["private", "public"]
    get = api.profiles.GetPortfolioItem
    assert (await get(pb.GetPortfolioItemRequest(item_id=public.item_id))).title == "public"
    await fails(get(pb.GetPortfolioItemRequest(item_id=private.item_id)), grpc.StatusCode.NOT_FOUND)
    await fails(
        get(pb.GetPortfolioItemRequest(item_id=private.item_id), metadata=api.user(other)),
        grpc.StatusCode.NOT_FOUND,
    )
    assert (
        await get(pb.GetPortfolioItemRequest(item_id=private.item_id), metadata=api.admin)
    ).title == "private"
    # others cannot change or delete it: NOT_FOUND, as if it did not exist
    await fails(
        update(api, other, public.item_id, ["title"], title="mine"), grpc.StatusCode.NOT_FOUND
    )
    await fails(
        api.profiles.DeletePortfolioItem(
            pb.DeletePortfolioItemRequest(item_id=public.item_id), metadata=api.user(other)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    # a private profile hides even its public items
    await api.profiles.UpdateMyProfile(
        pb.UpdateMyProfileRequest(
            profile=pb.Profile(is_public=False), update_mask=FieldMask(paths=["is_public"])
        ),
        metadata=api.user(owner),
    )
    await fails(listed(api, owner, api.user(other)), grpc.StatusCode.NOT_FOUND)
    await fails(get(pb.GetPortfolioItemRequest(item_id=public.item_id)), grpc.StatusCode.NOT_FOUND)
    assert await listed(api, owner, api.user(owner)) == ["private", "public"]
    # pages
    first = await api.profiles.ListPortfolio(
        pb.ListPortfolioRequest(user_id=owner, page_size=1), metadata=api.user(owner)
    )
    rest = await api.profiles.ListPortfolio(
        pb.ListPortfolioRequest(user_id=owner, page_size=1, page_token=first.next_page_token),
        metadata=api.user(owner),
    )
    assert [i.title for i in [*first.items, *rest.items]] == ["private", "public"]


async def test_concurrent_retries_create_one_item(api: Api, db: Database) -> None:
    owner = await api.register()
    got = await asyncio.gather(
        *(create(api, owner, request_id="same", title="x") for _ in range(8))
    )
    assert len({item.item_id for item in got}) == 1
    assert await sql_value(db, "SELECT count(*) FROM portfolio_items") == 1
