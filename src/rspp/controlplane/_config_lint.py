"""Config files checked before they are published (F-126): policy, admission, provider config.

A config file is YAML or JSON with three top-level keys::

    kind: policy            # policy | admission | provider_config
    scope: "*"              # a tenant id, or * for every tenant (default *)
    body: {...}             # the document POST /v1/configs/{kind}/{scope} takes

The body is decoded by the same request type the control plane decodes a publish
with, so a file that lints clean is one the control plane accepts; every problem
is a :class:`~rspp.spec.LintIssue` located at the line of the offending key.
Cross-references the control plane does not check (modality names, adapter names)
are warnings, errors under ``strict``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from rspp.controlplane import _requests as q
from rspp.controlplane._configs import DEFAULT_SCOPE, ConfigKind
from rspp.spec import LintIssue, ProviderAdapterCatalog, SourceMap, load_document

#: the keys of a config file; a spec has none of them but may not have ``kind`` either
CONFIG_KEYS = ("kind", "scope", "body")
MODALITIES = ("stt", "llm", "tts")

REQUEST_TYPES: dict[ConfigKind, type[Any]] = {
    ConfigKind.POLICY: q.PolicyConfigRequest,
    ConfigKind.ADMISSION: q.AdmissionConfigRequest,
    ConfigKind.PROVIDER_CONFIG: q.ConfigRequest,
}
_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_PART = re.compile(r"\.(\w+)|\[(\d+)\]|\[\.\.\.\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_SCOPE = re.compile(r"^(\*|[A-Za-z0-9_][A-Za-z0-9._:@+-]*)$")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config file that decoded: what to publish, and where."""

    kind: ConfigKind
    scope: str
    body: dict[str, Any]


def is_config_document(tree: object) -> bool:
    """True when ``tree`` is a config file (a mapping with a top-level ``kind``)."""
    return isinstance(tree, dict) and "kind" in tree


def lint_config_text(
    text: str, filename: str, *, strict: bool = False,
    adapters: ProviderAdapterCatalog | None = None,
) -> tuple[ConfigFile | None, list[LintIssue]]:
    """Decode a config file; every problem as an issue (warnings become errors in ``strict``)."""
    tree, src, issues = load_document(text, filename)
    if issues:
        return None, issues
    found = _envelope(tree, src)
    if isinstance(found, list):
        return None, found
    kind, scope, body = found
    try:
        msgspec.convert({"body": body}, REQUEST_TYPES[kind])
    except msgspec.ValidationError as exc:
        return None, [_type_issue(src, str(exc))]
    warnings = _cross_references(kind, body, src, adapters)
    if strict:
        warnings = [replace(w, severity="error") for w in warnings]
    return ConfigFile(kind, scope, body), warnings


def _envelope(tree: object, src: SourceMap) -> tuple[ConfigKind, str, dict[str, Any]] | list[
        LintIssue]:
    if not isinstance(tree, dict):
        return [src.issue((), "a config file must be a mapping",
                          "write `kind:`, `scope:` and `body:` at the top level")]
    issues = [src.issue((key,), f"unknown field {key!r} in a config file",
                        f"a config file has only {', '.join(CONFIG_KEYS)}")
              for key in tree if key not in CONFIG_KEYS]
    kinds = [k.value for k in ConfigKind]
    kind = tree.get("kind")
    if kind not in kinds:
        issues.append(src.issue(("kind",), f"{kind!r} is not a config kind",
                                f"use one of: {', '.join(kinds)}"))
    scope = tree.get("scope", DEFAULT_SCOPE)
    if not isinstance(scope, str) or not _SCOPE.match(scope) or len(scope) > 200:
        issues.append(src.issue(("scope",), f"{scope!r} is not a config scope",
                                "name a tenant id, or `*` for the default of every tenant"))
    body = tree.get("body")
    if not isinstance(body, dict):
        issues.append(src.issue(("body",), "`body` must be a mapping (the config document)",
                                "put the document the control plane publishes under `body:`"))
    if issues or not isinstance(kind, str) or not isinstance(body, dict) or not isinstance(
            scope, str):
        return issues
    return ConfigKind(kind), scope, body


def _type_issue(src: SourceMap, error: str) -> LintIssue:
    """A msgspec decode error (``message - at `$.body.x[0].y```) located in the file."""
    found = _AT.match(error)
    message, path = (found["message"], _path(found["path"])) if found else (error, ())
    unknown = _UNKNOWN.match(message)
    if unknown is not None:
        path = (*path, unknown["name"])
        hint = "remove the field or check its spelling; config documents allow no extra keys"
    else:
        hint = "fix the value; `rspp cp openapi` documents the config document's fields"
    return src.issue(path, message, hint)


def _path(text: str) -> Path:
    """``.body.rules[0].match`` as ``("body", "rules", 0, "match")`` (stops at ``[...]``)."""
    out: list[str | int] = []
    for match in _PART.finditer(text):
        if match.group(1) is not None:
            out.append(match.group(1))
        elif match.group(2) is not None:
            out.append(int(match.group(2)))
        else:
            break
    return tuple(out)


def _cross_references(
    kind: ConfigKind, body: dict[str, Any], src: SourceMap,
    adapters: ProviderAdapterCatalog | None,
) -> list[LintIssue]:
    """Modality and adapter names the control plane accepts but no session could use."""
    bindings: list[tuple[Path, dict[str, Any], bool]] = []
    if kind == ConfigKind.POLICY:
        bindings.append((("body", "providers"), body.get("providers", {}), True))
        bindings += [(("body", "rules", i, "providers"), rule["providers"], True)
                     for i, rule in enumerate(body.get("rules", ()))]
        bindings.append((("body", "fallback_chains"), body.get("fallback_chains", {}), True))
    elif kind == ConfigKind.PROVIDER_CONFIG:
        bindings.append((("body",), body, False))
    issues: list[LintIssue] = []
    for base, mapping, named in bindings:
        for modality, value in mapping.items():
            where = (*base, modality)
            if modality not in MODALITIES:
                issues.append(src.issue(where, f"{modality!r} is not a modality",
                                        f"use one of: {', '.join(MODALITIES)}", "warning"))
                continue
            if not named or adapters is None:
                continue
            names = adapters.adapter_names(modality)
            chain = value if isinstance(value, list) else [value]
            for index, name in enumerate(chain):
                if name not in names:
                    at = (*where, index) if isinstance(value, list) else where
                    issues.append(src.issue(at, f"no {modality} adapter is named {name!r}",
                                            f"use one of: {', '.join(names)}", "warning"))
    return issues
