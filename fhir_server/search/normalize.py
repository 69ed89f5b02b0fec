"""The one normalization of string search values, applied to indexed and searched text alike.

https://hl7.org/fhir/R4/search.html#string -- "By default, a field matches a string query
if the value of the field equals or starts with the supplied parameter value, after both
have been normalized by case and accent."
"""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    """Text case folded, NFKD decomposed, with accents and other combining marks removed."""
    if text.isascii():
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))
