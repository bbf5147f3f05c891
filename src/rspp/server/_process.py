"""Run ``rspp serve``: embedded (runtime + control plane on SQLite) or a stateless runtime.

Embedded (no control-plane URL): the process opens the control plane on SQLite
(or ``db_url``), mounts its HTTP API on the runtime's port, publishes the spec,
registers this runtime through the same HTTP API (in process) and serves.
With a control-plane URL it is a stateless runtime of that control plane
(F-103). SIGTERM/SIGINT drain (readiness fails, no new sessions, active turns
finish within the deadline, sessions close with a reason) and the process
exits 0 (F-106).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import httpx
import uvicorn
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from rspp.contracts import RecordingLevel
from rspp.controlplane import (
    ControlPlane,
    ControlPlaneClient,
    ControlPlaneSettings,
    FailoverMonitor,
    create_app,
)
from rspp.controlplane._kms import VaultSettings, VaultTransit
from rspp.controlplane._store import default_sqlite_url
from rspp.controlplane._tls import ClientTls, ReloadingClientContext
from rspp.observability import RetentionPolicy, sweep
from rspp.server._app import create_runtime_app
from rspp.server._compression import (
    CompressionCollector,
    CompressionMode,
    CompressionStats,
    compressing_protocol,
)
from rspp.server._cplink import LinkOptions
from rspp.server._fairness import FairnessSlo
from rspp.server._gates import GateReporterOptions
from rspp.server._headroom import PoolHeadroom
from rspp.server._loop import loop_name, settle_heap
from rspp.server._loop import run as run_loop
from rspp.server._runtime import Runtime, RuntimeOptions
from rspp.server._sessions import GovernedSessions, SessionPolicy
from rspp.server._specs import publish_spec_file
from rspp.server._timeline_signing import TimelineSigner
from rspp.server._wsproto import LeanWebSocketProtocol
from rspp.turns import CapacityModel

__all__ = ["ServeOptions", "TransportRoutes", "serve"]

_LOG = logging.getLogger("rspp.server")

#: the transport endpoints of a runtime, built over its governed sessions
TransportRoutes = Callable[[GovernedSessions], Sequence[BaseRoute]]

#: the offline voice assistant, shipped inside the package so `rspp serve` works from any
#: directory (``pipelines/examples/voice_assistant.yaml`` in the repository links to it)
DEFAULT_SPEC = Path(str(resources.files("rspp").joinpath("data", "voice_assistant.yaml")))


@dataclass(frozen=True, slots=True)
class ServeOptions:
    spec: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8800
    control_plane: str | None = None
    api_key: str | None = None
    token_secret: str | None = None
    #: mutual TLS to the control plane (F-120): client certificate, key, CA bundle
    tls: ClientTls | None = None
    db_url: str | None = None
    runtime_id: str | None = None
    #: the transport endpoint clients are routed to (default ws://HOST:PORT)
    advertise_url: str | None = None
    capacity: int = 100
    region: str = "default"
    drain_deadline_s: float = 30.0
    #: after the drain deadline: ``close`` sessions or ``migrate`` them to another runtime
    drain_mode: str = "close"
    heartbeat_interval_s: float = 2.0
    lease_ttl_ms: int = 6_000
    timeline_dir: Path | None = None
    #: each session's closed timeline file is signed by this KMS key (F-169)
    timeline_signing_key: str | None = None
    vault: VaultSettings | None = None
    #: storage roots in other regions (``--artifact-dir REGION=DIR``, F-168)
    artifact_dirs: dict[str, Path] = field(default_factory=dict)
    #: durable export of every session's timeline to this URL instead of files (F-154),
    #: and the recorder buffer (items) that absorbs a slow endpoint (F-176)
    timeline_export_url: str | None = None
    timeline_buffer: int | None = None
    record_level: RecordingLevel | None = None
    #: share of sessions whose timelines record events (F-071)
    record_sample_rate: float = 1.0
    #: timelines older than this are deleted (audited) by a sweep every
    #: ``retention_sweep_s`` (F-071; None: kept)
    retention_s: float | None = None
    retention_sweep_s: float = 60.0
    #: kernel overhead budget per event, microseconds (None: no budget)
    kernel_overhead_budget_us: float | None = None
    #: sessions that may capture debug events at once (F-076)
    max_debug_captures: int = 1
    #: in-band metrics events in every session (F-026)
    metrics_events: bool = False
    #: the wall-clock skew a session tolerates before it corrects (NF-018)
    max_skew_ms: int = 250
    #: turns open at once, and how many of those only interactive sessions may use
    #: (F-172, F-173; None: unbounded)
    max_active_turns: int | None = None
    interactive_reserve: int = 0
    #: node type -> slots shared by all sessions (F-105, F-109), and the fairness key
    pool_limits: dict[str, int] = field(default_factory=dict)
    pool_fairness: str = "tenant"
    #: the fairness SLO of the pool (NF-033; None: waits only measured)
    fairness_slo: FairnessSlo | None = None
    #: pool loads at which new turns are deferred (F-172)
    headroom: PoolHeadroom | None = None
    #: gate samples buffered while the control plane is unreachable, and the send period
    gate_queue: int = 2048
    gate_interval_s: float = 1.0
    #: ``permessage-deflate`` for WebSocket clients that offer it: off, events, all (F-031)
    ws_compression: CompressionMode = "off"
    transport_routes: TransportRoutes | None = None
    #: lines of the start-up banner go here (the CLI prints them)
    announce: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


class _Server(uvicorn.Server):
    """uvicorn, but SIGTERM/SIGINT request a drain instead of an immediate shutdown."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        sigs = (signal.SIGTERM, signal.SIGINT)
        for sig in sigs:
            loop.add_signal_handler(sig, self._on_stop)
        try:
            yield
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)


def _advertised(url: str | None, host: str, port: int) -> str:
    """The endpoint the control plane routes clients to (never a wildcard address)."""
    if url:
        return url.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"ws://{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve(opts: ServeOptions) -> int:
    """Serve until SIGTERM/SIGINT, then drain; the exit status (0 after a clean drain)."""
    sock = _bind(opts.host, opts.port)
    host, port = sock.getsockname()[:2]
    base = f"http://{host}:{port}"
    endpoint = _advertised(opts.advertise_url, host, port)
    cp: ControlPlane | None = None
    monitor: FailoverMonitor | None = None
    cp_app: ASGIApp | None = None
    api_key = opts.api_key
    if opts.control_plane is None:
        api_key = api_key or f"rspp_admin_{secrets.token_urlsafe(18)}"
        settings = ControlPlaneSettings(db_url=opts.db_url or default_sqlite_url(),
                                        admin_key=api_key)
        cp = await ControlPlane.open(settings)
        monitor = FailoverMonitor(cp)
        monitor.start()
        cp_app = create_app(cp)
        client = ControlPlaneClient(base, api_key, transport=httpx.ASGITransport(app=cp_app))
    else:
        client = ControlPlaneClient(
            opts.control_plane, api_key,
            tls=ReloadingClientContext(opts.tls) if opts.tls is not None else None)
    runtime_id = opts.runtime_id or f"rt-{socket.gethostname()}-{port}"
    runtime = Runtime(client, RuntimeOptions(
        link=LinkOptions(runtime_id=runtime_id, endpoint=endpoint, capacity=opts.capacity,
                         region=opts.region, heartbeat_interval_s=opts.heartbeat_interval_s,
                         artifact_regions=tuple(sorted(
                             set(opts.artifact_dirs)
                             | ({opts.region} if opts.timeline_dir else set()))) or None,
                         token_secret=opts.token_secret,
                         node_search=(opts.spec.resolve().parent,) if opts.spec else ()),
        sessions=SessionPolicy(lease_ttl_ms=opts.lease_ttl_ms, timeline_dir=opts.timeline_dir,
                               artifact_dirs=dict(opts.artifact_dirs),
                               timeline_export_url=opts.timeline_export_url,
                               timeline_buffer=opts.timeline_buffer,
                               record_level=opts.record_level, drain_mode=opts.drain_mode,
                               sample_rate=opts.record_sample_rate,
                               kernel_overhead_budget_us=opts.kernel_overhead_budget_us,
                               max_debug_captures=opts.max_debug_captures,
                               metrics_events=opts.metrics_events,
                               max_skew_ms=opts.max_skew_ms,
                               capacity=None if opts.max_active_turns is None else CapacityModel(
                                   opts.max_active_turns, opts.interactive_reserve),
                               pool_limits=dict(opts.pool_limits),
                               pool_fairness=opts.pool_fairness,
                               fairness_slo=opts.fairness_slo, headroom=opts.headroom),
        drain_deadline_s=opts.drain_deadline_s,
        gates=GateReporterOptions(queue=opts.gate_queue, interval_s=opts.gate_interval_s)))
    stop = asyncio.Event()
    sweeper: asyncio.Task[None] | None = None
    if opts.timeline_signing_key is not None and opts.vault is not None:
        runtime.sessions.timeline_signer = TimelineSigner(
            VaultTransit(opts.vault, opts.timeline_signing_key))
    try:
        if runtime.sessions.timeline_signer is not None:
            await runtime.sessions.timeline_signer.check()  # a KmsError names the key
        if cp is not None:
            spec = opts.spec or DEFAULT_SPEC
            published = await publish_spec_file(client, spec)
            pipeline = f"{published['pipeline']['name']}@{published['pipeline']['version']}"
        else:
            pipeline = None
        routes = opts.transport_routes(runtime.sessions) if opts.transport_routes else ()
        app = create_runtime_app(runtime, transport_routes=routes, control_plane=cp_app)
        deflated = CompressionStats()
        runtime.metrics.runtime.registry.register(
            CompressionCollector(deflated, opts.ws_compression))
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws_max_size=1 << 20,
                                ws=compressing_protocol(LeanWebSocketProtocol,
                                                        opts.ws_compression, deflated))
        server = _Server(config, stop.set)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="rspp-uvicorn")
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        if task.done():
            await task
            return 1
        try:
            await runtime.start()
        except BaseException:
            server.should_exit = True
            await task
            raise
        if opts.timeline_dir is not None and opts.retention_s is not None:
            sweeper = asyncio.create_task(_retention_loop(
                opts.timeline_dir, opts.retention_s, opts.retention_sweep_s),
                name="rspp-retention")
        frozen = settle_heap()  # started: the start-up heap leaves the collector's scans
        if cp is not None:
            opts.announce(f"rspp serve: embedded control plane on {base} "
                          f"(db {cp.settings.db_url.split('://')[0]}), pipeline {pipeline}")
            if opts.api_key is None:
                opts.announce(f"rspp serve: api key {api_key}")
        else:
            opts.announce(f"rspp serve: control plane {opts.control_plane}")
        opts.announce(f"rspp serve: runtime {runtime_id} ready on {base} "
                      f"(transport {endpoint}/v1/sessions/{{id}}/ws, {loop_name()} loop, "
                      f"{frozen} start-up objects frozen out of garbage collection)")
        stopper = asyncio.create_task(stop.wait(), name="rspp-stop")
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        opts.announce("rspp serve: draining")
        await runtime.drain()
        server.should_exit = True
        await task
        opts.announce("rspp serve: stopped")
        return 0
    finally:
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.wait({sweeper})
        await runtime.stop()
        if runtime.sessions.timeline_signer is not None:
            await runtime.sessions.timeline_signer.transit.aclose()
        if monitor is not None:
            await monitor.stop()
        if cp is not None:
            await cp.close()
        sock.close()


async def _retention_loop(root: Path, max_age_s: float, every_s: float) -> None:
    """Delete timelines older than ``max_age_s`` every ``every_s`` (F-071); each deletion
    is audited in ``<root>/retention-audit.jsonl`` and logged."""
    policy = RetentionPolicy(default_max_age_s=max_age_s)
    while True:
        try:
            result = await asyncio.to_thread(sweep, root, policy, now_s=time.time())
        except OSError as exc:
            _LOG.warning("retention sweep of %s failed: %s", root, exc)
        else:
            for name in result.deleted:
                _LOG.info("retention: deleted %s (older than %ss)", name, max_age_s)
        await asyncio.sleep(every_s)


def main(opts: ServeOptions) -> int:
    """Blocking entry point for the CLI."""
    try:
        return run_loop(serve(opts))
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        print("rspp serve: interrupted", file=sys.stderr)
        return 130
