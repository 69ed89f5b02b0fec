"""Custom search parameters: a stored `SearchParameter` resource is an active parameter.

https://hl7.org/fhir/R4/searchparameter.html -- a server may let clients define search
parameters. Here a SearchParameter whose status is `active` or `draft` is registered
as soon as the transaction that wrote it commits, so every later write is indexed for it;
`retired`, or deleting the resource, unregisters it (a core R4 parameter it replaced
comes back). Resources written before keep their old index values until `$reindex`
(see `reindex.py`) brings them up to date.

A SearchParameter is checked before it is stored: its code, types, base resource types
and a FHIRPath expression that compiles (for every type but composite and special, whose
matching is the engines' own).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NoReturn

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import InvalidResource
from fhir_server.interactions.reindex import reindex_operation
from fhir_server.model import fhirjson
from fhir_server.search.registry import SearchParam, build_registry
from fhir_server.storage.base import StoredResource

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

TYPE = "SearchParameter"
ACTIVE = frozenset({"active", "draft"})
PARAM_TYPES = frozenset({"number", "date", "string", "token", "reference", "composite",
                         "quantity", "uri", "special"})
_NO_EXPRESSION = frozenset({"composite", "special"})
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
        if resource.get("status") in ACTIVE:
            param = SearchParam.from_json(resource)
            svc.registry.add(param)
            by_id[rec.id] = param.url

    await svc.watch((TYPE,), apply)
    svc.add_validator(lambda resource: check(resource, svc.registry.resource_types))
    svc.add_operation(reindex_operation())


def check(resource: dict[str, Any], resource_types: frozenset[str]) -> None:
    """Raise InvalidResource when a SearchParameter could not work as a search parameter."""
    if resource.get("resourceType") != TYPE:
        return
    code = resource.get("code", "")
    if not _CODE.fullmatch(code):
        _invalid(f"SearchParameter.code '{code}' is not a valid parameter name", "code")
    if resource.get("type") not in PARAM_TYPES:
        _invalid(f"SearchParameter.type '{resource.get('type')}' is not a search type", "type")
    unknown = [b for b in resource.get("base", ()) if b not in resource_types | {"Resource"}]
    if unknown:
        _invalid(f"SearchParameter.base names unknown resource types: {', '.join(unknown)}",
                 "base")
    expression = resource.get("expression")
    if resource["type"] in _NO_EXPRESSION:
        return
    if not expression:
        _invalid("SearchParameter.expression is required (the FHIRPath that finds the "
                 "values to index)", "expression")
    problem = syntax_error(expression)
    if problem is None:
        try:
            fhirpathpy.compile(expression, models["r4"])
        except Exception as error:  # fhirpathpy raises several kinds on a bad expression
            problem = str(error) or error.__class__.__name__
    if problem is not None:
        _invalid(f"SearchParameter.expression is not valid FHIRPath: {problem}", "expression")


class _Errors(ErrorListener):  # type: ignore[misc]  # antlr4 ships no types
    def __init__(self) -> None:
        self.first: str | None = None

    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int,  # antlr's name
                    msg: str, e: Any) -> None:
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
