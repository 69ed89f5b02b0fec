"""Validation of FHIR R4 (4.0.1) resources in JSON form, driven by the fhir.resources R4B models.

https://hl7.org/fhir/R4/json.html, https://hl7.org/fhir/R4/datatypes.html.
`validate_resource(resource)` returns the resource dict unchanged (we store the client's
JSON, never a re-serialization) or raises `InvalidResource` with one `Issue` per fault, each
naming a FHIRPath-style location such as `Patient.name[0].family` or
`Observation.value.ofType(Quantity).value`.

How. One walk over the JSON, guided by each model's field metadata (`elements()`: JSON name,
type, cardinality, choice group, required flag) and the library's own primitive patterns
(`fhir_core.types.Date.pattern` ...). It checks what `Model.model_validate` checks (element
names, types, required elements, one value per choice, date/dateTime/instant/time/code/id/
oid/uri/base64Binary formats, integer ranges, calendar dates) and what the models let through:
they coerce "true" to a boolean and "3" to an integer, parse a JSON *string* where an object
is due, accept python field names (`birthDate__ext`), `fhir_comments`, `null`, `[]` and `{}`,
ids of 255 characters, any text as narrative, and fail with a KeyError on an unknown contained
resource type. It also checks ext-1 (an extension has a value or extensions, not both) and
the narrative `div` (well-formed XHTML, no scripts, forms or event handlers: txt-1, txt-2).
Every write runs both layers: the walk first (it names precise paths and is stricter), then,
if it found nothing, the R4B pydantic models themselves (`Model.model_validate`, the
validation DESIGN.md names). The walk alone (`deep=False`) costs about 6 µs for a
five-element Patient and 60 µs for a Synthea-style one; the models add 40-60 and 400-460 µs
(their per-object Python validators dominate). The unit tests hold the walk to the models'
verdicts. Not checked: other invariants, terminology bindings, profiles, reference targets.
A trusted writer whose resources come in few shapes (the HL7 v2 ingestor) passes
`verdicts` (`ModelVerdicts`): the models then run once per shape, the walk on every resource.

Where R4 and R4B differ (every StructureDefinition of the R4 4.0.1 core package was compared
with the R4B models, element by element, with cardinality, required and summary flags):

- R4 resource types without an R4B model: the 18 in `NO_R4B_MODEL` (MedicinalProduct*,
  EffectEvidenceSynthesis, RiskEvidenceSynthesis, Substance{NucleicAcid, Polymer, Protein,
  ReferenceInformation, SourceMaterial, Specification}). Evidence and EvidenceVariable exist in
  both but were remodelled in R4B. These 20 are `STRUCTURE_ONLY_TYPES`: the walk checks their
  R4 elements (names, cardinality, types, formats, required ones) as the R4 core
  StructureDefinitions define them (`structure_for`, `data/r4_structures.json`); the models
  check only their DomainResource elements (meta, text, contained, extension, ...).
- R4B-only resource types (`R4B_ONLY_TYPES`: SubscriptionStatus, Citation, ...) are unknown.
- Elements: R4 allows a Meta in Extension.value[x] and ElementDefinition.defaultValue[x],
  fixed[x], pattern[x], example.value[x] (accepted, checked as Meta); R4B adds CodeableReference
  and RatioRange to those choices and ActivityDefinition.subjectCanonical,
  PlanDefinition(.action).subjectCanonical (rejected). MarketingStatus.country and .dateRange
  are required in R4 only (not enforced).
- Patient, Observation, Encounter, Condition, MedicationRequest, Bundle, CapabilityStatement
  and all other shared types have identical elements, cardinalities and summary flags.
- Library quirks set right: R4B's `uuid` accepts only version-4 UUIDs (R4: any `urn:uuid:`),
  and `id` allows 255 characters (R4: 64).

Unknown resource types raise `InvalidResource` whose issue code is "not-supported"; the caller
decides whether that is a 404 (type in the URL) or a 400 (type in a body).

The parts live in `fhir_server.model.validation`: `metadata` (type sets, `elements()`),
`primitives`, `narrative`, `walk` and `deep` (the models' verdict); this module is their face.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from fhir_server.errors import InvalidResource, Issue
from fhir_server.model.validation.deep import deep_issues
from fhir_server.model.validation.metadata import (
    COMPLEX,
    NO_R4B_MODEL,
    PRIMITIVE,
    PRIMITIVE_EXT,
    R4_TYPES_FILE,
    R4B_ONLY_TYPES,
    RESOURCE,
    STRUCTURE_ONLY_TYPES,
    Element,
    Model,
    elements,
    is_resource_type,
    load_r4_types,
    model_for,
    structure_for,
)
from fhir_server.model.validation.narrative import narrative_problem
from fhir_server.model.validation.walk import Walk

__all__ = [  # the element kinds for xml.py, summary.py and fhirpath_patch.py too
    "COMPLEX",
    "MODEL_VERDICTS",
    "NO_R4B_MODEL",
    "PRIMITIVE",
    "PRIMITIVE_EXT",
    "R4B_ONLY_TYPES",
    "R4_TYPES_FILE",
    "RESOURCE",
    "STRUCTURE_ONLY_TYPES",
    "Element",
    "Model",
    "ModelVerdicts",
    "elements",
    "is_resource_type",
    "model_for",
    "narrative_problem",
    "shape_of",
    "structure_for",
    "validate_resource",
]

_load_r4_types = load_r4_types  # the tests' name for it


class ModelVerdicts:
    """The shapes of resources the R4B models accepted, to skip the models on the same shape.

    A resource's shape is its JSON without the primitive values: the keys of every object
    (and `resourceType` values), which values are objects, arrays (of which element shapes)
    or which python type of primitive. The models' verdict on a resource the walk accepted
    depends on its shape only: every primitive value passes the walk's checks, which are the
    models' own formats and ranges (or stricter; tests/unit/model/test_validate.py holds the walk
    to the models' verdicts). So a resource of a shape the models accepted once, that the
    walk accepts, is valid without running them again (~0.1-1 ms a resource).

    For writers whose resources come in few shapes (the HL7 v2 converter: a handful per
    message type); a bounded set, cleared when full.
    """

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._accepted: set[tuple[Any, ...]] = set()

    def __contains__(self, shape: tuple[Any, ...]) -> bool:
        return shape in self._accepted

    def __len__(self) -> int:
        return len(self._accepted)

    def accepted(self, shape: tuple[Any, ...]) -> None:
        if len(self._accepted) >= self.limit:
            self._accepted.clear()
        self._accepted.add(shape)


MODEL_VERDICTS: ContextVar[ModelVerdicts | None] = ContextVar("fhir_model_verdicts", default=None)
"""Set (around one `FhirService.handle`) by a trusted writer whose resources come in few
shapes (the HL7 v2 ingestor): the service's validation then passes it as `verdicts`, so the
R4B models run only on shapes they have not accepted yet; the walk and the validators run
on every resource as always. Client requests never set it."""


def shape_of(value: Any) -> Any:
    """`value`'s shape (see `ModelVerdicts`): hashable, equal for equal structures."""
    if isinstance(value, dict):
        shape = []
        for key, child in value.items():
            if isinstance(child, (dict, list)):
                shape.append((key, shape_of(child)))
            elif key == "resourceType" and isinstance(child, str):
                shape.append((key, child))
            else:
                shape.append((key, type(child)))
        return tuple(shape)
    if isinstance(value, list):
        return ("[]", *dict.fromkeys([shape_of(child) for child in value]))
    return type(value)


def validate_resource(
    resource: dict[str, Any], *, deep: bool = True, verdicts: ModelVerdicts | None = None
) -> dict[str, Any]:
    """`resource` itself if it is a valid FHIR R4 resource, else `InvalidResource`.

    `deep=False` skips the R4B pydantic models and keeps only the walk (see the module docs).
    With `verdicts`, the models run only on a shape they have not accepted yet.
    """
    if not isinstance(resource, dict):
        message = "A FHIR resource must be a JSON object"
        raise InvalidResource(message, issues=[Issue(message, "structure")])
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        message = "The resource has no 'resourceType'"
        raise InvalidResource(message, issues=[Issue(message, "required")])
    if not is_resource_type(rtype):
        message = f"'{rtype}' is not a FHIR R4 resource type"
        raise InvalidResource(message, issues=[Issue(message, "not-supported")])
    walk = Walk()
    try:
        walk.resource(resource, rtype, top=True)
        if deep and not walk.issues:
            shape = shape_of(resource) if verdicts is not None else None
            if shape is None or shape not in verdicts:  # type: ignore[operator]
                walk.issues = deep_issues(resource, walk)
                if shape is not None and not walk.issues:
                    verdicts.accepted(shape)  # type: ignore[union-attr]
    except RecursionError:
        message = "The resource is nested too deeply to be processed"
        raise InvalidResource(message, issues=[Issue(message, "too-long")]) from None
    if walk.issues:
        more = len(walk.issues) - 1
        raise InvalidResource(
            walk.issues[0].diagnostics + (f" (and {more} more)" if more else ""), issues=walk.issues
        )
    return resource
