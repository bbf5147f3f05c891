"""Conformance profiles and suites for adapters (F-164).

A :class:`Profile` lists the contract categories an adapter of one kind must pass
(:data:`PROFILES`: ``transport``, ``provider``, ``external-node``; any other manifest with
:func:`load_profile`). A suite runs a profile's categories against one subject and returns
:class:`SuiteResults`; :func:`certify` judges results against a profile, pass/fail per
category, rejecting results that miss a mandatory one. ``rspp conformance`` is the
command line: ``profiles``, ``check external-node``, ``check transport``, ``check provider``,
``certify``.
"""

from rspp.conformance._external import check_external_node
from rspp.conformance._phone import check_phone
from rspp.conformance._profile import (
    PROFILE_FORMAT,
    PROFILES,
    Category,
    ConformanceError,
    Profile,
    load_profile,
)
from rspp.conformance._provider import check_provider
from rspp.conformance._report import (
    RESULTS_FORMAT,
    CategoryResult,
    Certification,
    SuiteResults,
    certify,
    load_results,
)
from rspp.conformance._suite import Violation, run_checks
from rspp.conformance._transport import check_websocket
from rspp.conformance._webrtc import check_webrtc

__all__ = [
    "PROFILES",
    "PROFILE_FORMAT",
    "RESULTS_FORMAT",
    "Category",
    "CategoryResult",
    "Certification",
    "ConformanceError",
    "Profile",
    "SuiteResults",
    "Violation",
    "certify",
    "check_external_node",
    "check_phone",
    "check_provider",
    "check_webrtc",
    "check_websocket",
    "load_profile",
    "load_results",
    "run_checks",
]
