"""`fhir-server load` and `fhir-server export`: bulk NDJSON and Bundles, through the service.

Loading streams NDJSON files line by line and commits them in chunks (one transaction
per chunk); when a chunk fails, its resources are retried one by one so a bad resource
is reported on its own and the rest still load. Bundle files are read whole: a
transaction or batch goes to the service as it is, a collection's resources are loaded
like NDJSON lines. Export streams each type to `<Type>.ndjson` in constant memory.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from tqdm import tqdm

from fhir_server.context import SYSTEM
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request, Response
from fhir_server.model import fhirjson
from fhir_server.settings import Settings

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService

CHUNK = 500


def load(
    paths: Annotated[list[Path], typer.Argument(help="Bundle / NDJSON files or folders")],
) -> None:
    """Load Bundles (transaction, batch, collection) and NDJSON files into the database."""
    summary = asyncio.run(load_paths(Settings(), paths))
    raise typer.Exit(code=0 if summary.failed == 0 else 1)


def export(
    type: Annotated[list[str], typer.Option("--type", help="Resource type (repeatable)")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <Type>.ndjson files")],
) -> None:
    """Export current resources as NDJSON, one file per type, streamed."""
    asyncio.run(export_types(Settings(), type, out))


@dataclass
class LoadSummary:
    loaded: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def fail(self, where: str, why: str) -> None:
        self.failures.append(f"{where}: {why}")
        tqdm.write(f"FAILED {where}: {why}", file=sys.stderr)


@dataclass(frozen=True)
class Source:
    where: str  # file:line or file#entry, for failure reports
    resource: Any  # a resource if a dict (_load_stream checks), else what could not be read


async def load_paths(settings: Settings, paths: Iterable[Path]) -> LoadSummary:
    from fhir_server.assembly import open_service

    async with open_service(settings) as service:
        summary = await load_files(service, list(_files(paths)))
    _print_summary(summary)
    return summary


async def load_files(service: FhirService, files: list[Path]) -> LoadSummary:
    summary = LoadSummary()
    total = sum(f.stat().st_size for f in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc="loading") as bar:
        for path in files:
            if path.suffix == ".ndjson":
                await _load_stream(service, _ndjson(path, bar), summary)
            else:
                await _load_json(service, path, summary)
                bar.update(path.stat().st_size)
    return summary


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson"))
        elif path.exists():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")


def _ndjson(path: Path, bar: tqdm[Any]) -> Iterator[Source]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            bar.update(len(line))
            if not line.strip():
                continue
            try:
                yield Source(f"{path}:{number}", fhirjson.loads(line))
            except ValueError as error:
                yield Source(f"{path}:{number}", error)


async def _load_json(service: FhirService, path: Path, summary: LoadSummary) -> None:
    try:
        data = fhirjson.loads(path.read_bytes())
    except ValueError as error:
        summary.fail(str(path), f"not valid JSON: {error}")
        return
    if (
        isinstance(data, dict)
        and data.get("resourceType") == "Bundle"
        and (data.get("type") in ("transaction", "batch"))
    ):
        await _load_bundle(service, path, data, summary)
        return
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        entries = data.get("entry") or []
        sources = (
            Source(f"{path}#entry[{i}]", e.get("resource") if isinstance(e, dict) else e)
            for i, e in enumerate(entries)
        )
        await _load_stream(service, sources, summary)
        return
    await _load_stream(service, iter([Source(str(path), data)]), summary)


async def _load_bundle(
    service: FhirService, path: Path, bundle: dict[str, Any], summary: LoadSummary
) -> None:
    try:
        response = await service.handle(_post(bundle))
    except FhirError as error:
        summary.fail(str(path), error.diagnostics)
        return
    _count_bundle(path, bundle, response, summary)


def _count_bundle(
    path: Path, bundle: dict[str, Any], response: Response, summary: LoadSummary
) -> None:
    assert isinstance(response.body, bytes)
    results = orjson.loads(response.body).get("entry") or []
    for index, (sent, got) in enumerate(zip(bundle.get("entry") or [], results, strict=False)):
        status = str(got.get("response", {}).get("status", ""))
        kind = (
            (sent.get("resource") or {}).get("resourceType", "?") if isinstance(sent, dict) else "?"
        )
        if status[:1] == "2":
            summary.loaded[kind] += 1
        else:
            outcome = got.get("response", {}).get("outcome", {})
            why = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
            summary.fail(f"{path}#entry[{index}]", f"{status} {why}")


async def _load_stream(
    service: FhirService, sources: Iterator[Source], summary: LoadSummary
) -> None:
    chunk: list[Source] = []
    for source in sources:
        if isinstance(source.resource, Exception) or not isinstance(source.resource, dict):
            summary.fail(source.where, f"not a resource: {source.resource}")
            continue
        chunk.append(source)
        if len(chunk) >= CHUNK:
            await _load_chunk(service, chunk, summary)
            chunk = []
    if chunk:
        await _load_chunk(service, chunk, summary)


async def _load_chunk(service: FhirService, chunk: list[Source], summary: LoadSummary) -> None:
    """One transaction for the chunk; on failure, each resource alone to isolate the bad ones."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_entry(s.resource) for s in chunk],
    }
    try:
        await service.handle(_post(bundle))
    except FhirError:
        for source in chunk:
            await _load_one(service, source, summary)
        return
    for source in chunk:
        summary.loaded[source.resource.get("resourceType", "?")] += 1


async def _load_one(service: FhirService, source: Source, summary: LoadSummary) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [_entry(source.resource)]}
    try:
        await service.handle(_post(bundle))
    except FhirError as error:
        summary.fail(source.where, error.diagnostics)
        return
    summary.loaded[source.resource.get("resourceType", "?")] += 1


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    kind, id = resource.get("resourceType"), resource.get("id")
    if id:
        return {"resource": resource, "request": {"method": "PUT", "url": f"{kind}/{id}"}}
    return {"resource": resource, "request": {"method": "POST", "url": str(kind)}}


def _post(bundle: dict[str, Any]) -> Request:
    return Request("POST", "", body=bundle, context=SYSTEM, headers={"prefer": "return=minimal"})


def _print_summary(summary: LoadSummary) -> None:
    loaded = sum(summary.loaded.values())
    print(f"loaded {loaded} resources, {summary.failed} failed")
    for kind, count in sorted(summary.loaded.items()):
        print(f"  {kind}: {count}")


async def export_types(settings: Settings, types: list[str], out: Path) -> dict[str, int]:
    from fhir_server.assembly import open_service

    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    async with open_service(settings) as service:
        for kind in types:
            counts[kind] = await _export_one(service, kind, out / f"{kind}.ndjson")
            print(f"{kind}: {counts[kind]} resources -> {out / f'{kind}.ndjson'}")
    return counts


async def _export_one(service: FhirService, kind: str, target: Path) -> int:
    count = 0
    with target.open("wb") as sink, tqdm(desc=kind, unit=" res") as bar:
        async for data in _current(service, kind):
            sink.write(data + b"\n")
            count += 1
            bar.update(1)
    return count


def _current(service: FhirService, kind: str) -> AsyncIterator[bytes]:
    return service.export(SYSTEM, kind)
