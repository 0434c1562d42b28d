"""The HTTP transport under every model client: one lean connection pool per event loop.

The ``openai`` client is built on httpx (or its fork httpx2 in openai >= 3); its pooled
connections belong to the event loop that opened them, and CLI commands and tests run several
loops in one process with the same client, so the transport keeps one pool per loop. The pool is
small: the connection pool scans its connections on every request.
"""

from __future__ import annotations

import asyncio
import importlib
import weakref
from typing import Any

import openai

# The HTTP library the openai client is built on (httpx, or its fork httpx2 in openai >= 3).
http_module: Any = importlib.import_module(
    openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0]
)
_LIMITS = http_module.Limits(max_connections=256, max_keepalive_connections=32)


class PerLoopTransport(http_module.AsyncBaseTransport):
    """One pooled HTTP transport per event loop, so a cached client works from any loop."""

    def __init__(self) -> None:
        self._transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _current(self) -> Any:
        loop = asyncio.get_running_loop()
        transport = self._transports.get(loop)
        if transport is None:
            transport = http_module.AsyncHTTPTransport(limits=_LIMITS)
            self._transports[loop] = transport
        return transport

    async def handle_async_request(self, request: Any) -> Any:
        """Send the request on the running loop's own connection pool."""
        return await self._current().handle_async_request(request)

    async def aclose(self) -> None:
        """Close the running loop's pool (other loops' pools close with their loops)."""
        transport = self._transports.pop(asyncio.get_running_loop(), None)
        if transport is not None:
            await transport.aclose()
