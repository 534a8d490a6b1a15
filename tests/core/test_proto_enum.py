"""Domain enums map to proto enums by name, and a drift between the two fails loudly."""

from __future__ import annotations

from enum import StrEnum

import pytest
from smartstart.profile.v1 import profile_service_pb2 as pb

from server.core.proto import ProtoEnum
from server.profile.domain import KycStatus


def test_round_trip_and_unknown_numbers() -> None:
    kyc = ProtoEnum(KycStatus, pb.KycStatus.Value, "KYC_STATUS_")
    for member in KycStatus:
        assert kyc.from_pb(kyc.to_pb(member)) is member
    assert kyc.to_pb("PASSED") == pb.KYC_STATUS_PASSED  # a value read from a row
    assert kyc.from_pb(pb.KYC_STATUS_UNSPECIFIED) is None
    assert kyc.from_pb(99) is None  # a number a newer client sends
    assert kyc.to_pb("NOT_A_STATUS") == pb.KYC_STATUS_UNSPECIFIED


def test_a_member_without_a_proto_value_fails_at_import() -> None:
    class Drifted(StrEnum):
        NONE = "NONE"
        FROZEN = "FROZEN"

    with pytest.raises(TypeError, match="KYC_STATUS_FROZEN"):
        ProtoEnum(Drifted, pb.KycStatus.Value, "KYC_STATUS_")
