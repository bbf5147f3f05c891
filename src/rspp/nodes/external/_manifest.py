"""The external node package manifest (``rspp-node.json`` / ``.yaml``, F-122, F-171).

A package is a directory with a manifest::

    {"name": "shout", "version": "1.0.0",
     "command": ["{python}", "shout.py"],      # {python}: the runtime's interpreter
     "artifact": "shout.py",                   # the file whose sha256 the spec pins
     "inputs": {"text": "text"}, "outputs": {"text": "text"},
     "codec": "msgpack",                        # or json (no bytes payloads)
     "sbom": "sbom.cdx.json",                   # CycloneDX or SPDX JSON
     "attestation": "shout.intoto.json"}        # DSSE envelope signed by a trusted key

The child runs with the package directory as its working directory. A spec names the
package ``type: external:DIR/rspp-node.json@sha256:DIGEST`` (the artifact's digest).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import yaml

from rspp.errors import SpecError

__all__ = ["ExternalNodeRefused", "NodeManifest", "load_manifest"]

PortTypes = dict[str, str]


class ExternalNodeRefused(SpecError):
    """An external node package cannot be onboarded; the message names the field."""


class NodeManifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    version: str = "1.0.0"
    command: list[str]
    artifact: str
    inputs: PortTypes = msgspec.field(default_factory=lambda: {"in": "any"})
    outputs: PortTypes = msgspec.field(default_factory=lambda: {"out": "any"})
    codec: str = "msgpack"
    sbom: str | None = None
    attestation: str | None = None
    description: str = ""

    def path(self, base: Path, rel: str) -> Path:
        return (base / rel).resolve()


def load_manifest(path: Path) -> NodeManifest:
    """Parse and check a manifest; errors name ``manifest field X``."""
    if not path.is_file():
        raise ExternalNodeRefused(f"external node manifest {path} not found; point "
                                  "`external:PATH` at the package's rspp-node.json")
    try:
        raw = (yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml")
               else json.loads(path.read_text()))
        man = msgspec.convert(raw, NodeManifest)
    except (ValueError, yaml.YAMLError) as exc:
        raise ExternalNodeRefused(f"external node manifest {path}: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ExternalNodeRefused(f"external node manifest {path}: manifest field {exc}"
                                  ) from None
    if not man.command:
        raise ExternalNodeRefused(f"external node manifest {path}: manifest field `command` "
                                  "is empty; give the program to run, e.g. "
                                  '["{python}", "node.py"]')
    if man.codec not in ("msgpack", "json"):
        raise ExternalNodeRefused(f"external node manifest {path}: manifest field `codec` is "
                                  f"{man.codec!r}; use msgpack or json")
    return man
