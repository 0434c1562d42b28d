"""What one chat-completion attempt returned or why it failed, read from the server's JSON.

:class:`Completion` is the guard's view of a reply; :class:`CallFailure` classifies a failed attempt
(length, content filter, refusal, connection, status, timeout, malformed) with what the guard needs
to decide (retryable, the server's message, ``Retry-After``); :class:`FormatRefused` marks a
structured-output mode the endpoint does not take.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import openai

from roles.structured import Mode

FailureKind = Literal[
    "length", "content_filter", "refusal", "connection", "status", "timeout", "malformed"
]

class CallFailure(Exception):
    """One failed attempt, classified (the guard counts each kind and decides what comes next)."""

    def __init__(
        self,
        kind: FailureKind,
        detail: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        message: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind: FailureKind = kind
        self.detail = detail  # one line, for usage and logs
        self.retryable = retryable
        self.status = status
        self.message = message or detail  # the server's whole error message
        self.retry_after_s = retry_after_s


class FormatRefused(CallFailure):
    """The endpoint refused the structured-output mode of the request (try the next one)."""


@dataclass
class Completion:
    """A chat completion as the guard needs it."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None  # None: the server reported no usage
    completion_tokens: int | None
    mode: Mode | None = None
    refusal: str | None = None
    tool_called: bool = False


def completion_of(data: dict[str, Any]) -> Completion:
    """The guard's view of a non-streamed completion body."""
    choices = data.get("choices") or []
    usage = data.get("usage") or {}
    if not choices:
        return Completion("", None, usage.get("prompt_tokens"), usage.get("completion_tokens"))
    choice = choices[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or []
    text = message.get("content") or ""
    if calls:
        text = (calls[0].get("function") or {}).get("arguments") or text
    return Completion(
        text=text,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        refusal=message.get("refusal"),
        tool_called=bool(calls),
    )


def status_failure(err: openai.APIStatusError) -> CallFailure:
    """An HTTP error as a failure: 429 / 408 / 409 / 5xx retryable, the server's first line."""
    status = err.status_code
    body = err.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    said = body.get("message") if isinstance(body, dict) else None
    message = str(said or err.message or "")
    message = re.sub(r"^Error code: \d+ - ", "", message)
    first = message.strip().splitlines()[0][:160] if message.strip() else ""
    return CallFailure(
        "status",
        f"HTTP {status}: {first}",
        retryable=status >= 500 or status in (408, 409, 429),
        status=status,
        message=message,
        retry_after_s=retry_after_s(err.response.headers),
    )


def retry_after_s(headers: Any) -> float | None:
    """Seconds asked for by a ``Retry-After`` / ``retry-after-ms`` header, when present."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return float(millis) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())
