"""README truth: every command in a README code block runs, in README order, in a scratch
directory (or is mirrored exactly); links point inside the repository.

Blocks are marked with an HTML comment on the line before the fence:

* ``<!-- readme-test: file=NAME -->``: the block is a file; written to NAME, not run.
* ``<!-- readme-test: fakes -->``: run with every fake provider server up and the
  ``*_BASE_URL``/``*_API_KEY`` variables pointing at them.
* ``<!-- readme-test: server port=N -->``: the block starts a server listening on port N;
  it runs in the background with N replaced by a free port (in this and every later block),
  the test waits until the port accepts connections and stops it at the end.
* ``<!-- readme-test: make -->``: ``make TARGET`` lines run the target's recipe exactly as
  ``make -n`` prints it (with the project's virtualenv already installed); ``make test`` is
  the suite this test belongs to and is not re-entered.
* ``<!-- readme-test: skip=REASON -->``: not run (REASON must say why).

Unmarked ``sh`` blocks run line by line; each command must exit 0. ``.venv/bin/rspp`` is the
``rspp`` of the interpreter running the tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
_MARK = re.compile(r"^<!--\s*readme-test:\s*(?P<body>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)\)")


@dataclass
class Block:
    lang: str
    body: str
    line: int
    marks: dict[str, str] = field(default_factory=dict)


def readme_blocks(text: str) -> list[Block]:
    """Fenced blocks with the ``readme-test`` marks of the comment just before them."""
    lines = text.splitlines()
    blocks: list[Block] = []
    marks: dict[str, str] = {}
    i = 0
    while i < len(lines):
        mark = _MARK.match(lines[i])
        fence = _FENCE.match(lines[i])
        if mark:
            marks = dict(item.partition("=")[::2] for item in mark["body"].split())
        elif fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            blocks.append(Block(fence["lang"], "\n".join(lines[i + 1:end]) + "\n", i + 2, marks))
            marks, i = {}, end
        elif lines[i].strip():
            marks = {}
        i += 1
    return blocks


def commands(body: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, comments dropped."""
    out: list[str] = []
    for raw in body.replace("\\\n", " ").splitlines():
        tokens = shlex.split(raw, comments=True)
        if tokens:
            out.append(shlex.join(tokens))
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: "
                                 f"{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling a readiness probe, not a timing assumption
    raise AssertionError(f"nothing listens on port {port} after 60 s")


class Sandbox:
    """A scratch directory that looks like the repository root to README commands."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for name in ("pipelines", "examples", "pyproject.toml", "constraints.txt", "Makefile",
                     "src", "tools"):
            (root / name).symlink_to(REPO / name)
        bin_dir = root / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        for tool, code in (("rspp", "from rspp.cli import main; main()"),):
            shim = bin_dir / tool
            shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c '
                            f'{shlex.quote(code)} "$@"\n')
            shim.chmod(0o755)
        # A shim, not a symlink: a symlinked interpreter looks for pyvenv.cfg beside the
        # link, finds none here, and would run without the project's packages.
        python = bin_dir / "python"
        python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        python.chmod(0o755)
        (root / ".venv" / ".installed").touch()  # the Makefile's "installed" stamp
        self.env = {k: v for k, v in os.environ.items()
                    if not k.endswith(("_API_KEY", "_BASE_URL"))}
        self.env["PATH"] = f"{bin_dir}{os.pathsep}{self.env.get('PATH', '')}"
        self.ports: dict[str, str] = {}
        self.servers: list[subprocess.Popen[str]] = []

    def sub(self, command: str) -> str:
        for old, new in self.ports.items():
            command = command.replace(old, new)
        return command

    def run(self, command: str, where: str, env: dict[str, str] | None = None) -> None:
        res = subprocess.run(["bash", "-c", self.sub(command)], cwd=self.root,
                             env={**self.env, **(env or {})}, capture_output=True, text=True,
                             timeout=300, check=False)
        assert res.returncode == 0, (f"{where}: `{command}` exited {res.returncode}\n"
                                     f"{res.stdout[-2000:]}\n{res.stderr[-2000:]}")

    def serve(self, block: Block, where: str) -> None:
        port = block.marks["port"]
        free = str(_free_port())
        self.ports[port] = free
        for n, command in enumerate(commands(block.body)):
            log = self.root / f"server-{len(self.servers)}-{n}.log"
            with log.open("w") as sink:  # the child keeps its own handle
                proc = subprocess.Popen(["bash", "-c", f"exec {self.sub(command)}"],
                                        cwd=self.root, env=self.env, stdout=sink, stderr=sink,
                                        text=True)
            self.servers.append(proc)
            _wait_port(int(free), proc, log)

    def make(self, command: str, where: str) -> None:
        argv = shlex.split(command)
        if argv[:2] == ["make", "test"]:
            return  # the whole suite: this test runs inside it
        # Under `make test` this runs inside an outer make: its MAKEFLAGS/MAKELEVEL would
        # make the dry run print "make[1]: Entering directory" lines, which are not commands.
        env = {k: v for k, v in self.env.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        dry = subprocess.run([*argv[:1], "-n", "--no-print-directory", *argv[1:]],
                             cwd=self.root, env=env, capture_output=True, text=True, timeout=60,
                             check=True)
        recipe = [ln for ln in dry.stdout.replace("\\\n", " ").splitlines() if ln.strip()]
        assert recipe, f"{where}: `{command}` has an empty recipe"
        for line in recipe:
            self.run(line, f"{where} ({command})")

    def close(self) -> None:
        for proc in self.servers:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path)
    try:
        yield box
    finally:
        box.close()


def test_readme_blocks_are_parsed_with_their_marks() -> None:
    text = ("intro\n<!-- readme-test: file=a.py -->\n```python\nx = 1\n```\n\n"
            "<!-- readme-test: server port=8700 -->\n\n```sh\nrspp cp serve --port 8700 \\\n"
            "    --admin-key k   # comment\n```\nprose\n```sh\necho hi\n```\n")
    a, b, c = readme_blocks(text)
    assert (a.lang, a.body, a.marks) == ("python", "x = 1\n", {"file": "a.py"})
    assert b.marks == {"server": "", "port": "8700"}
    assert commands(b.body) == ["rspp cp serve --port 8700 --admin-key k"]
    assert c.marks == {} and commands(c.body) == ["echo hi"]


@pytest.mark.timeout(600)  # the README's commands in order: demo, barge-in, providers, nodes, cp
def test_every_readme_command_runs(sandbox: Sandbox) -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    ran = 0
    with contextlib.ExitStack() as stack:
        fakes: FakeProviderServers | None = None
        for block in blocks:
            where = f"README.md:{block.line}"
            if "skip" in block.marks:
                assert block.marks["skip"], f"{where}: skip= needs a reason"
                continue
            if "file" in block.marks:
                (sandbox.root / block.marks["file"]).write_text(block.body)
                continue
            if block.lang not in ("sh", "bash", "shell", "console"):
                continue
            if "server" in block.marks:
                sandbox.serve(block, where)
                continue
            env = None
            if "fakes" in block.marks:
                fakes = fakes or stack.enter_context(FakeProviderServers())
                env = fakes.env
            for command in commands(block.body):
                if "make" in block.marks and command.startswith("make "):
                    sandbox.make(command, where)
                else:
                    sandbox.run(command, where, env)
                ran += 1
    assert ran >= 5


def test_readme_links_stay_inside_the_repository() -> None:
    text = README.read_text(encoding="utf-8")
    anchors = {"#" + re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", text, re.M)}
    for match in _LINK.finditer(text):
        target = match["target"]
        if target.startswith("#"):
            assert target in anchors, f"README link {target} names no heading"
            continue
        assert "://" not in target and not target.startswith(("/", "..")), \
            f"README link {target} points outside the repository"
        assert (REPO / target.split("#")[0]).exists(), f"README link {target} does not exist"
    assert "../" not in text, "README refers to a path outside the repository"
