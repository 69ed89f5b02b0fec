"""Custom search parameters: a stored `SearchParameter` resource is an active parameter.

https://hl7.org/fhir/R4/searchparameter.html -- a server may let clients define search
parameters. Every valid SearchParameter is stored; one becomes a parameter here when it is
meant to be one (`registrable`): status `active` or `draft`, an expression (or type
composite or special), and no clash with the R4 core parameters the server relies on. It is
registered as soon as the transaction that wrote it commits, so every later write is
indexed for it; `retired`, or deleting the resource, unregisters it. Resources written
before keep their old index values until `$reindex` (see `reindex.py`) brings them up to date.

Stored but never registered: codes starting with `_` (the spec's own `_id`, `_text`,
`_lastUpdated`...), a url of a core parameter (`.../SearchParameter/Patient-identifier`),
a code a core parameter already has on one of its bases (`identifier` on Patient): the core
definition stays authoritative, so a stored copy or redefinition can neither change how
`If-None-Exist` matches nor shadow what every client relies on. The official definitions
of the core parameters can thus be stored like any other resource.

A SearchParameter that is registrable must be usable, else the write is refused with 422
and the reason: a code that can be a query parameter name, and a FHIRPath expression that
compiles (for every type but composite and special, whose matching is the engines' own).
Base types and the parameter type are checked as invalid content (400) first.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import InvalidResource, Unprocessable
from fhir_server.interactions.reindex import (
    job_duty,
    reindex_operation,
    reindex_status_operation,
)
from fhir_server.model import fhirjson
from fhir_server.search.registry import SearchParam, SearchRegistry, build_registry
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

TYPE = "SearchParameter"
ACTIVE = frozenset({"active", "draft"})
PARAM_TYPES = frozenset(
    {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
)
_NO_EXPRESSION = frozenset({"composite", "special"})
_ABSTRACT = frozenset({"Resource", "DomainResource"})  # bases of every (domain) resource
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")


async def install(svc: FhirService) -> None:
    """Register the stored custom parameters and keep the registry in step with writes."""
    core = {p.url: p for p in build_registry(experimental=True).params}
    by_id: dict[str, str] = {}  # SearchParameter id -> the url it registered

    def apply(rec: StoredResource) -> None:
        old_url = by_id.pop(rec.id, None)
        if old_url is not None:
            svc.registry.remove(old_url)
            if old_url in core and not core[old_url].experimental:
                svc.registry.add(core[old_url])
        if rec.deleted:
            return
        resource = fhirjson.loads(rec.data)
        if registrable(resource):
            param = SearchParam.from_json(resource)
            svc.registry.add(param)
            by_id[rec.id] = param.url

    await svc.watch((TYPE,), apply)
    svc.add_validator(lambda resource: check(resource, svc.registry.resource_types))
    svc.add_operation(reindex_operation())
    svc.add_operation(reindex_status_operation())
    svc.add_duty("reindex", job_duty(svc))


@cache
def _core() -> SearchRegistry:
    """The R4 core parameters the server relies on (the experimental ones left out)."""
    return build_registry()


def registrable(resource: dict[str, Any]) -> bool:
    """Whether a (valid) SearchParameter is meant to become a search parameter here."""
    code = resource.get("code")
    if resource.get("status") not in ACTIVE or not isinstance(code, str) or code[:1] == "_":
        return False
    if not resource.get("expression") and resource.get("type") not in _NO_EXPRESSION:
        return False  # a draft without expression, or a parameter served by other means
    core = _core()
    if core.by_url(str(resource.get("url", "")).split("|")[0]) is not None:
        return False
    return not any(core.param(base, code) for base in resource.get("base", ()))


def check(resource: dict[str, Any], resource_types: frozenset[str]) -> None:
    """Raise InvalidResource (400) or Unprocessable (422) when a SearchParameter that would
    be registered could not work as a search parameter."""
    if resource.get("resourceType") != TYPE:
        return
    if resource.get("type") not in PARAM_TYPES:
        _invalid(f"SearchParameter.type '{resource.get('type')}' is not a search type", "type")
    unknown = [b for b in resource.get("base", ()) if b not in resource_types | _ABSTRACT]
    if unknown:
        _invalid(f"SearchParameter.base names unknown resource types: {', '.join(unknown)}", "base")
    if not registrable(resource):
        return
    code = resource["code"]
    if not _CODE.fullmatch(code):
        _unusable(
            f"SearchParameter.code '{code}' cannot be a search parameter name (letters, "
            "digits, '-' and '_')",
            "code",
        )
    expression = resource.get("expression")
    if resource["type"] in _NO_EXPRESSION or not expression:
        return
    problem = syntax_error(expression)
    if problem is None:
        try:
            fhirpathpy.compile(expression, models["r4"])
        except Exception as error:  # fhirpathpy raises several kinds on a bad expression
            problem = str(error) or error.__class__.__name__
    if problem is not None:
        _unusable(f"SearchParameter.expression is not valid FHIRPath: {problem}", "expression")


class _Errors(ErrorListener):  # type: ignore[misc]  # antlr4 ships no types
    def __init__(self) -> None:
        self.first: str | None = None

    def syntaxError(
        self,
        recognizer: Any,
        symbol: Any,
        line: int,
        column: int,  # antlr's name
        msg: str,
        e: Any,
    ) -> None:
        self.first = self.first or f"column {column + 1}: {msg}"


def syntax_error(expression: str) -> str | None:
    """The first syntax error of a FHIRPath expression (None: it parses to the end).

    fhirpathpy's own parse recovers from syntax errors silently, so its grammar is run
    here with a listener that keeps them.
    """
    errors = _Errors()
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(errors)
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(errors)
    parser.expression()
    if errors.first is None and tokens.LA(1) != Token.EOF:
        return f"unexpected '{tokens.LT(1).text}' after the expression"
    return errors.first


def _invalid(message: str, element: str) -> NoReturn:
    raise InvalidResource(message, expression=(f"SearchParameter.{element}",))


def _unusable(message: str, element: str) -> None:
    raise Unprocessable(
        f"Cannot register this SearchParameter: {message}",
        expression=(f"SearchParameter.{element}",),
    )
