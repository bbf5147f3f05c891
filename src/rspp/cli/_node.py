"""``rspp node``: external node packages (F-171, NF-036).

``rspp node check SPEC`` lists every external node of a pipeline (package, version,
artifact digest, SBOM, attestation signer) with its compliance, exit 1 when any would be
refused; ``rspp node attest MANIFEST --key KEY.pem`` signs a package's attestation.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rspp.cli._errors import guard_commands

node_app = typer.Typer(name="node", help="External node packages: compliance and signing.",
                       no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@node_app.command("check")
def check(
    spec: Path = typer.Argument(..., help="PipelineSpec whose external nodes are checked."),
    as_json: bool = typer.Option(False, "--json", help="Print the inventory as JSON."),
) -> None:
    """Inventory of the spec's external nodes with each one's compliance findings.

    Every package is checked as ``rspp run``/``serve`` would before executing it (pinned
    digest, SBOM, attestation signed by a key in RSPP_TRUSTED_NODE_KEYS); exit 1 when
    any is non-compliant, 0 when all are (or there are none).
    """
    from rspp.errors import SpecError
    from rspp.nodes.external import inventory
    from rspp.spec import load_spec

    if not spec.is_file():
        raise _fail(f"SPEC {spec}: file not found")
    try:
        loaded = load_spec(spec)
    except SpecError as exc:
        raise _fail(f"SPEC {spec}: {exc}") from None
    reports = inventory([(n.id, n.type) for n in loaded.nodes],
                        (Path.cwd(), spec.resolve().parent))
    rows = [{"node": r.node_id, "type": r.type_name, "package": r.name, "version": r.version,
             "artifact_sha256": r.artifact_sha256,
             "sbom": (f"{r.onboarded.sbom_format} ({r.onboarded.components} components)"
                      if r.onboarded else None),
             "signer": r.onboarded.key_id if r.onboarded else None,
             "compliant": r.compliant, "finding": r.finding} for r in reports]
    if as_json:
        typer.echo(json.dumps({"external_nodes": rows,
                               "compliant": all(r.compliant for r in reports)}))
    else:
        for row in rows:
            state = "compliant" if row["compliant"] else f"REFUSED: {row['finding']}"
            typer.echo(f"{row['node']}: {row['package'] or row['type']} "
                       f"{row['version'] or ''} sha256 {row['artifact_sha256'] or '-'} "
                       f"sbom {row['sbom'] or '-'} signer {row['signer'] or '-'}: {state}")
        typer.echo(f"{len(rows)} external node(s), "
                   f"{sum(not r.compliant for r in reports)} non-compliant")
    if not all(r.compliant for r in reports):
        raise typer.Exit(1)


@node_app.command("attest")
def attest_cmd(
    manifest: Path = typer.Argument(..., help="The package's rspp-node.json."),
    key: Path = typer.Option(..., "--key", help="Ed25519 private key (PEM, unencrypted)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where to write the envelope "
                                    "(default: the manifest's `attestation` path)."),
) -> None:
    """Sign a DSSE attestation binding the package's artifact and SBOM digests."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from rspp.nodes.external import ExternalNodeRefused, attest, load_manifest

    try:
        man = load_manifest(manifest)
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ExternalNodeRefused, OSError, ValueError, TypeError) as exc:
        raise _fail(str(exc)) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise _fail(f"--key {key}: not an Ed25519 private key")
    target = out or (manifest.parent / man.attestation if man.attestation else None)
    if target is None:
        raise _fail(f"{manifest}: manifest field `attestation` is missing; name the file or "
                    "pass --out")
    try:
        envelope = attest(man, manifest.parent.resolve(), private)
    except (ExternalNodeRefused, OSError) as exc:
        raise _fail(str(exc)) from None
    target.write_text(json.dumps(envelope, indent=2))
    typer.echo(f"wrote {target}")


def register(app: typer.Typer) -> None:
    """Add ``rspp node`` to the root app."""
    app.add_typer(node_app)
    guard_commands(node_app)
