"""``tablechain ca ...``: create CAs, issue and revoke certificates, list them, export CRLs.

Mounted by the main CLI as a sub-app (``app.add_typer(ca_cli.app, name="ca")``). This is tooling,
not consensus: it reads the wall clock for default validity times.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tablechain.ca.algorithms import to_pem
from tablechain.ca.authority import REVOCATION_REASONS, CertificateAuthority
from tablechain.ca.certificate import ROLES, parse_certificate
from tablechain.errors import TablechainError

__all__ = ["app"]

app = typer.Typer(
    name="ca", help="Certificate authority: init, issue, revoke, list, crl.", no_args_is_help=True
)

_DAY = 86_400

DirArg = Annotated[Path, typer.Argument(help="The CA directory.")]


def _now() -> int:
    return int(time.time())


def _fail(exc: TablechainError) -> typer.Exit:
    typer.echo(f"error: {exc.code}: {exc.message}", err=True)
    return typer.Exit(code=1)


def _serial(text: str) -> int:
    try:
        return int(text.removeprefix("0x"), 16)
    except ValueError:
        raise typer.BadParameter(f"a serial is hexadecimal, got {text!r}") from None


@app.command("init")
def init_command(
    directory: DirArg,
    name: Annotated[str, typer.Option(help="Common name of the CA.")],
    algorithm: Annotated[str, typer.Option(help="p256 or sm2.")] = "p256",
    parent: Annotated[
        Path | None, typer.Option(help="Parent CA directory: makes an intermediate CA.")
    ] = None,
    path_len: Annotated[int | None, typer.Option(help="pathLenConstraint.")] = None,
    organization: Annotated[str | None, typer.Option(help="Organization (O).")] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 3650,
    not_before: Annotated[
        int | None, typer.Option(help="Start of validity, seconds since the epoch (default now).")
    ] = None,
) -> None:
    """Create a root CA, or with --parent an intermediate CA, in DIRECTORY."""
    start = _now() if not_before is None else not_before
    try:
        if parent is None:
            ca = CertificateAuthority.init_root(
                directory,
                name=name,
                algorithm=algorithm,
                organization=organization,
                path_len=path_len,
                not_before=start,
                not_after=start + days * _DAY,
            )
        else:
            ca = CertificateAuthority.init_intermediate(
                directory,
                CertificateAuthority.open(parent),
                name=name,
                algorithm=algorithm,
                organization=organization,
                path_len=path_len,
                not_before=start,
                not_after=start + days * _DAY,
            )
    except TablechainError as exc:
        raise _fail(exc) from None
    cert = ca.certificate
    typer.echo(
        json.dumps(
            {
                "directory": str(directory),
                "subject": cert.subject_text,
                "algorithm": ca.algorithm,
                "fingerprint": cert.fingerprint,
                "key_id": cert.key_id,
                "serial": f"{cert.serial:x}",
            },
            sort_keys=True,
        )
    )


@app.command("issue")
def issue_command(
    directory: DirArg,
    name: Annotated[str, typer.Option(help="Common name of the holder.")],
    public_key: Annotated[str, typer.Option(help="The account's public key, hex.")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "user",
    scheme: Annotated[str, typer.Option(help="secp256k1, sm2 or ed25519.")] = "secp256k1",
    organization: Annotated[str | None, typer.Option(help="Organization (O).")] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 365,
    not_before: Annotated[
        int | None, typer.Option(help="Start of validity, seconds since the epoch (default now).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the chain (PEM) here instead of to stdout.")
    ] = None,
) -> None:
    """Issue a leaf certificate for an account key; prints the chain (leaf, intermediates)."""
    start = _now() if not_before is None else not_before
    try:
        key = bytes.fromhex(public_key.removeprefix("0x"))
    except ValueError:
        raise typer.BadParameter("--public-key is hexadecimal") from None
    try:
        ca = CertificateAuthority.open(directory)
        leaf = ca.issue(
            name=name,
            role=role,
            public_key=key,
            scheme=scheme,
            organization=organization,
            not_before=start,
            not_after=start + days * _DAY,
        )
    except TablechainError as exc:
        raise _fail(exc) from None
    pem = b"".join(to_pem(der, "CERTIFICATE") for der in ca.chain_for(leaf))
    cert = parse_certificate(leaf)
    summary = {"fingerprint": cert.fingerprint, "serial": f"{cert.serial:x}", "role": cert.role}
    if out is None:
        sys.stdout.write(pem.decode())
        typer.echo(json.dumps(summary, sort_keys=True), err=True)
    else:
        out.write_bytes(pem)
        typer.echo(json.dumps({**summary, "chain": str(out)}, sort_keys=True))


@app.command("revoke")
def revoke_command(
    directory: DirArg,
    serial: Annotated[str, typer.Argument(help="Serial number of the certificate, hex.")],
    reason: Annotated[
        str, typer.Option(help=f"One of {', '.join(REVOCATION_REASONS)}.")
    ] = "unspecified",
    at: Annotated[
        int | None, typer.Option(help="Revocation time, seconds since the epoch (default now).")
    ] = None,
) -> None:
    """Revoke a certificate; prints the revocation entry the ledger's transaction carries."""
    try:
        entry = CertificateAuthority.open(directory).revoke(
            _serial(serial), at=_now() if at is None else at, reason=reason
        )
    except TablechainError as exc:
        raise _fail(exc) from None
    typer.echo(
        json.dumps(
            {
                "issuer_key_id": entry.issuer_key_id,
                "serial": f"{entry.serial:x}",
                "revoked_at": entry.revoked_at,
                "reason": entry.reason,
            },
            sort_keys=True,
        )
    )


@app.command("list")
def list_command(
    directory: DirArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List every certificate the CA issued, with its revocation status."""
    try:
        records = CertificateAuthority.open(directory).list()
    except TablechainError as exc:
        raise _fail(exc) from None
    for r in records:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "serial": f"{r.serial:x}",
                        "subject": r.subject,
                        "role": r.role,
                        "ca": r.is_ca,
                        "not_before": r.not_before,
                        "not_after": r.not_after,
                        "fingerprint": r.fingerprint,
                        "revoked_at": r.revoked_at,
                        "reason": r.reason,
                    },
                    sort_keys=True,
                )
            )
        else:
            status = "revoked" if r.revoked_at is not None else "valid"
            kind = "ca" if r.is_ca else (r.role or "-")
            typer.echo(f"{r.serial:040x}  {status:7}  {kind:9}  {r.subject}")


@app.command("crl")
def crl_command(
    directory: DirArg,
    out: Annotated[Path, typer.Option(help="Where to write the CRL (PEM).")],
    days: Annotated[int, typer.Option(help="Days until nextUpdate.")] = 7,
) -> None:
    """Export a signed CRL of every revocation so far."""
    now = _now()
    try:
        der = CertificateAuthority.open(directory).crl(
            this_update=now, next_update=now + days * _DAY
        )
    except TablechainError as exc:
        raise _fail(exc) from None
    out.write_bytes(to_pem(der, "X509 CRL"))
    typer.echo(json.dumps({"crl": str(out)}))
