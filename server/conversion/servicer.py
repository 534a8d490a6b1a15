"""ConversionService transport: each RPC maps its request (mappers), calls its use case and
maps the answer back. No SQL, no rules, nothing built here."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
from smartstart.conversion.v1 import conversion_service_pb2 as pb
from smartstart.conversion.v1 import conversion_service_pb2_grpc as pb_grpc

from server.conversion import mappers
from server.conversion.domain import ConversionView
from server.conversion.service import ConversionService
from server.conversion.ventures import EDITABLE
from server.core.idempotency import fingerprint
from server.core.pagination import Page
from server.core.proto import ServicerContext, from_timestamp, mask_changes
from server.interceptors import current_context


class ConversionServicer(pb_grpc.ConversionServiceServicer):
    def __init__(self, conversions: ConversionService) -> None:
        self._svc = conversions

    # --- ventures -------------------------------------------------------------------------------

    async def CreateVenture(
        self, request: pb.CreateVentureRequest, context: ServicerContext
    ) -> pb.Venture:
        view = await self._svc.create_venture(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            name=request.name,
            description=request.description,
            pool_bps=request.conversion_pool_bps,
        )
        return mappers.venture_pb(view)

    async def UpdateVenture(
        self, request: pb.UpdateVentureRequest, context: ServicerContext
    ) -> pb.Venture:
        changes = mask_changes(request.venture, request.update_mask, EDITABLE)
        view = await self._svc.update_venture(
            current_context(), venture_id=request.venture.id, changes=changes
        )
        return mappers.venture_pb(view)

    async def GetVenture(
        self, request: pb.GetVentureRequest, context: ServicerContext
    ) -> pb.Venture:
        return mappers.venture_pb(
            await self._svc.get_venture(current_context(), request.venture_id)
        )

    async def ListVentures(
        self, request: pb.ListVenturesRequest, context: ServicerContext
    ) -> pb.ListVenturesResponse:
        page = await self._svc.list_ventures(
            current_context(), page_size_requested=request.page_size, page_token=request.page_token
        )
        return pb.ListVenturesResponse(
            ventures=[mappers.venture_pb(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetCapTable(
        self, request: pb.GetCapTableRequest, context: ServicerContext
    ) -> pb.CapTable:
        view = await self._svc.get_cap_table(
            current_context(),
            venture_id=request.venture_id,
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return mappers.cap_table_pb(view)

    # --- windows --------------------------------------------------------------------------------

    async def ListWindows(
        self, request: pb.ListWindowsRequest, context: ServicerContext
    ) -> pb.ListWindowsResponse:
        page = await self._svc.list_windows(
            current_context(),
            statuses=mappers.window_statuses(list(request.statuses)),
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListWindowsResponse(
            windows=[mappers.window_pb(w) for w in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetWindow(self, request: pb.GetWindowRequest, context: ServicerContext) -> pb.Window:
        return mappers.window_pb(await self._svc.get_window(current_context(), request.window_id))

    async def GetActiveWindows(
        self, request: pb.GetActiveWindowsRequest, context: ServicerContext
    ) -> pb.GetActiveWindowsResponse:
        windows = await self._svc.active_windows(current_context())
        return pb.GetActiveWindowsResponse(windows=[mappers.window_pb(w) for w in windows])

    async def CreateWindow(
        self, request: pb.CreateWindowRequest, context: ServicerContext
    ) -> pb.Window:
        view = await self._svc.create_window(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            label=request.label,
            opens_at=from_timestamp(request, "opens_at"),
            closes_at=from_timestamp(request, "closes_at"),
            rate_bps=request.equity_rate_bps if request.HasField("equity_rate_bps") else None,
        )
        return mappers.window_pb(view)

    async def UpdateWindowRate(
        self, request: pb.UpdateWindowRateRequest, context: ServicerContext
    ) -> pb.Window:
        view = await self._svc.update_window_rate(
            current_context(), window_id=request.window_id, rate_bps=request.equity_rate_bps
        )
        return mappers.window_pb(view)

    async def FinalizeWindow(
        self, request: pb.FinalizeWindowRequest, context: ServicerContext
    ) -> pb.FinalizeWindowResponse:
        result = await self._svc.finalize_window(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            window_id=request.window_id,
        )
        return pb.FinalizeWindowResponse(
            window=mappers.window_pb(result.window),
            expired_count=result.expired_count,
            buz_unlocked=result.buz_unlocked,
        )

    async def GetDefaultRate(
        self, request: pb.GetDefaultRateRequest, context: ServicerContext
    ) -> pb.DefaultRate:
        return mappers.default_rate_pb(await self._svc.get_default_rate(current_context()))

    async def UpdateDefaultRate(
        self, request: pb.UpdateDefaultRateRequest, context: ServicerContext
    ) -> pb.UpdateDefaultRateResponse:
        change = await self._svc.update_default_rate(
            current_context(), rate_bps=request.equity_rate_bps, reason=request.reason
        )
        return pb.UpdateDefaultRateResponse(
            default_rate=mappers.default_rate_pb(change.default_rate),
            windows=[mappers.window_pb(w) for w in change.windows],
        )

    # --- conversions ----------------------------------------------------------------------------

    async def RequestConversion(
        self, request: pb.RequestConversionRequest, context: ServicerContext
    ) -> pb.Conversion:
        view = await self._svc.request_conversion(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            window_id=request.window_id,
            venture_id=request.venture_id,
            buz_amount=request.buz_amount,
        )
        return mappers.conversion_pb(view)

    async def GetConversion(
        self, request: pb.GetConversionRequest, context: ServicerContext
    ) -> pb.Conversion:
        view = await self._svc.get_conversion(current_context(), request.conversion_id)
        return mappers.conversion_pb(view)

    async def CancelConversion(
        self, request: pb.CancelConversionRequest, context: ServicerContext
    ) -> pb.Conversion:
        view = await self._svc.cancel_conversion(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            conversion_id=request.conversion_id,
        )
        return mappers.conversion_pb(view)

    async def ApproveConversion(
        self, request: pb.ApproveConversionRequest, context: ServicerContext
    ) -> pb.Conversion:
        view = await self._svc.approve_conversion(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            conversion_id=request.conversion_id,
            note=request.note,
        )
        return mappers.conversion_pb(view)

    async def RejectConversion(
        self, request: pb.RejectConversionRequest, context: ServicerContext
    ) -> pb.Conversion:
        view = await self._svc.reject_conversion(
            current_context(),
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            conversion_id=request.conversion_id,
            note=request.note,
        )
        return mappers.conversion_pb(view)

    async def ListMyConversions(
        self, request: pb.ListMyConversionsRequest, context: ServicerContext
    ) -> pb.ListMyConversionsResponse:
        page = await self._conversions(request, mine=True, user_id="")
        return pb.ListMyConversionsResponse(
            conversions=[mappers.conversion_pb(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    async def ListConversions(
        self, request: pb.ListConversionsRequest, context: ServicerContext
    ) -> pb.ListConversionsResponse:
        page = await self._conversions(request, mine=False, user_id=request.user_id)
        return pb.ListConversionsResponse(
            conversions=[mappers.conversion_pb(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    async def _conversions(
        self,
        request: pb.ListMyConversionsRequest | pb.ListConversionsRequest,
        *,
        mine: bool,
        user_id: str,
    ) -> Page[ConversionView]:
        return await self._svc.list_conversions(
            current_context(),
            mine=mine,
            user_id=user_id,
            window_id=request.window_id,
            venture_id=request.venture_id,
            statuses=mappers.conversion_statuses(list(request.statuses)),
            page_size_requested=request.page_size,
            page_token=request.page_token,
        )


def register(server: grpc.aio.Server, service: ConversionService) -> Sequence[str]:
    pb_grpc.add_ConversionServiceServicer_to_server(ConversionServicer(service), server)
    return [pb.DESCRIPTOR.services_by_name["ConversionService"].full_name]
