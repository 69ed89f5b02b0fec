"""The IG's message maps (`mappings/messages/`): one function per message family.

`MAPS` dispatches on MSH-9.1; `adapters.hl7v2.registry` says which events reach it.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.hl7v2.convert.context import Context
from adapters.hl7v2.convert.messages.adt import adt
from adapters.hl7v2.convert.messages.mdm import documents
from adapters.hl7v2.convert.messages.orders import orders
from adapters.hl7v2.convert.messages.oru import oru
from adapters.hl7v2.convert.messages.siu import schedule
from adapters.hl7v2.convert.messages.vxu import vaccinations

MAPS: dict[str, Callable[[Context, str], None]] = {
    "ADT": adt,
    "ORU": oru,
    "ORM": orders,
    "OML": orders,
    "VXU": vaccinations,
    "SIU": schedule,
    "MDM": documents,
}
