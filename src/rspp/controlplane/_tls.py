"""Mutual TLS between runtimes and the control plane (F-120, an optional deployment mode).

The control plane serves HTTPS with its certificate and, given a client CA, requires
every caller (runtimes, operators' CLIs) to present a certificate that CA signed; a
plaintext or certificate-less connection fails in the handshake. Runtimes and the CLI
present a client certificate and verify the control plane's against a CA bundle.

Certificates rotate without a restart: both sides watch the files' modification
times. The server checks them at each handshake (an SNI callback swaps in a context
built from the new files, so a CA removed from the bundle stops being trusted at
once); the client checks them at most once a second before a request and reloads its
certificate and CA bundle into its context (connections already open keep their
handshake). A half-written pair (certificate and key that do not match yet) keeps the
previous context until the files agree again.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from rspp.controlplane._errors import InvalidRequest

__all__ = [
    "ClientTls",
    "ReloadingClientContext",
    "ReloadingServerContext",
    "ServerTls",
    "unreachable_hint",
]

_LOG = logging.getLogger("rspp.controlplane.tls")


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The control plane's certificate and key, and the CA that signs its clients."""

    cert: Path
    key: Path
    #: None: TLS without client certificates (not mutual)
    client_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class ClientTls:
    """A caller's certificate and key, and the CA bundle that signs the control plane's."""

    cert: Path | None = None
    key: Path | None = None
    #: None: the system's trust store
    ca: Path | None = None


def _stamp(paths: tuple[Path | None, ...]) -> tuple[int, ...]:
    out = []
    for path in paths:
        if path is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            out.append(-1)
            continue
        out.extend((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _readable(path: Path, field: str) -> None:
    if not path.is_file():
        raise InvalidRequest(f"{path}: file not found", field=field)


def _build_server(tls: ServerTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if tls.client_ca is not None:
        ctx.load_verify_locations(cafile=str(tls.client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class ReloadingServerContext:
    """The server's SSL context; every handshake uses the files as they are now."""

    def __init__(self, tls: ServerTls) -> None:
        _readable(tls.cert, "tls_cert")
        _readable(tls.key, "tls_key")
        if tls.client_ca is not None:
            _readable(tls.client_ca, "client_ca")
        self.tls = tls
        try:
            self._current = _build_server(tls)
            #: the context handed to the server socket (its callback picks the current one)
            self.context = _build_server(tls)
        except (ssl.SSLError, OSError) as exc:
            raise InvalidRequest(f"cannot load the TLS certificate/key/CA: {exc}",
                                 field="tls_cert") from None
        self._stamp = _stamp((tls.cert, tls.key, tls.client_ca))
        self.context.sni_callback = self._pick
        self.reloads = 0

    def _pick(self, sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
              ctx: ssl.SSLContext) -> None:
        self.refresh()
        sslobj.context = self._current

    def refresh(self) -> bool:
        """Rebuild the context if a file changed; True when it did."""
        stamp = _stamp((self.tls.cert, self.tls.key, self.tls.client_ca))
        if stamp == self._stamp:
            return False
        try:
            fresh = _build_server(self.tls)
        except (ssl.SSLError, OSError) as exc:  # a pair half-written: keep the old one
            _LOG.warning("TLS files changed but do not load yet (%s); keeping the previous "
                         "certificate", exc)
            return False
        self._current, self._stamp = fresh, stamp
        self.reloads += 1
        _LOG.info("reloaded the TLS certificate %s (reload %d)", self.tls.cert, self.reloads)
        return True


class ReloadingClientContext:
    """A caller's SSL context, reloaded in place when its files change."""

    def __init__(self, tls: ClientTls, *, check_interval_s: float = 1.0) -> None:
        if (tls.cert is None) != (tls.key is None):
            raise InvalidRequest("a client certificate needs its key and the key its "
                                 "certificate: pass both --tls-client-cert and "
                                 "--tls-client-key", field="tls_client_key"
                                 if tls.cert is not None else "tls_client_cert")
        for path, field in ((tls.cert, "tls_client_cert"), (tls.key, "tls_client_key"),
                            (tls.ca, "tls_ca")):
            if path is not None:
                _readable(path, field)
        self.tls = tls
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._interval = check_interval_s
        self._checked = time.monotonic()
        try:
            self._load()
        except (ssl.SSLError, OSError) as exc:
            raise InvalidRequest(f"cannot load the TLS client certificate/key/CA: {exc}",
                                 field="tls_client_cert") from None
        self._stamp = self._files_stamp()
        self.reloads = 0

    def _files_stamp(self) -> tuple[int, ...]:
        return _stamp((self.tls.cert, self.tls.key, self.tls.ca))

    def _load(self) -> None:
        if self.tls.ca is not None:
            self.context.load_verify_locations(cafile=str(self.tls.ca))
        if self.tls.cert is not None and self.tls.key is not None:
            self.context.load_cert_chain(str(self.tls.cert), str(self.tls.key))

    def refresh(self) -> bool:
        """Reload the files if they changed (checked at most once per interval)."""
        now = time.monotonic()
        if now - self._checked < self._interval:
            return False
        self._checked = now
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return False
        try:
            self._load()
        except (ssl.SSLError, OSError) as exc:
            _LOG.warning("TLS client files changed but do not load yet (%s)", exc)
            return False
        self._stamp = stamp
        self.reloads += 1
        _LOG.info("reloaded the TLS client certificate %s (reload %d)", self.tls.cert,
                  self.reloads)
        return True


def unreachable_hint(url: str, error: str) -> str:
    """What to check when the control plane at ``url`` could not be reached (``error``:
    the transport error's text)."""
    hint = "check --server / RSPP_SERVER and that `rspp cp serve` is running"
    if url.startswith("https://") or "SSL" in error or "certificate" in error.lower():
        hint += ("; over TLS: check the client certificate (--tls-client-cert/"
                 "--tls-client-key or RSPP_TLS_CLIENT_CERT/RSPP_TLS_CLIENT_KEY) and the CA "
                 "bundle (--tls-ca, RSPP_TLS_CA): a control plane with --client-ca closes "
                 "every connection without a certificate its CA signed")
    return hint
