"""FHIR R4 terminology: CodeSystem, ValueSet and ConceptMap content and their operations.

Pure Python and framework-free: `Terminology` holds the core R4 content plus resources the
server stores, and answers $lookup, $validate-code, $subsumes, $expand and $translate with
FHIR resources as dicts, raising `fhir_server.errors` for bad input.
"""

from terminology.codesystem import CodeSystemIndex, Concept
from terminology.registry import Terminology

__all__ = ["CodeSystemIndex", "Concept", "Terminology"]
