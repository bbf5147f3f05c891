"""Outcomes, secret references and redaction (F-055, F-160, F-061, F-117, NF-011)."""

from __future__ import annotations

import logging
import pickle

import pytest

from rspp.errors import ProviderError
from rspp.providers import (
    REDACTED,
    Outcome,
    ProviderCallError,
    RedactingFilter,
    Secret,
    SecretConfigError,
    SecretRef,
    outcome_for_status,
    redact,
    resolve_secret,
)

pytestmark = pytest.mark.unit


def test_every_outcome_has_a_retryability() -> None:
    retryable = {o for o in Outcome if o.retryable}
    assert retryable == {
        Outcome.TIMEOUT,
        Outcome.OVERLOAD,
        Outcome.RATE_LIMITED,
        Outcome.DISCONNECTED,
        Outcome.INTERNAL,
    }
    for outcome in (Outcome.AUTH_ERROR, Outcome.BAD_REQUEST, Outcome.SAFETY_BLOCK):
        assert not outcome.retryable
    assert not Outcome.SUCCESS.is_failure and not Outcome.CANCELLED.is_failure


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (401, Outcome.AUTH_ERROR),
        (403, Outcome.AUTH_ERROR),
        (400, Outcome.BAD_REQUEST),
        (408, Outcome.TIMEOUT),
        (429, Outcome.RATE_LIMITED),
        (500, Outcome.INTERNAL),
        (503, Outcome.OVERLOAD),
        (529, Outcome.OVERLOAD),
        (200, Outcome.SUCCESS),
    ],
)
def test_http_status_mapping(status: int, outcome: Outcome) -> None:
    assert outcome_for_status(status) is outcome


def test_provider_call_error_is_a_provider_error_with_outcome() -> None:
    err = ProviderCallError("slow down", outcome=Outcome.RATE_LIMITED, provider="p", code="429")
    assert isinstance(err, ProviderError)
    assert err.retryable and err.outcome is Outcome.RATE_LIMITED
    assert "rate_limited" in str(err) and "429" in str(err)


def test_raw_key_is_refused_without_echoing_it() -> None:
    raw = "sk-live-abcdef0123456789"
    with pytest.raises(SecretConfigError) as info:
        SecretRef(raw, field="providers.llm.api_key")
    message = str(info.value)
    assert raw not in message
    assert "providers.llm.api_key" in message and "env://" in message
    assert not info.value.retryable


def test_env_and_file_references_resolve_and_rotate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    monkeypatch.setenv("RSPP_TEST_KEY", "first-secret-value")
    ref = SecretRef("env://RSPP_TEST_KEY")
    assert ref.resolve().reveal() == "first-secret-value"
    monkeypatch.setenv("RSPP_TEST_KEY", "rotated-secret-value")
    assert ref.resolve().reveal() == "rotated-secret-value"  # new sessions see the rotation
    path = tmp_path / "key"  # type: ignore[operator]
    path.write_text("file-secret-value\n")
    assert resolve_secret(f"file://{path}").reveal() == "file-secret-value"


@pytest.mark.parametrize(
    ("ref", "needle"),
    [
        ("env://MISSING_RSPP_VAR_XYZ", "is not set"),
        ("env://bad-name", "not a valid env reference"),
        ("file:///nonexistent/rspp/key", "cannot read secret file"),
        ("", "expected a secret reference"),
    ],
)
def test_bad_references_name_the_problem(ref: str, needle: str) -> None:
    with pytest.raises(SecretConfigError, match=needle):
        resolve_secret(ref)


def test_secret_never_prints_itself() -> None:
    secret = Secret("super-secret-token-42", source="env://X")
    for text in (repr(secret), str(secret), f"{secret}", repr([secret]), repr({"k": secret})):
        assert "super-secret-token-42" not in text
    assert REDACTED in str(secret)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert redact("key=super-secret-token-42;") == f"key={REDACTED};"


def test_logging_filter_redacts_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = Secret("tok-9f8e7d6c5b4a")
    logger = logging.getLogger("rspp.test.redaction")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.DEBUG, logger="rspp.test.redaction"):
            logger.debug("calling with key %s", secret.reveal())
            try:
                raise RuntimeError(f"auth failed for {secret.reveal()}")
            except RuntimeError:
                logger.exception("provider failed")
    finally:
        logger.filters.clear()
    text = caplog.text + "".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "tok-9f8e7d6c5b4a" not in text
    assert REDACTED in text
