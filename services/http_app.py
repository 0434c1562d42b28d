"""The server's custom HTTP app (``"http": {"app": ...}`` in langgraph.json): one app, two parts.

- the tenancy guards and startup policy of :mod:`services.auth_app` (middleware and lifespan);
- MemRec's MCP server at ``/mcp`` (:mod:`services.mcp_app`; the built-in per-assistant MCP is
  disabled in langgraph.json), with its session manager run by the lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from graph.background import recover_jobs
from services.auth_app import TenancyMiddleware
from services.auth_app import lifespan as policy_lifespan
from services.mcp_app import app as mcp_app


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """The startup policy first, then the MCP session manager for the server's lifetime.

    Once started, jobs an earlier (killed) server left are swept (``recover_jobs``).
    """
    async with policy_lifespan(app), mcp_app.router.lifespan_context(mcp_app):
        recovery = asyncio.create_task(recover_jobs(), name="memrec-recover-jobs")
        try:
            yield
        finally:
            recovery.cancel()


app = Starlette(
    routes=list(mcp_app.routes), middleware=[Middleware(TenancyMiddleware)], lifespan=lifespan
)
