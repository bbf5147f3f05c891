"""Node API, registry and entry points, harness (F-010, F-011, F-121, F-128)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import rspp
from rspp.kernel import (
    Event,
    Node,
    NodeContext,
    NodeRegistry,
    UnknownNodeTypeError,
    VirtualClock,
    default_registry,
)
from rspp.testing import NodeHarness, audio_frames, text_partials

pytestmark = pytest.mark.unit


class Echo(Node):
    type_name = "t.echo"
    version = "1.0.0"

    def process(self, event: Event, port: str) -> Event:
        return event.derive("text", f"v1:{event.payload}")


class Echo2(Echo):
    version = "2.0.0"

    def process(self, event: Event, port: str) -> Event:
        return event.derive("text", f"v2:{event.payload}")


def test_node_is_public_and_declares_behaviour() -> None:
    assert rspp.Node is Node and rspp.NodeContext is NodeContext
    assert Echo.inputs == ("in",) and Echo.outputs == ("out",)
    assert Echo.cancel_mode == "soft" and Echo.scope == "session"
    assert not Echo.is_async()

    class A(Node):
        async def process(self, event: Event, port: str) -> None:
            return None

    assert A.is_async() and A.resolved_type_name() == "A"


def test_registry_versions_and_pinning() -> None:
    r = NodeRegistry()
    r.register(Echo)
    r.register(Echo2)
    assert r.resolve("t.echo") is Echo2  # newest by default
    assert r.resolve("t.echo@1.0.0") is Echo  # pinned
    assert r.versions("t.echo") == ["1.0.0", "2.0.0"]
    with pytest.raises(UnknownNodeTypeError, match=r"no version '3\.0\.0'"):
        r.resolve("t.echo@3.0.0")
    with pytest.raises(UnknownNodeTypeError, match=r"rspp\.nodes"):
        r.resolve("nope")

    class Other(Node):
        type_name = "t.echo"
        version = "1.0.0"

    with pytest.raises(rspp.RSPPError, match="already registered"):
        r.register(Other)


def test_builtin_simple_nodes_registered() -> None:
    import rspp.nodes._builtin_simple  # noqa: F401

    for name in ("passthrough", "async_passthrough", "merge", "select"):
        assert name in default_registry


def test_entry_point_packaged_node_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F-011/F-121: a separately packaged node (dist-info + entry points) is discovered."""
    for ver in ("1.0.0", "2.0.0"):
        pkg = tmp_path / f"acme_nodes_{ver.replace('.', '_')}"
        pkg.mkdir()
        (pkg / "__init__.py").write_text(textwrap.dedent(f"""
            from rspp import Node

            class Greeter(Node):
                type_name = "acme.greeter"
                version = "{ver}"

                def process(self, event, port):
                    return event.derive("text", "hello from {ver}")
        """))
        dist_name = f"acme_nodes_v{ver[0]}"
        dist = tmp_path / f"{dist_name}-{ver}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {ver}\n"
        )
        (dist / "entry_points.txt").write_text(
            f"[rspp.nodes]\nacme.greeter@{ver} = {pkg.name}:Greeter\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    r = NodeRegistry()
    assert r.load_entry_points() >= 2
    v1 = r.resolve("acme.greeter@1.0.0")
    v2 = r.resolve("acme.greeter@2.0.0")
    assert v1.version == "1.0.0" and v2.version == "2.0.0"
    assert r.resolve("acme.greeter") is v2
    for mod in [m for m in sys.modules if m.startswith("acme_nodes_")]:
        del sys.modules[mod]


async def test_node_harness_feeds_and_asserts_outputs() -> None:
    """F-128: feed synthetic events into one node and check the output sequence."""
    async with NodeHarness(Echo, session_id="h") as h:
        await h.feed([Event("text", "a"), Event("text", "b")], port="in")
        assert [e.payload for e in h.outputs("out")] == ["v1:a", "v1:b"]
        assert [e.node_id for e in h.outputs("out")] == ["node", "node"]


class Sleepy(Node):
    type_name = "t.sleepy"
    timeout_ms = 100
    cancel_mode = "hard"

    async def process(self, event: Event, port: str) -> Event | None:
        await self.ctx.clock.sleep(float(event.payload))
        return event


async def test_harness_timeouts_are_deterministic_on_virtual_clock() -> None:
    """F-128: timeout behaviour tested without real waiting."""
    clock = VirtualClock()
    async with NodeHarness(Sleepy, clock=clock) as h:
        await h.feed([Event("t", "0.05"), Event("t", "5"), Event("t", "0.01")], port="in")
        assert [e.payload for e in h.outputs("out")] == ["0.05", "0.01"]
        (dl,) = h.session.dead_letters
        assert dl.error.error_code == "provider_timeout" and dl.error.retryable
        assert clock.monotonic_ns() == 160_000_000  # 50 + 100 (timeout) + 10 ms, virtual


async def test_harness_hard_cancel_is_deterministic() -> None:
    """F-128: cancelling a turn stops in-flight hard-cancel work at a known virtual time."""
    clock = VirtualClock(auto_advance=False)
    async with NodeHarness(Sleepy, clock=clock) as h:
        s = h.session
        turn = s.begin_turn()
        s.push(Event("t", "0.05"), "in")
        s.push(Event("t", "0.05"), "in")
        for _ in range(10):
            import asyncio

            await asyncio.sleep(0)
        assert s.hosts["node"].current is not None
        s.cancel_turn(turn)
        await h.drain()
        clock.advance(1000)
        await h.drain()
        assert h.data_outputs("out") == []
        assert clock.pending_timers == 0
        assert s.hosts["node"].task is not None and not s.hosts["node"].task.done()


def test_helpers_build_well_formed_streams() -> None:
    frames = audio_frames(3)
    assert [f.sample_index for f in frames] == [0, 320, 640]
    assert all(f.size == 640 and f.audio_format and f.audio_format.codec == "pcm_s16le"
               for f in frames)
    parts = text_partials(["a", "b"])
    assert [(p.payload, p.final, p.revision) for p in parts] == [
        ("a", False, 0), ("a b", False, 1), ("a b", True, 2)]
