"""ConversionService messages ⇄ the conversion package's domain types. Enums map by name."""

from __future__ import annotations

from smartstart.conversion.v1 import conversion_service_pb2 as pb

from server.conversion.domain import (
    CapTableView,
    ConversionView,
    DefaultRateView,
    RequestStatus,
    VentureView,
    WindowStatus,
    WindowView,
)
from server.core.proto import ProtoEnum, to_timestamp

WINDOW_STATUSES = ProtoEnum(WindowStatus, pb.WindowStatus.Value, "WINDOW_STATUS_")
CONVERSION_STATUSES = ProtoEnum(RequestStatus, pb.ConversionStatus.Value, "CONVERSION_STATUS_")


def window_statuses(numbers: list[int]) -> list[str]:
    """Requested statuses; UNSPECIFIED or an unknown number stays visible to the check."""
    return [str(WINDOW_STATUSES.from_pb(n) or "UNSPECIFIED") for n in numbers]


def conversion_statuses(numbers: list[int]) -> list[str]:
    return [str(CONVERSION_STATUSES.from_pb(n) or "UNSPECIFIED") for n in numbers]


def venture_pb(view: VentureView) -> pb.Venture:
    return pb.Venture(
        id=str(view.id),
        name=view.name,
        description=view.description,
        conversion_pool_bps=view.pool_bps,
        granted_bps=view.granted_bps,
        pending_bps=view.pending_bps,
        available_bps=view.available_bps,
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
    )


def window_pb(view: WindowView) -> pb.Window:
    return pb.Window(
        id=str(view.id),
        label=view.label,
        opens_at=to_timestamp(view.opens_at),
        closes_at=to_timestamp(view.closes_at),
        equity_rate_bps=view.equity_rate_bps,
        status=WINDOW_STATUSES.to_pb(view.status),
        created_by=view.created_by,
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
        finalized_at=to_timestamp(view.finalized_at),
    )


def conversion_pb(view: ConversionView) -> pb.Conversion:
    return pb.Conversion(
        id=str(view.id),
        user_id=str(view.user_id),
        window_id=str(view.window_id),
        venture_id=str(view.venture_id),
        status=CONVERSION_STATUSES.to_pb(view.status),
        buz_requested=view.buz_requested,
        equity_rate_bps=view.equity_rate_bps,
        granted_bps=view.granted_bps,
        buz_locked=view.buz_locked,
        decided_by=view.decided_by or "",
        decision_note=view.decision_note or "",
        created_at=to_timestamp(view.created_at),
        updated_at=to_timestamp(view.updated_at),
        resolved_at=to_timestamp(view.resolved_at),
    )


def cap_table_pb(view: CapTableView) -> pb.CapTable:
    return pb.CapTable(
        venture_id=str(view.venture_id),
        conversion_pool_bps=view.pool_bps,
        granted_bps=view.granted_bps,
        holder_count=view.holder_count,
        entries=[
            pb.CapTableEntry(
                user_id=str(h.user_id),
                granted_bps=h.granted_bps,
                grant_count=h.grant_count,
                buz_burned=h.buz_burned,
                first_granted_at=to_timestamp(h.first_granted_at),
                last_granted_at=to_timestamp(h.last_granted_at),
            )
            for h in view.holders.items
        ],
        next_page_token=view.holders.next_page_token,
    )


def default_rate_pb(view: DefaultRateView) -> pb.DefaultRate:
    return pb.DefaultRate(
        equity_rate_bps=view.equity_rate_bps,
        updated_at=to_timestamp(view.updated_at),
        updated_by=view.updated_by or "",
    )
