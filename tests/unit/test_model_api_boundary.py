"""NF-023: the runtime is not a model API; model providers are reached only through adapters.

Four checks over the source tree and the adapter registry:

* the layers that run a session (contracts, spec, kernel, turns, nodes, runner, replay)
  import no network client and no vendor SDK: a model call can only happen in an adapter;
* vendor model endpoints and SDKs appear only in ``rspp/providers/remote`` (the adapters);
* the example voice assistant runs on adapters that need no proprietary endpoint;
* every registered adapter of a modality can be put in a spec's ``providers:`` by name
  and lints clean: providers are swapped by configuration, not by code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

import rspp
from rspp.providers import PROVIDER_CATALOG
from rspp.spec import lint_text

pytestmark = pytest.mark.unit

SRC = Path(rspp.__file__).resolve().parent
REPO = SRC.parents[1]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"

#: network clients and vendor model SDKs (top-level import names)
NETWORK = {"httpx", "websockets", "aiohttp", "requests", "urllib3", "grpc", "socket"}
VENDOR_SDKS = {"openai", "anthropic", "deepgram", "elevenlabs", "google", "cohere", "mistralai"}
VENDOR_HOSTS = ("api.openai.com", "api.anthropic.com", "api.deepgram.com", "api.elevenlabs.io")
#: the packages a session runs in: model work reaches them only through a provider adapter
SESSION_LAYERS = ("contracts", "spec", "kernel", "turns", "nodes", "runner", "replay")
ADAPTERS = SRC / "providers" / "remote"


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _sources(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_session_layers_make_no_network_or_model_calls_of_their_own() -> None:
    checked, found = 0, []
    for layer in SESSION_LAYERS:
        for path in _sources(SRC / layer):
            checked += 1
            bad = _top_level_imports(path) & (NETWORK | VENDOR_SDKS)
            if bad:
                found.append(f"{path.relative_to(SRC)} imports {sorted(bad)}")
    assert checked > 100, "the session layers were not found: the check would pass vacuously"
    assert not found, "model calls belong in provider adapters:\n" + "\n".join(found)


def test_vendor_endpoints_and_sdks_live_only_in_the_adapters() -> None:
    outside = [p for p in _sources(SRC) if ADAPTERS not in p.parents]
    hosts = [f"{p.relative_to(SRC)}: {h}" for p in outside for h in VENDOR_HOSTS
             if h in p.read_text()]
    sdks = [f"{p.relative_to(SRC)}: {sorted(_top_level_imports(p) & VENDOR_SDKS)}"
            for p in outside if _top_level_imports(p) & VENDOR_SDKS]
    assert not hosts and not sdks, (hosts, sdks)
    inside = "".join(p.read_text() for p in _sources(ADAPTERS))
    assert all(h in inside for h in VENDOR_HOSTS), "the adapters moved: update VENDOR_HOSTS"


def test_the_example_assistant_needs_no_proprietary_endpoint() -> None:
    spec = yaml.safe_load(VOICE.read_text())
    from rspp.providers._registry import ADAPTERS as REGISTERED

    by_name = {a.name: a for a in REGISTERED}
    chosen = [p["primary"] for p in spec["providers"].values()]
    assert chosen, "the example names no provider"
    for name in chosen:
        info = by_name[name]
        assert info.key_env is None and info.target.startswith("rspp.providers.offline."), info


@pytest.mark.parametrize("modality", ["stt", "llm", "tts"])
def test_every_adapter_is_swapped_in_by_configuration(modality: str) -> None:
    names = PROVIDER_CATALOG.adapter_names(modality)
    assert len(names) >= 2, names  # at least one offline and one remote adapter
    spec = yaml.safe_load(VOICE.read_text())
    for name in names:
        spec["providers"][modality] = {"primary": name}
        issues = lint_text(yaml.safe_dump(spec), f"{modality}-{name}.yaml",
                           adapters=PROVIDER_CATALOG)
        errors = [i.format() for i in issues if i.severity == "error"]
        assert not errors, (name, errors)
    spec["providers"][modality] = {"primary": "no-such-model-api"}
    [unknown] = [i for i in lint_text(yaml.safe_dump(spec), "x.yaml", adapters=PROVIDER_CATALOG)
                 if i.severity == "error"]
    assert f"unknown {modality} adapter" in unknown.message
