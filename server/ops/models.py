"""Ops tables: business settings (job runs are server/jobs/models.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from server.db.base import Base, updated_at


class SystemSetting(Base):
    """A business parameter (defaults in server/core/settings_defaults.py), changed via the API."""

    __tablename__ = "system_settings"

    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB)
    description: Mapped[str] = mapped_column(server_default="")
    updated_at: Mapped[datetime] = updated_at()
    updated_by: Mapped[str | None]
