"""The values of the geometry API: prescription, measurements, limits, gates, results, errors.

Re-exported by adapters.orthotics.design, the public module; kept apart so that the pipeline's
modules can use them without importing the pipeline itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.orthotics.parameters import ForefootExtension, Process, Side


@dataclass(frozen=True)
class Prescription:
    """The prescriber's design characteristics (ranges: adapters.orthotics.parameters)."""

    sides: tuple[Side, ...]  # ("left",), ("right",) or ("left", "right") for a pair
    arch_height_mm: float
    heel_cup_depth_mm: float
    rearfoot_posting_deg: float  # + medial, - lateral
    forefoot_posting_deg: float  # + medial, - lateral
    forefoot_extension: ForefootExtension
    shell_thickness_mm: float
    process: Process


@dataclass(frozen=True)
class FootMeasurements:
    """Foot measurements (mm) for a parametric insole when no scan is given."""

    foot_length_mm: float
    ball_width_mm: float
    heel_width_mm: float
    arch_height_mm: float


@dataclass(frozen=True)
class PrintLimits:
    """What the printer takes: its build volume and the largest mesh the slicer accepts."""

    build_volume_mm: tuple[float, float, float] = (300.0, 300.0, 300.0)
    max_faces: int = 200_000


@dataclass(frozen=True)
class Gate:
    """One printability check: its name, what was measured and the limit it is held to."""

    name: str
    passed: bool
    measured: float | str
    limit: float | str
    unit: str


@dataclass(frozen=True)
class Insole:
    """One printable insole: its print files and what was measured on them."""

    side: Side
    stl: bytes  # binary STL
    three_mf: bytes
    volume_mm3: float
    faces: int
    dimensions_mm: dict[str, float]  # length, width, max thickness, arch height, heel cup depth
    gates: tuple[Gate, ...]


@dataclass(frozen=True)
class Design:
    """The insoles of one order, what was repaired in the scan, and a preview image."""

    insoles: tuple[Insole, ...]
    repairs: tuple[str, ...]  # what was repaired or removed from the scan, in words
    preview_png: bytes  # side and bottom views of all insoles

    @property
    def printable(self) -> bool:
        """Every gate of every insole passed."""
        return all(gate.passed for insole in self.insoles for gate in insole.gates)


@dataclass(frozen=True)
class MdrStatement:
    """The content of the EU MDR (2017/745) Annex XIII section 1 statement for one device."""

    patient_code: str  # the patient identified by a code, never by name
    prescriber: str  # the person who made out the prescription (authorised to do so)
    manufacturer: str  # name and address
    device_description: str  # data allowing the device to be identified
    design_characteristics: dict[str, str]  # the specific characteristics as prescribed
    serial_numbers: tuple[str, ...]
    date: str
    manufacturing_sites: tuple[str, ...] = ()  # name and address of each site, if not the above
    authorised_representative: str = ""  # where applicable
    health_institution: str = ""  # the prescriber's institution, where applicable
    requirements_not_met: tuple[str, ...] = ()  # Annex I requirements not fully met, and why
    substances: str = ""  # medicinal substance or tissues/cells incorporated ("" = none)
    signatory: str = ""  # name and function of the person signing for the manufacturer
    extra: Mapping[str, Any] = field(default_factory=dict)


class ScanRejected(ValueError):
    """The scan cannot be used to design an insole."""

    def __init__(self, reason: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details: dict[str, Any] = details or {}


class DesignRefused(ValueError):
    """The design failed printability gates and is not issued."""

    def __init__(self, gates: tuple[Gate, ...]) -> None:
        names = ", ".join(
            f"{g.name} (measured {g.measured} {g.unit}, limit {g.limit} {g.unit})" for g in gates
        )
        super().__init__(f"the design failed the printability gates: {names}")
        self.gates = gates


class PrescriptionInvalid(ValueError):
    """Prescription values or foot measurements out of range; each problem names its range."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
