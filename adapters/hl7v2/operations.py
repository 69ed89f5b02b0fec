"""The `$convert-hl7v2` system operation: one HL7 v2 ER7 message in, its transaction Bundle out.

https://hl7.org/fhir/R4/operations.html -- POST [base]/$convert-hl7v2 with either a Parameters
resource whose `message` parameter is a valueString holding the ER7 text, or a Binary resource
(base64 `data`) as the body. The answer is the transaction Bundle `convert` builds; nothing is
stored (post it to the base to apply it). A message the adapter refuses (HL7 AR) answers 400,
one it reads but cannot map (AE) 422, each with the v2 error code and location. When optional
segments had to be left out (the MLLP path answers AA with ERR severity W for them), the
answer has two outputs, so it is a Parameters resource: `return`, the Bundle, and `outcome`,
an OperationOutcome with one warning per segment left out.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from adapters.hl7v2.convert import ConvertOptions, convert
from adapters.hl7v2.message import MessageError
from fhir_server.errors import BadRequest, Unprocessable
from fhir_server.interactions.operations import Operation, OperationCall

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

NAME = "convert-hl7v2"


def install(service: FhirService, options: ConvertOptions | None = None) -> None:
    """Register `$convert-hl7v2` on `service`."""
    service.add_operation(operation(options or ConvertOptions()))


def operation(options: ConvertOptions) -> Operation:
    async def run(svc: FhirService, call: OperationCall) -> dict[str, Any]:
        raw = _message(call)
        try:
            conversion = convert(raw, options)
        except MessageError as error:
            kind = BadRequest if error.ack_code == "AR" else Unprocessable
            where = f" at {error.location}" if error.location else ""
            raise kind(
                f"HL7 v2 {error.ack_code} {error.error_code}{where}: {error.text}",
                expression=("message",),
            ) from None
        if not conversion.left_out:
            return conversion.bundle
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "return", "resource": conversion.bundle},
                {"name": "outcome", "resource": _outcome(conversion.left_out)},
            ],
        }

    return Operation(NAME, run, frozenset({"system"}), affects_state=False)


def _outcome(left_out: tuple[MessageError, ...]) -> dict[str, Any]:
    """One warning per segment left out, located by its HL7 position (e.g. IN1^1^3)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "warning",
                "code": "incomplete",
                "diagnostics": f"HL7 v2 {error.error_code} at {error.location}: {error.text}",
                "expression": ["message"],
            }
            for error in left_out
        ],
    }


def _message(call: OperationCall) -> bytes:
    """The ER7 bytes from a `message` valueString or a posted Binary."""
    text = call.params.value("message")
    if isinstance(text, str) and text:
        return text.encode("utf-8")
    binary = call.params.resource("resource")
    if binary is not None and binary.get("resourceType") == "Binary":
        try:
            return base64.b64decode(binary.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("Binary.data is not base64", expression=("Binary.data",)) from None
    raise BadRequest(
        "$convert-hl7v2 needs a 'message' valueString or a Binary with the ER7 message",
        expression=("message",),
    )
