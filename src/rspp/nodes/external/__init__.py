"""External nodes: spec nodes that run out of process (F-122, F-123, F-124, F-171, NF-036).

``type: external:DIR/rspp-node.json@sha256:DIGEST`` in a PipelineSpec. The package's
manifest (:mod:`._manifest`) names the program, its ports, SBOM and attestation; the
spec pins the artifact's digest. Before anything runs, :func:`onboard` checks provenance,
SBOM and a signed attestation against the keys in ``RSPP_TRUSTED_NODE_KEYS``. Each
session runs the program in a child process behind the ``rspp-external/1`` frame
protocol on its stdin/stdout (the child SDK is :mod:`rspp_external`), started through a
trusted launcher that applies rlimits and, in ``sandbox`` mode, an empty network
namespace and a Landlock filesystem/TCP ruleset.
"""

from rspp.nodes.external._child import ExternalNodeError
from rspp.nodes.external._inventory import (
    EXTERNAL_PREFIX,
    Located,
    PackageReport,
    inventory,
    locate,
)
from rspp.nodes.external._inventory import check as check_external
from rspp.nodes.external._limits import CallLimiter
from rspp.nodes.external._manifest import ExternalNodeRefused, NodeManifest, load_manifest
from rspp.nodes.external._node import EXTERNAL_PARAMS, ExternalNode, external_node_class
from rspp.nodes.external._trust import (
    TRUSTED_KEYS_ENV,
    Onboarded,
    attest,
    key_id,
    onboard,
    sha256_file,
    trusted_keys,
)
from rspp.nodes.external._wire import PROTOCOL, ExternalProtocolError

__all__ = [
    "EXTERNAL_PARAMS",
    "EXTERNAL_PREFIX",
    "PROTOCOL",
    "TRUSTED_KEYS_ENV",
    "CallLimiter",
    "ExternalNode",
    "ExternalNodeError",
    "ExternalNodeRefused",
    "ExternalProtocolError",
    "Located",
    "NodeManifest",
    "Onboarded",
    "PackageReport",
    "attest",
    "check_external",
    "external_node_class",
    "inventory",
    "key_id",
    "load_manifest",
    "locate",
    "onboard",
    "sha256_file",
    "trusted_keys",
]
