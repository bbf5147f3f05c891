"""``rspp conformance``: conformance profiles, suites and certification (F-164).

``rspp conformance profiles`` lists the built-in profiles and their categories;
``rspp conformance check external-node MANIFEST`` and ``check transport URL`` run a
suite against a subject (ours or a third party's) and certify the results against the
profile: one line per category (PASS/FAIL/MISSING), exit 1 unless certified;
``rspp conformance certify RESULTS`` judges saved results (``--out``) against a profile.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rspp.cli._errors import guard_commands

if TYPE_CHECKING:
    from rspp.conformance import Profile, SuiteResults

conformance_app = typer.Typer(
    name="conformance", no_args_is_help=True,
    help="Conformance profiles: run an adapter's contract suite and certify the results.")
check_app = typer.Typer(name="check", no_args_is_help=True,
                        help="Run a conformance suite against one adapter.")
conformance_app.add_typer(check_app)

_PROFILE_HELP = "Built-in profile name or a profile manifest (JSON); default: the target's."
_SKIP_HELP = "Leave CATEGORY out of the run (its results then miss it: certification rejects " \
             "a missing mandatory category)."


def _profile(ref: str | None, default: str) -> Profile:
    from rspp.conformance import load_profile

    return load_profile(ref or default)


def _verdict(profile: Profile, results: SuiteResults, out: Path | None, as_json: bool) -> None:
    """Certify ``results``, print the verdict (one line per category), exit 1 if rejected."""
    from rspp.conformance import certify

    if out is not None:
        out.write_text(results.to_json())
    cert = certify(profile, results)
    if as_json:
        typer.echo(json.dumps({"certification": cert.to_dict(),
                               "results": json.loads(results.to_json())}))
    else:
        for line in cert.lines():
            typer.echo(line)
    if not cert.certified:
        raise typer.Exit(1)


@conformance_app.command("profiles")
def profiles(as_json: bool = typer.Option(False, "--json", help="Print the manifests.")) -> None:
    """The built-in profiles: target kind and contract categories (mandatory or optional)."""
    import msgspec

    from rspp.conformance import PROFILES

    if as_json:
        typer.echo(json.dumps({"profiles": [msgspec.to_builtins(p) for p in PROFILES.values()]}))
        return
    for p in PROFILES.values():
        typer.echo(f"{p.ref} ({p.target})")
        for c in p.categories:
            typer.echo(f"  {c.name} ({'mandatory' if c.mandatory else 'optional'}): {c.checks}")


@check_app.command("external-node")
def check_external(
    manifest: Path = typer.Argument(..., help="The package's rspp-node.json."),
    profile: str | None = typer.Option(None, "--profile", help=_PROFILE_HELP),
    skip: list[str] = typer.Option([], "--skip", metavar="CATEGORY", help=_SKIP_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Save the results (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print certification and results."),
) -> None:
    """Run an external node package's program against the ``rspp-external/1`` boundary."""
    from rspp.conformance import check_external_node

    prof = _profile(profile, "external-node")
    results = check_external_node(manifest, prof, tuple(skip))
    _verdict(prof, results, out, as_json)


@check_app.command("transport")
def check_transport(
    url: str = typer.Argument(..., help="The server's base URL."),
    transport: str = typer.Option("websocket", "--transport",
                                  help="The adapter to check: websocket, webrtc or phone."),
    tenant: str | None = typer.Option(None, "--tenant", help="websocket/webrtc: the tenant "
                                      "the session is routed for."),
    pipeline: str | None = typer.Option(None, "--pipeline", help="websocket/webrtc: a served "
                                        "voice pipeline's name."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="RSPP_API_KEY",
                                       help="websocket/webrtc: control-plane API key."),
    twilio_auth_token: str | None = typer.Option(None, "--twilio-auth-token",
                                                 envvar="RSPP_TWILIO_AUTH_TOKEN",
                                                 help="phone: the carrier's auth token."),
    phone_number: str | None = typer.Option(None, "--phone-number",
                                            help="phone: the number to call."),
    profile: str | None = typer.Option(None, "--profile", help=_PROFILE_HELP),
    skip: list[str] = typer.Option([], "--skip", metavar="CATEGORY", help=_SKIP_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Save the results (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print certification and results."),
) -> None:
    """Run the transport suite against a served voice pipeline: auth, handshake, speech in,
    reply out, interrupt (barge-in on a phone), malformed input."""
    from rspp.conformance import check_phone, check_webrtc, check_websocket

    prof = _profile(profile, "transport")
    if transport in ("websocket", "webrtc"):
        if not tenant or not pipeline:
            typer.echo(f"error: --transport {transport} needs --tenant and --pipeline",
                       err=True)
            raise typer.Exit(2)
        suite = check_websocket if transport == "websocket" else check_webrtc
        results = asyncio.run(suite(url, prof, tenant=tenant, pipeline=pipeline,
                                    api_key=api_key, skip=tuple(skip)))
    elif transport == "phone":
        if not twilio_auth_token or not phone_number:
            typer.echo("error: --transport phone needs --twilio-auth-token and "
                       "--phone-number", err=True)
            raise typer.Exit(2)
        results = asyncio.run(check_phone(url, prof, auth_token=twilio_auth_token,
                                          number=phone_number, skip=tuple(skip)))
    else:
        typer.echo(f"error: --transport {transport!r}: use websocket, webrtc or phone (see "
                   "docs/conformance.md)", err=True)
        raise typer.Exit(2)
    _verdict(prof, results, out, as_json)


@check_app.command("provider")
def check_provider_cmd(
    kind: str = typer.Argument(..., help="stt, llm or tts."),
    adapter: str = typer.Argument(..., help="Adapter type, as in a spec's providers section."),
    option: list[str] = typer.Option([], "--option", metavar="KEY=VALUE",
                                     help="An adapter option (JSON value or text)."),
    profile: str | None = typer.Option(None, "--profile", help=_PROFILE_HELP),
    skip: list[str] = typer.Option([], "--skip", metavar="CATEGORY", help=_SKIP_HELP),
    out: Path | None = typer.Option(None, "--out", "-o", help="Save the results (JSON)."),
    as_json: bool = typer.Option(False, "--json", help="Print certification and results."),
) -> None:
    """Run the provider suite against one adapter, built as a spec builds it (base URL and
    API key from the environment, e.g. OPENAI_BASE_URL / OPENAI_API_KEY)."""
    from rspp.conformance import check_provider

    config: dict[str, object] = {"type": adapter}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            typer.echo(f"error: --option {item!r}: expected KEY=VALUE", err=True)
            raise typer.Exit(2)
        try:
            config[key] = json.loads(value)
        except ValueError:
            config[key] = value
    if kind not in ("stt", "llm", "tts"):
        typer.echo(f"error: KIND {kind!r}: use stt, llm or tts", err=True)
        raise typer.Exit(2)
    prof = _profile(profile, "provider")
    results = asyncio.run(check_provider(kind, config, prof, tuple(skip)))
    _verdict(prof, results, out, as_json)


@conformance_app.command("certify")
def certify_cmd(
    results: Path = typer.Argument(..., help="Results saved by `check --out`."),
    profile: str | None = typer.Option(None, "--profile", help=_PROFILE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the certification as JSON."),
) -> None:
    """Certify saved results: pass/fail per category; missing mandatory ones reject."""
    from rspp.conformance import load_results

    res = load_results(results)
    _verdict(_profile(profile, res.profile.rsplit("/v", 1)[0]), res, None, as_json)


def register(app: typer.Typer) -> None:
    """Add ``rspp conformance`` to the root app."""
    app.add_typer(conformance_app)
    guard_commands(conformance_app)
