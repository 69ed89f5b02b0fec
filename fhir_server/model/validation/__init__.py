"""The parts of FHIR R4 JSON validation; `fhir_server.model.validate` is the public face.

- `metadata`: R4 vs R4B resource type sets and each model's elements (`elements()`).
- `primitives`: format and range checks of primitive values.
- `narrative`: the XHTML narrative `div` (txt-1, txt-2).
- `walk`: the one walk over the JSON that finds the faults and names their paths.
- `deep`: the R4B pydantic models' own verdict, once the walk found nothing.
"""
