"""Embedding functions for the memory store, usable directly and as Chroma embedding functions.

``HashingEmbedding`` is the local, deterministic default: no model download, no network, the same
vector for the same text in every process. It hashes lowercase word unigrams, word bigrams and
(lightly weighted) character trigrams of words into ``dim`` signed buckets, with sublinear term
frequency and L2 normalisation, so cosine similarity behaves like a TF-IDF-free bag of words that
also sees morphology ("thriller" is close to "thrillers").

``LangChainEmbeddingFunction`` wraps any LangChain ``Embeddings`` (for example ``OpenAIEmbeddings``
pointed at an OpenAI-compatible server) so Chroma can use it.

Both are registered Chroma embedding functions with a name and a serialisable config, so Chroma
persists their identity with a collection and reopens it without legacy-config warnings.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function
from langchain_core.embeddings import Embeddings as LangChainEmbeddings
from scipy import sparse

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+")
_EMPTY_FEATURE = "e:<empty>"


def _word_trigrams(word: str) -> list[str]:
    """Character trigrams of a word with boundary markers: ``<th``, ``thr``, ..., ``er>``."""
    padded = f"<{word}>"
    return [padded[i : i + 3] for i in range(len(padded) - 2)]


@register_embedding_function
class HashingEmbedding(EmbeddingFunction[Documents]):
    """Deterministic hashed bag-of-words embedding (unigrams, bigrams, character trigrams)."""

    _MAX_CACHE = 500_000
    _CHUNK = 4096

    def __init__(
        self, dim: int = 256, bigram_weight: float = 0.7, trigram_weight: float = 0.25
    ) -> None:
        if dim < 8:
            raise ValueError(f"HashingEmbedding dim must be >= 8, got {dim}")
        if bigram_weight < 0 or trigram_weight < 0:
            raise ValueError(
                "HashingEmbedding weights must be >= 0, got "
                f"bigram_weight={bigram_weight}, trigram_weight={trigram_weight}"
            )
        self.dim = int(dim)
        self.bigram_weight = float(bigram_weight)
        self.trigram_weight = float(trigram_weight)
        # Caches keep hashing cost proportional to the vocabulary, not to the corpus length.
        self._word_cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}

    # -- Chroma embedding-function protocol -------------------------------------------------------

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents for Chroma: one float32 vector per text."""
        return list(self.embed_texts(input))

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed query texts the same way as documents (the embedding is symmetric)."""
        return list(self.embed_texts(input))

    @staticmethod
    def name() -> str:
        """Name under which Chroma records this embedding function with a collection."""
        return "memrec_hashing"

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration; vectors only compare within one configuration."""
        return {
            "dim": self.dim,
            "bigram_weight": self.bigram_weight,
            "trigram_weight": self.trigram_weight,
        }

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashingEmbedding:
        """Rebuild from :meth:`get_config` output."""
        return HashingEmbedding(**config)

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Reject configs with unknown keys (they would silently change nothing)."""
        unknown = set(config) - {"dim", "bigram_weight", "trigram_weight"}
        if unknown:
            raise ValueError(
                f"unknown HashingEmbedding config keys {sorted(unknown)}; "
                "accepted: dim, bigram_weight, trigram_weight"
            )

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Any change makes stored vectors incomparable with new ones, so none is allowed."""
        if old_config != new_config:
            raise ValueError(
                f"HashingEmbedding config cannot change on an existing collection "
                f"({old_config} -> {new_config}); re-index into a new collection instead"
            )

    def default_space(self) -> Space:
        """Vectors are L2-normalised, so cosine is the natural space."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """All spaces rank identically for unit vectors."""
        return ["cosine", "ip", "l2"]

    # -- embedding --------------------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts into an ``(n, dim)`` float32 array of unit-norm rows."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self._CHUNK):
            out[start : start + self._CHUNK] = self._embed_chunk(texts[start : start + self._CHUNK])
        return out

    def _embed_chunk(self, texts: list[str]) -> np.ndarray:
        """Embed one chunk: token ids -> sparse tf matrix -> hashed features, all vectorised."""
        vocab: dict[str, int] = {}
        token_ids: list[int] = []
        lengths: list[int] = []
        for text in texts:
            ids = [vocab.setdefault(word, len(vocab)) for word in _WORD.findall(text.lower())]
            token_ids.extend(ids)
            lengths.append(len(ids))
        tokens = np.asarray(token_ids, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        words = list(vocab)
        matrix = self._unigram_part(rows, tokens, len(texts), words)
        if self.bigram_weight > 0.0 and len(tokens) > 1:
            matrix += self._bigram_part(rows, tokens, len(texts), words)
        return _normalise_rows(matrix, self.dim)

    def _unigram_part(
        self, rows: np.ndarray, tokens: np.ndarray, n_texts: int, words: list[str]
    ) -> np.ndarray:
        """Sublinear word counts times each word's hashed unigram + trigram features."""
        counts = sparse.csr_matrix(
            (np.ones(len(tokens)), (rows, tokens)), shape=(n_texts, len(words))
        )
        counts.sum_duplicates()
        counts.data = 1.0 + np.log(counts.data)
        features = [self._word_features(word) for word in words]
        indptr = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum([len(f[1]) for f in features], out=indptr[1:])
        cols = np.concatenate([f[1] for f in features]) if features else np.zeros(0, np.int64)
        vals = np.concatenate([f[2] for f in features]) if features else np.zeros(0)
        word_matrix = sparse.csr_matrix((vals, cols, indptr), shape=(len(words), self.dim))
        return np.asarray((counts @ word_matrix).todense(), dtype=np.float64)

    def _bigram_part(
        self, rows: np.ndarray, tokens: np.ndarray, n_texts: int, words: list[str]
    ) -> np.ndarray:
        """Hashed word bigrams within each text, with sublinear counts.

        A bigram's hash mixes the two words' blake2b digests (splitmix64 finaliser), which is as
        stable as hashing the bigram string and runs in numpy instead of per bigram in Python.
        """
        same_text = rows[:-1] == rows[1:]
        first, second, row = tokens[:-1][same_text], tokens[1:][same_text], rows[:-1][same_text]
        if len(row) == 0:
            return np.zeros((n_texts, self.dim))
        key = (row * len(words) + first) * len(words) + second
        _, index, counts = np.unique(key, return_index=True, return_counts=True)
        digests = np.fromiter((self._word_features(w)[0] for w in words), np.uint64, len(words))
        mixed = _splitmix64(digests[first[index]] * _GOLDEN ^ digests[second[index]])
        buckets = (mixed % np.uint64(self.dim)).astype(np.int64)
        signs = np.where(mixed >> np.uint64(63), 1.0, -1.0)
        weights = signs * self.bigram_weight * (1.0 + np.log(counts))
        flat = row[index] * self.dim + buckets
        return np.bincount(flat, weights=weights, minlength=n_texts * self.dim).reshape(
            n_texts, self.dim
        )

    def _word_features(self, word: str) -> tuple[int, np.ndarray, np.ndarray]:
        """A word's digest and its unigram + character-trigram features merged per bucket."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        digest = _digest(f"w:{word}")
        merged: dict[int, float] = {_bucket(digest, self.dim): _sign(digest)}
        if self.trigram_weight > 0.0:
            for trigram in _word_trigrams(word):
                tri = _digest(f"c:{trigram}")
                bucket = _bucket(tri, self.dim)
                merged[bucket] = merged.get(bucket, 0.0) + _sign(tri) * self.trigram_weight
        features = (
            digest,
            np.fromiter(merged.keys(), np.int64, len(merged)),
            np.fromiter(merged.values(), np.float64, len(merged)),
        )
        if len(self._word_cache) >= self._MAX_CACHE:
            self._word_cache.clear()
        self._word_cache[word] = features
        return features


def _digest(feature: str) -> int:
    """64-bit blake2b digest: stable across processes, unlike ``hash()``."""
    return int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "big")


def _bucket(digest: int, dim: int) -> int:
    return digest % dim


def _sign(digest: int) -> float:
    return 1.0 if digest >> 63 else -1.0


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Splitmix64 finaliser on uint64 arrays (wrap-around arithmetic is intended)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _normalise_rows(matrix: np.ndarray, dim: int) -> np.ndarray:
    """L2-normalise rows; a text without words gets one fixed unit vector (no zero vectors)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    empty = norms[:, 0] == 0.0
    if empty.any():
        # Cosine is undefined for a zero vector; empty texts share one fixed direction instead.
        digest = _digest(_EMPTY_FEATURE)
        matrix[empty, _bucket(digest, dim)] = _sign(digest)
        norms[empty] = 1.0
    return (matrix / norms).astype(np.float32)


class _UnavailableEmbeddings(LangChainEmbeddings):
    """Stand-in when Chroma rebuilds a LangChain adapter from config: the model is not in it."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def _fail(self) -> RuntimeError:
        return RuntimeError(
            f"LangChain embedding {self.model_name!r} cannot be rebuilt from a Chroma config; "
            "open the collection with LangChainEmbeddingFunction(embeddings, name) explicitly"
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Always fails: there is no model behind this stand-in."""
        raise self._fail()

    def embed_query(self, text: str) -> list[float]:
        """Always fails: there is no model behind this stand-in."""
        raise self._fail()


@register_embedding_function
class LangChainEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over any LangChain ``Embeddings`` (OpenAI, Ollama, ...).

    ``name`` identifies the model (e.g. ``"openai:text-embedding-3-small"``); it is persisted in the
    collection config so a store can refuse to mix vectors of two models.
    """

    def __init__(self, embeddings: LangChainEmbeddings, name: str) -> None:
        if not name:
            raise ValueError("LangChainEmbeddingFunction needs a non-empty model name")
        self.embeddings = embeddings
        self.model_name = name

    def __call__(self, input: Documents) -> Embeddings:
        """Embed documents with ``embed_documents``."""
        vectors = self.embeddings.embed_documents(list(input))
        return [np.asarray(vector, dtype=np.float32) for vector in vectors]

    def embed_query(self, input: Documents) -> Embeddings:
        """Embed query texts with ``embed_query`` (some models embed queries differently)."""
        return [np.asarray(self.embeddings.embed_query(text), dtype=np.float32) for text in input]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts into an ``(n, d)`` float32 array."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack(self(list(texts)))

    @staticmethod
    def name() -> str:
        """Chroma registry name of the adapter; the model itself is in :meth:`get_config`."""
        return "memrec_langchain"

    def get_config(self) -> dict[str, Any]:
        """The model name; the LangChain object itself is not serialisable."""
        return {"model": self.model_name}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LangChainEmbeddingFunction:
        """A placeholder that fails on use: the model must be passed in explicitly."""
        model = str(config.get("model", ""))
        return LangChainEmbeddingFunction(_UnavailableEmbeddings(model), model or "unknown")

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Switching models on an existing collection would mix incomparable vectors."""
        if old_config.get("model") != new_config.get("model"):
            raise ValueError(
                f"embedding model cannot change on an existing collection "
                f"({old_config.get('model')!r} -> {new_config.get('model')!r})"
            )

    def default_space(self) -> Space:
        """Text embedding models are compared by cosine."""
        return "cosine"


def embed_documents(function: EmbeddingFunction[Documents], texts: Sequence[str]) -> np.ndarray:
    """Embed documents with any Chroma embedding function as an ``(n, d)`` float32 array."""
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    if isinstance(function, HashingEmbedding | LangChainEmbeddingFunction):
        return function.embed_texts(texts)
    return np.stack([np.asarray(v, dtype=np.float32) for v in function(list(texts))])


def embed_query(function: EmbeddingFunction[Documents], text: str) -> np.ndarray:
    """Embed one query text with any Chroma embedding function (uses ``embed_query``)."""
    return np.asarray(function.embed_query([text])[0], dtype=np.float32)
