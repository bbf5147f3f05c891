"""The schema registry: contract schemas by ``schema_version`` for tools (F-032).

Each version this release can read has one :class:`SchemaDocument`:

* ``schema``: the JSON Schema of the runtime's own decode types (msgspec structs),
  documented with their docstrings (what ``rspp contracts schema`` prints; what an SDK
  generator wants);
* ``validation``: the contract schema every record is validated against
  (:func:`~rspp.contracts.validate` uses exactly this document, per-signal rules
  included);
* ``kinds``: each contract kind with its JSON pointer in both documents.

The control plane serves them at ``GET /v1/schemas[/{schema_version}[/{contract_kind}]]``;
``rspp contracts validate --schema FILE`` checks a recording offline against one.
"""

from __future__ import annotations

from typing import Any

import msgspec

from rspp.contracts._schema_check import SchemaEvaluator, ValidationIssue
from rspp.contracts._schema_export import all_schemas, json_schema
from rspp.contracts._types import SCHEMA_VERSION
from rspp.contracts._validate import (
    _VERSION,
    KIND_TYPES,
    KINDS,
    _check_kind,
    reference_schema,
)
from rspp.errors import ContractError

#: the versions this release serves (a release reads every minor of its major)
SCHEMA_VERSIONS: tuple[str, ...] = (SCHEMA_VERSION,)


class SchemaVersionInfo(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: str
    kinds: list[str]
    current: bool


class SchemaIndex(msgspec.Struct, frozen=True, kw_only=True):
    """The versions the registry holds (``current``: the one this runtime writes)."""

    current: str
    versions: list[SchemaVersionInfo]


class KindPointers(msgspec.Struct, frozen=True, kw_only=True):
    schema: str
    validation: str


class SchemaDocument(msgspec.Struct, frozen=True, kw_only=True):
    """The schemas of one ``schema_version`` (one kind, or all of them)."""

    schema_version: str
    kinds: dict[str, KindPointers]
    schema: dict[str, Any]
    validation: dict[str, Any]


class UnknownSchemaVersion(ContractError):
    """The registry holds no schema of the asked version; the message lists those it has."""


def schema_index() -> SchemaIndex:
    return SchemaIndex(current=SCHEMA_VERSION, versions=[
        SchemaVersionInfo(schema_version=v, kinds=list(KINDS), current=v == SCHEMA_VERSION)
        for v in SCHEMA_VERSIONS])


def schema_document(schema_version: str, kind: str | None = None) -> SchemaDocument:
    """The registry's document of ``schema_version`` (only ``kind`` when given)."""
    if schema_version not in SCHEMA_VERSIONS:
        msg = (f"schema_version {schema_version!r} is not in the registry; it holds "
               f"{', '.join(SCHEMA_VERSIONS)}")
        raise UnknownSchemaVersion(msg)
    kinds = list(KINDS) if kind is None else [kind]
    for name in kinds:
        _check_kind(name)
    validation = dict(reference_schema())
    schema = all_schemas() if kind is None else json_schema(kind)
    if kind is not None:
        del validation["anyOf"]
        validation["$ref"] = f"#/$defs/{kind}"
    pointers = {name: KindPointers(schema=f"#/$defs/{KIND_TYPES[name].__name__}",
                                   validation=f"#/$defs/{name}") for name in kinds}
    return SchemaDocument(schema_version=schema_version, kinds=pointers, schema=schema,
                          validation=validation)


class RegistryValidator:
    """Checks records against a :class:`SchemaDocument` fetched from a registry.

    The document, not this release's copy, decides: a tool validates a recording
    offline with the schemas of the version it names. A record whose
    ``schema_version`` has another major than the document's is refused by name.
    """

    def __init__(self, document: SchemaDocument) -> None:
        self.document = document
        self._evaluator = SchemaEvaluator(document.validation)
        found = _VERSION.match(document.schema_version)
        self._major = found["major"] if found else None

    def validate(self, kind: object, data: object) -> list[ValidationIssue]:
        pointers = self.document.kinds.get(kind) if isinstance(kind, str) else None
        if pointers is None:
            return [ValidationIssue("kind", f"{kind!r} is not a kind of schema "
                                    f"{self.document.schema_version}; it has "
                                    f"{', '.join(self.document.kinds)}")]
        version = data.get("schema_version") if isinstance(data, dict) else None
        found = _VERSION.match(version) if isinstance(version, str) else None
        if found is not None and found["major"] != self._major:
            return [ValidationIssue("schema_version", (
                f"{version!r} is another major than schema {self.document.schema_version}; "
                f"fetch GET /v1/schemas/{version} and validate with that"))]
        return self._evaluator.validate(pointers.validation.rsplit("/", 1)[-1], data)


def load_schema_document(data: bytes) -> SchemaDocument:
    """Decode a saved registry document (raises :class:`ContractError` naming the field)."""
    try:
        return msgspec.json.decode(data, type=SchemaDocument)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        msg = f"not a schema registry document (GET /v1/schemas/{{version}}): {exc}"
        raise ContractError(msg) from None
