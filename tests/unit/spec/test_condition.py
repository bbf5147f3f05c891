"""Safe condition language for conditional edges (F-018): whitelist, never eval."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspp.spec import Condition, ConditionError, compile_condition

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("expr", "attrs", "expected"),
    [
        ("confidence < 0.5", {"confidence": 0.2}, True),
        ("confidence < 0.5", {"confidence": 0.7}, False),
        ("lang in ('en', 'de')", {"lang": "de"}, True),
        ("lang not in ['en']", {"lang": "en"}, False),
        ("not is_final", {"is_final": False}, True),
        ("sentiment == 'angry' or priority >= 2", {"sentiment": "calm", "priority": 3}, True),
        ("0.2 < confidence <= 0.8", {"confidence": 0.8}, True),
        ("meta.speaker.role == 'agent'", {"meta": {"speaker": {"role": "agent"}}}, True),
        ("meta.speaker.role == 'agent'", {"meta": "flat"}, False),
        ("missing is None", {}, True),
        ("confidence < 0.5", {}, False),  # None < float is a type mismatch -> false
        ("temperature > -1", {"temperature": 0}, True),
    ],
)
def test_evaluates(expr: str, attrs: dict[str, object], expected: bool) -> None:
    assert compile_condition(expr).evaluate(attrs) is expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("__import__('os').system('true')", "Call"),
        ("open('/etc/passwd')", "Call"),
        ("x[0] == 1", "Subscript"),
        ("a + 1 > 2", "BinOp"),
        ("lambda: 1", "Lambda"),
        ("x.__class__ == 1", "'_'"),
        ("[y for y in z]", "ListComp"),
        ("a if b else c", "IfExp"),
        ("", "empty"),
        ("a ==", "syntax error"),
        ("(yield)", "Yield"),
    ],
)
def test_rejects_everything_outside_the_whitelist(expr: str, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(expr)
    assert fragment in str(info.value)
    assert info.value.expression == expr


def test_reports_names_and_equality() -> None:
    cond = compile_condition("lang == 'en' and meta.score > 1")
    assert cond.names == ("lang", "meta.score")
    assert cond == compile_condition("lang == 'en' and meta.score > 1")
    assert isinstance(cond, Condition) and "lang" in repr(cond)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["confidence", "lang", "x"]),
                       st.one_of(st.none(), st.floats(allow_nan=False), st.text(max_size=3),
                                 st.integers()), max_size=3))
def test_never_raises_on_any_attributes(attrs: dict[str, object]) -> None:
    cond = compile_condition("confidence < 0.5 and lang in ('en', 'de') or x == 1")
    assert cond.evaluate(attrs) in (True, False)
