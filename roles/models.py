"""The one model factory: chat models from ``"provider:model"`` strings, and the role presets.

The specs are parsed by ``schemas/model_spec.py`` (accepted forms listed there). Every provider
goes through langchain-openai's ``ChatOpenAI`` (``base_url`` for OpenAI-compatible servers such
as vLLM, Ollama or llama.cpp), so they share one client, JSON mode and one retry / error path.
Embeddings are built by ``memory_store/embedding_factory.make_embedding`` (re-exported here).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import weakref
from typing import TYPE_CHECKING, Any

import openai
from pydantic import BaseModel, ConfigDict, Field

from memory_store.embedding_factory import make_embedding
from schemas.model_spec import (
    ACCEPTED_SPECS,
    OPENAI_KEY_ENV,
    PROVIDERS,
    ModelConfigError,
    ModelSpec,
    api_key_for,
)

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "ACCEPTED_SPECS",
    "PROVIDERS",
    "PRESETS",
    "ModelConfigError",
    "ModelSpec",
    "PerLoopTransport",
    "RolePreset",
    "default_preset",
    "get_preset",
    "make_chat_model",
    "make_embedding",
]

# The HTTP library the openai client is built on (httpx, or its fork httpx2 in openai >= 3).
_http: Any = importlib.import_module(
    openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0]
)
_HTTP_LIMITS = _http.Limits(max_connections=1000, max_keepalive_connections=100)


def make_chat_model(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 30.0,
    max_retries: int = 0,
    temperature: float = 0.0,
) -> BaseChatModel:
    """Build the chat model for ``spec`` (never ``offline``: that means the offline roles).

    ``max_retries`` defaults to 0 because ``roles.llm_roles.call_structured`` does the retrying.
    """
    parsed = ModelSpec.parse(spec, base_url=base_url)
    if parsed.is_offline:
        raise ModelConfigError(
            "'offline' has no chat model: build the offline roles (roles/offline_roles.py) instead"
        )
    from langchain_openai import ChatOpenAI

    kwargs: dict[str, Any] = {
        # langchain-openai otherwise shares a process-wide cached client whose pooled connections
        # belong to the first event loop that used them ("Event loop is closed" on the next one).
        "http_async_client": openai.DefaultAsyncHttpxClient(
            timeout=timeout, transport=PerLoopTransport()
        ),
        "model": parsed.model,
        "api_key": api_key_for(parsed, api_key),
        "timeout": timeout,
        "max_retries": max_retries,
        "temperature": temperature,
        "use_responses_api": False,  # compatible servers implement chat completions only
    }
    if parsed.base_url:
        kwargs["base_url"] = parsed.base_url
    return ChatOpenAI(**kwargs)


class PerLoopTransport(_http.AsyncBaseTransport):
    """One pooled HTTP transport per event loop, so a cached model works from any loop.

    Connections are bound to the loop that opened them; CLI commands and tests run several loops
    in one process with the same model.
    """

    def __init__(self) -> None:
        self._transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )

    def _current(self) -> Any:
        loop = asyncio.get_running_loop()
        transport = self._transports.get(loop)
        if transport is None:
            transport = _http.AsyncHTTPTransport(limits=_HTTP_LIMITS)
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


class RolePreset(BaseModel):
    """Model specs for the two roles, as one deployment choice."""

    model_config = ConfigDict(frozen=True)

    lmmem: str = Field(description="spec of the memory manager (rules, synthesis, propagation)")
    llmrec: str = Field(description="spec of the ranker")
    description: str


PRESETS: dict[str, RolePreset] = {
    "offline": RolePreset(
        lmmem="offline", llmrec="offline", description="Deterministic roles, no network, no key."
    ),
    "standard": RolePreset(
        lmmem="openai:gpt-4o-mini",
        llmrec="openai:gpt-4o-mini",
        description="The paper's default: gpt-4o-mini for both roles.",
    ),
    "cloud-oss": RolePreset(
        lmmem="openai-compatible:gpt-oss-120b@$MEMREC_CLOUD_OSS_BASE_URL",
        llmrec="openai:gpt-4o-mini",
        description="LMMem = gpt-oss-120b on a hosted OpenAI-compatible API "
        "(MEMREC_CLOUD_OSS_BASE_URL, key in MEMREC_OPENAI_COMPATIBLE_API_KEY); LLMRec = "
        "gpt-4o-mini.",
    ),
    "local-qwen": RolePreset(
        lmmem="openai-compatible:Qwen/Qwen2.5-7B-Instruct@$MEMREC_LOCAL_BASE_URL",
        llmrec="openai:gpt-4o-mini",
        description="LMMem = Qwen2.5-7B-Instruct on a local OpenAI-compatible server such as "
        "vLLM (MEMREC_LOCAL_BASE_URL, default http://127.0.0.1:8000/v1); LLMRec = gpt-4o-mini.",
    ),
    "ceiling": RolePreset(
        lmmem="openai:gpt-4o-mini",
        llmrec="openai:gpt-4o",
        description="LMMem = gpt-4o-mini, LLMRec = gpt-4o: the quality ceiling.",
    ),
}


def get_preset(name: str) -> RolePreset:
    """The preset called ``name``; the error lists the accepted names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelConfigError(
            f"unknown preset {name!r}: accepted {', '.join(sorted(PRESETS))}"
        ) from None


def default_preset() -> str:
    """``standard`` when ``OPENAI_API_KEY`` is set, else ``offline``."""
    return "standard" if os.environ.get(OPENAI_KEY_ENV) else "offline"
