"""Logging for operators: the request id of every line, plain or JSON lines, and no PHI.

- `request_id` holds the id of the request being served (set by the HTTP adapter from the
  client's `X-Request-ID`, or made up); every log record gets it as `request_id`, and every
  OperationOutcome the server answers with names it (`with_request_id`), so that a client's
  complaint leads to the server's log lines.
- `configure(level, fmt)` sets up the root logger once: `text` (the default) or `json`
  (one JSON object per line, python-json-logger), uvicorn's loggers included.
- What may be logged: at the default level (info) the server logs request methods, paths
  without query strings, status codes, counts and ids it made, never resource content,
  search values or HL7 field values. Code that logs a value a client sent uses `debug`.
"""

from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar
from typing import Any, Literal

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"


def new_request_id(given: str | None) -> str:
    """The client's id when it is a sane token (letters, digits, `._:@/+=-`, at most 128),
    else a fresh random one: a header is never copied into logs unchecked."""
    if given and _CLIENT_ID.fullmatch(given):
        return given
    return secrets.token_hex(16)


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request's id (`-` outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


def with_request_id(outcome: dict[str, Any]) -> dict[str, Any]:
    """`outcome` (an OperationOutcome) whose issues' diagnostics name the current request."""
    current = request_id.get()
    if current is None or outcome.get("resourceType") != "OperationOutcome":
        return outcome
    issues = []
    for issue in outcome.get("issue") or ():
        if isinstance(issue, dict):
            text = issue.get("diagnostics")
            note = f"request id {current}"
            issue = {**issue, "diagnostics": f"{text} ({note})" if text else note}
        issues.append(issue)
    return {**outcome, "issue": issues}


def configure(level: str = "info", fmt: Literal["text", "json"] = "text") -> None:
    """One handler on the root logger, in `fmt`; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                JSON_FIELDS,
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # never an access log: its lines carry query strings, i.e. search values (PHI)
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
