"""What the R4B models say about R4: which resource types exist, and each type's elements.

`elements(model)` gives a model's JSON properties (name, type, cardinality, choice group,
required and summary flags) with R4's differences set right; the type sets and element
lists below are the differences `fhir_server.model.validate` documents. For the R4 types
without an R4B model, `structure_for()` gives an `R4Structure` built from
`data/r4_structures.json` (generated from the R4 core StructureDefinitions by
`scripts/generate_r4_structures.py`), which `elements()` takes where it takes a model.
"""

from __future__ import annotations

import json
import types
import typing
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase

from fhir_server.model.validation.primitives import Check, check_boolean, check_for, check_uuid

__all__ = [
    "COMPLEX",
    "DOMAIN_RESOURCE",
    "EXTENSION",
    "NO_R4B_MODEL",
    "PRIMITIVE",
    "PRIMITIVE_EXT",
    "R4B_ONLY_TYPES",
    "R4_TYPES_FILE",
    "RESOURCE",
    "STRUCTURE_ONLY_TYPES",
    "Element",
    "Model",
    "R4Structure",
    "elements",
    "is_resource_type",
    "load_r4_types",
    "model_for",
    "requirements",
    "structure_for",
]

Model = type[FHIRAbstractModel]  # an R4B model class

R4_TYPES_FILE = Path(__file__).resolve().parents[2] / "data" / "r4_resource_types.json"
R4_STRUCTURES_FILE = R4_TYPES_FILE.with_name("r4_structures.json")

NO_R4B_MODEL = frozenset(
    {
        "EffectEvidenceSynthesis",
        "MedicinalProduct",
        "MedicinalProductAuthorization",
        "MedicinalProductContraindication",
        "MedicinalProductIndication",
        "MedicinalProductIngredient",
        "MedicinalProductInteraction",
        "MedicinalProductManufactured",
        "MedicinalProductPackaged",
        "MedicinalProductPharmaceutical",
        "MedicinalProductUndesirableEffect",
        "RiskEvidenceSynthesis",
        "SubstanceNucleicAcid",
        "SubstancePolymer",
        "SubstanceProtein",
        "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
        "SubstanceSpecification",
    }
)
REMODELLED_TYPES = frozenset({"Evidence", "EvidenceVariable"})
R4B_ONLY_TYPES = frozenset(
    {
        "AdministrableProductDefinition",
        "Citation",
        "ClinicalUseDefinition",
        "EvidenceReport",
        "Ingredient",
        "ManufacturedItemDefinition",
        "MedicinalProductDefinition",
        "NutritionProduct",
        "PackagedProductDefinition",
        "RegulatedAuthorization",
        "SubscriptionStatus",
        "SubscriptionTopic",
        "SubstanceDefinition",
    }
)
# (model class, JSON name) of elements only R4 has, with their type ...
R4_ONLY_ELEMENTS = {
    ("Extension", "valueMeta"): "Meta",
    ("ElementDefinition", "defaultValueMeta"): "Meta",
    ("ElementDefinition", "fixedMeta"): "Meta",
    ("ElementDefinition", "patternMeta"): "Meta",
    ("ElementDefinitionExample", "valueMeta"): "Meta",
}
# ... and of elements only R4B has.
R4B_ONLY_ELEMENTS = frozenset(
    {
        ("Extension", "valueCodeableReference"),
        ("Extension", "valueRatioRange"),
        ("ElementDefinition", "defaultValueCodeableReference"),
        ("ElementDefinition", "defaultValueRatioRange"),
        ("ElementDefinition", "fixedCodeableReference"),
        ("ElementDefinition", "fixedRatioRange"),
        ("ElementDefinition", "patternCodeableReference"),
        ("ElementDefinition", "patternRatioRange"),
        ("ElementDefinitionExample", "valueCodeableReference"),
        ("ElementDefinitionExample", "valueRatioRange"),
        ("ActivityDefinition", "subjectCanonical"),
        ("PlanDefinition", "subjectCanonical"),
        ("PlanDefinitionAction", "subjectCanonical"),
    }
)


def load_r4_types() -> frozenset[str] | None:
    """R4 resource type names from the generated data file (a JSON array, or an object)."""
    if not R4_TYPES_FILE.exists():
        return None
    data = json.loads(R4_TYPES_FILE.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(data) == 1 and lists else list(data)
    return frozenset(str(t) for t in data)


_R4_TYPES = load_r4_types()
if _R4_TYPES is None:
    STRUCTURE_ONLY_TYPES = NO_R4B_MODEL | REMODELLED_TYPES
else:
    STRUCTURE_ONLY_TYPES = frozenset(t for t in _R4_TYPES if not hasattr(fhirtypes, t + "Type")) | (
        REMODELLED_TYPES & _R4_TYPES
    )


@cache
def is_resource_type(name: str) -> bool:
    """Whether `name` is a concrete FHIR R4 resource type."""
    if _R4_TYPES is not None:
        return name in _R4_TYPES
    if name in STRUCTURE_ONLY_TYPES:
        return True
    if name in R4B_ONLY_TYPES or name in ("Resource", "DomainResource"):
        return False
    if not name[:1].isupper() or not hasattr(fhirtypes, name + "Type"):
        return False
    try:
        return get_fhir_model_class(name).has_resource_base()
    except ValueError:
        return False


@cache
def model_for(resource_type: str) -> Model | None:
    """The R4B model of an R4 resource type; None for structure-only and unknown types."""
    if resource_type in STRUCTURE_ONLY_TYPES or not is_resource_type(resource_type):
        return None
    return get_fhir_model_class(resource_type)


# -- the elements of a model ----------------------------------------------------------------

PRIMITIVE, COMPLEX, RESOURCE, PRIMITIVE_EXT = "primitive", "complex", "resource", "ext"


@dataclass(frozen=True, slots=True)
class Element:
    """One JSON property of a FHIR type, as its model defines it."""

    name: str  # JSON property name: "birthDate", "_birthDate", "valueQuantity", "class"
    kind: str  # PRIMITIVE | COMPLEX | RESOURCE | PRIMITIVE_EXT (a `_x` partner)
    many: bool
    type: str  # FHIR type code: "date", "boolean", "HumanName", "Resource", "PatientContact"
    model: Any = None  # model class (or R4Structure) of a COMPLEX or PRIMITIVE_EXT value
    check: Check | None = None  # of a PRIMITIVE value
    choice: str | None = None  # "value" for valueQuantity
    summary: bool = False
    required: bool = False
    r4_only: bool = False

    @property
    def fhirpath(self) -> str:
        """This element as a FHIRPath step: `birthDate`, `value.ofType(Quantity)`."""
        if self.kind == PRIMITIVE_EXT:
            return self.name[1:]
        if self.choice:
            return f"{self.choice}.ofType({self.type})"
        return self.name


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The item type inside Optional[...] and List[...], and whether it repeats."""
    many = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is list:
            many, annotation = True, typing.get_args(annotation)[0]
        elif origin is typing.Union or origin is types.UnionType:
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation, many


def _describe(annotation: Any) -> tuple[str, str, Model | None, Check | None]:
    """(kind, FHIR type code, child model, value check) of one field's item type."""
    if isinstance(annotation, type) and issubclass(annotation, FhirBase):
        model = annotation.get_model_klass()
        if model.__name__ == "Resource":
            return RESOURCE, "Resource", None, None
        if model.__name__ == "FHIRPrimitiveExtension":
            return PRIMITIVE_EXT, "Element", model, None
        return COMPLEX, model.__name__, model, None
    base, marker = annotation, ""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        marker = type(meta[-1]).__name__ if meta else ""  # (EncodedBytes, Base64Binary)
    if base is bool:
        return PRIMITIVE, "boolean", None, check_boolean
    if base is uuid.UUID:
        return PRIMITIVE, "uuid", None, check_uuid
    code = marker[:1].lower() + marker[1:] if marker else "string"
    return PRIMITIVE, code, None, check_for(code)


@cache
def elements(model: Any) -> dict[str, Element]:
    """The JSON properties of `model` in FHIR element order, each `_x` right after its `x`."""
    if isinstance(model, R4Structure):
        return model.fields
    fields = model.model_fields
    by_alias = {(f.alias or n): (n, f) for n, f in fields.items()}
    out: dict[str, Element] = {}
    for alias in model.elements_sequence():
        if (model.__name__, alias) in R4B_ONLY_ELEMENTS:
            continue
        _, field = by_alias[alias]
        extra = cast(dict[str, Any], field.json_schema_extra or {})  # the models give a dict
        item, many = _unwrap(field.annotation)
        kind, code, child, check = _describe(item)
        required = bool(
            field.is_required()
            or extra.get("element_required")
            or extra.get("one_of_many_required")
        )
        out[alias] = Element(
            alias,
            kind,
            many,
            code,
            child,
            check,
            extra.get("one_of_many"),
            bool(extra.get("summary_element_property")),
            required,
        )
        ext = by_alias.get("_" + alias)  # by alias: `import` is the field `import_fhir`
        if ext is not None:
            ext_model = _describe(_unwrap(ext[1].annotation)[0])[2]
            out["_" + alias] = Element("_" + alias, PRIMITIVE_EXT, many, "Element", ext_model)
        elif kind == PRIMITIVE and extra.get("one_of_many"):
            # R4B's Extension has no `_valueString` & co. (R4: json.html#primitive allows
            # them): the walk checks them, the models never see them
            out["_" + alias] = Element(
                "_" + alias,
                PRIMITIVE_EXT,
                many,
                "Element",
                _primitive_extension_model(),
                r4_only=True,
            )
    for (owner, alias), code in R4_ONLY_ELEMENTS.items():
        if owner == model.__name__:
            out[alias] = Element(
                alias,
                COMPLEX,
                False,
                code,
                get_fhir_model_class(code),
                choice=alias[: -len(code)],
                r4_only=True,
            )
    return out


@cache
def _primitive_extension_model() -> type:
    """The model of a primitive's `_x` partner (id and extensions), taken from Patient."""
    field = get_fhir_model_class("Patient").model_fields["birthDate__ext"]
    model = _describe(_unwrap(field.annotation)[0])[2]
    assert model is not None
    return model


@cache
def requirements(model: Any) -> tuple[tuple[Element, ...], tuple[str, ...]]:
    """(required single elements, required choice groups) of `model`."""
    fields = elements(model).values()
    singles = tuple(e for e in fields if e.required and not e.choice)
    choices = tuple(sorted({e.choice for e in fields if e.required and e.choice}))
    return singles, choices


DOMAIN_RESOURCE = get_fhir_model_class("DomainResource")
EXTENSION = get_fhir_model_class("Extension")

BACKBONE_ELEMENT = get_fhir_model_class("BackboneElement")


# -- R4 types without an R4B model ----------------------------------------------------------


class R4Structure:
    """The elements of an R4 type or backbone element R4B has no model for (`fields`)."""

    __slots__ = ("__name__", "fields")

    def __init__(self, name: str) -> None:
        self.__name__ = name  # as a model class has, for messages
        self.fields: dict[str, Element] = {}

    def __repr__(self) -> str:
        return f"R4Structure({self.__name__})"


def structure_for(resource_type: str) -> Any:
    """What `elements()` takes for a resource type: its R4B model, else its R4Structure
    (the structure-only types), else None (unknown types)."""
    model = model_for(resource_type)
    if model is None and is_resource_type(resource_type):
        return _structures().get(resource_type)
    return model


@cache
def _structures() -> dict[str, R4Structure]:
    raw: dict[str, list[list[Any]]] = json.loads(R4_STRUCTURES_FILE.read_text(encoding="utf-8"))
    out = {path: R4Structure(path) for path in raw}
    for path, own in raw.items():
        base = DOMAIN_RESOURCE if "." not in path and is_resource_type(path) else BACKBONE_ELEMENT
        fields = dict(elements(base))
        for name, most, least, codes in own:
            many, required = most != "1", least > 0
            if name.endswith("[x]"):
                stem = name[:-3]
                for code in codes:
                    _add(fields, out, stem + code[0].upper() + code[1:], code, many, required, stem)
            else:
                _add(fields, out, name, codes[0], many, required, None)
        out[path].fields = fields
    return out


def _add(
    fields: dict[str, Element],
    structures: dict[str, R4Structure],
    name: str,
    code: str,
    many: bool,
    required: bool,
    choice: str | None,
) -> None:
    """One element (and the `_x` partner of a primitive) of an R4Structure."""
    if code.startswith("#"):
        fields[name] = Element(
            name,
            COMPLEX,
            many,
            "BackboneElement",
            structures[code[1:]],
            choice=choice,
            required=required,
        )
    elif code == "Resource":
        fields[name] = Element(name, RESOURCE, many, code, choice=choice, required=required)
    elif code[:1].isupper():
        model = structures.get(code) or get_fhir_model_class(code)
        fields[name] = Element(name, COMPLEX, many, code, model, choice=choice, required=required)
    else:
        check = {"boolean": check_boolean, "uuid": check_uuid}.get(code) or check_for(code)
        fields[name] = Element(name, PRIMITIVE, many, code, None, check, choice, required=required)
        fields["_" + name] = Element(
            "_" + name, PRIMITIVE_EXT, many, "Element", _primitive_extension_model()
        )
