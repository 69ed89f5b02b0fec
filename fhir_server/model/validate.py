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

Where R4 and R4B differ (every StructureDefinition of the R4 4.0.1 core package was compared
with the R4B models, element by element, with cardinality, required and summary flags):

- R4 resource types without an R4B model: the 18 in `NO_R4B_MODEL` (MedicinalProduct*,
  EffectEvidenceSynthesis, RiskEvidenceSynthesis, Substance{NucleicAcid, Polymer, Protein,
  ReferenceInformation, SourceMaterial, Specification}). Evidence and EvidenceVariable exist in
  both but were remodelled in R4B. These 20 are `STRUCTURE_ONLY_TYPES`: only the JSON object,
  resourceType, id and the DomainResource elements (meta, text, contained, extension, ...) are
  checked, not their own elements.
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
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from fhir_core import types as fhir_types
from fhir_core.types import FhirBase
from lxml import etree
from pydantic import ValidationError

from fhir_server.errors import InvalidResource, Issue

__all__ = [
    "NO_R4B_MODEL",
    "R4B_ONLY_TYPES",
    "STRUCTURE_ONLY_TYPES",
    "Element",
    "elements",
    "is_resource_type",
    "model_for",
    "narrative_problem",
    "validate_resource",
]

R4_TYPES_FILE = Path(__file__).resolve().parent.parent / "data" / "r4_resource_types.json"
MAX_ISSUES = 100
XHTML_NS = "http://www.w3.org/1999/xhtml"

NO_R4B_MODEL = frozenset({
    "EffectEvidenceSynthesis", "MedicinalProduct", "MedicinalProductAuthorization",
    "MedicinalProductContraindication", "MedicinalProductIndication",
    "MedicinalProductIngredient", "MedicinalProductInteraction", "MedicinalProductManufactured",
    "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect", "RiskEvidenceSynthesis", "SubstanceNucleicAcid",
    "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
    "SubstanceSourceMaterial", "SubstanceSpecification",
})
REMODELLED_TYPES = frozenset({"Evidence", "EvidenceVariable"})
R4B_ONLY_TYPES = frozenset({
    "AdministrableProductDefinition", "Citation", "ClinicalUseDefinition", "EvidenceReport",
    "Ingredient", "ManufacturedItemDefinition", "MedicinalProductDefinition", "NutritionProduct",
    "PackagedProductDefinition", "RegulatedAuthorization", "SubscriptionStatus",
    "SubscriptionTopic", "SubstanceDefinition",
})
# (model class, JSON name) of elements only R4 has, with their type ...
R4_ONLY_ELEMENTS = {
    ("Extension", "valueMeta"): "Meta",
    ("ElementDefinition", "defaultValueMeta"): "Meta",
    ("ElementDefinition", "fixedMeta"): "Meta",
    ("ElementDefinition", "patternMeta"): "Meta",
    ("ElementDefinitionExample", "valueMeta"): "Meta",
}
# ... and of elements only R4B has.
R4B_ONLY_ELEMENTS = frozenset({
    ("Extension", "valueCodeableReference"), ("Extension", "valueRatioRange"),
    ("ElementDefinition", "defaultValueCodeableReference"),
    ("ElementDefinition", "defaultValueRatioRange"),
    ("ElementDefinition", "fixedCodeableReference"), ("ElementDefinition", "fixedRatioRange"),
    ("ElementDefinition", "patternCodeableReference"), ("ElementDefinition", "patternRatioRange"),
    ("ElementDefinitionExample", "valueCodeableReference"),
    ("ElementDefinitionExample", "valueRatioRange"),
    ("ActivityDefinition", "subjectCanonical"), ("PlanDefinition", "subjectCanonical"),
    ("PlanDefinitionAction", "subjectCanonical"),
})


def _load_r4_types() -> frozenset[str] | None:
    """R4 resource type names from the generated data file (a JSON array, or an object)."""
    if not R4_TYPES_FILE.exists():
        return None
    data = json.loads(R4_TYPES_FILE.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(data) == 1 and lists else list(data)
    return frozenset(str(t) for t in data)


_R4_TYPES = _load_r4_types()
if _R4_TYPES is None:
    STRUCTURE_ONLY_TYPES = NO_R4B_MODEL | REMODELLED_TYPES
else:
    STRUCTURE_ONLY_TYPES = frozenset(
        t for t in _R4_TYPES if not hasattr(fhirtypes, t + "Type")
    ) | (REMODELLED_TYPES & _R4_TYPES)


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
def model_for(resource_type: str) -> type | None:
    """The R4B model of an R4 resource type; None for structure-only and unknown types."""
    if resource_type in STRUCTURE_ONLY_TYPES or not is_resource_type(resource_type):
        return None
    return get_fhir_model_class(resource_type)


# -- primitive values -----------------------------------------------------------------------

Check = Callable[[Any], "str | None"]  # a value's problem, or None
ID_RE = re.compile(r"[A-Za-z0-9\-.]{1,64}")
UUID_RE = re.compile(r"urn:uuid:[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_FORMATS = {  # R4 datatype regexes; the date/time ones as fhir_core defines them
    "code": re.compile(r"[^\s]+(\s[^\s]+)*"),
    "id": ID_RE,
    "oid": re.compile(fhir_types.Oid.pattern.pattern.strip("^$")),
    "uri": re.compile(r"\S*"), "url": re.compile(r"\S*"), "canonical": re.compile(r"\S*"),
    "date": fhir_types.Date.pattern, "dateTime": fhir_types.DateTime.pattern,
    "instant": fhir_types.Instant.pattern, "time": fhir_types.Time.pattern,
}
_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "unsignedInt": (0, 2**31 - 1),
               "positiveInt": (1, 2**31 - 1)}


def _found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    return "an array" if isinstance(value, list) else "an object"


def _check_boolean(value: Any) -> str | None:
    return None if type(value) is bool else f"Expected a JSON boolean, found {_found(value)}"


def _check_decimal(value: Any) -> str | None:
    if type(value) is int or type(value) is float:
        return None
    return f"Expected a JSON number, found {_found(value)}"


def _integer_check(code: str) -> Check:
    low, high = _INT_RANGES.get(code, (-(2**63), 2**63 - 1))

    def check(value: Any) -> str | None:
        if type(value) is not int:
            return f"Expected a JSON integer, found {_found(value)}"
        if not low <= value <= high:
            return f"{value} is out of range for {code} ({low}..{high})"
        return None
    return check


@cache
def _string_check(code: str) -> Check:
    pattern = _FORMATS.get(code)
    calendar = code in ("date", "dateTime", "instant")

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return f"Expected a JSON string, found {_found(value)}"
        if not value:
            return "Empty strings are not allowed; omit the element"
        if pattern is not None and pattern.fullmatch(value) is None:
            rule = " (1 to 64 of A-Z a-z 0-9 - .)" if code == "id" else ""
            return f"{value[:70]!r} is not a valid {code}{rule}"
        if calendar and len(value) >= 10:
            try:
                datetime.date(int(value[:4]), int(value[5:7]), int(value[8:10]))
            except ValueError:
                return f"{value[:60]!r} is not a calendar date"
        return None
    return check


def _check_base64(value: Any) -> str | None:
    problem = _string_check("base64Binary")(value)
    if problem is None:
        try:
            base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            return "Not valid base64"
    return problem


def _check_uuid(value: Any) -> str | None:
    problem = _string_check("uuid")(value)
    if problem is None and UUID_RE.fullmatch(value) is None:
        return f"{value[:60]!r} is not a urn:uuid: UUID"
    return problem


def _check_xhtml(value: Any) -> str | None:
    return _string_check("xhtml")(value) or narrative_problem(value)


# -- model metadata -------------------------------------------------------------------------

PRIMITIVE, COMPLEX, RESOURCE, PRIMITIVE_EXT = "primitive", "complex", "resource", "ext"


@dataclass(frozen=True, slots=True)
class Element:
    """One JSON property of a FHIR type, as its model defines it."""

    name: str  # JSON property name: "birthDate", "_birthDate", "valueQuantity", "class"
    kind: str  # PRIMITIVE | COMPLEX | RESOURCE | PRIMITIVE_EXT (a `_x` partner)
    many: bool
    type: str  # FHIR type code: "date", "boolean", "HumanName", "Resource", "PatientContact"
    model: type | None = None  # model of a COMPLEX or PRIMITIVE_EXT value
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
            annotation = [a for a in typing.get_args(annotation) if a is not type(None)][0]
        else:
            return annotation, many


def _describe(annotation: Any) -> tuple[str, str, type | None, Check | None]:
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
        return PRIMITIVE, "boolean", None, _check_boolean
    if base is uuid.UUID:
        return PRIMITIVE, "uuid", None, _check_uuid
    code = marker[:1].lower() + marker[1:] if marker else "string"
    if code in ("integer", "unsignedInt", "positiveInt", "integer64"):
        return PRIMITIVE, code, None, _integer_check(code)
    special = {"decimal": _check_decimal, "base64Binary": _check_base64, "xhtml": _check_xhtml}
    return PRIMITIVE, code, None, special.get(code) or _string_check(code)


@cache
def elements(model: type) -> dict[str, Element]:
    """The JSON properties of `model` in FHIR element order, each `_x` right after its `x`."""
    fields = model.model_fields
    by_alias = {(f.alias or n): (n, f) for n, f in fields.items()}
    out: dict[str, Element] = {}
    for alias in model.elements_sequence():
        if (model.__name__, alias) in R4B_ONLY_ELEMENTS:
            continue
        name, field = by_alias[alias]
        extra = field.json_schema_extra or {}
        item, many = _unwrap(field.annotation)
        kind, code, child, check = _describe(item)
        required = bool(field.is_required() or extra.get("element_required")
                        or extra.get("one_of_many_required"))
        out[alias] = Element(alias, kind, many, code, child, check, extra.get("one_of_many"),
                             bool(extra.get("summary_element_property")), required)
        ext = fields.get(name + "__ext")
        if ext is not None and ext.alias:
            ext_model = _describe(_unwrap(ext.annotation)[0])[2]
            out[ext.alias] = Element(ext.alias, PRIMITIVE_EXT, many, "Element", ext_model)
    for (owner, alias), code in R4_ONLY_ELEMENTS.items():
        if owner == model.__name__:
            out[alias] = Element(alias, COMPLEX, False, code, get_fhir_model_class(code),
                                 choice=alias[: -len(code)], r4_only=True)
    return out


@cache
def _requirements(model: type) -> tuple[tuple[Element, ...], tuple[str, ...]]:
    """(required single elements, required choice groups) of `model`."""
    fields = elements(model).values()
    singles = tuple(e for e in fields if e.required and not e.choice)
    choices = tuple(sorted({e.choice for e in fields if e.required and e.choice}))
    return singles, choices


_DOMAIN_RESOURCE = get_fhir_model_class("DomainResource")
_EXTENSION = get_fhir_model_class("Extension")


# -- the walk -------------------------------------------------------------------------------

# A location is a linked list, turned into text only when an issue needs it:
# (parent, Element or JSON key, index or None); the root is the resource type name.
Loc = tuple | str


def _path(loc: Loc) -> str:
    steps: list[str] = []
    while isinstance(loc, tuple):
        loc, step, index = loc
        name = step.fhirpath if isinstance(step, Element) else step
        steps.append(name if index is None else f"{name}[{index}]")
    steps.append(loc)
    return ".".join(reversed(steps))


def _keys(loc: Loc) -> list[str | int]:
    """The JSON keys and indexes that lead to `loc`."""
    keys: list[str | int] = []
    while isinstance(loc, tuple):
        loc, step, index = loc
        if index is not None:
            keys.append(index)
        keys.append(step.name if isinstance(step, Element) else step)
    return list(reversed(keys))


class _Walk:
    """One check of a resource tree; `issues` holds what is wrong."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.structure_only: list[Loc] = []  # nested resources the models cannot check
        self.r4_only: list[Loc] = []  # R4-only elements and uuids, which R4B rejects

    def fail(self, loc: Loc, message: str, code: str = "structure") -> None:
        if len(self.issues) < MAX_ISSUES:
            path = _path(loc)
            self.issues.append(Issue(f"{path}: {message}", code, "error", (path,)))

    def resource(self, data: Any, loc: Loc, top: bool = False) -> None:
        if type(data) is not dict:
            self.fail(loc, f"Expected a resource (a JSON object), found {_found(data)}")
            return
        rtype = data.get("resourceType")
        if type(rtype) is not str or not rtype:
            self.fail(loc, "A resource needs a 'resourceType'", "required")
            return
        if not is_resource_type(rtype):
            self.fail(loc, f"'{rtype}' is not a FHIR R4 resource type", "not-supported")
            return
        model = model_for(rtype)
        if model is None:
            fields = elements(_DOMAIN_RESOURCE)
            self.object({k: v for k, v in data.items() if k in fields}, _DOMAIN_RESOURCE,
                        loc, rtype)
            if not top:
                self.structure_only.append(loc)
        else:
            self.object(data, model, loc, rtype)

    def object(self, data: dict, model: type, loc: Loc, rtype: str | None = None) -> None:
        fields = elements(model)
        choices: dict[str, str] | None = None
        for key, value in data.items():
            info = fields.get(key)
            if info is None:
                if key != "resourceType" or rtype is None:
                    self.fail((loc, key, None), f"Unknown element '{key}'")
                continue
            if info.choice is not None:
                choices = choices or {}
                other = choices.setdefault(info.choice, key)
                if other != key:
                    self.fail((loc, f"{info.choice}[x]", None), f"Only one {info.choice}[x] "
                              f"is allowed, found '{other}' and '{key}'", "invariant")
                if info.r4_only or info.type == "uuid":
                    self.r4_only.append((loc, key, None))
            if value is None:
                self.fail((loc, info, None), "null is not allowed; omit the element")
            elif info.many:
                self.array(data, value, info, loc)
            elif type(value) is list:
                self.fail((loc, info, None), "Expected a single value, not an array")
            elif info.check is not None:
                problem = info.check(value)
                if problem is not None:
                    self.fail((loc, info, None), problem, "value")
            else:
                self.node(value, info, (loc, info, None))
        self.required(data, model, loc, choices)

    def required(self, data: dict, model: type, loc: Loc, choices: dict[str, str] | None) -> None:
        singles, groups = _requirements(model)
        for info in singles:
            if info.name not in data and "_" + info.name not in data:
                self.fail((loc, info, None), "A required element is missing", "required")
        for group in groups:
            if not choices or group not in choices:
                self.fail((loc, f"{group}[x]", None), "A required element is missing",
                          "required")

    def array(self, data: dict, value: Any, info: Element, loc: Loc) -> None:
        if type(value) is not list:
            self.fail((loc, info, None), "Expected an array (the element repeats)")
            return
        if not value:
            self.fail((loc, info, None), "Empty arrays are not allowed")
            return
        partner = None
        if info.kind == PRIMITIVE or info.kind == PRIMITIVE_EXT:
            # nulls line a value up with its extensions; the value array reports a double null
            name = info.name
            partner = data.get(name[1:] if name[0] == "_" else "_" + name)
            if partner is not None and (type(partner) is not list or len(partner) != len(value)):
                self.fail((loc, info, None), f"'{name}' and its '_' partner must be arrays "
                          "of the same length")
                partner = None
        check = info.check
        for i, item in enumerate(value):
            if item is None:
                if partner is None or (partner[i] is None and info.kind == PRIMITIVE):
                    self.fail((loc, info, i), "null is not allowed here")
            elif check is not None:
                problem = check(item)
                if problem is not None:
                    self.fail((loc, info, i), problem, "value")
            else:
                self.node(item, info, (loc, info, i))

    def node(self, value: Any, info: Element, loc: Loc) -> None:
        if info.kind == RESOURCE:
            self.resource(value, loc)
        elif type(value) is not dict:
            self.fail(loc, f"Expected a JSON object, found {_found(value)}")
        elif not value:
            self.fail(loc, "Empty objects are not allowed")
        else:
            self.object(value, info.model, loc)
            if info.model is _EXTENSION and ("extension" in value) == any(
                k.startswith("value") for k in value
            ):
                self.fail(loc, "An extension has either extensions or a value[x], not both "
                          "(ext-1)", "invariant")


# -- narrative ------------------------------------------------------------------------------

_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                               huge_tree=False)
_FORBIDDEN_TAGS = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form",
    "input", "button", "select", "textarea", "head", "body", "html", "link", "meta", "base",
    "title",
})


def narrative_problem(div: str) -> str | None:
    """Why `div` is not acceptable narrative XHTML (txt-1, txt-2), or None if it is."""
    if not div.lstrip().startswith("<div"):
        return "The narrative must be an XHTML <div> element"
    try:
        root = etree.fromstring(div, _SAFE_PARSER)
    except (etree.XMLSyntaxError, ValueError) as error:
        return f"The narrative is not well-formed XHTML: {error}"
    if root.tag not in ("div", f"{{{XHTML_NS}}}div"):
        return "The narrative root must be a div in the XHTML namespace"
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        qname = etree.QName(node)
        if qname.localname.lower() in _FORBIDDEN_TAGS or qname.namespace not in (None, XHTML_NS):
            return f"The narrative may not contain <{qname.localname}> elements (txt-1)"
        for name, value in node.attrib.items():
            local = etree.QName(name).localname.lower()
            if local.startswith("on") or value.strip().lower().startswith("javascript:"):
                return f"The narrative may not contain the attribute '{local}' here (txt-1)"
    if not "".join(root.itertext()).strip() and not any(
        etree.QName(n).localname == "img" for n in root.iter() if isinstance(n.tag, str)
    ):
        return "The narrative must have some non-whitespace content (txt-2)"
    return None


# -- the models' own verdict (deep=True) ----------------------------------------------------

_PLACEHOLDER = {"resourceType": "Basic", "code": {"text": "structure-only resource"}}


def _for_models(data: dict, walk: _Walk) -> dict:
    """A copy of `data` without what R4B models cannot take (R4-only parts, no-model types)."""
    root = dict(data)
    copied = {id(root)}
    edits = [(loc, None) for loc in walk.r4_only] + [(loc, _PLACEHOLDER)
                                                       for loc in walk.structure_only]
    for loc, replacement in edits:
        keys = _keys(loc)
        node: Any = root
        for key in keys[:-1]:
            child = node[key]
            if id(child) not in copied:
                child = list(child) if isinstance(child, list) else dict(child)
                copied.add(id(child))
                node[key] = child
            node = child
        if replacement is None:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = replacement
    return root


def _model_issues(model: type, data: dict, original: dict, loc: Loc) -> list[Issue]:
    try:
        model.model_validate(data)
    except ValidationError as error:
        return [_issue_from(e, original, loc) for e in error.errors()[:MAX_ISSUES]]
    return []


def _issue_from(error: Any, data: dict, loc: Loc) -> Issue:
    """One pydantic error as an Issue, its path followed through the JSON and the models."""
    node: Any = data
    fields: dict[str, Element] | None = elements(
        model_for(data.get("resourceType", "")) or _DOMAIN_RESOURCE)
    for step in error["loc"]:
        if isinstance(step, int):
            if isinstance(loc, tuple) and loc[2] is None:
                loc = (loc[0], loc[1], step)
            node = node[step] if isinstance(node, list) and step < len(node) else None
            if isinstance(node, dict) and "resourceType" in node and fields is None:
                fields = elements(model_for(node["resourceType"]) or _DOMAIN_RESOURCE)
            continue
        info = fields.get(step) if fields else None
        if info is None:
            if step not in ("root", "resource_type"):
                loc, fields = (loc, str(step), None), None
            continue
        loc = (loc, info, None)
        node = node.get(step) if isinstance(node, dict) else None
        fields = elements(info.model) if info.model is not None else None
        if info.kind == RESOURCE and isinstance(node, dict):
            fields = elements(model_for(node.get("resourceType", "")) or _DOMAIN_RESOURCE)
    path = _path(loc)
    if error.get("type") in ("missing", "model_field_validation.missing"):
        return Issue(f"{path}: A required element is missing", "required", "error", (path,))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return Issue(f"{path}: {message}", "value", "error", (path,))


def _deep(resource: dict, walk: _Walk) -> list[Issue]:
    rtype = resource["resourceType"]
    data = _for_models(resource, walk)
    model = model_for(rtype)
    base = elements(_DOMAIN_RESOURCE)
    if model is None:
        issues = _model_issues(_DOMAIN_RESOURCE, {k: v for k, v in data.items() if k in base},
                               resource, rtype)
    else:
        issues = _model_issues(model, data, resource, rtype)
    for loc in walk.structure_only:
        node: Any = resource
        for key in _keys(loc):
            node = node[key]
        part = {k: v for k, v in node.items() if k in base}
        issues += _model_issues(_DOMAIN_RESOURCE, part, part, loc)
    return issues


# -- entry point ----------------------------------------------------------------------------


def validate_resource(resource: dict, *, deep: bool = True) -> dict:
    """`resource` itself if it is a valid FHIR R4 resource, else `InvalidResource`.

    `deep=False` skips the R4B pydantic models and keeps only the walk (see the module docs).
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
    walk = _Walk()
    try:
        walk.resource(resource, rtype, top=True)
        if deep and not walk.issues:
            walk.issues = _deep(resource, walk)
    except RecursionError:
        message = "The resource is nested too deeply to be processed"
        raise InvalidResource(message, issues=[Issue(message, "too-long")]) from None
    if walk.issues:
        more = len(walk.issues) - 1
        raise InvalidResource(walk.issues[0].diagnostics + (f" (and {more} more)" if more else ""),
                              issues=walk.issues)
    return resource
