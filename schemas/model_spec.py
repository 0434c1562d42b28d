"""Model specs: ``"provider:model"`` strings parsed into a validated :class:`ModelSpec`.

Accepted chat model specs:

- ``offline``: no model; the deterministic offline roles answer (``roles/offline_roles.py``).
- ``openai:<model>``: OpenAI, key from ``OPENAI_API_KEY``.
- ``openai-compatible:<model>@<base_url>`` (or ``openai-compatible:<model>`` with ``base_url=``):
  any OpenAI-compatible server; key from ``MEMREC_OPENAI_COMPATIBLE_API_KEY`` (a placeholder when
  unset, as local servers ignore it).
- ``ollama:<model>``: Ollama through its OpenAI-compatible endpoint (``MEMREC_OLLAMA_BASE_URL``,
  default ``http://localhost:11434/v1``).
- ``vllm:<model>``: a vLLM server (``MEMREC_VLLM_BASE_URL``, default ``http://127.0.0.1:8000/v1``).
- ``local`` or ``local:<model>`` (``local:<model>@<base_url>``): any OpenAI-compatible server on
  this machine or network (llama.cpp's server, vLLM, Ollama, LM Studio) with settings for slow,
  single-slot servers (``roles/settings.py``); base URL from ``base_url=``, else
  ``MEMREC_LOCAL_BASE_URL`` (default ``http://127.0.0.1:8000/v1``); model ``auto`` (the
  default) = the first model the server lists.

A base URL written as ``$NAME`` is read from that environment variable when the spec is parsed, so
presets stay plain strings (editable in Studio) while deployments set the address. Building the
models from a spec is ``roles/models.py``'s job (embeddings: ``memory_store/embedding_factory.py``).
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Provider = Literal["offline", "openai", "openai-compatible", "ollama", "vllm", "local"]
PROVIDERS: tuple[str, ...] = Provider.__args__  # type: ignore[attr-defined]
ACCEPTED_SPECS = (
    "'offline', 'openai:<model>', 'openai-compatible:<model>@<base_url>', "
    "'ollama:<model>', 'vllm:<model>', 'local[:<model>][@<base_url>]'"
)
AUTO_MODEL = "auto"  # a local server's model: the first one its /models lists
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
    "local": "MEMREC_LOCAL_BASE_URL",
}
_URL_IN_SPEC = ("openai-compatible", "local")
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
        if text == "local" or text.startswith("local@"):
            text = "local:" + AUTO_MODEL + text[len("local") :]
        provider, sep, rest = text.partition(":")
        if not sep or not rest.strip():
            raise ModelConfigError(f"model spec {spec!r} is malformed: accepted {ACCEPTED_SPECS}")
        if provider not in PROVIDERS or provider == "offline":
            raise ModelConfigError(
                f"unknown model provider {provider!r} in {spec!r}: accepted {ACCEPTED_SPECS}"
            )
        model, url = _split_url(rest.strip(), spec)
        if provider not in _URL_IN_SPEC and url is not None:
            raise ModelConfigError(
                f"model spec {spec!r}: only 'openai-compatible:<model>@<base_url>' and "
                "'local:<model>@<base_url>' take a URL in the spec; pass base_url= or set the "
                "provider's environment variable"
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


def api_key_for(spec: ModelSpec, api_key: str | None) -> str:
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
    env = {
        "openai-compatible": COMPATIBLE_KEY_ENV,
        "vllm": VLLM_KEY_ENV,
        "local": COMPATIBLE_KEY_ENV,
    }.get(spec.provider)
    return (os.environ.get(env) if env else None) or NO_KEY
