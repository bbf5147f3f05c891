"""The RSPP error tree.

Every error RSPP raises on purpose derives from :class:`RSPPError`::

    RSPPError
    ├── ContractError            a wire record breaks the contract schema
    ├── SpecError                a PipelineSpec/profile is invalid (carries issues)
    ├── RuntimeKernelError       the kernel refused an operation
    │   ├── LifecycleError       an illegal session/turn transition was requested
    │   └── AuthorityError       a stale or revoked lease epoch
    ├── ProviderError            a provider call failed (carries outcome, retryable)
    ├── TransportError           a transport could not carry a frame or a connection
    └── ControlPlaneError        a control-plane request failed (carries code, field)

Subpackages may define narrower subclasses; each documents where it sits here.
Every user-facing error names the field/path/value and says how to fix it.
"""

from __future__ import annotations


class RSPPError(Exception):
    """Root of every error RSPP raises on purpose."""


class ContractError(RSPPError):
    """A wire record breaks the contract schema."""


class SpecError(RSPPError):
    """A PipelineSpec or ExecutionProfile is invalid."""


class RuntimeKernelError(RSPPError):
    """The kernel refused an operation."""


class LifecycleError(RuntimeKernelError):
    """An illegal session or turn transition was requested."""


class AuthorityError(RuntimeKernelError):
    """An operation carried a stale or revoked lease epoch."""


class ProviderError(RSPPError):
    """A provider call failed."""


class TransportError(RSPPError):
    """A transport could not carry a frame or keep a connection."""


class ControlPlaneError(RSPPError):
    """A control-plane request failed."""
