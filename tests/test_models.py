"""The model factory: spec parsing, presets, defaults and errors that say what is accepted."""

from __future__ import annotations

import numpy as np
import pytest

from roles.models import (
    PRESETS,
    ModelConfigError,
    ModelSpec,
    default_preset,
    get_preset,
    make_chat_model,
    make_embedding,
)
from tests.support.openai_server import OpenAITestServer

_ENV = (
    "OPENAI_API_KEY",
    "MEMREC_VLLM_BASE_URL",
    "MEMREC_OLLAMA_BASE_URL",
    "MEMREC_LOCAL_BASE_URL",
    "MEMREC_CLOUD_OSS_BASE_URL",
    "MEMREC_OPENAI_COMPATIBLE_API_KEY",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def test_parse_each_provider():
    assert ModelSpec.parse("offline").is_offline
    spec = ModelSpec.parse("openai:gpt-4o-mini")
    assert (spec.provider, spec.model, spec.base_url) == ("openai", "gpt-4o-mini", None)
    assert str(spec) == "openai:gpt-4o-mini"
    spec = ModelSpec.parse("openai-compatible:gpt-oss-120b@https://api.example.com/v1")
    assert (spec.model, spec.base_url) == ("gpt-oss-120b", "https://api.example.com/v1")
    spec = ModelSpec.parse("openai-compatible:m", base_url="http://10.0.0.1:9000/v1")
    assert spec.base_url == "http://10.0.0.1:9000/v1"
    assert ModelSpec.parse("ollama:qwen2.5:7b").base_url == "http://localhost:11434/v1"
    assert ModelSpec.parse("ollama:qwen2.5:7b").model == "qwen2.5:7b"
    assert ModelSpec.parse("vllm:Qwen/Qwen2.5-7B-Instruct").base_url == "http://127.0.0.1:8000/v1"


def test_parse_reads_base_urls_from_env(monkeypatch):
    monkeypatch.setenv("MEMREC_VLLM_BASE_URL", "http://gpu:8001/v1")
    monkeypatch.setenv("MEMREC_OLLAMA_BASE_URL", "http://box:11434/v1")
    monkeypatch.setenv("MEMREC_CLOUD_OSS_BASE_URL", "https://oss.example/v1")
    assert ModelSpec.parse("vllm:m").base_url == "http://gpu:8001/v1"
    assert ModelSpec.parse("ollama:m").base_url == "http://box:11434/v1"
    spec = ModelSpec.parse("openai-compatible:m@$MEMREC_CLOUD_OSS_BASE_URL")
    assert spec.base_url == "https://oss.example/v1"
    assert ModelSpec.parse("vllm:m", base_url="http://x:1/v1").base_url == "http://x:1/v1"


@pytest.mark.parametrize(
    "spec, match",
    [
        ("gpt-4o", "malformed.*accepted 'offline', 'openai:<model>'"),
        ("openai:", "malformed"),
        ("anthropic:claude", "unknown model provider 'anthropic'.*accepted"),
        ("offline:x", "unknown model provider 'offline'"),
        ("openai-compatible:m", "needs a base URL.*@http://host:port/v1"),
        ("openai-compatible:@http://h/v1", "no model name"),
        ("openai-compatible:m@$MEMREC_CLOUD_OSS_BASE_URL", "MEMREC_CLOUD_OSS_BASE_URL is not set"),
        ("openai:m@http://h/v1", "only 'openai-compatible"),
    ],
)
def test_malformed_specs_say_what_is_accepted(spec, match):
    with pytest.raises(ModelConfigError, match=match):
        ModelSpec.parse(spec)


def test_openai_needs_a_key_and_names_the_variable(monkeypatch):
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        make_chat_model("openai:gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model = make_chat_model("openai:gpt-4o-mini")
    assert model.model_name == "gpt-4o-mini"
    assert model.max_retries == 0 and model.temperature == 0.0
    assert model.openai_api_base is None


def test_chat_model_for_local_servers_needs_no_key():
    model = make_chat_model("vllm:Qwen/Qwen2.5-7B-Instruct", timeout=7.0)
    assert model.openai_api_base == "http://127.0.0.1:8000/v1"
    assert model.request_timeout == 7.0 and model.use_responses_api is False
    model = make_chat_model("openai-compatible:m@http://127.0.0.1:9/v1", api_key="k")
    assert model.openai_api_key.get_secret_value() == "k"


def test_offline_has_no_chat_model():
    with pytest.raises(ModelConfigError, match="offline roles"):
        make_chat_model("offline")


def test_presets(monkeypatch):
    assert set(PRESETS) == {"offline", "standard", "local", "cloud-oss", "local-qwen", "ceiling"}
    local = ModelSpec.parse(PRESETS["local"].lmmem, base_url="http://127.0.0.1:8080/v1")
    assert (local.provider, local.model, local.base_url) == (
        "local",
        "auto",
        "http://127.0.0.1:8080/v1",
    )
    assert ModelSpec.parse("local").base_url == "http://127.0.0.1:8000/v1"  # the documented default
    assert (PRESETS["offline"].lmmem, PRESETS["offline"].llmrec) == ("offline", "offline")
    assert PRESETS["standard"].lmmem == PRESETS["standard"].llmrec == "openai:gpt-4o-mini"
    assert PRESETS["ceiling"].llmrec == "openai:gpt-4o"
    qwen = ModelSpec.parse(PRESETS["local-qwen"].lmmem)
    assert (qwen.model, qwen.base_url) == ("Qwen/Qwen2.5-7B-Instruct", "http://127.0.0.1:8000/v1")
    with pytest.raises(ModelConfigError, match="MEMREC_CLOUD_OSS_BASE_URL"):
        ModelSpec.parse(PRESETS["cloud-oss"].lmmem)
    monkeypatch.setenv("MEMREC_CLOUD_OSS_BASE_URL", "https://oss.example/v1")
    assert ModelSpec.parse(PRESETS["cloud-oss"].lmmem).model == "gpt-oss-120b"
    for preset in PRESETS.values():
        assert preset.description
        ModelSpec.parse(preset.llmrec)
    with pytest.raises(ModelConfigError, match="unknown preset 'fast'.*ceiling, cloud-oss"):
        get_preset("fast")


def test_default_preset_follows_openai_key(monkeypatch):
    assert default_preset() == "offline"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert default_preset() == "standard"


def test_make_embedding_hash_and_errors():
    from memory_store.embeddings import HashingEmbedding

    assert isinstance(make_embedding(), HashingEmbedding)
    with pytest.raises(ModelConfigError, match="accepted 'hash'"):
        make_embedding("vllm:m")
    with pytest.raises(ModelConfigError, match="accepted 'hash'"):
        make_embedding("word2vec")
    with pytest.raises(ModelConfigError, match="OPENAI_API_KEY"):
        make_embedding("openai:text-embedding-3-small")


@pytest.mark.integration
def test_make_embedding_against_an_openai_compatible_server():
    from memory_store.embeddings import LangChainEmbeddingFunction

    with OpenAITestServer() as server:
        function = make_embedding(f"openai-compatible:emb@{server.url}/v1", api_key="test")
        assert isinstance(function, LangChainEmbeddingFunction)
        vectors = function(["noir thriller", "romantic comedy", "noir thriller"])
        paths = [r.path for r in server.requests]
    assert paths == ["/v1/embeddings"]
    assert len(vectors) == 3 and vectors[0].shape == (64,)
    np.testing.assert_allclose(vectors[0], vectors[2])
    assert not np.allclose(vectors[0], vectors[1])
