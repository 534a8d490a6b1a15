"""The contract itself: documented everywhere, policed everywhere, transcodable everywhere.

Reads the committed descriptor set (with source info) that `make gen` produces.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from smartstart.common.v1 import options_pb2

DESCRIPTORS = Path(__file__).resolve().parents[2] / "clients/descriptors/smartstart.binpb"

# SourceCodeInfo paths: FileDescriptorProto field numbers.
MESSAGE, ENUM, SERVICE = 4, 5, 6
FIELD, NESTED, NESTED_ENUM = 2, 3, 4
ENUM_VALUE, METHOD = 2, 2


def smartstart_files() -> list[descriptor_pb2.FileDescriptorProto]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    return [f for f in fds.file if f.package.startswith("smartstart.")]


def undocumented(f: descriptor_pb2.FileDescriptorProto) -> list[str]:
    comments = {
        tuple(loc.path)
        for loc in f.source_code_info.location
        if loc.leading_comments.strip() or loc.trailing_comments.strip()
    }
    missing: list[str] = []

    def need(path: tuple[int, ...], name: str) -> None:
        if path not in comments:
            missing.append(f"{f.name}: {name}")

    def walk_enum(
        path: tuple[int, ...], e: descriptor_pb2.EnumDescriptorProto, prefix: str
    ) -> None:
        need(path, f"enum {prefix}{e.name}")
        for i, v in enumerate(e.value):
            need((*path, ENUM_VALUE, i), f"enum value {prefix}{e.name}.{v.name}")

    def walk_message(path: tuple[int, ...], m: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        need(path, f"message {prefix}{m.name}")
        for i, fld in enumerate(m.field):
            need((*path, FIELD, i), f"field {prefix}{m.name}.{fld.name}")
        for i, nested in enumerate(m.nested_type):
            if not nested.options.map_entry:
                walk_message((*path, NESTED, i), nested, f"{prefix}{m.name}.")
        for i, e in enumerate(m.enum_type):
            walk_enum((*path, NESTED_ENUM, i), e, f"{prefix}{m.name}.")

    for i, m in enumerate(f.message_type):
        walk_message((MESSAGE, i), m, "")
    for i, e in enumerate(f.enum_type):
        walk_enum((ENUM, i), e, "")
    for i, s in enumerate(f.service):
        need((SERVICE, i), f"service {s.name}")
        for j, method in enumerate(s.method):
            need((SERVICE, i, METHOD, j), f"rpc {s.name}.{method.name}")
    return missing


def test_descriptor_set_covers_every_service() -> None:
    services = {f"{f.package}.{s.name}" for f in smartstart_files() for s in f.service}
    assert services == {
        "smartstart.profile.v1.ProfileService",
        "smartstart.wallet.v1.WalletService",
        "smartstart.conversion.v1.ConversionService",
        "smartstart.document.v1.DocumentService",
        "smartstart.audit.v1.AuditService",
        "smartstart.ops.v1.OpsService",
    }


@pytest.mark.parametrize("proto", smartstart_files(), ids=lambda f: f.name)
def test_every_element_has_a_comment(proto: descriptor_pb2.FileDescriptorProto) -> None:
    assert undocumented(proto) == []


@pytest.mark.parametrize("proto", smartstart_files(), ids=lambda f: f.name)
def test_every_rpc_has_an_access_policy_and_a_rest_mapping(
    proto: descriptor_pb2.FileDescriptorProto,
) -> None:
    for service in proto.service:
        for method in service.method:
            policy = method.options.Extensions[options_pb2.access]
            assert policy.level != options_pb2.ACCESS_LEVEL_UNSPECIFIED, method.name
            if policy.level == options_pb2.ACCESS_LEVEL_ROLES:
                assert policy.roles, f"{method.name}: ROLES without roles"
            rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
            path = getattr(rule, rule.WhichOneof("pattern") or "get")
            assert path.startswith("/api/v1/"), f"{method.name}: {path!r}"


def test_the_comment_check_finds_a_missing_comment() -> None:
    bare = descriptor_pb2.FileDescriptorProto(name="bare.proto", package="smartstart.x.v1")
    msg = bare.message_type.add(name="Thing")
    msg.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    bare.source_code_info.location.add(path=[MESSAGE, 0], leading_comments=" A thing.")
    assert undocumented(bare) == ["bare.proto: field Thing.id"]


def _segments(template: str) -> tuple[list[str], str]:
    """A path template's segments (a `{var}` matches any one segment) and its `:verb`."""
    head, colon, tail = template.rpartition(":")
    path, verb = (head, tail) if colon and "}" not in tail and "/" not in tail else (template, "")
    return ["*" if s.startswith("{") else s for s in path.strip("/").split("/")], verb


def _overlap(a: str, b: str) -> bool:
    """Whether one concrete path can match both templates (no `**` variables in ours)."""
    (sa, va), (sb, vb) = _segments(a), _segments(b)
    if va != vb or len(sa) != len(sb):
        return False
    return all(x == y or "*" in (x, y) for x, y in zip(sa, sb, strict=True))


def test_no_two_http_rules_of_one_verb_match_the_same_path() -> None:
    """An HTTP transcoder (Envoy, grpc-gateway) must route every path to one RPC:
    `GET /conversion-windows/active` used to match `GET /conversion-windows/{window_id}`, and
    `GET /profiles/me` (GetMyProfile) `GET /profiles/{user_id}`."""
    rules: list[tuple[str, str, str]] = []
    for proto in smartstart_files():
        for service in proto.service:
            for method in service.method:
                rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern") or "get"
                rules.append((verb, getattr(rule, verb), f"{service.name}.{method.name}"))
    clashes = [
        (m1, m2)
        for i, (v1, p1, m1) in enumerate(rules)
        for v2, p2, m2 in rules[i + 1 :]
        if v1 == v2 and _overlap(p1, p2)
    ]
    assert clashes == []


@pytest.mark.parametrize(
    ("a", "b", "clash"),
    [
        ("/api/v1/w/active", "/api/v1/w/{id}", True),
        ("/api/v1/w:active", "/api/v1/w/{id}", False),
        ("/api/v1/w/{id}/rate", "/api/v1/w/{id}", False),
        ("/api/v1/w/{id}:x", "/api/v1/w/{id}", False),
    ],
)
def test_the_overlap_check(a: str, b: str, clash: bool) -> None:
    assert _overlap(a, b) is clash
