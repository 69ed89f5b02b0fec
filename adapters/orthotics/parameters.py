"""The prescription parameters of a custom foot orthosis: the single source of their ranges.

The DeviceRequest validation, the published CodeSystem and ValueSets and the geometry all read
the ranges from here, so a value the order accepts is a value the design can build. Lengths are
millimetres (UCUM ``mm``), angles degrees (UCUM ``deg``). Posting angles are signed: positive
raises the medial side, negative the lateral side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Process = Literal["fdm-tpu", "mjf-tpu", "sls-pa12"]
Side = Literal["left", "right"]
ForefootExtension = Literal["metatarsal-heads", "sulcus", "full-length"]


@dataclass(frozen=True)
class Parameter:
    """One numeric design characteristic: its code, display, UCUM unit and allowed range."""

    code: str
    display: str
    unit: str
    minimum: float
    maximum: float
    default: float

    def problem(self, value: float) -> str | None:
        """Why ``value`` is refused (naming the parameter and its range), or None if allowed."""
        if value != value or not self.minimum <= value <= self.maximum:  # NaN fails too
            return (
                f"{self.code} must be between {self.minimum:g} and {self.maximum:g} "
                f"{self.unit} (got {value:g})"
            )
        return None


@dataclass(frozen=True)
class ProcessSpec:
    """A print process: its material and the thinnest wall it prints reliably."""

    code: Process
    display: str
    material: str
    min_wall_mm: float


ARCH_HEIGHT = Parameter("arch-height", "Arch height", "mm", 0.0, 35.0, 15.0)
HEEL_CUP_DEPTH = Parameter("heel-cup-depth", "Heel cup depth", "mm", 5.0, 30.0, 12.0)
REARFOOT_POSTING = Parameter(
    "rearfoot-posting", "Rearfoot posting (+ medial, - lateral)", "deg", -10.0, 10.0, 0.0
)
FOREFOOT_POSTING = Parameter(
    "forefoot-posting", "Forefoot posting (+ medial, - lateral)", "deg", -10.0, 10.0, 0.0
)
SHELL_THICKNESS = Parameter("shell-thickness", "Shell thickness", "mm", 1.5, 6.0, 3.0)

NUMERIC: tuple[Parameter, ...] = (
    ARCH_HEIGHT,
    HEEL_CUP_DEPTH,
    REARFOOT_POSTING,
    FOREFOOT_POSTING,
    SHELL_THICKNESS,
)
BY_CODE: Mapping[str, Parameter] = {p.code: p for p in NUMERIC}

FOREFOOT_EXTENSION_CODE = "forefoot-extension"
FOREFOOT_EXTENSIONS: Mapping[ForefootExtension, str] = {
    "metatarsal-heads": "To the metatarsal heads",
    "sulcus": "To the sulcus",
    "full-length": "Full length",
}
#: Where each extension ends, as a fraction of the foot length from the back of the heel.
FOREFOOT_EXTENSION_FRACTION: Mapping[ForefootExtension, float] = {
    "metatarsal-heads": 0.70,
    "sulcus": 0.80,
    "full-length": 1.0,
}

PROCESS_CODE = "process"
PROCESSES: Mapping[Process, ProcessSpec] = {
    "fdm-tpu": ProcessSpec("fdm-tpu", "FDM (fused deposition), TPU", "TPU", 1.2),
    "mjf-tpu": ProcessSpec("mjf-tpu", "MJF (multi jet fusion), TPU", "TPU", 1.0),
    "sls-pa12": ProcessSpec("sls-pa12", "SLS (selective laser sintering), PA12", "PA12", 0.8),
}

#: Plausible foot measurements (mm): anything outside is refused as a measuring error.
MEASUREMENT_RANGES: Mapping[str, tuple[float, float]] = {
    "foot_length_mm": (150.0, 350.0),
    "ball_width_mm": (60.0, 140.0),
    "heel_width_mm": (40.0, 100.0),
    "arch_height_mm": (0.0, 35.0),
}


def problems(values: Mapping[str, float]) -> tuple[str, ...]:
    """The range problems of numeric parameters given by code; unknown codes are problems too."""
    found: list[str] = []
    for code, value in values.items():
        parameter = BY_CODE.get(code)
        if parameter is None:
            found.append(f"unknown parameter {code!r}")
        elif (problem := parameter.problem(value)) is not None:
            found.append(problem)
    return tuple(found)
