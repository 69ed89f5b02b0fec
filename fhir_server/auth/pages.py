"""The sign-in pages' HTML: jinja2 templates under `templates/`, autoescaped.

Pages are plain HTML forms (no script): labels on every field, one `h1`, `lang` set, and
a CSRF token in every form that changes something.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_env = Environment(
    loader=PackageLoader("fhir_server.auth", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,  # a missing value is a bug, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)

DEFAULTS: dict[str, Any] = {"error": None}


def render(template: str, **values: Any) -> str:
    """The page `template` (e.g. "login.html") filled with `values`."""
    return _env.get_template(template).render({**DEFAULTS, **values})
