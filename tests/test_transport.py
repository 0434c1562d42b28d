"""The model clients' HTTP transport: aiohttp pools per event loop, closed with their loop."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from roles import transport
from roles.transport import PerLoopTransport, TransportConfigError, http_module
from tests.support.openai_server import OpenAITestServer


async def _get_models(per_loop: PerLoopTransport, url: str) -> tuple[int, object]:
    """GET /v1/models through ``per_loop``; the status and this loop's pool."""
    client = http_module.AsyncClient(transport=per_loop, base_url=url)
    reply = await client.get("/v1/models")
    pools = per_loop.pools
    assert len(pools) == 1  # one pool per live loop; the earlier loops' pools went with them
    return reply.status_code, pools[0]


def test_each_loop_gets_an_aiohttp_pool_closed_when_the_loop_shuts_down(caplog) -> None:
    per_loop = PerLoopTransport()
    with OpenAITestServer() as server, caplog.at_level(logging.ERROR, logger="asyncio"):
        runs = [asyncio.run(_get_models(per_loop, server.url)) for _ in range(2)]
        gc.collect()
    assert [status for status, _ in runs] == [200, 200]
    pools = [pool for _, pool in runs]
    assert pools[0] is not pools[1]
    assert all(isinstance(p, transport.AiohttpTransport) for p in pools)
    assert all(p.client.closed for p in pools)  # the loop's shutdown closed its session
    assert "Unclosed" not in caplog.text


def test_httpx_pool_on_request(monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_HTTP_TRANSPORT", "httpx")
    per_loop = PerLoopTransport()
    with OpenAITestServer() as server:
        status, pool = asyncio.run(_get_models(per_loop, server.url))
    assert status == 200 and type(pool) is http_module.AsyncHTTPTransport


def test_a_misspelt_transport_is_refused_when_the_client_is_built(monkeypatch) -> None:
    monkeypatch.setenv("MEMREC_HTTP_TRANSPORT", "curl")
    with pytest.raises(TransportConfigError, match="MEMREC_HTTP_TRANSPORT='curl'"):
        PerLoopTransport()


def test_a_refused_connection_is_a_connection_error_not_a_timeout() -> None:
    from tests.support.chroma_server import free_port

    async def call() -> None:
        async with http_module.AsyncClient(transport=PerLoopTransport()) as client:
            await client.get(f"http://127.0.0.1:{free_port()}/v1/models")

    with pytest.raises(http_module.ConnectError):
        asyncio.run(call())


def test_the_cli_reports_a_misspelt_transport_in_one_line(monkeypatch, capsys) -> None:
    import typer

    from cli.options import user_errors

    monkeypatch.setenv("MEMREC_HTTP_TRANSPORT", "curl")
    with pytest.raises(typer.Exit) as stopped, user_errors():
        PerLoopTransport()
    assert stopped.value.exit_code == 2
    assert "MEMREC_HTTP_TRANSPORT='curl'" in capsys.readouterr().err
