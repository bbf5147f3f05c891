"""``rspp talk``: stream a WAV (or type text) to a running server as a live client; print
what comes back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import typer

_RATES = (16000, 24000, 48000)


def _parse_barge(value: str | None) -> tuple[Path, float] | None:
    if value is None:
        return None
    path, sep, at = value.rpartition("@")
    try:
        seconds = float(at) if sep else -1.0
    except ValueError:
        seconds = -1.0
    if not sep or not path or seconds < 0:
        raise typer.BadParameter(f"{value!r}: use IN2.wav@SECONDS (seconds after the reply "
                                 "starts playing)", param_hint="--barge-in")
    return Path(path), seconds


def _pcm(path: Path, option: str) -> tuple[bytes, int]:
    from rspp.errors import RSPPError
    from rspp.transports import read_wav

    try:
        pcm, rate = read_wav(path)
    except RSPPError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    if rate not in _RATES:
        from rspp.providers.offline import resample_pcm

        pcm, rate = resample_pcm(pcm, rate, 16000), 16000
    return pcm, rate


def talk(
    input: Path | None = typer.Option(None, "--input", help="WAV to speak (16-bit mono)."),
    text: list[str] | None = typer.Option(None, "--text", help="Type TEXT instead of speaking "
                                          "(repeat for more turns; pipelines with an "
                                          "`input.text` edge)."),
    server: str | None = typer.Option(None, "--server", help="Runtime URL: http(s)://HOST:PORT "
                                      "(routes through its control plane) or "
                                      "ws://HOST:PORT/v1/sessions/ID/ws (direct)."),
    route_via: str | None = typer.Option(None, "--route-via", help="Control plane URL that "
                                         "routes the session to a runtime."),
    tenant: str = typer.Option("local", "--tenant", help="Tenant id of the session route."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="RSPP_API_KEY",
                                       help="Control plane API key (env RSPP_API_KEY)."),
    pipeline: str = typer.Option("voice-assistant", "--pipeline", help="Pipeline name to route."),
    token: str | None = typer.Option(None, "--token", help="Session token (direct URL)."),
    output: Path | None = typer.Option(None, "--output", help="Write the reply audio here."),
    barge_in: str | None = typer.Option(None, "--barge-in", help="IN2.wav@SECONDS: speak IN2 "
                                        "SECONDS after the reply starts playing."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per server event."),
    msgpack_: bool = typer.Option(False, "--msgpack", help="Use the MessagePack subprotocol."),
    compress: bool = typer.Option(False, "--compress", help="Offer permessage-deflate (a "
                                  "runtime served with --ws-compression events|all takes it)."),
) -> None:
    """Talk to a running RSPP server: transcripts and replies as they arrive, reply audio out.

    Speak a WAV (``--input``) or type (``--text``, one turn each).

    Exits 1 when the session is refused (bad token, no route, bad input) or fails.
    """
    from rspp.client import (
        LiveClient,
        SessionRefusedError,
        TalkOptions,
        direct_target,
        latency_table,
        route_session,
    )
    from rspp.transports import (
        AudioOut,
        ErrorEvent,
        Ready,
        ReplyText,
        ServerEvent,
        Transcript,
        TurnEvent,
        write_wav,
    )

    if (server is None) == (route_via is None):
        raise typer.BadParameter("pass exactly one of --server URL or --route-via CP_URL",
                                 param_hint="--server")
    texts = tuple(text or ())
    if (input is None) == (not texts):
        raise typer.BadParameter("pass --input WAV (speak) or --text TEXT (type), not both",
                                 param_hint="--input")
    if any(not t.strip() or len(t) > 4000 for t in texts):
        raise typer.BadParameter("each --text must be 1-4000 characters", param_hint="--text")
    if texts and barge_in is not None:
        raise typer.BadParameter("--barge-in speaks over a spoken reply: use it with --input",
                                 param_hint="--barge-in")
    pcm, rate = _pcm(input, "--input") if input is not None else (b"", 16000)
    barge = _parse_barge(barge_in)
    barge_pcm = None
    if barge is not None:
        from rspp.providers.offline import resample_pcm

        bpcm, brate = _pcm(barge[0], "--barge-in")
        barge_pcm = resample_pcm(bpcm, brate, rate)

    compressed = ""

    def show(ev: ServerEvent) -> None:
        if isinstance(ev, AudioOut):
            return  # reply audio goes to --output, not to the terminal
        if as_json:
            typer.echo(msgspec.json.encode(ev).decode())
        elif isinstance(ev, Ready):
            typer.echo(f"connected: session {ev.session_id} ({ev.output_sample_rate} Hz reply"
                       f"{compressed})")
        elif isinstance(ev, Transcript) and ev.final:
            typer.echo(f"you: {ev.text}")
        elif isinstance(ev, ReplyText) and ev.final:  # the whole reply (not its deltas)
            typer.echo(f"assistant: {ev.text}")
        elif isinstance(ev, TurnEvent) and ev.state == "abort":
            typer.echo(f"[turn {ev.turn_id} aborted: {ev.reason}]")
        elif isinstance(ev, ErrorEvent):
            typer.echo(f"error: {ev.field or ev.code}: {ev.message}", err=True)

    async def run() -> int:
        from rspp.client import talk as talk_session

        nonlocal compressed

        try:
            if route_via is not None or (server is not None and server.startswith("http")):
                base = route_via or server or ""
                target = await route_session(base, tenant_id=tenant, api_key=api_key,
                                             pipeline_name=pipeline)
            else:
                target = direct_target(server or "", token)
            client = await LiveClient.connect(target.url, token=target.token, sample_rate=rate,
                                              msgpack=msgpack_, client_name="rspp-talk",
                                              compression=compress)
        except SessionRefusedError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 1
        if client.compressed:
            compressed = ", permessage-deflate"
        show(client.ready)
        async with client:
            result = await talk_session(client, pcm, TalkOptions(
                barge_in=barge_pcm, barge_in_after_s=barge[1] if barge else 0.0, texts=texts),
                on_event=show)
        if output is not None:
            write_wav(output, bytes(result.audio), client.ready.output_sample_rate)
        if not as_json:
            for t in result.turns.values():
                typer.echo(f"turn {t.turn_id}: {t.terminal or 'open'}"
                           + (f" ({t.reason})" if t.reason else "")
                           + (" [cleared]" if t.cleared else ""))
            if result.turns:
                typer.echo("")
                for line in latency_table(result):
                    typer.echo(line)
            if output is not None:
                secs = len(result.audio) / 2 / client.ready.output_sample_rate
                typer.echo(f"wrote {output} ({secs:.2f} s of reply audio)")
        if not result.ok:
            typer.echo(f"error: session ended with {result.close_code}: {result.close_reason}",
                       err=True)
            return 1
        # input the session refused (e.g. typed text for a pipeline without `input.text`)
        return 1 if any(isinstance(e, ErrorEvent) for e in result.events) else 0

    code = asyncio.run(run())
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Attach ``rspp talk`` to the root app."""
    app.command("talk")(talk)
