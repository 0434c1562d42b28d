"""Embedding functions from spec strings: the local hashing embedding or an OpenAI-style API.

``MEMREC_EMBEDDING`` names the spec a store is opened with (``hash`` by default; Chroma keeps the
embedding with its collections, so it is fixed per store).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memory_store.embeddings import HashingEmbedding, LangChainEmbeddingFunction
from schemas.model_spec import ModelConfigError, ModelSpec, api_key_for

if TYPE_CHECKING:
    from chromadb.api.types import Documents, EmbeddingFunction


def make_embedding(
    spec: str = "hash", *, base_url: str | None = None, api_key: str | None = None
) -> EmbeddingFunction[Documents]:
    """Build the embedding function for ``spec``.

    Accepted: ``hash`` (local, deterministic, the default), ``openai:<model>``,
    ``openai-compatible:<model>@<base_url>``.
    """
    text = spec.strip()
    if text == "hash":
        return HashingEmbedding()
    parsed = ModelSpec.parse(text, base_url=base_url) if ":" in text else None
    if parsed is None or parsed.provider not in ("openai", "openai-compatible"):
        raise ModelConfigError(
            f"embedding spec {spec!r} is not supported: accepted 'hash', 'openai:<model>', "
            "'openai-compatible:<model>@<base_url>'"
        )
    from langchain_openai import OpenAIEmbeddings

    kwargs: dict[str, Any] = {"model": parsed.model, "api_key": api_key_for(parsed, api_key)}
    if parsed.base_url:
        # Compatible servers take raw strings; the token-id path would need tiktoken's download.
        kwargs.update(base_url=parsed.base_url, check_embedding_ctx_length=False)
    return LangChainEmbeddingFunction(OpenAIEmbeddings(**kwargs), name=str(parsed))
