"""Which servicers the server hosts: each package's servicer wraps its service, built once
in server/services.py, and nothing else.

Each service package's servicer module exposes

    def register(server: grpc.aio.Server, service: XService) -> Sequence[str]

(`add_XServicer_to_server(XServicer(service), server)`), returning the full proto names it
registered; `servicers` below lists them. Every service generated under `smartstart.<svc>.v1`
that no servicer registered gets its generated base servicer, which answers UNIMPLEMENTED, so
the whole contract is always served, reflected, health-checked and policed.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import grpc.aio

from server.conversion import servicer as conversion_servicer
from server.ops import servicer as ops_servicer
from server.profile import servicer as profile_servicer
from server.services import Services
from server.wallet import servicer as wallet_servicer

Registrar = Callable[[grpc.aio.Server, Services], Sequence[str]]


def servicers(server: grpc.aio.Server, services: Services) -> list[str]:
    """Register every package's servicer over its service (add one line per new service)."""
    return [
        *profile_servicer.register(server, services.profile),
        *wallet_servicer.register(server, services.wallet),
        *ops_servicer.register(server, services.ops),
        *conversion_servicer.register(server, services.conversion),
    ]


@dataclass(frozen=True, slots=True)
class GeneratedService:
    full_name: str
    base_servicer: type[Any]
    add_to_server: Callable[[Any, grpc.aio.Server], None]


def _generated_grpc_modules() -> Iterator[ModuleType]:
    import smartstart

    for pkg in sorted(pkgutil.iter_modules(smartstart.__path__), key=lambda m: m.name):
        if not pkg.ispkg:
            continue
        try:
            version_pkg = importlib.import_module(f"smartstart.{pkg.name}.v1")
        except ModuleNotFoundError:
            continue
        for mod in sorted(pkgutil.iter_modules(version_pkg.__path__), key=lambda m: m.name):
            if mod.name.endswith("_pb2_grpc"):
                yield importlib.import_module(f"{version_pkg.__name__}.{mod.name}")


def generated_services() -> list[GeneratedService]:
    """Every SmartStart service whose stubs are generated under clients/python/smartstart."""
    found: list[GeneratedService] = []
    for grpc_mod in _generated_grpc_modules():
        pb2 = importlib.import_module(grpc_mod.__name__.removesuffix("_grpc"))
        for name, service in pb2.DESCRIPTOR.services_by_name.items():
            found.append(
                GeneratedService(
                    full_name=service.full_name,
                    base_servicer=getattr(grpc_mod, f"{name}Servicer"),
                    add_to_server=getattr(grpc_mod, f"add_{name}Servicer_to_server"),
                )
            )
    return found


def register_all(
    server: grpc.aio.Server, services: Services, extra: Sequence[Registrar] = ()
) -> list[str]:
    """Register every servicer; the full names of all SmartStart services now served.

    `extra` registrars run last; grpc keeps the last handlers registered for a method, so a
    test can replace a real servicer with a probe.
    """
    served = servicers(server, services)
    for register in extra:
        served.extend(register(server, services))
    for svc in generated_services():
        if svc.full_name not in served:
            svc.add_to_server(svc.base_servicer(), server)
            served.append(svc.full_name)
    return served
