"""De-identification of FHIR resources for research exports: a pure library, no storage.

`Deidentifier(profile, key)` transforms one resource (a dict) at a time and keeps what
one export run needs in its state: the pseudonym key (HMAC-SHA256) and, for the
date-shift profile, each patient's date offset derived from it; `report` counts what
was changed by element path. `deidentify_dir` applies it to every NDJSON file of a
folder (`fhir-server deidentify`). See `rules.py` for what each profile does.
"""

from __future__ import annotations

from fhir_server.deidentify.files import deidentify_dir
from fhir_server.deidentify.rules import PROFILES, Deidentifier, Profile, Report

__all__ = ["PROFILES", "Deidentifier", "Profile", "Report", "deidentify_dir"]
