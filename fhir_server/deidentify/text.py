"""Scrubbing identifiers out of free text that is kept (CodeableConcept.text, string
values): what looks like an e-mail address, URL, IP address, SSN, phone or fax number,
or a full date is replaced by a bracketed placeholder. Names in free text cannot be
found this way: the elements that usually hold prose (narrative, notes, comments,
descriptions) are dropped instead (`rules.py`)."""

from __future__ import annotations

import re

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("[EMAIL]", re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")),
    ("[URL]", re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)),
    (
        "[IP]",
        re.compile(
            r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b", re.IGNORECASE
        ),
    ),
    ("[SSN]", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("[PHONE]", re.compile(r"(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{3}\)|\d{3})?[\s.-]?\d{3}[\s.-]\d{4}\b")),
    (
        "[DATE]",
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b"
        ),
    ),
)


def scrub(value: str) -> str:
    """`value` with every identifier-like run replaced by its placeholder."""
    for placeholder, pattern in PATTERNS:
        value = pattern.sub(placeholder, value)
    return value
