"""Structured output: the request parts of each mode, per answer schema, built once.

Servers differ in how they constrain a reply to a JSON schema. OpenAI, vLLM, Ollama and LM Studio
accept ``response_format: json_schema`` (strict on OpenAI); llama-cpp-python 0.3.36 answers it with
HTTP 500 but honours ``json_object`` with a ``schema`` field (a grammar) and a tool call forced by
name; plain ``json_object`` only promises JSON. :data:`MODES` lists them best first; an endpoint
that refuses one moves on to the next (``roles/client.py`` remembers the choice per endpoint).
Whatever the mode, the prompt also states the schema (``prompts/blocks.schema_text``).
"""

from __future__ import annotations

import copy
import functools
import re
from typing import Any, Literal

from pydantic import BaseModel

Mode = Literal["json_schema", "json_object_schema", "tool", "json_object"]
MODES: tuple[Mode, ...] = ("json_schema", "json_object_schema", "tool", "json_object")
# What a server says when it does not support a request field (status 400 / 422 / 500 / 501).
_REFUSAL = re.compile(
    r"response_format|json_schema|json_object|schema|tool_choice|tools|function|grammar|"
    r"guided|not supported|unsupported|extra inputs|unrecognized|unknown (field|parameter)",
    re.IGNORECASE,
)
_REFUSAL_STATUS = frozenset({400, 404, 415, 422, 500, 501})
_DROP_ALWAYS = frozenset({"title", "default", "examples"})
# Keywords OpenAI's strict mode rejects (it supports enum, const, anyOf, numeric bounds, items).
_DROP_STRICT = _DROP_ALWAYS | {"minLength", "maxLength", "maxItems", "format"}


def modes_for(provider: str) -> tuple[Mode, ...]:
    """Modes to try for a provider, best first (OpenAI: strict json_schema, else json_object)."""
    return ("json_schema", "json_object") if provider == "openai" else MODES


def is_format_refusal(status: int | None, message: str) -> bool:
    """Whether an HTTP error means 'this server does not take that structured-output field'."""
    return status in _REFUSAL_STATUS and bool(_REFUSAL.search(message or ""))


def _inline(node: Any, defs: dict[str, Any], drop: frozenset[str]) -> Any:
    """``node`` with every ``$ref`` replaced by its definition and ``drop`` keys removed."""
    if isinstance(node, list):
        return [_inline(x, defs, drop) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **extra}, defs, drop)
    return {
        key: _inline(value, defs, drop)
        for key, value in node.items()
        if key not in drop and key != "$defs"
    }


@functools.cache
def plain_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, self-contained (no ``$ref``) and without titles or defaults."""
    schema = model.model_json_schema()
    out: dict[str, Any] = _inline(schema, schema.get("$defs", {}), _DROP_ALWAYS)
    return out


@functools.cache
def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema in OpenAI's strict form: every property required, no extra properties."""
    from openai.lib._pydantic import to_strict_json_schema

    schema = to_strict_json_schema(model)
    out: dict[str, Any] = _inline(copy.deepcopy(schema), schema.get("$defs", {}), _DROP_STRICT)
    return out


@functools.cache
def request_parts(model: type[BaseModel], mode: Mode, strict: bool) -> dict[str, Any]:
    """The request fields that ask for ``model`` in ``mode`` (cached: built once per schema)."""
    name = model.__name__
    if mode == "json_schema":
        schema = strict_schema(model) if strict else plain_schema(model)
        spec: dict[str, Any] = {"name": name, "schema": schema}
        if strict:
            spec["strict"] = True
        return {"response_format": {"type": "json_schema", "json_schema": spec}}
    if mode == "json_object_schema":
        return {"response_format": {"type": "json_object", "schema": plain_schema(model)}}
    if mode == "tool":
        function = {
            "name": name,
            "description": (model.__doc__ or name).strip().splitlines()[0],
            "parameters": plain_schema(model),
        }
        return {
            "tools": [{"type": "function", "function": function}],
            "tool_choice": {"type": "function", "function": {"name": name}},
        }
    return {"response_format": {"type": "json_object"}}
