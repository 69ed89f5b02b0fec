"""One HL7 v2 message to one FHIR transaction Bundle, per the HL7 v2-to-FHIR IG maps.

The package follows the IG's own structure (package `hl7.fhir.uv.v2mappings`, folder
`mappings/`): `messages/` holds one module per message map (e.g. "ADT_A01", "ORU_R01"),
`segments/` one module per segment map (e.g. "PID[Patient]"), `datatypes` the datatype maps
that make resources (XCN[Practitioner], XON[Organization], PL[Location], ED[Attachment];
the plain ones are in `adapters.hl7v2.datatypes`), `vocabulary` the code maps the IG leaves
to us (the IG's concept maps are in `adapters.hl7v2.tables`). Which families and events are
supported is said once, in `adapters.hl7v2.registry`.

Every entry is an update, so a replay of the same message changes nothing: things of the
real world (patient, encounter, practitioner, order, result) are conditional updates on an
identifier (`bundle.BundleBuilder.upsert`); the MessageHeader, the Provenance and the Binary
holding the message are `PUT Type/id` with ids hashed from the sender, MSH-10 and the payload.
"""

from __future__ import annotations

from adapters.hl7v2.convert.context import Context, Conversion, ConvertOptions
from adapters.hl7v2.convert.messages import MAPS
from adapters.hl7v2.convert.segments.msh import map_message_header, map_provenance
from adapters.hl7v2.message import MessageError, decode, normalise, parse


def convert(raw: bytes | str, options: ConvertOptions | None = None) -> Conversion:
    """`raw` (one ER7 message) as a transaction Bundle; MessageError when it cannot be."""
    options = options or ConvertOptions()
    text = decode(raw) if isinstance(raw, bytes) else normalise(raw)
    message = parse(text, options.strict_processing_id)
    ctx = Context(message, options, text.encode("utf-8"))
    kind, event = message.header.message_type, message.header.trigger_event
    MAPS[kind](ctx, event)
    map_message_header(ctx)
    map_provenance(ctx)
    return Conversion(
        ctx.entries.bundle(),
        message.header,
        ctx.patient_key,
        tuple(ctx.merged_keys),
        tuple(ctx.left_out),
        ctx.entries.sources(),
    )


__all__ = ["Conversion", "ConvertOptions", "MessageError", "convert"]
