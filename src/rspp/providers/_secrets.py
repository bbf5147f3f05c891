"""Secret references and redaction (F-061, F-117, NF-011).

Provider configuration never takes a raw key. It takes a reference,
``env://NAME`` or ``file://PATH``, resolved at the edge into a :class:`Secret`
whose ``repr``/``str`` is redacted. Every resolved value is registered with the
process :class:`Redactor`, which scrubs text (log messages, signal reasons,
error messages) and ships as a :class:`logging.Filter`.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import threading
from pathlib import Path

from rspp.errors import ProviderError
from rspp.providers._outcome import Outcome

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "Redactor",
    "Secret",
    "SecretConfigError",
    "SecretRef",
    "default_redactor",
    "redact",
    "resolve_secret",
]

REDACTED = "[REDACTED]"
_MIN_SECRET_LEN = 4


class SecretConfigError(ProviderError):
    """A secret reference is malformed, unresolvable, or a raw key was given."""

    outcome = Outcome.AUTH_ERROR
    retryable = False


class Redactor:
    """Scrubs every registered secret value out of text (thread safe)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        if len(value) < _MIN_SECRET_LEN:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def contains_secret(self, text: str) -> bool:
        pattern = self._pattern
        return bool(pattern and pattern.search(text))


_DEFAULT = Redactor()


def default_redactor() -> Redactor:
    """The process-wide redactor every resolved :class:`Secret` registers with."""
    return _DEFAULT


def redact(text: str) -> str:
    """Scrub every known secret from ``text``."""
    return _DEFAULT.redact(text)


class Secret:
    """A secret value that never prints itself."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, *, source: str = "inline") -> None:
        self._value = value
        self._source = source
        _DEFAULT.register(value)

    def reveal(self) -> str:
        """The raw value; pass it straight to the wire, never to a log."""
        return self._value

    @property
    def source(self) -> str:
        """Where the value came from (the reference, never the value)."""
        return self._source

    def __repr__(self) -> str:
        return f"Secret({REDACTED}, source={self._source!r})"

    def __str__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(other._value, self._value)

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values cannot be pickled")


class SecretRef:
    """A reference to a secret: ``env://NAME`` or ``file://PATH``.

    Resolution reads the store every time, so a rotated value is picked up by
    the next :meth:`resolve` (new sessions use the rotated key).
    """

    __slots__ = ("field", "kind", "target")

    def __init__(self, ref: str, *, field: str = "api_key") -> None:
        self.field = field
        if not isinstance(ref, str) or not ref:
            raise SecretConfigError(
                f"{field}: expected a secret reference such as 'env://OPENAI_API_KEY' "
                "or 'file:///run/secrets/openai', got an empty value"
            )
        if ref.startswith("env://"):
            self.kind, self.target = "env", ref[len("env://") :]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.target):
                raise SecretConfigError(
                    f"{field}: {ref!r} is not a valid env reference; use env://NAME where "
                    "NAME is an environment variable name"
                )
        elif ref.startswith("file://"):
            self.kind, self.target = "file", ref[len("file://") :]
            if not self.target:
                raise SecretConfigError(
                    f"{field}: file:// reference needs a path, e.g. file:///run/secrets/key"
                )
        else:
            # Never echo the value: it may be the raw key itself.
            _DEFAULT.register(ref)
            raise SecretConfigError(
                f"{field}: raw secret values are refused (value redacted, {len(ref)} characters); "
                "store the key in an environment variable or file and configure "
                f"{field}='env://NAME' or {field}='file:///path/to/key'"
            )

    @property
    def uri(self) -> str:
        return f"{self.kind}://{self.target}"

    def resolve(self) -> Secret:
        """Read the current value from its store."""
        if self.kind == "env":
            value = os.environ.get(self.target)
            if value is None or not value.strip():
                raise SecretConfigError(
                    f"{self.field}: environment variable {self.target!r} referenced by "
                    f"{self.uri!r} is not set; export it before starting RSPP"
                )
        else:
            path = Path(self.target)
            try:
                value = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise SecretConfigError(
                    f"{self.field}: cannot read secret file {self.target!r} ({exc.strerror}); "
                    "check the path and its permissions"
                ) from None
        value = value.strip()
        if not value:
            raise SecretConfigError(f"{self.field}: secret referenced by {self.uri!r} is empty")
        return Secret(value, source=self.uri)

    def __repr__(self) -> str:
        return f"SecretRef({self.uri!r})"


def resolve_secret(ref: str | SecretRef | Secret, *, field: str = "api_key") -> Secret:
    """Resolve a reference (or pass an already-resolved :class:`Secret` through)."""
    if isinstance(ref, Secret):
        return ref
    if isinstance(ref, SecretRef):
        return ref.resolve()
    return SecretRef(ref, field=field).resolve()


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from messages, arguments and tracebacks."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor or _DEFAULT

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = self._redactor.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = self._redactor.redact(text)
            record.exc_info = None
        return True
