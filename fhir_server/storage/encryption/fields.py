"""Field-level encryption of a stored resource's JSON: the chosen elements sealed in place.

Which elements: `ElementPaths`, from FHIRPath-style member paths such as `Patient.name`,
`Patient.contact.name`, `*.text.div` (`*`: every type) or `Observation.value[x]`. A path
goes through arrays (each `contact`) and takes a primitive's `_element` (its extensions)
with it.

How: each selected value is replaced by `"*"` where it stands (so key order and every other
element stay as they were), the values are encrypted together (AES-256-GCM with the active
data key, the resource's `Type/id` as associated data, so a sealed part cannot be moved to
another resource) and kept in one more top-level element, `_sealed`:
`"v1.<data key id>.<base64 of nonce + ciphertext>"`. Opening walks the same paths in the
same order and puts the values back (the paths sealed travel inside the ciphertext, so a
later change of the setting does not break older versions). A resource with nothing to
seal is stored unchanged.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.storage.encryption.keys import NONCE_BYTES, DataKeys

SEALED = "_sealed"
_MARK = b'"_sealed":"v1.'
_PLACEHOLDER = "*"

DEFAULT_PATHS = (
    # who the patient is: names, identifiers, contacts, addresses, birth date, photo
    *(
        f"{t}.{e}"
        for t in ("Patient", "RelatedPerson", "Person")
        for e in ("name", "identifier", "telecom", "address", "birthDate", "photo")
    ),
    "Patient.contact",
    # free text: every note (Annotation) and the narrative
    "*.note",
    "*.text.div",
    # content
    "Binary.data",
    "DocumentReference.content.attachment.data",
    "Media.content.data",
)


class UnreadableRecord(Exception):
    """A sealed record that the data keys cannot open (tampered, or an unknown key)."""


@dataclass(frozen=True, slots=True)
class ElementPaths:
    """The paths to encrypt, by resource type (`*`: every type)."""

    by_type: dict[str, tuple[tuple[str, ...], ...]]
    merged: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, paths: Iterable[str]) -> ElementPaths:
        found: dict[str, list[tuple[str, ...]]] = {}
        for text in paths:
            text = text.strip()
            if not text:
                continue
            type, *steps = text.split(".")
            if not steps or not all(s.replace("[x]", "").isidentifier() for s in steps):
                raise ValueError(f"not an element path: {text!r} (e.g. Patient.name)")
            found.setdefault(type, []).append(tuple(steps))
        return cls({t: tuple(_outermost(p)) for t, p in found.items()})

    @classmethod
    def from_setting(cls, value: str) -> ElementPaths:
        """From FHIR_ENCRYPTED_ELEMENTS: comma-separated paths; `default` stands for the
        default list (so `default,Observation.valueString` adds one)."""
        names: list[str] = []
        for part in (value or "default").split(","):
            names += DEFAULT_PATHS if part.strip() == "default" else [part]
        return cls.parse(names)

    def of(self, type: str) -> tuple[tuple[str, ...], ...]:
        """The paths of `type`, those of every type included, outermost only."""
        found = self.merged.get(type)
        if found is None:
            own, every = self.by_type.get(type, ()), self.by_type.get("*", ())
            found = tuple(_outermost([*own, *every])) if own and every else own or every
            self.merged[type] = found
        return found

    def covers(self, type: str, steps: tuple[str, ...]) -> bool:
        """Whether the element at `steps` of `type` is encrypted, or lies inside or around
        an encrypted one (so its values are derived from encrypted content)."""
        for path in self.of(type):
            n = min(len(path), len(steps))
            if all(_step_matches(p, s) for p, s in zip(path[:n], steps[:n], strict=True)):
                return True
        return False


def _outermost(paths: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    ordered = sorted(set(paths), key=lambda p: (len(p), p))
    kept: list[tuple[str, ...]] = []
    for path in ordered:
        if not any(path[: len(k)] == k for k in kept):
            kept.append(path)
    return sorted(kept)


def _step_matches(pattern: str, step: str) -> bool:
    if pattern.endswith("[x]"):
        return step.startswith(pattern[:-3])
    return pattern == step


def _keys(node: dict[str, Any], step: str) -> list[str]:
    """The JSON keys `step` selects in `node` (value[x]: each valueQuantity...; with _elem)."""
    if not step.endswith("[x]"):
        found = [step] if step in node else []
        under = "_" + step
        return [*found, under] if under in node else found
    base = step[:-3]
    names = [k for k in node if k.startswith(base) and k[len(base) : len(base) + 1].isupper()]
    return [*names, *(f"_{n}" for n in names if f"_{n}" in node)]


def _slots(node: Any, steps: tuple[str, ...]) -> Iterator[tuple[dict[str, Any], str]]:
    """Every (object, key) whose value `steps` selects under `node`, in document order."""
    if isinstance(node, list):
        for item in node:
            yield from _slots(item, steps)
        return
    if not isinstance(node, dict):
        return
    for key in _keys(node, steps[0]):
        if len(steps) == 1:
            yield node, key
        else:
            yield from _slots(node[key], steps[1:])


class FieldCipher:
    """Seals and opens the encrypted elements of stored resource JSON."""

    def __init__(self, paths: ElementPaths, keys: DataKeys) -> None:
        self.paths = paths
        self.keys = keys

    def seal(self, type: str, id: str, data: bytes) -> bytes:
        if not data or not (self.paths.of(type) or b'"contained"' in data):
            return data
        resource = orjson.loads(data)
        values: dict[str, list[Any]] = {}
        for prefix, root in _roots(resource):
            root_type = root.get("resourceType")
            for path in self.paths.of(root_type) if isinstance(root_type, str) else ():
                for node, key in list(_slots(root, path)):
                    values.setdefault(prefix + ".".join(path), []).append(node[key])
                    node[key] = _PLACEHOLDER
        if not values:
            return data
        kid = self.keys.active
        cipher = self.keys.cipher(kid)
        assert cipher is not None
        nonce = os.urandom(NONCE_BYTES)
        sealed = cipher.encrypt(nonce, orjson.dumps(values), f"{type}/{id}".encode())
        resource[SEALED] = f"v1.{kid}.{base64.b64encode(nonce + sealed).decode()}"
        return orjson.dumps(resource)

    @staticmethod
    def is_sealed(data: bytes) -> bool:
        return _MARK in data

    def sealed_key(self, data: bytes) -> str:
        """The data key id a sealed record names."""
        start = data.index(_MARK) + len(_MARK)
        return data[start : data.index(b".", start)].decode()

    def open(self, type: str, id: str, data: bytes) -> bytes:
        if _MARK not in data:
            return data
        resource = orjson.loads(data)
        envelope = resource.pop(SEALED)
        _, kid, body = envelope.split(".", 2)
        cipher = self.keys.cipher(kid)
        if cipher is None:
            raise UnreadableRecord(f"{type}/{id} is sealed with unknown data key '{kid}'")
        blob = base64.b64decode(body)
        try:
            plain = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], f"{type}/{id}".encode())
        except Exception:
            raise UnreadableRecord(f"{type}/{id}: its sealed elements do not verify") from None
        roots = dict(_roots(resource))
        for where, found in orjson.loads(plain).items():  # the paths sealed, not today's
            prefix, _, path = where.rpartition("/")
            values = iter(found)
            for node, key in list(
                _slots(roots[prefix + "/" if prefix else ""], tuple(path.split(".")))
            ):
                node[key] = next(values)
        return orjson.dumps(resource)


def _roots(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The resource ("") and each contained resource ("#i/"): sealed by their own types."""
    yield "", resource
    contained = resource.get("contained")
    for i, inner in enumerate(contained if isinstance(contained, list) else ()):
        if isinstance(inner, dict):
            yield f"#{i}/", inner
