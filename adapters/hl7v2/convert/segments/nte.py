"""NTE -> Annotation: segments/ "NTE[Observation]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.convert.context import rep_components
from adapters.hl7v2.message import Segment


def map_note(nte: Segment) -> dict[str, Any] | None:
    """NTE -> Annotation: segments/ "NTE[Observation]" (NTE-3 text)."""
    text = "\n".join(dt.text(rep_components(r, nte)) for r in nte.reps(3))
    return {"text": text} if text else None
