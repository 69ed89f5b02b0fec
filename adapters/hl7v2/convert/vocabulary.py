"""Code maps the IG leaves open (it has no concept map for them)."""

from __future__ import annotations

SUBSCRIBER = {
    "SEL": "self",
    "SPO": "spouse",
    "DOM": "common",
    "CHD": "child",
    "FCH": "child",
    "SCH": "child",
    "PAR": "parent",
    "FTH": "parent",
    "MTH": "parent",
    "EMC": "other",
    "OTH": "other",
}
"""v2 table 0063 -> http://terminology.hl7.org/CodeSystem/subscriber-relationship (the IG
has no concept map for Coverage.relationship; these are the codes' plain meanings)."""
