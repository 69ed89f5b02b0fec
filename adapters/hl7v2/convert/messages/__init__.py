"""The IG's message maps (`mappings/messages/`): one function per message family.

`MAPS` dispatches on MSH-9.1; `adapters.hl7v2.registry` says which events reach it.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.adt import adt
from adapters.hl7v2.convert.messages.financial import charges
from adapters.hl7v2.convert.messages.mdm import documents
from adapters.hl7v2.convert.messages.orders import orders
from adapters.hl7v2.convert.messages.oru import oru
from adapters.hl7v2.convert.messages.pharmacy import pharmacy
from adapters.hl7v2.convert.messages.problems import problems
from adapters.hl7v2.convert.messages.referral import referral
from adapters.hl7v2.convert.messages.siu import schedule
from adapters.hl7v2.convert.messages.vxu import vaccinations

MAPS: dict[str, Callable[[Context, str], None]] = {
    "ADT": adt,
    "BAR": adt,
    "DFT": charges,
    "MDM": documents,
    "OMG": orders,
    "OML": orders,
    "ORM": orders,
    "ORU": oru,
    "OUL": oru,
    "PPR": problems,
    "RDE": pharmacy,
    "RDS": pharmacy,
    "REF": referral,
    "SIU": schedule,
    "VXU": vaccinations,
}
