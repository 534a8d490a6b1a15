"""The access policy table, read once at start-up from the descriptor pool.

Every SmartStart RPC declares `option (smartstart.common.v1.access)`; this module turns the
options of the registered services into a method path → Policy table. A method that is not in
the table, or whose level is UNSPECIFIED, is denied by the auth interceptor (fail closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from smartstart.common.v1 import options_pb2

from server.core.context import Role
from server.core.proto import ProtoEnum


class Level(Enum):
    DENY = options_pb2.ACCESS_LEVEL_UNSPECIFIED
    PUBLIC = options_pb2.ACCESS_LEVEL_PUBLIC
    AUTHENTICATED = options_pb2.ACCESS_LEVEL_AUTHENTICATED
    ROLES = options_pb2.ACCESS_LEVEL_ROLES


_ROLES = ProtoEnum(Role, options_pb2.Role.Value, "ROLE_")

# Infrastructure services every load balancer and grpcurl must reach without a token.
PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


@dataclass(frozen=True, slots=True)
class Policy:
    level: Level
    roles: frozenset[str] = frozenset()


PUBLIC = Policy(Level.PUBLIC)
DENY = Policy(Level.DENY)


def method_path(method: MethodDescriptor) -> str:
    """The HTTP/2 path gRPC dispatches on: /package.Service/Method."""
    return f"/{method.containing_service.full_name}/{method.name}"


def policy_of(method: MethodDescriptor) -> Policy:
    options = method.GetOptions()
    if not options.HasExtension(options_pb2.access):
        return DENY
    access = options.Extensions[options_pb2.access]
    try:
        level = Level(access.level)
    except ValueError:
        return DENY
    roles = frozenset(str(role) for r in access.roles if (role := _ROLES.from_pb(r)) is not None)
    if level is Level.ROLES and not roles:
        return DENY  # "one of no roles" can never be satisfied
    return Policy(level, roles)


def load_policies(
    service_names: Iterable[str], pool: DescriptorPool | None = None
) -> dict[str, Policy]:
    """Method path → policy for every method of the named services."""
    pool = pool or descriptor_pool.Default()
    table: dict[str, Policy] = {}
    for name in service_names:
        if name in PUBLIC_SERVICES:
            continue  # matched by service prefix in `lookup`; their protos carry no option
        service = pool.FindServiceByName(name)
        for method in service.methods:
            table[method_path(method)] = policy_of(method)
    return table


def lookup(table: Mapping[str, Policy], path: str) -> Policy:
    service = path.lstrip("/").split("/", 1)[0]
    if service in PUBLIC_SERVICES:
        return PUBLIC
    return table.get(path, DENY)
