"""The CI entry point `.ci/run` parses, installs each Debian package the suites need once,
and ends by calling the README's test command (a bad merge once left it unparsable: CI
would have been red before running a test)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

CI_RUN = Path(__file__).resolve().parents[2] / ".ci" / "run"


def test_ci_entry_parses_installs_each_package_once_and_runs_make_test() -> None:
    parsed = subprocess.run(["bash", "-n", str(CI_RUN)], capture_output=True, text=True,
                            timeout=30)
    assert parsed.returncode == 0, parsed.stderr
    text = CI_RUN.read_text()
    installs = re.findall(r"^    apt-get -y install (\S+) ", text, re.M)
    assert sorted(installs) == ["chromium", "faketime", "stress-ng"], installs
    commands = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands[-1] == "make test", commands[-1]


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_make_venv_installs_every_dependency_at_its_pinned_version() -> None:
    # a dependency's new release once failed CI before a test ran (msgspec 0.23 typed its
    # decoders, so mypy called our casts redundant): `make venv` installs with -c
    # constraints.txt, which must pin every distribution pyproject names, once each
    root = CI_RUN.parents[1]
    makefile = (root / "Makefile").read_text()
    assert makefile.count("pip install --progress-bar off -c constraints.txt") == 2, makefile
    pins = [ln.split("==") for ln in (root / "constraints.txt").read_text().splitlines()
            if ln and not ln.startswith("#")]
    assert all(len(pin) == 2 and pin[1] for pin in pins), pins
    pinned = [_name(name) for name, _ in pins]
    assert len(pinned) == len(set(pinned)), sorted(pinned)
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project["optional-dependencies"].values() for r in extra)]
    wanted = {_name(r) for r in requirements} - {"rspp"}
    assert wanted, "no dependency found in pyproject.toml"
    assert wanted <= set(pinned), sorted(wanted - set(pinned))
