"""Foot-orthosis orders for tests: the resources a clinic sends, and a stand-in design.

`stub_design` replaces the geometry (adapters.orthotics.design) where a test is about the
FHIR flow, not the mesh: it returns a Design of box-shaped insoles whose binary STL is
real (84 + 50 x faces bytes), so sizes and hashes can be checked end to end.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from adapters.orthotics import design
from adapters.orthotics.codes import (
    FOOT_MEASUREMENT,
    HCPCS,
    HCPCS_CUSTOM_INSERT,
    ORTHOSIS_DEVICE,
    ORTHOSIS_PARAMETER,
    ORTHOSIS_VALUE,
    UCUM,
)
from adapters.orthotics.model import (
    Design,
    DesignRefused,
    Gate,
    Insole,
    MdrStatement,
    ScanRejected,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def quantity(code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": ORTHOSIS_PARAMETER, "code": code}]},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def coded(code: str, value: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": ORTHOSIS_PARAMETER, "code": code}]},
        "valueCodeableConcept": {"coding": [{"system": ORTHOSIS_VALUE, "code": value}]},
    }


def device_request(
    id: str, laterality: str = "pair", *, extra: list[dict[str, Any]] | None = None, **kw: Any
) -> dict[str, Any]:
    """An orthosis order for Patient/p1 by Practitioner/dr1."""
    resource: dict[str, Any] = {
        "resourceType": "DeviceRequest",
        "id": id,
        "status": "active",
        "intent": "order",
        "codeCodeableConcept": {
            "coding": [
                {"system": ORTHOSIS_DEVICE, "code": "custom-foot-orthosis"},
                {"system": HCPCS, "code": HCPCS_CUSTOM_INSERT},
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "requester": {"reference": "Practitioner/dr1", "display": "Dr A. Podiatrist"},
        "reasonReference": [{"reference": "Condition/c1"}],
        "parameter": [
            coded("laterality", laterality),
            coded("process", "mjf-tpu"),
            quantity("arch-height", 18, "mm"),
            quantity("heel-cup-depth", 14, "mm"),
            quantity("rearfoot-posting", 4, "deg"),
            coded("forefoot-extension", "sulcus"),
            quantity("shell-thickness", 3, "mm"),
            *(extra or []),
        ],
        **kw,
    }
    return resource


def measurement(id: str, code: str, mm: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": FOOT_MEASUREMENT, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": mm, "unit": "mm", "system": UCUM, "code": "mm"},
    }


MEASUREMENTS = [
    measurement("m-length", "foot-length", 262),
    measurement("m-ball", "ball-width", 98),
    measurement("m-heel", "heel-width", 64),
    measurement("m-arch", "arch-height", 16),
]


def box_stl(length: float, width: float, height: float) -> bytes:
    """A closed box as binary STL: 12 triangles, 84 + 50 * 12 bytes."""
    x, y, z = length, width, height
    v = [(0, 0, 0), (x, 0, 0), (x, y, 0), (0, y, 0), (0, 0, z), (x, 0, z), (x, y, z), (0, y, z)]
    faces = [
        (0, 2, 1), (0, 3, 2), (4, 5, 6), (4, 6, 7), (0, 1, 5), (0, 5, 4),
        (1, 2, 6), (1, 6, 5), (2, 3, 7), (2, 7, 6), (3, 0, 4), (3, 4, 7),
    ]  # fmt: skip
    out = bytearray(b"stub box".ljust(80, b" ") + struct.pack("<I", len(faces)))
    for a, b, c in faces:
        out += struct.pack("<3f", 0, 0, 0)
        for corner in (v[a], v[b], v[c]):
            out += struct.pack("<3f", *corner)
        out += b"\x00\x00"
    return bytes(out)


def _insole(side: str) -> Insole:
    stl = box_stl(250, 90, 6)
    gates = (Gate("watertight", True, "yes", "yes", ""),)
    dims = {"length": 250.0, "width": 90.0, "max_thickness": 6.0}
    return Insole(side, stl, b"PK3MF " + side.encode(), 135000.0, 12, dims, gates)  # type: ignore[arg-type]


class StubDesign:
    """Stands in for the geometry; `refuse` / `reject` make it fail as the real one does."""

    def __init__(self) -> None:
        self.refuse = False
        self.reject = False
        self.calls: list[str] = []
        self.scans: dict[str, bytes] = {}
        self.statements: list[MdrStatement] = []

    def _design(self, sides: tuple[str, ...]) -> Design:
        if self.reject:
            raise ScanRejected("no foot-shaped body", {"largest body": "12 x 3 x 2 mm"})
        if self.refuse:
            gate = Gate("wall thickness p5", False, 0.6, 1.2, "mm")
            raise DesignRefused((gate, Gate("watertight", False, "no", "yes", "")))
        return Design(tuple(_insole(side) for side in sides), ("removed a floor plane",), PNG)

    def from_scan(self, scans: Any, content_type: str, rx: Any, limits: Any) -> Design:
        self.calls.append(f"scan {content_type} {sorted(scans)}")
        self.scans = dict(scans)
        return self._design(rx.sides)

    def from_measurements(self, m: Any, rx: Any, limits: Any) -> Design:
        self.calls.append(f"measurements {m.foot_length_mm:g}")
        return self._design(rx.sides)

    def pdf(self, statement: MdrStatement) -> bytes:
        self.statements.append(statement)
        return b"%PDF-1.4 stub statement"


def stub_design(monkeypatch: pytest.MonkeyPatch) -> StubDesign:
    stub = StubDesign()
    monkeypatch.setattr(design, "design_from_scan", stub.from_scan)
    monkeypatch.setattr(design, "design_from_measurements", stub.from_measurements)
    monkeypatch.setattr(design, "statement_pdf", stub.pdf)
    return stub
