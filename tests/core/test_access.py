"""The one access helper: who the caller is, which user a call names, who may see what."""

from __future__ import annotations

import uuid

import pytest

from server.core.access import Denial, caller_id, require_owner_or, user_ref, visible
from server.core.context import Principal, RequestContext, Role
from server.core.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated

ME = uuid.uuid4()
OTHER = uuid.uuid4()


def ctx(sub: str | None, *roles: Role) -> RequestContext:
    return RequestContext("r", Principal(sub, frozenset(roles)) if sub else None)


def test_caller_id() -> None:
    assert caller_id(ctx(str(ME), Role.USER)) == ME
    with pytest.raises(Unauthenticated):
        caller_id(ctx(None))
    with pytest.raises(NotFound):  # a system token's subject has no account
        caller_id(ctx("system", Role.SYSTEM))


def test_user_ref() -> None:
    user = ctx(str(ME), Role.USER)
    assert user_ref(user, "me") == ME
    assert user_ref(user, str(OTHER)) == OTHER
    assert user_ref(user, "", empty_is_me=True) == ME
    with pytest.raises(InvalidArgument) as bad:
        user_ref(user, "")
    assert bad.value.violations[0].field == "user_id"
    with pytest.raises(InvalidArgument):
        user_ref(user, "not-a-uuid", "reviewer_id")


@pytest.mark.parametrize(
    ("denial", "error"),
    [(Denial.NOT_FOUND, NotFound), (Denial.PERMISSION_DENIED, PermissionDenied)],
)
def test_require_owner_or(denial: Denial, error: type[Exception]) -> None:
    require_owner_or(ctx(str(ME), Role.USER), ME, Role.ADMIN, denial=denial, what="wallet")
    require_owner_or(ctx("x", Role.ADMIN), ME, Role.ADMIN, denial=denial, what="wallet")
    with pytest.raises(error):
        require_owner_or(ctx(str(OTHER), Role.USER), ME, Role.ADMIN, denial=denial, what="wallet")
    with pytest.raises(error):
        require_owner_or(ctx(None), ME, Role.ADMIN, denial=denial, what="wallet")


def test_visible() -> None:
    admins = (Role.ADMIN,)
    assert visible(ctx(None), ME, public=True, roles=admins)
    assert not visible(ctx(None), ME, public=False, roles=admins)
    assert visible(ctx(str(ME), Role.USER), ME, public=False, roles=admins)
    assert not visible(ctx(str(OTHER), Role.USER), ME, public=False, roles=admins)
    assert visible(ctx(str(OTHER), Role.ADMIN), ME, public=False, roles=admins)
