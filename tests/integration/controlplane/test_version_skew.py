"""The version-skew window, cell by cell, over real HTTP (F-162, NF-032).

A control plane on loopback at this release (N) admits runtimes declaring N or N-1
with a schema of its major, and a session then routes to them; it refuses a newer
runtime, a runtime of another major and one writing another schema major, each with
``409 version_skew`` naming the field and the supported window, and no session ever
routes there. The runtime's own client (what ``rspp serve --control-plane`` registers
with) declares the versions; the CLI does too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from rspp import __version__
from rspp.contracts import SCHEMA_VERSION
from rspp.controlplane import (
    ControlPlaneClient,
    ControlPlaneServer,
    ControlPlaneSettings,
    Unavailable,
    VersionSkew,
)

from .conftest import spec_version

pytestmark = pytest.mark.integration

ADMIN = "skew-admin"
MAJOR, MINOR = (int(part) for part in __version__.split(".")[:2])
SCHEMA_MAJOR = int(SCHEMA_VERSION[1:].split(".")[0])
WINDOW = (f"control plane {__version__} admits runtime releases "
          f"{MAJOR}.{max(0, MINOR - 1)}.x-{MAJOR}.{MINOR}.x writing schema v{SCHEMA_MAJOR}.x")

#: (cell, declared runtime release, declared schema) -> supported
ALLOWED = [
    ("N", f"{MAJOR}.{MINOR}.9", SCHEMA_VERSION),
    ("N-1", f"{MAJOR}.{MINOR - 1}.4", SCHEMA_VERSION),
    ("N, newer schema minor", __version__, f"v{SCHEMA_MAJOR}.7"),
]
#: (cell, release, schema, refused field, message tail)
REFUSED = [
    ("N+1", f"{MAJOR}.{MINOR + 1}.0", SCHEMA_VERSION, "runtime_version",
     "upgrade the control plane first"),
    ("next major", f"{MAJOR + 1}.0.0", SCHEMA_VERSION, "runtime_version",
     "upgrade the control plane first"),
    ("N, other schema major", __version__, f"v{SCHEMA_MAJOR + 1}.0", "schema_version",
     "its records would not decode here"),
    ("N-1, other schema major", f"{MAJOR}.{MINOR - 1}.0", f"v{SCHEMA_MAJOR + 1}.0",
     "schema_version", "its records would not decode here"),
]
if MINOR >= 2:
    REFUSED.append(("N-2", f"{MAJOR}.{MINOR - 2}.0", SCHEMA_VERSION, "runtime_version",
                    "upgrade the runtime"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneServer]:
    db = tmp_path_factory.mktemp("skew") / "cp.db"
    with ControlPlaneServer(ControlPlaneSettings(db_url=f"sqlite+aiosqlite:///{db}",
                                                 admin_key=ADMIN)) as srv:
        yield srv


async def test_allowed_cells_register_and_take_sessions(server: ControlPlaneServer) -> None:
    assert MINOR >= 1, "N-1 needs a previous minor release"
    async with ControlPlaneClient(server.url, ADMIN) as client:
        await client.publish(spec_version("1.0.0"))
        for index, (cell, release, schema) in enumerate(ALLOWED):
            runtime_id = f"rt-ok-{index}"
            registered = await client.register_runtime(
                runtime_id, f"ws://{runtime_id}", runtime_version=release,
                schema_version=schema)
            assert registered.runtime_id == runtime_id, cell
            route = await client.route("acme", "voice-assistant", session_id=f"s-ok-{index}")
            assert route["runtime_id"] == runtime_id, cell  # the only runtime in the view
            assert await client.deregister_runtime(runtime_id)


async def test_refused_cells_name_the_field_and_the_window(server: ControlPlaneServer) -> None:
    async with ControlPlaneClient(server.url, ADMIN) as client:
        await client.publish(spec_version("1.0.0"))
        for index, (cell, release, schema, field, tail) in enumerate(REFUSED):
            with pytest.raises(VersionSkew) as refused:
                await client.register_runtime(f"rt-bad-{index}", "ws://bad",
                                              runtime_version=release, schema_version=schema)
            err = refused.value
            assert (err.code, err.field) == ("version_skew", field), cell
            declared = release if field == "runtime_version" else schema
            assert declared in err.message and WINDOW in err.message, (cell, err.message)
            assert err.message.endswith(tail), (cell, err.message)
            with pytest.raises(Unavailable):  # no runtime took the registration
                await client.route("acme", "voice-assistant", session_id=f"s-bad-{index}")
        listed = await client.request("GET", "/v1/runtimes")
        assert not [r for r in listed["runtimes"] if r["runtime_id"].startswith("rt-bad-")]


def test_cli_registration_declares_this_release_and_is_refused_outside_the_window(
    server: ControlPlaneServer,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}

    def register(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from rspp.cli import main; main()", "cp", "runtime",
             "register", "rt-cli", "--endpoint", "ws://cli", "--server", server.url,
             "--api-key", ADMIN, *extra], capture_output=True, text=True, env=env,
            timeout=120, check=False)

    newer = register("--runtime-version", f"{MAJOR}.{MINOR + 1}.0")
    assert newer.returncode == 1
    assert newer.stderr.strip() == (
        f"error: version_skew: runtime release {MAJOR}.{MINOR + 1}.0 is not supported: "
        f"{WINDOW}; upgrade the control plane first (field: runtime_version)")
    same = register()  # this installation's release and schema
    assert same.returncode == 0, same.stderr
