"""uvicorn hardened against slow clients: a request's head must arrive within ``header_timeout_s``.

uvicorn closes a keep-alive connection that sits idle after a response (``timeout_keep_alive``), but not a
connection that never sends a request, nor one that trickles its headers a byte at a time (slowloris): a few
hundred of those hold every connection the process has. ``header_timeout_protocol`` is uvicorn's httptools
protocol with one timer more: armed when a connection opens and when a request's first byte arrives,
cancelled when its headers are complete; when it fires the connection is closed. Slow bodies are bounded by
the body caps; for clients on untrusted networks put a reverse proxy in front (SECURITY.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def header_timeout_protocol(header_timeout_s: float) -> type[HttpToolsProtocol]:
    """An ``http=`` protocol class for ``uvicorn.Config`` that closes connections slow to send a request head."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.logger.info("closing a connection that sent no complete request head in %.0f s",
                                 header_timeout_s)
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Any) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


__all__ = ["header_timeout_protocol"]
