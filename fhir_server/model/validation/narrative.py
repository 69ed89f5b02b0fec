"""The narrative `div`: well-formed XHTML without scripts, forms or event handlers.

https://hl7.org/fhir/R4/narrative.html (txt-1, txt-2).
"""

from __future__ import annotations

from lxml import etree

__all__ = ["XHTML_NS", "narrative_problem"]

XHTML_NS = "http://www.w3.org/1999/xhtml"

_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)
_FORBIDDEN_TAGS = frozenset(
    {
        "script",
        "style",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "form",
        "input",
        "button",
        "select",
        "textarea",
        "head",
        "body",
        "html",
        "link",
        "meta",
        "base",
        "title",
    }
)


def narrative_problem(div: str) -> str | None:
    """Why `div` is not acceptable narrative XHTML (txt-1, txt-2), or None if it is."""
    if not div.lstrip().startswith("<div"):
        return "The narrative must be an XHTML <div> element"
    try:
        root = etree.fromstring(div, _SAFE_PARSER)
    except (etree.XMLSyntaxError, ValueError) as error:
        return f"The narrative is not well-formed XHTML: {error}"
    if root.tag not in ("div", f"{{{XHTML_NS}}}div"):
        return "The narrative root must be a div in the XHTML namespace"
    for node in root.iter():
        if not isinstance(node.tag, str):
            continue
        qname = etree.QName(node)
        if qname.localname.lower() in _FORBIDDEN_TAGS or qname.namespace not in (None, XHTML_NS):
            return f"The narrative may not contain <{qname.localname}> elements (txt-1)"
        for name, value in node.attrib.items():
            local = etree.QName(name).localname.lower()
            if local.startswith("on") or value.strip().lower().startswith("javascript:"):
                return f"The narrative may not contain the attribute '{local}' here (txt-1)"
    if not "".join(root.itertext()).strip() and not any(
        etree.QName(n).localname == "img" for n in root.iter() if isinstance(n.tag, str)
    ):
        return "The narrative must have some non-whitespace content (txt-2)"
    return None
