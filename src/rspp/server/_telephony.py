"""Phone calls into ``rspp serve``: the carrier voice webhook and the media-streams endpoint.

``POST /v1/telephony/twilio/voice`` is where a phone number's "a call comes in"
webhook points. Deny by default: without a configured auth token every request is
refused; with one, the ``X-Twilio-Signature`` header (HMAC-SHA1 of the public URL
and the sorted form fields, keyed by the auth token) must verify before anything
else happens. The called number (``To``) chooses the tenant and pipeline by
configuration; the call is routed through the control plane (admission, version,
placement, lease, signed token) and the answer is TwiML that connects the call's
audio to the routed runtime's ``/v1/telephony/twilio/stream`` with the session
token and id as ``<Parameter>`` elements (the stream's ``start`` carries them back).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import quoteattr

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from rspp.controlplane import CPError
from rspp.server._sessions import GovernedSessions
from rspp.transports import TWILIO_STREAM_PATH, read_body_within

__all__ = ["PhoneNumber", "TelephonyConfig", "parse_phone_number", "telephony_routes",
           "twilio_signature"]

_LOG = logging.getLogger("rspp.server.telephony")
VOICE_PATH = "/v1/telephony/twilio/voice"
_MAX_BODY = 16 * 1024


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """Where calls to one number go: the tenant and the pipeline that answers them."""

    tenant_id: str
    pipeline: str


@dataclass(frozen=True, slots=True)
class TelephonyConfig:
    #: the carrier account's auth token; None: the webhook refuses every request
    auth_token: str | None = None
    #: called number (E.164, e.g. ``+15550100``) -> tenant and pipeline
    numbers: Mapping[str, PhoneNumber] = field(default_factory=dict)
    #: the URL the carrier reaches this runtime at (``https://voice.example.com``): the
    #: signature covers it and the stream URL is built from it; None: the request's URL
    public_url: str | None = None


def parse_phone_number(text: str, default_pipeline: str | None) -> tuple[str, PhoneNumber]:
    """``NUMBER=TENANT[/PIPELINE]`` -> (number, where its calls go); ValueError says why."""
    number, sep, rest = text.partition("=")
    number, rest = number.strip(), rest.strip()
    if not sep or not number or not rest:
        raise ValueError(f"{text!r}: expected NUMBER=TENANT[/PIPELINE], e.g. +15550100=acme")
    tenant, _, pipeline = rest.partition("/")
    pipeline = pipeline or (default_pipeline or "")
    if not pipeline:
        raise ValueError(f"{text!r}: name the pipeline (NUMBER=TENANT/PIPELINE)")
    return number, PhoneNumber(tenant_id=tenant, pipeline=pipeline)


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """The carrier's request signature: base64 HMAC-SHA1 of the URL followed by every form
    field name and value, names sorted (a repeated name: its distinct values, sorted)."""
    by_name: dict[str, set[str]] = {}
    for k, v in params:
        by_name.setdefault(k, set()).add(v)
    data = url + "".join(k + v for k in sorted(by_name) for v in sorted(by_name[k]))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _error(status: int, code: str, message: str, field_name: str | None = None) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "field": field_name}},
                        status)


def _public_base(request: Request, config: TelephonyConfig) -> str:
    if config.public_url:
        return config.public_url.rstrip("/")
    u = request.url
    return f"{u.scheme}://{u.netloc}"


def _ws_url(base: str) -> str:
    parts = urlsplit(base)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _twiml(stream_url: str, params: Mapping[str, str]) -> str:
    inner = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>"
                    for k, v in params.items())
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f"<Response><Connect><Stream url={quoteattr(stream_url)}>{inner}</Stream>"
            "</Connect></Response>")


class _VoiceWebhook:
    def __init__(self, sessions: GovernedSessions, config: TelephonyConfig) -> None:
        self.sessions = sessions
        self.config = config

    async def handle(self, request: Request) -> Response:
        cfg = self.config
        if cfg.auth_token is None:
            return _error(403, "telephony_disabled", "no carrier auth token is configured "
                          "(rspp serve --twilio-auth-token); every call is refused")
        signature = request.headers.get("x-twilio-signature")
        if not signature:
            return _error(401, "unauthorized", "missing X-Twilio-Signature", "X-Twilio-Signature")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > _MAX_BODY):
            return _error(413, "too_large", f"body over {_MAX_BODY} bytes", "body")
        body = await read_body_within(request, _MAX_BODY)
        if body is None:
            return _error(413, "too_large", f"body over {_MAX_BODY} bytes", "body")
        try:
            params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            return _error(400, "bad_request", "the body is not form-encoded", "body")
        url = _public_base(request, cfg) + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        expected = twilio_signature(cfg.auth_token, url, params)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return _error(403, "forbidden", "X-Twilio-Signature does not verify (auth token, "
                          "or the public URL the carrier used: --public-url)",
                          "X-Twilio-Signature")
        form = dict(params)
        for name in ("CallSid", "From", "To"):
            if not form.get(name):
                return _error(400, "bad_request", f"form field {name} is required", name)
        return await self._route(request, form)

    async def _route(self, request: Request, form: dict[str, str]) -> Response:
        cfg = self.config
        call_sid, called = form["CallSid"], form["To"]
        number = cfg.numbers.get(called)
        if number is None:
            _LOG.warning("call %s: no configuration for the called number %s", call_sid, called)
            return _error(404, "unknown_number", f"no tenant is configured for {called}", "To")
        link = self.sessions.link
        attrs = {"transport": "twilio", "call_sid": call_sid[:1000], "from": form["From"][:1000],
                 "to": called[:1000]}
        session_id = f"call_{uuid.uuid4().hex}"
        try:
            route: Any = await link.client.route(number.tenant_id, number.pipeline,
                                                 session_id=session_id, attributes=attrs)
        except CPError as exc:
            _LOG.warning("call %s: the control plane refused the route: %s", call_sid, exc)
            status = 503 if exc.code == "unavailable" else 502
            return _error(status, exc.code, f"cannot route the call: {exc.message}", exc.field)
        if route.get("runtime_id") == link.runtime_id:
            base = _ws_url(_public_base(request, cfg))
        else:
            base = _ws_url(str(route["endpoint"]))
        _LOG.info("call %s from %s to %s: session %s on %s", call_sid, form["From"], called,
                  route["session_id"], route["runtime_id"])
        twiml = _twiml(base + TWILIO_STREAM_PATH,
                       {"token": str(route["token"]), "session_id": str(route["session_id"])})
        return Response(twiml, media_type="application/xml")


def telephony_routes(sessions: GovernedSessions, config: TelephonyConfig) -> list[BaseRoute]:
    """The carrier voice webhook (the media-streams endpoint is a transport route)."""
    return [Route(VOICE_PATH, _VoiceWebhook(sessions, config).handle, methods=["POST"],
                  name="telephony_twilio_voice")]
