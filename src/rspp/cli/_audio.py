"""``rspp say TEXT -o FILE.wav``: synthesise a test utterance with the offline TTS."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import typer

from rspp.cli._errors import guard_commands

_RATES = (8000, 16000, 22050, 24000, 48000)


async def _synthesise(text: str, rate: int, voice: str, wpm: int) -> bytes:
    from rspp.providers.offline import EspeakTTS

    tts = EspeakTTS(sample_rate=rate, voice=voice, words_per_minute=wpm)
    return b"".join([chunk.pcm async for chunk in tts.synthesize(text)])


def say(
    text: str = typer.Argument(..., help="Text to speak."),
    output: Path = typer.Option(..., "--output", "-o", help="WAV file to write (16-bit mono)."),
    rate: int = typer.Option(16000, "--rate", help=f"Sample rate in Hz, one of {list(_RATES)}."),
    voice: str = typer.Option("en-us", "--voice", help="espeak-ng voice name."),
    wpm: int = typer.Option(160, "--wpm", help="Speaking rate in words per minute (80-450)."),
) -> None:
    """Synthesise TEXT with the offline espeak-ng TTS into a 16-bit mono WAV file."""
    from rspp.errors import RSPPError

    if not text.strip():
        typer.echo("error: TEXT is empty; pass the words to speak: rspp say 'hello'", err=True)
        raise typer.Exit(2)
    if rate not in _RATES:
        typer.echo(f"error: --rate {rate}: unsupported; use one of {list(_RATES)}", err=True)
        raise typer.Exit(2)
    if not 80 <= wpm <= 450:
        typer.echo(f"error: --wpm {wpm}: must be between 80 and 450", err=True)
        raise typer.Exit(2)
    if output.suffix.lower() != ".wav":
        typer.echo(f"error: --output {output}: must end in .wav", err=True)
        raise typer.Exit(2)
    if not output.parent.exists():
        typer.echo(f"error: --output {output}: directory {output.parent} does not exist", err=True)
        raise typer.Exit(2)
    try:
        pcm = asyncio.run(_synthesise(text, rate, voice, wpm))
    except RSPPError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    with wave.open(str(output), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)
    seconds = len(pcm) / (2 * rate)
    typer.echo(f"wrote {output} ({seconds:.2f} s, {rate} Hz, mono, 16-bit)")


def register(app: typer.Typer) -> None:
    """Add ``rspp say`` to the root app."""
    app.command("say")(say)
    guard_commands(app)
