"""``rspp serve [SPEC]``: the runtime process (embedded control plane by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rspp.cli._kms_option import VAULT_ADDR, VAULT_TOKEN_FILE, vault_for

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from rspp.server import GovernedSessions, TelephonyConfig, TransportRoutes
    from rspp.transports import IceServer, LiveKitConfig

__all__ = ["register", "serve"]


def serve(
    spec: Path | None = typer.Argument(
        None, help="PipelineSpec to publish and serve (embedded mode; default: the offline "
        "voice assistant shipped in the package, the same as "
        "pipelines/examples/voice_assistant.yaml)."),
    host: str = typer.Option("127.0.0.1", "--host", envvar="RSPP_HOST",
                             help="Interface to bind."),
    port: int = typer.Option(8800, "--port", min=0, max=65535, envvar="RSPP_PORT",
                             help="Port (0: any free port)."),
    advertise_url: str | None = typer.Option(
        None, "--advertise-url", envvar="RSPP_ADVERTISE_URL",
        help="The transport endpoint clients are routed to (ws://POD_IP:8800); default "
        "ws://HOST:PORT (the host name when binding every interface)."),
    control_plane: str | None = typer.Option(
        None, "--control-plane", envvar="RSPP_CONTROL_PLANE",
        help="Control-plane URL: run as a stateless runtime of it (no embedded control plane)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="RSPP_API_KEY",
        help="Operator API key for the control plane (embedded: the admin key it accepts; "
        "generated and printed when omitted)."),
    token_secret: str | None = typer.Option(
        None, "--token-secret", envvar="RSPP_TOKEN_SECRET",
        help="HS256 secret of a control plane that signs tokens with one (Ed25519 control "
        "planes publish their public key; nothing to pass)."),
    tls_client_cert: Path | None = typer.Option(
        None, "--tls-client-cert", envvar="RSPP_TLS_CLIENT_CERT",
        help="Mutual TLS to an https:// control plane: this runtime's client certificate "
        "(PEM; reloaded when the file changes)."),
    tls_client_key: Path | None = typer.Option(
        None, "--tls-client-key", envvar="RSPP_TLS_CLIENT_KEY",
        help="The --tls-client-cert's private key (PEM)."),
    tls_ca: Path | None = typer.Option(
        None, "--tls-ca", envvar="RSPP_TLS_CA",
        help="CA bundle that signs the control plane's certificate (default: the system's)."),
    db: str | None = typer.Option(
        None, "--db", envvar="RSPP_DB",
        help="Embedded control-plane database URL (default: ./rspp-controlplane.db)."),
    runtime_id: str | None = typer.Option(None, "--runtime-id", envvar="RSPP_RUNTIME_ID",
                                          help="Runtime id to register (e.g. the pod name)."),
    capacity: int = typer.Option(100, "--capacity", min=1, envvar="RSPP_CAPACITY",
                                 help="Most concurrent sessions."),
    region: str = typer.Option(
        "default", "--region", envvar="RSPP_REGION",
        help="Region this runtime registers in (routes asking for a region prefer its "
        "runtimes)."),
    drain_deadline: float = typer.Option(
        30.0, "--drain-deadline", min=0.0, envvar="RSPP_DRAIN_DEADLINE",
        help="Seconds active turns get to finish after SIGTERM before sessions close."),
    drain_mode: str = typer.Option(
        "close", "--drain-mode", envvar="RSPP_DRAIN_MODE",
        help="On SIGTERM, once active turns finished: close each session, or migrate it to "
        "another runtime of the control plane (the client reconnects there)."),
    heartbeat_interval: float = typer.Option(
        2.0, "--heartbeat-interval", min=0.05, envvar="RSPP_HEARTBEAT_INTERVAL",
        help="Seconds between heartbeats."),
    lease_ttl_ms: int = typer.Option(
        6000, "--lease-ttl-ms", min=300, max=86_400_000, envvar="RSPP_LEASE_TTL_MS",
        help="Session lease TTL (renewed every third of it)."),
    timeline_dir: Path | None = typer.Option(
        None, "--timeline-dir", help="Write each session's timeline to DIR/<session>.jsonl."),
    timeline_signing_key: str | None = typer.Option(
        None, "--timeline-signing-key", envvar="RSPP_TIMELINE_SIGNING_KEY",
        help="Sign each session's closed timeline with this KMS key (vault-transit:NAME, "
        "ed25519) into <timeline>.sig; check with `rspp timeline verify` (F-169)."),
    vault_addr: str | None = VAULT_ADDR,
    vault_token_file: Path | None = VAULT_TOKEN_FILE,
    artifact_dir: list[str] = typer.Option(
        [], "--artifact-dir", help="REGION=DIR (repeatable): a storage root for session "
        "timelines in REGION (e.g. a mount of that region's storage); --timeline-dir is the "
        "root in --region. A session's timeline goes to a root its tenant's residency policy "
        "allows (this runtime's region first); a session none of them suits is refused "
        "(F-168)."),
    timeline_export_url: str | None = typer.Option(
        None, "--timeline-export-url", envvar="RSPP_TIMELINE_EXPORT_URL",
        help="Export each session's timeline to this http(s) URL instead of a file (F-154): "
        "batches of JSON Lines POSTed asynchronously, retried until acknowledged (an "
        "export_recovered marker follows a recovery); a slow or failing endpoint never "
        "blocks a session."),
    timeline_buffer: int | None = typer.Option(
        None, "--timeline-buffer", min=16, max=10_000_000,
        help="Timeline records a session buffers while its export is behind; past half of "
        "it the recording level downgrades (L2 -> L1 -> L0, recorded), control evidence "
        "kept (F-176). Default: 200000."),
    record_sample_rate: float = typer.Option(
        1.0, "--record-sample-rate", min=0.0, max=1.0, envvar="RSPP_RECORD_SAMPLE_RATE",
        help="Share of sessions whose timelines record their events (decided per session id, "
        "deterministically); the others keep only their OR-02 turn evidence."),
    retention_s: float | None = typer.Option(
        None, "--retention-s", min=0.0, envvar="RSPP_RETENTION_S",
        help="Delete timelines under --timeline-dir older than SECONDS (each deletion audited "
        "in DIR/retention-audit.jsonl); default: keep."),
    retention_sweep_s: float = typer.Option(
        60.0, "--retention-sweep-s", min=0.05, help="Seconds between retention sweeps."),
    kernel_budget_us: float | None = typer.Option(
        None, "--kernel-overhead-budget-us", min=0.0, envvar="RSPP_KERNEL_OVERHEAD_BUDGET_US",
        help="Kernel overhead budget per event (microseconds): telemetry samples over it "
        "count in rspp_kernel_overhead_budget_exceeded_total (/metrics) and each crossing "
        "logs a WARNING."),
    max_debug_captures: int = typer.Option(
        1, "--max-debug-captures", min=0, max=100, envvar="RSPP_MAX_DEBUG_CAPTURES",
        help="Sessions that may capture debug events at once (the WebSocket `debug` "
        "message, F-076); further requests get an error naming `seconds`. 0: none. What "
        "one capture costs the other sessions: benchmarks/debug_capture.py."),
    metrics_events: bool = typer.Option(
        False, "--metrics-events", help="In-band metrics events in every session (TelemetryLane "
        "`metric` records with their values, in its timeline and to clients subscribed to "
        "`metrics`): each node's latency and each edge's queue depth at every turn's end."),
    max_skew_ms: int = typer.Option(
        250, "--max-skew-ms", min=0, max=3_600_000,
        help="Wall-clock skew a session tolerates (NF-018): a session's wall stamps follow "
        "its monotonic clock; when the system clock differs by more, they are corrected "
        "forward (a backward step is absorbed: wall stamps never go back) and a `clock_skew` "
        "note goes on the timeline. See docs/time.md."),
    media_skew_ms: float = typer.Option(
        200.0, "--media-skew-ms", min=1.0, max=60_000.0,
        help="Bound of the media-to-runtime mapping error of ingress audio (NF-018): a frame "
        "arriving later than its media time allows by more is counted late, re-anchors the "
        "mapping and is noted (`media_skew`) on the timeline; the p99 is in the `stats` event "
        "and rspp_ingress_media_skew_seconds. See docs/time.md."),
    pool_limit: list[str] = typer.Option(
        [], "--pool-limit", help="TYPE=N: at most N events of node type TYPE (e.g. llm) "
        "processed at once across all sessions of this runtime (shared execution pool, "
        "F-109); repeatable. Work over it queues fairly (--pool-fairness)."),
    pool_fairness: str = typer.Option(
        "tenant", "--pool-fairness", help="Whose work goes next when a pool key is full: "
        "tenant (round-robin across tenants, then each tenant's sessions in order) or "
        "session (round-robin across sessions) (F-174)."),
    fairness_max_wait_ms: float | None = typer.Option(
        None, "--fairness-max-wait-ms", min=1, envvar="RSPP_FAIRNESS_MAX_WAIT_MS",
        help="Fairness SLO of the pool (NF-033, needs --pool-limit and --pool-fairness "
        "tenant): no tenant waits longer than this for a slot; a longer wait is a starvation "
        "incident and `rspp_fairness_slo_alert_firing` is 1 while the window holds one."),
    fairness_window_s: float = typer.Option(
        60.0, "--fairness-window-s", min=0.1, envvar="RSPP_FAIRNESS_WINDOW_S",
        help="The window the fairness SLO is evaluated over (seconds)."),
    max_queue_depth: int | None = typer.Option(
        None, "--max-queue-depth", min=1, envvar="RSPP_MAX_QUEUE_DEPTH",
        help="Capacity headroom (F-172, needs --pool-limit): while this much work queues for "
        "pool slots a new turn is deferred (`capacity:queue_depth`)."),
    max_provider_load: list[str] = typer.Option(
        [], "--max-provider-load", help="TYPE=N: capacity headroom (F-172): while N calls of "
        "node type TYPE (a --pool-limit key, N at most its limit) are in flight a new turn "
        "is deferred (`capacity:provider:TYPE`); repeatable."),
    max_cpu_percent: int | None = typer.Option(
        None, "--max-cpu-percent", min=1, max=100, envvar="RSPP_MAX_CPU_PERCENT",
        help="Capacity headroom (F-172): when the runtime's own CPU utilisation (process CPU "
        "time over 1 s, percent of its CPUs) reaches this, new turns are deferred "
        "(`capacity:cpu`) until it falls to --cpu-resume-percent."),
    cpu_resume_percent: int | None = typer.Option(
        None, "--cpu-resume-percent", min=0, max=99, envvar="RSPP_CPU_RESUME_PERCENT",
        help="The CPU utilisation at or below which new turns are admitted again (below "
        "--max-cpu-percent; default 3/4 of it)."),
    max_active_turns: int | None = typer.Option(
        None, "--max-active-turns", min=1, envvar="RSPP_MAX_ACTIVE_TURNS",
        help="Capacity: turns open at once on this runtime (F-172); a turn proposed over it "
        "is deferred (`turn_deferred` naming `capacity:full`). Default: unbounded."),
    interactive_reserve: int = typer.Option(
        0, "--interactive-reserve", min=0, envvar="RSPP_INTERACTIVE_RESERVE",
        help="Of --max-active-turns, the turns only interactive sessions may use (F-173): "
        "sessions routed with attribute priority=background are deferred first "
        "(`capacity:background_headroom`). Must be below --max-active-turns."),
    record_level: str | None = typer.Option(
        None, "--record-level", help="Timeline recording level L0/L1/L2 (default: the plan's); "
        "L2 keeps audio and provider outputs so `rspp replay` can re-run a served session."),
    ice_server: list[str] = typer.Option(
        [], "--ice-server", help="STUN/TURN server for WebRTC peers, repeatable: "
        "stun:HOST:PORT or turn:USER:PASSWORD@HOST:PORT (none needed on loopback/LAN)."),
    twilio_auth_token: str | None = typer.Option(
        None, "--twilio-auth-token", envvar="RSPP_TWILIO_AUTH_TOKEN",
        help="Phone calls: the carrier account's auth token; the voice webhook verifies "
        "X-Twilio-Signature with it (without it every call is refused)."),
    phone_number: list[str] = typer.Option(
        [], "--phone-number",
        help="Phone calls: NUMBER=TENANT or NUMBER=TENANT/PIPELINE (repeatable): calls to "
        "NUMBER are sessions of TENANT (pipeline: the served spec's by default)."),
    public_url: str | None = typer.Option(
        None, "--public-url", envvar="RSPP_PUBLIC_URL",
        help="Phone calls: the URL the carrier reaches this runtime at "
        "(https://voice.example.com); signatures and the stream URL use it."),
    livekit_url: str | None = typer.Option(
        None, "--livekit-url", envvar="LIVEKIT_URL",
        help="LiveKit server (wss://...): sessions routed with attributes.room join that "
        "room as an agent (POST /v1/livekit/sessions/{id}/join); needs rspp[livekit]."),
    livekit_key: str | None = typer.Option(
        None, "--livekit-key", envvar="LIVEKIT_API_KEY", help="LiveKit API key."),
    livekit_secret: str | None = typer.Option(
        None, "--livekit-secret", envvar="LIVEKIT_API_SECRET", help="LiveKit API secret."),
    gate_queue: int = typer.Option(
        2048, "--gate-queue", min=1, max=1_000_000,
        help="Gate samples of live turns buffered while the control plane is slow or down; "
        "beyond it the oldest are dropped (counted in rspp_gate_samples_dropped_total)."),
    gate_interval: float = typer.Option(
        1.0, "--gate-interval", min=0.05, max=60.0,
        help="Seconds between gate-sample reports to the control plane."),
    stall_timeout: float = typer.Option(
        2.0, "--stall-timeout", min=0.05, max=3600.0, envvar="RSPP_STALL_TIMEOUT",
        help="Seconds after a live client's connection drops before its session stalls "
        "and the open turn aborts (transport_disconnect) (F-091)."),
    resume_window: float = typer.Option(
        30.0, "--resume-window", min=0.05, max=86_400.0, envvar="RSPP_RESUME_WINDOW",
        help="Seconds a disconnected session waits for its client to reconnect before it "
        "ends (resume_window_expired, audited in the control plane as session.ended) and is "
        "cleaned up; at least --stall-timeout."),
    ws_compression: str = typer.Option(
        "off", "--ws-compression", envvar="RSPP_WS_COMPRESSION",
        help="permessage-deflate for WebSocket clients that offer it (F-031): off (never "
        "negotiated), events (event messages compressed, audio frames sent as they are) or "
        "all (every message). Bytes saved and the CPU it costs are on /metrics "
        "(rspp_ws_compression_*)."),
) -> None:
    """Serve live sessions (WebSocket) governed by a control plane; Ctrl-C/SIGTERM drains."""
    from rspp.controlplane import CPError
    from rspp.server import ServeOptions
    from rspp.server._fairness import FairnessSlo
    from rspp.server._headroom import PoolHeadroom
    from rspp.server._process import main

    if control_plane is not None and spec is not None:
        typer.echo("error: SPEC is published only in embedded mode; with --control-plane "
                   "publish it with `rspp cp publish SPEC`", err=True)
        raise typer.Exit(2)
    if control_plane is not None and not api_key:
        typer.echo("error: --control-plane needs --api-key (an operator key of that control "
                   "plane) or RSPP_API_KEY", err=True)
        raise typer.Exit(2)
    tls = None
    if tls_client_cert or tls_client_key or tls_ca:
        from rspp.controlplane._tls import ClientTls

        if control_plane is None:
            typer.echo("error: --tls-client-cert/--tls-client-key/--tls-ca are for a "
                       "separate control plane: pass --control-plane https://...", err=True)
            raise typer.Exit(2)
        tls = ClientTls(cert=tls_client_cert, key=tls_client_key, ca=tls_ca)
    if drain_mode not in ("close", "migrate"):
        typer.echo("error: --drain-mode must be close or migrate", err=True)
        raise typer.Exit(2)
    limits: dict[str, int] = {}
    for item in pool_limit:
        name, _, count = item.partition("=")
        if not name or not count.isdigit() or int(count) < 1:
            typer.echo(f"error: --pool-limit {item!r}: use TYPE=N with N >= 1, e.g. llm=2",
                       err=True)
            raise typer.Exit(2)
        limits[name] = int(count)
    if resume_window < stall_timeout:
        typer.echo("error: --resume-window must be at least --stall-timeout (the session "
                   "stalls within its resume window)", err=True)
        raise typer.Exit(2)
    if ws_compression not in ("off", "events", "all"):
        typer.echo("error: --ws-compression must be off, events or all", err=True)
        raise typer.Exit(2)
    if pool_fairness not in ("tenant", "session"):
        typer.echo("error: --pool-fairness must be tenant or session", err=True)
        raise typer.Exit(2)
    provider_load = _provider_load(max_provider_load, limits)
    if max_queue_depth is not None and not limits:
        typer.echo("error: --max-queue-depth: needs --pool-limit (the queue it bounds is the "
                   "pool's)", err=True)
        raise typer.Exit(2)
    if cpu_resume_percent is not None and (max_cpu_percent is None
                                           or cpu_resume_percent >= max_cpu_percent):
        typer.echo("error: --cpu-resume-percent: must be below --max-cpu-percent (the "
                   "load at which the CPU threshold clears)", err=True)
        raise typer.Exit(2)
    if fairness_max_wait_ms is not None and (not limits or pool_fairness != "tenant"):
        typer.echo("error: --fairness-max-wait-ms: needs --pool-limit and --pool-fairness "
                   "tenant (the waits it bounds are per tenant, for pool slots)", err=True)
        raise typer.Exit(2)
    if interactive_reserve and (max_active_turns is None
                                or interactive_reserve >= max_active_turns):
        typer.echo("error: --interactive-reserve must be below --max-active-turns (the "
                   "reserve is part of that capacity)", err=True)
        raise typer.Exit(2)
    if spec is not None and not spec.exists():
        typer.echo(f"error: SPEC {spec}: file not found", err=True)
        raise typer.Exit(2)
    from rspp.errors import RSPPError
    from rspp.runner._replayable import parse_record_level

    try:
        level = parse_record_level(record_level)
    except RSPPError as exc:
        typer.echo(f"error: --record-level: {exc}", err=True)
        raise typer.Exit(2) from None
    if timeline_export_url is not None and (
            timeline_dir is not None
            or not timeline_export_url.startswith(("http://", "https://"))):
        typer.echo("error: --timeline-export-url: an http(s):// URL, and not with "
                   "--timeline-dir (a session's timeline goes to one of them)", err=True)
        raise typer.Exit(2)
    if retention_s is not None and timeline_dir is None:
        typer.echo("error: --retention-s: needs --timeline-dir (the recordings it deletes)",
                   err=True)
        raise typer.Exit(2)
    if timeline_signing_key is not None and timeline_dir is None:
        typer.echo("error: --timeline-signing-key: needs --timeline-dir (the files it signs)",
                   err=True)
        raise typer.Exit(2)
    vault = vault_for(timeline_signing_key, "--timeline-signing-key", vault_addr,
                      vault_token_file)
    if timeline_dir is not None:
        timeline_dir.mkdir(parents=True, exist_ok=True)
    artifact_dirs = _artifact_dirs(artifact_dir, region, timeline_dir)
    opts = ServeOptions(spec=spec, host=host, port=port, control_plane=control_plane,
                        api_key=api_key, token_secret=token_secret, db_url=db, tls=tls,
                        runtime_id=runtime_id, capacity=capacity, region=region,
                        advertise_url=advertise_url,
                        drain_deadline_s=drain_deadline, drain_mode=drain_mode,
                        heartbeat_interval_s=heartbeat_interval,
                        lease_ttl_ms=lease_ttl_ms, timeline_dir=timeline_dir,
                        timeline_signing_key=timeline_signing_key, vault=vault,
                        artifact_dirs=artifact_dirs,
                        timeline_export_url=timeline_export_url,
                        timeline_buffer=timeline_buffer,
                        kernel_overhead_budget_us=kernel_budget_us,
                        max_debug_captures=max_debug_captures, record_level=level,
                        metrics_events=metrics_events,
                        max_skew_ms=max_skew_ms,
                        record_sample_rate=record_sample_rate, retention_s=retention_s,
                        retention_sweep_s=retention_sweep_s,
                        max_active_turns=max_active_turns,
                        pool_limits=limits, pool_fairness=pool_fairness,
                        headroom=PoolHeadroom(max_queue_depth, provider_load, max_cpu_percent,
                                             cpu_resume_percent),
                        fairness_slo=None if fairness_max_wait_ms is None else FairnessSlo(
                            fairness_max_wait_ms, fairness_window_s),
                        interactive_reserve=interactive_reserve,
                        gate_queue=gate_queue, gate_interval_s=gate_interval,
                        ws_compression=ws_compression,  # type: ignore[arg-type]
                        transport_routes=_transport_routes(
                            _telephony(twilio_auth_token, phone_number, public_url,
                                       None if control_plane else spec),
                            _ice_servers(ice_server), embedded=control_plane is None,
                            timeline_dir=timeline_dir,
                            livekit=_livekit(livekit_url, livekit_key, livekit_secret),
                            disconnect=(stall_timeout, resume_window),
                            media_skew_ms=media_skew_ms))
    try:
        code = main(opts)
    except CPError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        typer.echo(f"error: control plane: {exc.code}: {exc.message}{field}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _artifact_dirs(values: list[str], region: str, timeline_dir: Path | None) -> dict[str, Path]:
    """``--artifact-dir REGION=DIR`` values by region (created); one root per region."""
    from rspp.server._artifacts import parse_artifact_dir

    out: dict[str, Path] = {}
    for value in values:
        try:
            where, directory = parse_artifact_dir(value)
        except ValueError as exc:
            typer.echo(f"error: --artifact-dir {exc}", err=True)
            raise typer.Exit(2) from None
        if where in out or (where == region and timeline_dir is not None):
            typer.echo(f"error: --artifact-dir {value!r}: region {where} has a root already "
                       "(--timeline-dir is the root in --region)", err=True)
            raise typer.Exit(2)
        directory.mkdir(parents=True, exist_ok=True)
        out[where] = directory
    return out


def _ice_servers(values: list[str]) -> tuple[IceServer, ...]:
    """``stun:HOST:PORT`` or ``turn(s):USER:PASSWORD@HOST:PORT[?transport=udp]``."""
    from rspp.transports import IceServer

    out = []
    for value in values:
        scheme, sep, rest = value.partition(":")
        if not sep or scheme not in ("stun", "stuns", "turn", "turns") or not rest:
            raise typer.BadParameter(f"{value!r}: use stun:HOST:PORT or "
                                     "turn:USER:PASSWORD@HOST:PORT", param_hint="--ice-server")
        creds, at, host = rest.rpartition("@")
        user, _, password = creds.partition(":")
        if scheme.startswith("turn") and not (at and user and password):
            raise typer.BadParameter(f"{value!r}: a TURN server needs USER:PASSWORD@",
                                     param_hint="--ice-server")
        out.append(IceServer(urls=(f"{scheme}:{host}",), username=user or None,
                             credential=password or None))
    return tuple(out)


def _telephony(auth_token: str | None, numbers: list[str], public_url: str | None,
               spec: Path | None) -> TelephonyConfig:
    """The phone-call configuration; the served spec's pipeline answers by default."""
    from rspp.server import DEFAULT_SPEC, TelephonyConfig, parse_phone_number
    from rspp.spec import SpecInvalid, parse_spec_text

    default: str | None = None
    path = spec or DEFAULT_SPEC
    if numbers and path.exists():
        try:
            default = parse_spec_text(path.read_text(), str(path)).name
        except SpecInvalid:
            default = None
    table = {}
    for text in numbers:
        try:
            number, where = parse_phone_number(text, default)
        except ValueError as exc:
            typer.echo(f"error: --phone-number {exc}", err=True)
            raise typer.Exit(2) from None
        table[number] = where
    return TelephonyConfig(auth_token=auth_token or None, numbers=table, public_url=public_url)


def _livekit(url: str | None, key: str | None, secret: str | None) -> LiveKitConfig | None:
    """The LiveKit configuration, or None when no LiveKit URL is given."""
    from rspp.transports import LiveKitConfig, livekit_available

    if not url:
        return None
    if not key or not secret:
        typer.echo("error: --livekit-url needs --livekit-key and --livekit-secret (or "
                   "LIVEKIT_API_KEY / LIVEKIT_API_SECRET)", err=True)
        raise typer.Exit(2)
    if not livekit_available():
        typer.echo("error: --livekit-url needs the LiveKit SDKs: pip install 'rspp[livekit]'",
                   err=True)
        raise typer.Exit(2)
    return LiveKitConfig(url=url, api_key=key, api_secret=secret)


def _transport_routes(telephony: TelephonyConfig, ice: tuple[IceServer, ...] = (), *,
                      embedded: bool = True, timeline_dir: Path | None = None,
                      livekit: LiveKitConfig | None = None,
                      disconnect: tuple[float, float] = (2.0, 30.0),
                      media_skew_ms: float = 200.0) -> TransportRoutes:
    """The live-session endpoints over the runtime's governed sessions (one session hub:
    one live connection per session, whichever transport carries it).

    WebSocket ``/v1/sessions/{id}/ws``; WebRTC ``/v1/sessions/{id}/webrtc``; phone calls:
    the carrier voice webhook and the media-streams endpoint
    ``/v1/telephony/twilio/stream``; with LiveKit configured,
    ``/v1/livekit/sessions/{id}/join``; the browser page at ``/`` (session tokens for
    loopback clients when embedded). ``disconnect``: (stall timeout, resume window) of a
    live session whose client dropped; ``media_skew_ms``: the bound of ingress audio's
    media-to-runtime mapping error (NF-018).
    """
    from rspp.server import GovernedFactory, livekit_routes, telephony_routes
    from rspp.transports import (
        LiveOptions,
        SessionHub,
        WebRTCOptions,
        twilio_stream_route,
        webrtc_available,
        webrtc_route,
        websocket_route,
    )
    from rspp.web import WebOptions, web_routes

    def routes(sessions: GovernedSessions) -> list[BaseRoute]:
        factory = GovernedFactory(sessions, LiveOptions(stall_timeout_s=disconnect[0],
                                                        resume_window_s=disconnect[1],
                                                        late_after_ms=media_skew_ms))
        hub = SessionHub(factory)
        client = sessions.link.client
        web = WebOptions(route=client.route if embedded else None,
                         pipelines=client.list_pipelines if embedded else None,
                         webrtc=webrtc_available(), timeline_dir=timeline_dir)
        rooms = (livekit_routes(sessions, hub, factory.verify, livekit)
                 if livekit is not None else [])
        return [websocket_route(hub, factory.verify), twilio_stream_route(hub, factory.verify),
                webrtc_route(hub, factory.verify, options=WebRTCOptions(ice_servers=ice)),
                *telephony_routes(sessions, telephony), *rooms, *web_routes(web)]

    return routes


def register(app: typer.Typer) -> None:
    """Add ``rspp serve`` to the root app."""
    app.command("serve")(serve)


def _provider_load(items: list[str], limits: dict[str, int]) -> dict[str, int]:
    """``--max-provider-load TYPE=N`` items; exit 2 naming the option when one is bad."""
    out: dict[str, int] = {}
    for item in items:
        name, _, count = item.partition("=")
        if not name or not count.isdigit() or int(count) < 1:
            typer.echo(f"error: --max-provider-load {item!r}: use TYPE=N with N >= 1, e.g. "
                       "llm=2", err=True)
            raise typer.Exit(2)
        if int(count) > limits.get(name, 0):
            typer.echo(f"error: --max-provider-load {item!r}: needs --pool-limit {name}=M with "
                       f"M >= {count} (the calls in flight are the pool's slots in use)",
                       err=True)
            raise typer.Exit(2)
        out[name] = int(count)
    return out
