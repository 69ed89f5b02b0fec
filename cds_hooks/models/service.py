"""A model package as a CDS service: prefetch from the manifest's inputs, one card out.

The card always lists the inputs used (value, unit, date). When any input is missing, too
old or unusable, the model does not run: the card says what is missing instead of a risk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cds_hooks.models import inputs
from cds_hooks.models.manifest import Band, Manifest, read_manifest
from cds_hooks.models.runtime import OnnxModel
from cds_hooks.service import Card, CdsResponse, HookCall, Indicator, Link, ServiceDefinition

NOT_FOR_CLINICAL_USE = "Not for clinical use: a demonstration model trained on a public dataset."


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What the model made of one call: the readings, and the output when it could run."""

    readings: list[inputs.Reading]
    output: float | None

    @property
    def missing(self) -> list[inputs.Unusable]:
        return [r for r in self.readings if isinstance(r, inputs.Unusable)]


class ModelService:
    """A CdsService (see cds_hooks.service) built from one model package folder."""

    def __init__(self, folder: Path, clock: Callable[[], datetime] = _now) -> None:
        self.folder = folder
        self.manifest: Manifest = read_manifest(folder)
        spec = self.manifest.model
        self.model = OnnxModel(folder / spec.file, spec, len(self.manifest.inputs))
        self._clock = clock
        self._definition = ServiceDefinition(
            id=self.manifest.id,
            hook=self.manifest.hook,
            title=self.manifest.title,
            description=self.manifest.description,
            prefetch=inputs.prefetch_templates(self.manifest.inputs),
        )

    @property
    def definition(self) -> ServiceDefinition:
        return self._definition

    def assess(self, call: HookCall) -> Evaluation:
        readings = inputs.read(self.manifest.inputs, call.prefetch, self._clock())
        values = [r.value for r in readings if isinstance(r, inputs.Used)]
        if len(values) < len(readings):
            return Evaluation(readings, None)
        output = self.model.predict(values)
        return Evaluation(readings, output if math.isfinite(output) else None)

    def evaluate(self, call: HookCall) -> CdsResponse:
        return CdsResponse(cards=(self.card(self.assess(call)),))

    def band(self, output: float) -> Band:
        return next(b for b in self.manifest.bands if b.below is None or output < b.below)

    def card(self, evaluation: Evaluation) -> Card:
        used = [r.describe() for r in evaluation.readings if isinstance(r, inputs.Used)]
        lines = [f"Inputs used: {'; '.join(used)}." if used else "No input could be used."]
        if evaluation.output is None and not evaluation.missing:
            summary = f"{self.manifest.title}: not computed, the model gave no finite result"
            return self._card(summary[:139], "info", lines)
        if evaluation.output is None:
            missing = "; ".join(r.describe() for r in evaluation.missing)
            summary = (
                f"{self.manifest.title}: not computed, {len(evaluation.missing)} input(s) missing"
            )
            detail = [f"Missing or unusable: {missing}.", *lines]
            return self._card(summary[:139], "info", detail)
        band = self.band(evaluation.output)
        summary = band.summary.format(value=evaluation.output)[:139]  # the spec's limit
        return self._card(summary, band.indicator, [band.detail or "", *lines])

    def _card(self, summary: str, indicator: Indicator, detail: list[str]) -> Card:
        if self.manifest.not_for_clinical_use:
            detail = [*detail, NOT_FOR_CLINICAL_USE]
        link = self.manifest.link
        return Card(
            summary=summary,
            indicator=indicator,
            source_label=self.manifest.source_label,
            detail="\n\n".join(d for d in detail if d),
            links=(Link(link.label, link.url, link.type, link.app_context),) if link else (),
        )
