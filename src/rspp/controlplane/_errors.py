"""Control-plane errors: each carries an HTTP status, a stable code and the offending field.

Sits under :class:`rspp.errors.ControlPlaneError`::

    ControlPlaneError
    └── CPError                 code + field + HTTP status
        ├── NotFound            404 not_found
        ├── Conflict            409 conflict (immutability, lease held, CAS lost)
        │   ├── VersionSkew     409 version_skew (runtime release/schema outside the window)
        │   └── ResidencyViolation  409 residency_violation (runtime outside the tenant's regions)
        ├── MalformedBody       400 malformed (body is not JSON / not UTF-8)
        ├── InvalidRequest      422 invalid (bad field value; message says how to fix)
        ├── BodyTooLarge        413 too_large (body or document over its size limit)
        ├── Unauthorized        401 unauthorized (missing/unknown API key)
        ├── Forbidden           403 forbidden (role lacks permission)
        ├── TokenInvalid        401 token_invalid (tampered, expired, wrong key)
        └── Unavailable         503 unavailable (server unreachable)
            └── NoCapacity      409 no_capacity (no healthy runtime with room)
                └── ResidencyUnplaceable  409 residency_no_runtime (none inside the regions)
"""

from __future__ import annotations

from rspp.errors import ControlPlaneError


class CPError(ControlPlaneError):
    """A control-plane request failed with a stable ``code`` naming ``field``."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class NotFound(CPError):
    status = 404
    code = "not_found"


class Conflict(CPError):
    status = 409
    code = "conflict"


class VersionSkew(Conflict):
    code = "version_skew"


class InvalidRequest(CPError):
    status = 422
    code = "invalid"


class MalformedBody(CPError):
    status = 400
    code = "malformed"


class BodyTooLarge(CPError):
    status = 413
    code = "too_large"


class Unauthorized(CPError):
    status = 401
    code = "unauthorized"


class Forbidden(CPError):
    status = 403
    code = "forbidden"


class TokenInvalid(CPError):
    status = 401
    code = "token_invalid"


class TokenKeyUnknown(TokenInvalid):
    """The token names a signing key the verifier has not fetched (refetch, then retry)."""

    code = "token_key_unknown"


class Unavailable(CPError):
    status = 503
    code = "unavailable"


class NoCapacity(Unavailable):
    """No healthy runtime has room: a state of the fleet, answered 409 (not a server error)."""

    status = 409
    code = "no_capacity"


class ResidencyViolation(Conflict):
    """A move or start of a session onto a runtime outside its tenant's regions (F-168)."""

    code = "residency_violation"


class ResidencyUnplaceable(NoCapacity):
    """No healthy runtime with room inside the tenant's regions (F-168); nothing is placed
    outside them."""

    code = "residency_no_runtime"


ERRORS_BY_CODE: dict[str, type[CPError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        Conflict,
        VersionSkew,
        InvalidRequest,
        MalformedBody,
        BodyTooLarge,
        Unauthorized,
        Forbidden,
        TokenInvalid,
        TokenKeyUnknown,
        Unavailable,
        NoCapacity,
        ResidencyViolation,
        ResidencyUnplaceable,
    )
}
