"""Where a runtime stores a session's artifacts under its tenant's residency (F-168)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.controlplane import TenantPlacement
from rspp.server._artifacts import ArtifactRoots, parse_artifact_dir
from rspp.server._cplink import SessionRefused

pytestmark = pytest.mark.unit

ROOTS = ArtifactRoots(home="eu", roots={"eu": Path("/data/eu"), "us": Path("/data/us")})


def _policy(*regions: str) -> TenantPlacement:
    return TenantPlacement(tenant_id="acme", regions=list(regions), jurisdiction="X")


def test_the_home_root_first_then_the_first_root_the_policy_allows() -> None:
    assert ROOTS.site_for("s", "acme", None).directory == Path("/data/eu")  # type: ignore[union-attr]
    assert ROOTS.site_for("s", "acme", _policy("eu")).region == "eu"  # type: ignore[union-attr]
    us_only = ROOTS.site_for("s", "acme", _policy("us", "ap"))
    assert us_only is not None and (us_only.region, us_only.directory) == ("us",
                                                                           Path("/data/us"))
    assert ROOTS.regions == ["eu", "us"]


def test_a_session_no_root_suits_is_refused_and_nothing_recorded_without_roots() -> None:
    with pytest.raises(SessionRefused) as refused:
        ROOTS.site_for("s1", "acme", _policy("ap"))
    assert refused.value.code == "residency_violation"
    assert "ap" in refused.value.message and "eu, us" in refused.value.message
    bare = ArtifactRoots(home="eu", roots={})
    assert bare.site_for("s", "acme", _policy("ap")) is None and bare.regions is None


def test_artifact_dir_values_are_parsed_or_refused_naming_the_form() -> None:
    assert parse_artifact_dir("eu=/mnt/eu") == ("eu", Path("/mnt/eu"))
    for bad in ("eu", "=/x", "eu="):
        with pytest.raises(ValueError, match="REGION=DIR"):
            parse_artifact_dir(bad)
