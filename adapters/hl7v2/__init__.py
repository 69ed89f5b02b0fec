"""HL7 v2 to FHIR: parse ER7 messages (`message`) and map them to transaction Bundles (`convert`).

The maps follow the HL7 v2-to-FHIR Implementation Guide (http://hl7.org/fhir/uv/v2mappings);
`operations` offers the conversion as the `$convert-hl7v2` system operation.
"""
