"""Rule-based CDS services: published scores computed from the patient's FHIR record.

- `ascvd-10-year-risk` (patient-view): the ACC/AHA Pooled Cohort Equations (`ascvd`).
- `cha2ds2-vasc` (patient-view): stroke risk in atrial fibrillation (`cha2ds2vasc`).
- `foot-orthosis-order-select` / `foot-orthosis-order-sign`: a custom foot orthosis order
  checked for its foot scan and measurements (`foot_orthosis`).

Each is pure: `evaluate(HookCall)` reads the resolved prefetch and answers cards, with no I/O.
The value sets they use ship as FHIR ValueSets (`valuesets`); hand `value_sets()` to the
terminology service and pass it as `terminology` so that a site's own ValueSet of the same
url takes precedence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cds_hooks.rules.ascvd import AscvdRisk
from cds_hooks.rules.cha2ds2vasc import Cha2ds2Vasc
from cds_hooks.rules.foot_orthosis import SELECT, SIGN, FootOrthosisCheck
from cds_hooks.rules.valuesets import CodeMembership, Membership, value_sets
from cds_hooks.service import CdsService

if TYPE_CHECKING:
    from fhir_server.settings import Settings

__all__ = ["services", "value_sets"]


def _now() -> datetime:
    return datetime.now(UTC)


def services(
    settings: Settings | None = None,
    *,
    terminology: CodeMembership | None = None,
    clock: Callable[[], datetime] = _now,
) -> list[CdsService]:
    """The rule services (a `cds_hooks.registry` provider: they need no settings).
    `terminology` answers value set membership first (the shipped lists answer what it does
    not know); `clock` gives "now" for the age of inputs."""
    codes = Membership(terminology)
    return [
        AscvdRisk(codes, clock),
        Cha2ds2Vasc(codes, clock),
        FootOrthosisCheck(SELECT, codes, clock),
        FootOrthosisCheck(SIGN, codes, clock),
    ]
