"""Size limits on resource content, set once per process from the settings.

https://hl7.org/fhir/R4/datatypes.html#string -- "strings SHALL NOT exceed 1MB (1024*1024
characters) in size": the default per-element limit. It applies to every primitive but
`base64Binary` (attachments and Binary content: bounded by the request body limit,
`FHIR_MAX_BODY_BYTES`, as they are data, not text) and `xhtml` (a narrative is parsed as XML,
whose parser bounds it; generated narratives of large definitions pass 1 MiB: 1.8 MB in the
R4 examples). `max_depth` bounds how deeply JSON objects nest in one resource (contained
resources and Bundle entries count), so that no walk over a resource recurses without end;
the R4 examples nest 11 objects deep at most.

`assembly.build_service` calls `configure` with the deployment's settings; until then (unit
tests, tools) the defaults hold.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_STRING_CHARS", "LIMITS", "Limits", "configure"]

DEFAULT_MAX_STRING_CHARS = 1024 * 1024
DEFAULT_MAX_DEPTH = 64


@dataclass(slots=True)
class Limits:
    """The limits in force; the validators read them at each check."""

    max_string_chars: int = DEFAULT_MAX_STRING_CHARS
    max_depth: int = DEFAULT_MAX_DEPTH


LIMITS = Limits()


def configure(*, max_string_chars: int | None = None, max_depth: int | None = None) -> None:
    """Set the limits of this process (None keeps a limit as it is)."""
    if max_string_chars is not None:
        LIMITS.max_string_chars = max_string_chars
    if max_depth is not None:
        LIMITS.max_depth = max_depth
