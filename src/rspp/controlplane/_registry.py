"""Pipeline registry (CP-01): publish, list and get immutable PipelineSpec versions.

Publishing validates and compiles the spec (``rspp.spec``), content-hashes it and
resolves every ``subgraphs[].use: name@version`` against the module registry at
publish time, pinning each module's content hash into the published record
(F-015, F-016, F-019, F-092). A version, once published, never changes:
re-publishing identical content is idempotent, different content is refused.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

import msgspec
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from rspp.controlplane._errors import Conflict, InvalidRequest, NotFound
from rspp.controlplane._schema import modules, pipelines
from rspp.controlplane._store import Store


class PipelineRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    spec_hash: str
    author: str
    created_at_ms: int
    modules: dict[str, str] = {}
    spec_text: str | None = None


class ModuleRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    content_hash: str
    author: str
    created_at_ms: int
    content_text: str | None = None


class ValidatedSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    spec_hash: str
    subgraph_refs: tuple[str, ...]
    #: the pipeline's event interface: ``inputs``/``outputs`` port name -> payload type
    #: (what clients send and receive; checked for compatibility at publish, F-028)
    interface: dict[str, dict[str, str]] = {}


def _spec_issue(exc: Any) -> InvalidRequest:
    first = exc.issues[0] if exc.issues else None
    field = first.path if first is not None else "spec"
    return InvalidRequest(f"spec is invalid: {exc}", field=field)


def validate_spec(
    text: str, filename: str, modules_by_ref: dict[str, str] | None = None,
    as_of: date | None = None,
) -> ValidatedSpec:
    """Parse, validate and compile a spec (subgraphs from ``modules_by_ref`` texts)."""
    from rspp.spec import (
        MappingSubgraphResolver,
        SpecInvalid,
        compile_spec,
        parse_spec_text,
        spec_hash,
    )

    try:
        # strict: an unknown (e.g. misspelt) field is rejected, never silently dropped
        spec = parse_spec_text(text, filename, strict=True)
        resolved = {
            ref: parse_spec_text(body, f"module {ref}")
            for ref, body in (modules_by_ref or {}).items()
        }
        graph = compile_spec(spec, subgraphs=MappingSubgraphResolver(resolved), as_of=as_of)
    except SpecInvalid as exc:
        raise _spec_issue(exc) from None
    refs = tuple(use.use for use in spec.subgraphs)
    interface = {"inputs": {p.name: str(p.type) for p in graph.entry_ports},
                 "outputs": {p.name: str(p.type) for p in graph.exit_ports}}
    return ValidatedSpec(
        name=spec.name, version=spec.version, spec_hash=spec_hash(spec), subgraph_refs=refs,
        interface=interface,
    )


def parse_module(text: str) -> tuple[str, str, str, tuple[str, ...]]:
    """A subgraph module is itself a spec document: returns name, version, hash, its refs."""
    from rspp.spec import SpecInvalid, parse_spec_text, spec_hash

    try:
        spec = parse_spec_text(text, "<module>", strict=True)
    except SpecInvalid as exc:
        raise _spec_issue(exc) from None
    return spec.name, spec.version, spec_hash(spec), tuple(u.use for u in spec.subgraphs)


def spec_refs(text: str) -> tuple[str, str, tuple[str, ...]]:
    """Name, version and subgraph references of a spec without compiling it."""
    from rspp.spec import SpecInvalid, parse_spec_text

    try:
        spec = parse_spec_text(text, "<spec>")
    except SpecInvalid as exc:
        raise _spec_issue(exc) from None
    return spec.name, spec.version, tuple(u.use for u in spec.subgraphs)


class PreparedSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A spec parsed and compiled (off the event loop), ready for the publish transaction."""

    valid: ValidatedSpec
    text: str
    modules: dict[str, str]


class PreparedModule(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str
    content_hash: str
    text: str


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store
        #: published versions never change: read once per process
        self._versions: dict[tuple[str, str], PipelineRecord] = {}

    async def prepare_module(self, text: str) -> PreparedModule:
        """Parse off the event loop (a big document is CPU work), before any transaction."""
        name, version, digest, _refs = await asyncio.to_thread(parse_module, text)
        _check_identity(name, version)
        return PreparedModule(name=name, version=version, content_hash=digest, text=text)

    async def publish_module_in(
        self, conn: AsyncConnection, module: PreparedModule, *, author: str, now_ms: int
    ) -> tuple[ModuleRecord, bool]:
        name, version, digest, text = module.name, module.version, module.content_hash, module.text
        existing = (
            await conn.execute(
                select(modules).where(modules.c.name == name, modules.c.version == version)
            )
        ).first()
        if existing is not None:
            if existing.content_hash != digest:
                raise Conflict(
                    f"module {name}@{version} is already published with different content; "
                    "modules are immutable: publish a new version",
                    field="version",
                )
            return _module(existing, False), False
        await conn.execute(
            insert(modules).values(
                name=name,
                version=version,
                content_hash=digest,
                content_text=text,
                author=author,
                created_at_ms=now_ms,
            )
        )
        return ModuleRecord(
            name=name, version=version, content_hash=digest, author=author, created_at_ms=now_ms
        ), True

    async def prepare(self, text: str, *, filename: str, as_of: date | None = None
                      ) -> PreparedSpec:
        """Parse, resolve module references and compile a spec, off the event loop.

        Published modules are immutable, so the texts read here outside the publish
        transaction are the texts it pins.
        """
        _name, _version, refs = await asyncio.to_thread(spec_refs, text)
        pinned: dict[str, str] = {}
        texts: dict[str, str] = {}
        pending = list(refs)
        async with self._store.engine.connect() as conn:
            while pending:
                ref = pending.pop()
                if ref in texts:
                    continue
                mod_name, _, mod_version = ref.partition("@")
                row = (
                    await conn.execute(
                        select(modules.c.content_hash, modules.c.content_text).where(
                            modules.c.name == mod_name, modules.c.version == mod_version
                        )
                    )
                ).first()
                if row is None:
                    raise InvalidRequest(
                        f"subgraph module {ref} is not published; publish it first with "
                        "`rspp cp publish --module FILE` (or pin an existing version)",
                        field="subgraphs",
                    )
                pinned[ref], texts[ref] = str(row[0]), str(row[1])
                pending.extend((await asyncio.to_thread(parse_module, texts[ref]))[3])
        valid = await asyncio.to_thread(validate_spec, text, filename, texts, as_of)
        _check_identity(valid.name, valid.version)
        return PreparedSpec(valid=valid, text=text, modules=pinned)

    async def publish_in(
        self, conn: AsyncConnection, spec: PreparedSpec, *, author: str, now_ms: int
    ) -> tuple[PipelineRecord, bool]:
        """Publish a prepared spec; returns the record and whether it was newly created."""
        valid, text, pinned = spec.valid, spec.text, spec.modules
        existing = (
            await conn.execute(
                select(pipelines).where(
                    pipelines.c.name == valid.name, pipelines.c.version == valid.version
                )
            )
        ).first()
        if existing is not None:
            if existing.spec_hash != valid.spec_hash:
                raise Conflict(
                    f"pipeline {valid.name}@{valid.version} is already published with hash "
                    f"{existing.spec_hash[:12]}; published versions are immutable: bump `version`",
                    field="version",
                )
            return _pipeline(existing, False), False
        await conn.execute(
            insert(pipelines).values(
                name=valid.name,
                version=valid.version,
                spec_hash=valid.spec_hash,
                spec_text=text,
                modules_json=json.dumps(pinned, sort_keys=True),
                publish_seq=await self._store.next_counter(conn, "pipeline_publish"),
                author=author,
                created_at_ms=now_ms,
            )
        )
        record = PipelineRecord(
            name=valid.name,
            version=valid.version,
            spec_hash=valid.spec_hash,
            author=author,
            created_at_ms=now_ms,
            modules=pinned,
        )
        return record, True

    async def list(self, name: str | None = None) -> list[PipelineRecord]:
        query = select(pipelines).order_by(pipelines.c.name, pipelines.c.publish_seq)
        if name is not None:
            query = query.where(pipelines.c.name == name)
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_pipeline(r, False) for r in rows]

    async def get(
        self, name: str, version: str | None = None, *, conn: AsyncConnection | None = None
    ) -> PipelineRecord:
        """A version, or the latest published one when ``version`` is None."""
        query = select(pipelines).where(pipelines.c.name == name)
        if version is not None:
            query = query.where(pipelines.c.version == version)
        query = query.order_by(pipelines.c.publish_seq.desc()).limit(1)
        if conn is None:
            async with self._store.engine.connect() as own:
                row = (await own.execute(query)).first()
        else:
            row = (await conn.execute(query)).first()
        if row is None:
            what = f"{name}@{version}" if version else name
            raise NotFound(f"pipeline {what} is not published; see `rspp cp list`", field="name")
        return _pipeline(row, True)

    async def get_version(self, name: str, version: str, *,
                          conn: AsyncConnection | None = None) -> PipelineRecord:
        """:meth:`get` of a given version, read once (a published version never changes:
        publishing it again with other content is refused)."""
        found = self._versions.get((name, version))
        if found is None:
            found = await self.get(name, version, conn=conn)
            if len(self._versions) >= 1024:
                self._versions.clear()
            self._versions[(name, version)] = found
        return found

    async def get_module(self, name: str, version: str) -> ModuleRecord:
        async with self._store.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(modules).where(modules.c.name == name, modules.c.version == version)
                )
            ).first()
        if row is None:
            raise NotFound(f"module {name}@{version} is not published", field="name")
        return _module(row, True)


def _check_identity(name: str, version: str) -> None:
    """Name and version fit the registry's columns (200 and 100 characters)."""
    if len(name) > 200:
        raise InvalidRequest(f"spec name is {len(name)} characters; at most 200", field="name")
    if len(version) > 100:
        raise InvalidRequest(
            f"spec version is {len(version)} characters; at most 100", field="version"
        )


def _pipeline(row: Any, with_text: bool) -> PipelineRecord:
    return PipelineRecord(
        name=row.name,
        version=row.version,
        spec_hash=row.spec_hash,
        author=row.author,
        created_at_ms=row.created_at_ms,
        modules=json.loads(row.modules_json),
        spec_text=row.spec_text if with_text else None,
    )


def _module(row: Any, with_text: bool) -> ModuleRecord:
    return ModuleRecord(
        name=row.name,
        version=row.version,
        content_hash=row.content_hash,
        author=row.author,
        created_at_ms=row.created_at_ms,
        content_text=row.content_text if with_text else None,
    )
