"""Version-skew policy: which runtime releases and schemas a control plane admits (F-162).

A runtime declares its release (``runtime_version``) and the contract schema it writes
(``schema_version``) when it registers (``POST /v1/runtimes``); the control plane at
release ``N = MAJOR.MINOR.x`` and schema ``vS.x`` admits exactly these cells:

============================  ===========================  ==================================
runtime release               runtime schema               verdict
============================  ===========================  ==================================
``MAJOR.MINOR.*`` (N)         ``vS.*``                     supported
``MAJOR.MINOR-1.*`` (N-1)     ``vS.*``                     supported (rolling upgrade window)
``MAJOR.MINOR+1.*`` or newer  any                          refused: upgrade the control plane
                                                           first
``MAJOR.MINOR-2.*`` or older  any                          refused: upgrade the runtime
another major                 any                          refused
N or N-1                      another major ``vT.*``       refused: records would not decode
============================  ===========================  ==================================

Upgrade order: control plane first (it admits N and N-1 runtimes), then runtimes. A
refusal is ``409 version_skew`` naming the field and the supported window; the runtime
(``rspp serve --control-plane``) exits with that message. A registration that declares
no version (an operator's hand-made request) is not checked.
"""

from __future__ import annotations

import re

from rspp._version import __version__
from rspp.contracts import SCHEMA_VERSION
from rspp.controlplane._errors import VersionSkew

#: how many minor releases a runtime may lag the control plane (N and N-1)
RUNTIME_MINOR_WINDOW = 1
_RELEASE = re.compile(r"^(?P<major>[0-9]+)\.(?P<minor>[0-9]+)\.[0-9]+")
_SCHEMA = re.compile(r"^v(?P<major>[0-9]+)\.")


def supported_window(cp_version: str = __version__) -> str:
    """The runtime releases ``cp_version`` admits, e.g. ``0.0.x-0.1.x``."""
    major, minor = _major_minor(cp_version)
    low = max(0, minor - RUNTIME_MINOR_WINDOW)
    return f"{major}.{low}.x-{major}.{minor}.x"


def check_skew(
    runtime_version: str | None,
    schema_version: str | None,
    *,
    cp_version: str = __version__,
    cp_schema: str = SCHEMA_VERSION,
) -> None:
    """Raise :class:`VersionSkew` (409) unless the declared versions are admitted."""
    window = (f"control plane {cp_version} admits runtime releases {supported_window(cp_version)}"
              f" writing schema v{_schema_major(cp_schema)}.x")
    if runtime_version is not None:
        major, minor = _major_minor(runtime_version)
        cp_major, cp_minor = _major_minor(cp_version)
        if major != cp_major or minor > cp_minor:
            newer = (major, minor) > (cp_major, cp_minor)
            fix = ("upgrade the control plane first" if newer
                   else "run a runtime release of the control plane's major")
            raise VersionSkew(f"runtime release {runtime_version} is not supported: {window}; "
                              f"{fix}", field="runtime_version")
        if minor < cp_minor - RUNTIME_MINOR_WINDOW:
            raise VersionSkew(f"runtime release {runtime_version} is too old: {window}; "
                              "upgrade the runtime", field="runtime_version")
    if schema_version is not None and _schema_major(schema_version) != _schema_major(cp_schema):
        raise VersionSkew(f"runtime schema {schema_version} is not supported: {window}; its "
                          "records would not decode here", field="schema_version")


def _major_minor(version: str) -> tuple[int, int]:
    found = _RELEASE.match(version)
    if found is None:  # the request types only let MAJOR.MINOR.PATCH[...] through
        raise VersionSkew(f"release {version!r} is not MAJOR.MINOR.PATCH",
                          field="runtime_version")
    return int(found["major"]), int(found["minor"])


def _schema_major(version: str) -> int:
    found = _SCHEMA.match(version)
    if found is None:
        raise VersionSkew(f"schema_version {version!r} is not vMAJOR.MINOR",
                          field="schema_version")
    return int(found["major"])
