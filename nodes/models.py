"""The one model factory: chat models and embeddings from ``"provider:model"`` strings.

Accepted chat model specs:

- ``offline``: no model; the deterministic offline roles answer (``nodes/offline_roles.py``).
- ``openai:<model>``: OpenAI, key from ``OPENAI_API_KEY``.
- ``openai-compatible:<model>@<base_url>`` (or ``openai-compatible:<model>`` with ``base_url=``):
  any OpenAI-compatible server; key from ``MEMREC_OPENAI_COMPATIBLE_API_KEY`` (a placeholder when
  unset, as local servers ignore it).
- ``ollama:<model>``: Ollama through its OpenAI-compatible endpoint (``MEMREC_OLLAMA_BASE_URL``,
  default ``http://localhost:11434/v1``). ChatOpenAI rather than langchain-community's ChatOllama,
  so every provider shares one client, JSON mode and one retry / error path.
- ``vllm:<model>``: a vLLM server (``MEMREC_VLLM_BASE_URL``, default ``http://127.0.0.1:8000/v1``).

A base URL written as ``$NAME`` is read from that environment variable when the spec is parsed, so
presets stay plain strings (editable in Studio) while deployments set the address.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import weakref
from typing import TYPE_CHECKING, Any, Literal

import openai
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from chromadb.api.types import Documents, EmbeddingFunction
    from langchain_core.language_models import BaseChatModel

Provider = Literal["offline", "openai", "openai-compatible", "ollama", "vllm"]
PROVIDERS: tuple[str, ...] = Provider.__args__  # type: ignore[attr-defined]
ACCEPTED_SPECS = (
    "'offline', 'openai:<model>', 'openai-compatible:<model>@<base_url>', "
    "'ollama:<model>', 'vllm:<model>'"
)
OPENAI_KEY_ENV = "OPENAI_API_KEY"
COMPATIBLE_KEY_ENV = "MEMREC_OPENAI_COMPATIBLE_API_KEY"
VLLM_KEY_ENV = "MEMREC_VLLM_API_KEY"
NO_KEY = "not-needed"  # OpenAI-compatible local servers ignore the key, the client needs one
_ENV_DEFAULTS: dict[str, str] = {
    "MEMREC_OLLAMA_BASE_URL": "http://localhost:11434/v1",
    "MEMREC_VLLM_BASE_URL": "http://127.0.0.1:8000/v1",
    "MEMREC_LOCAL_BASE_URL": "http://127.0.0.1:8000/v1",
}
_PROVIDER_URL_ENV: dict[str, str] = {
    "ollama": "MEMREC_OLLAMA_BASE_URL",
    "vllm": "MEMREC_VLLM_BASE_URL",
}
# The HTTP library the openai client is built on (httpx, or its fork httpx2 in openai >= 3).
_http: Any = importlib.import_module(
    openai.DefaultAsyncHttpxClient.__mro__[1].__module__.partition(".")[0]
)
_HTTP_LIMITS = _http.Limits(max_connections=1000, max_keepalive_connections=100)
_URL = re.compile(r"^https?://\S+$")
_ENV_REF = re.compile(r"^\$([A-Z_][A-Z0-9_]*)$")


class ModelConfigError(ValueError):
    """A model spec or its environment is unusable; the message says what is accepted."""


class ModelSpec(BaseModel):
    """A parsed chat model spec."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    model: str = Field(default="", description="model name; empty for offline")
    base_url: str | None = Field(
        default=None, description="API base URL; None = the provider default"
    )

    @property
    def is_offline(self) -> bool:
        """Whether this spec means the offline roles."""
        return self.provider == "offline"

    def __str__(self) -> str:
        if self.is_offline:
            return "offline"
        return f"{self.provider}:{self.model}"

    @classmethod
    def parse(cls, spec: str, *, base_url: str | None = None) -> ModelSpec:
        """Parse ``spec``; an explicit ``base_url`` overrides the one in the spec or env."""
        text = spec.strip()
        if text == "offline":
            return cls(provider="offline")
        provider, sep, rest = text.partition(":")
        if not sep or not rest.strip():
            raise ModelConfigError(f"model spec {spec!r} is malformed: accepted {ACCEPTED_SPECS}")
        if provider not in PROVIDERS or provider == "offline":
            raise ModelConfigError(
                f"unknown model provider {provider!r} in {spec!r}: accepted {ACCEPTED_SPECS}"
            )
        model, url = _split_url(rest.strip(), spec)
        if provider != "openai-compatible" and url is not None:
            raise ModelConfigError(
                f"model spec {spec!r}: only 'openai-compatible:<model>@<base_url>' takes a URL "
                "in the spec; pass base_url= or set the provider's environment variable"
            )
        url = base_url or url
        if url is None and provider in _PROVIDER_URL_ENV:
            url = _env_url(_PROVIDER_URL_ENV[provider])
        if provider == "openai-compatible" and url is None:
            raise ModelConfigError(
                f"model spec {spec!r} needs a base URL: write "
                "'openai-compatible:<model>@http://host:port/v1' or pass base_url="
            )
        return cls(provider=provider, model=model, base_url=url)  # type: ignore[arg-type]


def _split_url(rest: str, spec: str) -> tuple[str, str | None]:
    """Split ``<model>@<base_url>`` (the URL may be ``$ENV_NAME``)."""
    model, sep, url = rest.rpartition("@")
    if not sep or not (url.startswith(("http://", "https://")) or url.startswith("$")):
        return rest, None
    if not model:
        raise ModelConfigError(f"model spec {spec!r} has a base URL but no model name")
    ref = _ENV_REF.match(url)
    if ref:
        return model, _env_url(ref.group(1))
    if not _URL.match(url):
        raise ModelConfigError(f"base URL {url!r} in {spec!r} is not an http(s) URL")
    return model, url


def _env_url(name: str) -> str:
    """A base URL from the environment, with the documented default when there is one."""
    value = os.environ.get(name) or _ENV_DEFAULTS.get(name)
    if not value:
        raise ModelConfigError(f"environment variable {name} is not set: set it to the base URL")
    if not _URL.match(value):
        raise ModelConfigError(f"{name}={value!r} is not an http(s) URL")
    return value


def _api_key(spec: ModelSpec, api_key: str | None) -> str:
    """The API key for a spec: explicit, else the provider's environment variable."""
    if api_key:
        return api_key
    if spec.provider == "openai":
        key = os.environ.get(OPENAI_KEY_ENV)
        if not key:
            raise ModelConfigError(
                f"model {spec} needs an OpenAI API key: set {OPENAI_KEY_ENV} or pass api_key=, "
                "or use the 'offline' preset"
            )
        return key
    env = {"openai-compatible": COMPATIBLE_KEY_ENV, "vllm": VLLM_KEY_ENV}.get(spec.provider)
    return (os.environ.get(env) if env else None) or NO_KEY


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

    ``max_retries`` defaults to 0 because ``nodes.llm_roles.call_structured`` does the retrying.
    """
    parsed = ModelSpec.parse(spec, base_url=base_url)
    if parsed.is_offline:
        raise ModelConfigError(
            "'offline' has no chat model: build the offline roles (nodes/offline_roles.py) instead"
        )
    from langchain_openai import ChatOpenAI

    kwargs: dict[str, Any] = {
        # langchain-openai otherwise shares a process-wide cached client whose pooled connections
        # belong to the first event loop that used them ("Event loop is closed" on the next one).
        "http_async_client": openai.DefaultAsyncHttpxClient(
            timeout=timeout, transport=PerLoopTransport()
        ),
        "model": parsed.model,
        "api_key": _api_key(parsed, api_key),
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


def make_embedding(
    spec: str = "hash", *, base_url: str | None = None, api_key: str | None = None
) -> EmbeddingFunction[Documents]:
    """Build the embedding function for ``spec``.

    Accepted: ``hash`` (local, deterministic, the default), ``openai:<model>``,
    ``openai-compatible:<model>@<base_url>``.
    """
    text = spec.strip()
    if text == "hash":
        from memory_store.embeddings import HashingEmbedding

        return HashingEmbedding()
    parsed = ModelSpec.parse(text, base_url=base_url) if ":" in text else None
    if parsed is None or parsed.provider not in ("openai", "openai-compatible"):
        raise ModelConfigError(
            f"embedding spec {spec!r} is not supported: accepted 'hash', 'openai:<model>', "
            "'openai-compatible:<model>@<base_url>'"
        )
    from langchain_openai import OpenAIEmbeddings

    from memory_store.embeddings import LangChainEmbeddingFunction

    kwargs: dict[str, Any] = {"model": parsed.model, "api_key": _api_key(parsed, api_key)}
    if parsed.base_url:
        # Compatible servers take raw strings; the token-id path would need tiktoken's download.
        kwargs.update(base_url=parsed.base_url, check_embedding_ctx_length=False)
    return LangChainEmbeddingFunction(OpenAIEmbeddings(**kwargs), name=str(parsed))
