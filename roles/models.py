"""The one model factory: chat models from ``"provider:model"`` strings, and the role presets.

The specs are parsed by ``schemas/model_spec.py`` (accepted forms listed there). The roles call
every provider through :class:`roles.client.ModelClient` (the ``openai`` client; ``base_url`` for
OpenAI-compatible servers such as vLLM, Ollama or llama.cpp), with settings per endpoint
(``roles/settings.py``); LangChain code gets a ``ChatOpenAI`` from :func:`make_chat_model`.
Embeddings are built by ``memory_store/embedding_factory.make_embedding`` (re-exported here).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import openai
from pydantic import BaseModel, ConfigDict, Field

from memory_store.embedding_factory import make_embedding
from roles.client import ModelClient
from roles.settings import RoleSettings, endpoint_defaults
from roles.transport import PerLoopTransport
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
    "make_model_client",
]


def make_chat_model(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 30.0,
    max_retries: int = 0,
    temperature: float = 0.0,
    max_tokens: int | None = None,
) -> BaseChatModel:
    """A LangChain chat model for ``spec`` (never ``offline``: that means the offline roles).

    For agents and other LangChain code; MemRec's own roles call the endpoint through
    :func:`make_model_client`. ``max_tokens`` is sent as ``max_tokens`` to servers other than
    OpenAI: langchain-openai sends only ``max_completion_tokens``, which llama.cpp ignores.
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
    if max_tokens is not None:
        if parsed.provider == "openai":
            kwargs["max_tokens"] = max_tokens
        else:
            kwargs["extra_body"] = {"max_tokens": max_tokens}
    if parsed.base_url:
        kwargs["base_url"] = parsed.base_url
    return ChatOpenAI(**kwargs)


def make_model_client(
    spec: str,
    settings: RoleSettings | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
) -> ModelClient:
    """The client a role calls its model with (default settings: the endpoint's)."""
    parsed = ModelSpec.parse(spec, base_url=base_url)
    if parsed.is_offline:
        raise ModelConfigError("'offline' has no model client: use the offline roles")
    chosen = settings or endpoint_defaults(parsed)
    # the name in usage and notices says where the model is (a spec without its URL does not)
    name = spec if "@" in spec or not parsed.base_url else f"{spec}@{parsed.base_url}"
    return ModelClient(parsed, chosen, api_key_for(parsed, api_key), name=name)


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
    "local": RolePreset(
        lmmem="local",
        llmrec="local",
        description="Both roles on one local OpenAI-compatible server (llama.cpp's server, vLLM, "
        "Ollama, LM Studio) at --base-url / MEMREC_BASE_URL (default MEMREC_LOCAL_BASE_URL or "
        "http://127.0.0.1:8000/v1), the model it serves; settings for slow single-slot servers.",
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
