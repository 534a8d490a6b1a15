"""Every model module, imported once: `Base.metadata` here is Alembic's target metadata."""

from __future__ import annotations

from server.audit import models as audit_models
from server.conversion import models as conversion_models
from server.core import models as core_models
from server.db.base import Base
from server.document import models as document_models
from server.jobs import models as jobs_models
from server.ops import models as ops_models
from server.profile import models as profile_models
from server.wallet import models as wallet_models

metadata = Base.metadata

__all__ = [
    "Base",
    "audit_models",
    "conversion_models",
    "core_models",
    "document_models",
    "jobs_models",
    "metadata",
    "ops_models",
    "profile_models",
    "wallet_models",
]
