"""ConversionService: ventures, windows and conversion requests, one use case per RPC (and
the conversion_windows job's step), one transaction each.

The use cases live with their concept (ventures.py, windows.py, conversions.py); this class
puts them together over the shared objects build_services gives it. Access: the interceptor
enforces each RPC's declared roles; a user's own conversions are checked here
(server/core/access.py), another user's answering NOT_FOUND.
"""

from __future__ import annotations

from server.conversion.conversions import ConversionCases
from server.conversion.ventures import VentureCases
from server.conversion.windows import WindowCases
from server.core.clock import Clock, system_clock
from server.core.pagination import PageTokens
from server.core.params_cache import Parameters
from server.db.session import Database


class ConversionService(VentureCases, WindowCases, ConversionCases):
    def __init__(
        self,
        database: Database,
        params: Parameters,
        page_tokens: PageTokens,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._db = database
        self._params = params
        self._tokens = page_tokens
        self._clock = clock
