"""A lean HTTP serving process for the scaled deployment: the recommend graph behind Starlette.

Several of these run side by side (``python -m services.http_serve --processes N``, or
``python -m bench deploy``), sharing one store through ``MEMREC_DATABASE_URL`` (event log, job
queue, audit in Postgres), ``MEMREC_CHROMA_URL`` (memories on a Chroma server) and the store
folder (catalogue, graph, rules). With a database URL, a request that names a ``thread_id`` is
checkpointed in Postgres (LangGraph's ``AsyncPostgresSaver``): any process can resume it. Its
memory cache follows the audit log (``services/memory_feed.py``) rather than re-reading the
Chroma server every 5 s.

Routes: ``POST /recommend`` ({"input": <recommend input>, "context": {...}, "thread_id": ...};
an ``Idempotency-Key`` header or ``input.idempotency_key`` makes its feedback record once),
``POST /feedback`` ({"user_id", "item_id", "kind", "idempotency_key"}), ``GET /jobs`` (job
counts) and ``GET /ok``. Propagation is scheduled as the run context says
(``MEMREC_PROPAGATION=external`` leaves it to ``memrec worker`` processes).

This is the throughput path of the scaled deployment; ``langgraph dev`` / ``langgraph up``
serve the same graphs with Studio, threads and MCP (docs/SCALE_OUT.md compares both).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from graph.background import schedule_propagation
from graph.recommend import build_recommend_graph
from graph.recommend import graph as recommend_graph
from memory_store.cached_store import CachedMemoryStore
from memory_store.interactions import keyed_interaction_id
from memory_store.workspace import UnknownEntity, Workspace, aworkspace_for
from nodes.record import record_interaction
from schemas.context import MemRecContext
from services.memory_feed import MemoryFeed

logger = logging.getLogger(__name__)

_CHECKPOINTED: dict[str, Any] = {}  # the recommend graph compiled with the Postgres saver


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def json_response(value: Any, status: int = 200) -> Response:
    """A JSON response (orjson: pydantic models as their JSON dump, tuples as lists)."""
    body = orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


async def recommend(request: Request) -> Response:
    """Run the recommend graph for one request body."""
    try:
        body = orjson.loads(await request.body())
        inp = dict(body.get("input") or {})
        ctx = MemRecContext.from_mapping(body.get("context"))
    except (ValueError, TypeError, AttributeError) as err:
        return _error(400, f"body must be JSON {{'input': {{...}}, 'context': {{...}}}}: {err}")
    key = request.headers.get("idempotency-key")
    if key and not inp.get("idempotency_key"):
        inp["idempotency_key"] = key
    graph: Any = recommend_graph
    config: dict[str, Any] = {}
    if body.get("thread_id"):
        graph = _CHECKPOINTED.get("recommend")
        if graph is None:
            return _error(400, "thread_id needs MEMREC_DATABASE_URL (checkpoints in Postgres)")
        config = {"configurable": {"thread_id": str(body["thread_id"])}}
    try:
        out = await graph.ainvoke(inp, config=config or None, context=ctx)
    except (UnknownEntity, ValidationError, ValueError) as err:
        return _error(422, str(err))
    return json_response(out)


async def feedback(request: Request) -> Response:
    """Record one interaction durably (idempotent on its key), then schedule its propagation."""
    try:
        body = orjson.loads(await request.body())
        user, item = str(body["user_id"]), str(body["item_id"])
        ctx = MemRecContext.from_mapping(body.get("context"))
    except (ValueError, TypeError, KeyError) as err:
        return _error(400, f"body must be JSON with user_id and item_id: {err}")
    key = body.get("idempotency_key") or request.headers.get("idempotency-key")
    iid = keyed_interaction_id(f"api:{key}", user, 0) if key else None
    ws = await aworkspace_for(ctx)
    try:
        event = await asyncio.to_thread(
            record_interaction, ws, user, item, str(body.get("kind") or "positive"), None, iid
        )
    except (UnknownEntity, ValueError) as err:
        return _error(422, str(err))
    await schedule_propagation(ctx, [event])
    return json_response({"interaction_id": event.interaction_id})


async def jobs(request: Request) -> Response:
    """Job counts of the context's store (pending, running, done, failed)."""
    ws = await aworkspace_for(MemRecContext.from_mapping(dict(request.query_params)))
    return json_response(await asyncio.to_thread(ws.events.counts))


async def ok(request: Request) -> Response:
    """Liveness."""
    return json_response({"ok": True})


async def _setup(saver: Any, attempts: int = 5) -> None:
    """Create the checkpoint tables; several processes starting at once may race: retry."""
    import psycopg

    raced = (
        psycopg.errors.UniqueViolation,
        psycopg.errors.DuplicateTable,
        psycopg.errors.DuplicateObject,
    )
    for attempt in range(attempts):
        try:
            await saver.setup()
            return
        except raced:  # another process created them meanwhile
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Open the Postgres checkpointer when a database is configured; warm the store."""
    url = os.environ.get("MEMREC_DATABASE_URL")
    saver_cm = None
    if url:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        saver_cm = AsyncPostgresSaver.from_conn_string(url)
        saver = await saver_cm.__aenter__()
        await _setup(saver)
        _CHECKPOINTED["recommend"] = build_recommend_graph().compile(checkpointer=saver)
    ws = await aworkspace_for(MemRecContext())  # open the store before the first request
    feed = await _start_feed(ws, url)
    try:
        yield
    finally:
        if feed is not None:
            feed[1].cancel()
            feed[0].close()
        if saver_cm is not None:
            await saver_cm.__aexit__(None, None, None)
        _CHECKPOINTED.clear()


async def _start_feed(
    ws: Workspace, url: str | None
) -> tuple[MemoryFeed, asyncio.Task[None]] | None:
    """Keep the default store's memory cache fresh from the audit log (``memory_feed.py``).

    Only when the memories are on a Chroma server (a cache with an expiry) and the event log in
    Postgres.
    """
    if not url or not isinstance(ws.memories, CachedMemoryStore) or ws.memories.ttl_s is None:
        return None
    feed = MemoryFeed(ws.memories, url, ws.name)
    await asyncio.to_thread(feed.start)
    return feed, asyncio.create_task(feed.run(), name="memrec-memory-feed")


app = Starlette(
    routes=[
        Route("/recommend", recommend, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/jobs", jobs, methods=["GET"]),
        Route("/ok", ok, methods=["GET"]),
    ],
    lifespan=lifespan,
)
