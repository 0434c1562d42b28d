"""The HTTP transport under every model client: one lean connection pool per event loop.

The ``openai`` client is built on httpx (or its fork httpx2 in openai >= 3); its pooled
connections belong to the event loop that opened them, and CLI commands and tests run several
loops in one process with the same client, so the transport keeps one pool per loop.

The pool is the aiohttp transport the ``openai`` package ships for ``openai.DefaultAioHttpClient``
(its vendored ``httpx_aiohttp``): the SDK still builds, authenticates, retries and decodes every
request, and aiohttp carries it. It costs about a third less event-loop CPU per call than httpx's
own pool (``bench llm_cpu``). ``MEMREC_HTTP_TRANSPORT=httpx`` selects httpx's pool instead; it is
also the fallback when the ``openai`` package has no aiohttp transport. A loop's aiohttp session is
closed when the loop shuts down (``asyncio.run``, ``asyncio.Runner`` and servers close their
async generators then), so no "Unclosed client session" is reported.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai

from schemas.model_spec import ModelConfigError

# The HTTP library the openai client is built on (httpx, or its fork httpx2 in openai >= 3).
http_module: Any = importlib.import_module(
    openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0]
)
_LIMITS = http_module.Limits(max_connections=256, max_keepalive_connections=32)
TRANSPORTS = ("aiohttp", "httpx")

try:  # what openai.DefaultAioHttpClient uses (``pip install openai[aiohttp]``)
    import aiohttp
    from openai._vendor.httpx_aiohttp import AiohttpTransport as _VendorTransport
except ImportError:  # pragma: no cover - an openai without it: httpx's pool
    _VendorTransport = None


def _honest(exc: BaseException) -> BaseException:
    """The httpx error an aiohttp failure really is.

    The vendored transport maps every ``aiohttp.ClientConnectionError`` to ``ConnectTimeout``, so
    a server that resets or drops the connection would read as a timeout (the SDK's
    ``APITimeoutError``); it is a connection failure (``APIConnectionError``), as with httpx.
    """
    cause = exc.__cause__
    if not isinstance(exc, http_module.ConnectTimeout) or not isinstance(
        cause, aiohttp.ClientConnectionError
    ):
        return exc
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return exc
    if isinstance(cause, aiohttp.ClientConnectorError):  # never connected: refused, no route
        return http_module.ConnectError(str(cause))
    return http_module.ReadError(str(cause) or type(cause).__name__)  # reset / disconnected


if _VendorTransport is not None:

    class _HonestStream(http_module.AsyncByteStream):
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self._inner:
                    yield chunk
            except http_module.ConnectTimeout as exc:
                raise _honest(exc) from exc.__cause__

        async def aclose(self) -> None:
            response = getattr(self._inner, "_aiohttp_response", None)
            if response is not None and not response.content.is_eof():
                response.close()  # stopped early: drop the connection, so the server stops too
                await asyncio.sleep(0)  # the socket closes on the loop's next pass: let it run
            await self._inner.aclose()

    class AiohttpTransport(_VendorTransport):  # type: ignore[misc, valid-type]
        """The SDK's aiohttp transport with connection failures reported as such."""

        async def handle_async_request(self, request: Any) -> Any:
            """Send ``request``; its failures and its body's as httpx would report them."""
            try:
                response = await super().handle_async_request(request)
            except http_module.ConnectTimeout as exc:
                raise _honest(exc) from exc.__cause__
            response.stream = _HonestStream(response.stream)
            return response

else:  # pragma: no cover
    AiohttpTransport = None


class TransportConfigError(ModelConfigError):
    """``MEMREC_HTTP_TRANSPORT`` names no transport (a model configuration error: exit 2)."""


def transport_kind() -> str:
    """The pool new loops get: ``MEMREC_HTTP_TRANSPORT`` (``aiohttp`` by default), or ``httpx``."""
    kind = os.environ.get("MEMREC_HTTP_TRANSPORT", "").strip().lower() or "aiohttp"
    if kind not in TRANSPORTS:
        raise TransportConfigError(
            f"MEMREC_HTTP_TRANSPORT={kind!r} is not one of {', '.join(TRANSPORTS)}"
        )
    if kind == "aiohttp" and AiohttpTransport is None:  # pragma: no cover
        return "httpx"
    return kind


def new_pool(kind: str | None = None) -> Any:
    """A pooled transport of ``kind`` (see :func:`transport_kind`)."""
    if (kind or transport_kind()) == "aiohttp":
        return AiohttpTransport(limits=_LIMITS)
    return http_module.AsyncHTTPTransport(limits=_LIMITS)


async def _close_at_shutdown(pools: weakref.WeakKeyDictionary[Any, Any]) -> AsyncIterator[None]:
    """Started once per loop: the loop's ``shutdown_asyncgens`` runs the ``finally``.

    The entry is dropped there too: an aiohttp pool holds its loop, so the weak key alone would
    keep every finished loop alive.
    """
    try:
        yield
    finally:
        entry = pools.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.pool.aclose()


@dataclass
class _LoopPool:
    pool: Any
    closer: AsyncIterator[None]  # kept alive with the loop: closing it early would close the pool


class PerLoopTransport(http_module.AsyncBaseTransport):
    """One pooled HTTP transport per event loop, so a cached client works from any loop."""

    def __init__(self) -> None:
        transport_kind()  # a misspelt MEMREC_HTTP_TRANSPORT fails here, when the client is built
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )

    async def _current(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is None:
            entry = self._pools[loop] = _LoopPool(new_pool(), _close_at_shutdown(self._pools))
            await entry.closer.__anext__()  # registers it with the loop's async generators
        return entry.pool

    @property
    def pools(self) -> list[Any]:
        """The open pools, one per loop that sent a request (tests, diagnostics)."""
        return [entry.pool for entry in self._pools.values()]

    async def handle_async_request(self, request: Any) -> Any:
        """Send the request on the running loop's own connection pool."""
        return await (await self._current()).handle_async_request(request)

    async def aclose(self) -> None:
        """Close the running loop's pool (other loops' pools close when their loops shut down)."""
        entry = self._pools.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.pool.aclose()
