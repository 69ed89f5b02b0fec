"""CDS Hooks (https://cds-hooks.hl7.org/2.0/): the discovery endpoint and the CDS services an
EHR calls during its workflow (e.g. `patient-view`), answering with cards.

Empty until the CDS Hooks issue lands. What will live here: the services, each fetching its
prefetch data through the FHIR service (never a storage engine) and running its model;
`models/`, one package per diagnosis or risk model (scikit-learn trained, exported to ONNX,
run with onnxruntime) with its model card. The HTTP routes belong to `fhir_server.api` and
the plug-in is registered by `fhir_server.assembly`, like every other.
"""
