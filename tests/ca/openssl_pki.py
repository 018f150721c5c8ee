"""Build test PKIs with the ``openssl`` command line (OpenSSL 3), with explicit dates.

Every certificate is made by ``openssl ca`` (roots with ``-selfsign``) so validity periods are
fixed dates, not the wall clock. SM2 CAs sign with SM2-with-SM3 and the default distinguishing
ID; P-256 CAs with ecdsa-with-SHA256.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tablechain.ca.algorithms import pem_blocks

DISTID = "distid:1234567812345678"

EXTENSIONS = """
[v3_ca]
basicConstraints=critical,CA:TRUE
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[v3_ca_pl0]
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[v3_ca_noflag]
basicConstraints=critical,CA:FALSE
keyUsage=critical,keyCertSign,cRLSign
[v3_ca_no_bc]
keyUsage=critical,keyCertSign,cRLSign
[v3_ca_bad_ku]
basicConstraints=critical,CA:TRUE
keyUsage=critical,digitalSignature
[v3_leaf]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[v3_leaf_bad_ku]
basicConstraints=critical,CA:FALSE
keyUsage=critical,keyAgreement
[v3_leaf_unknown_critical]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
1.3.6.1.4.1.55555.1=critical,ASN1:UTF8String:must-understand
"""

CA_CONFIG = """
[ca]
default_ca = ca_section
[ca_section]
dir = {dir}
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir/issued
policy = policy_any
unique_subject = no
copy_extensions = none
default_crl_days = 30
default_md = default
[policy_any]
commonName = supplied
organizationalUnitName = optional
organizationName = optional
[req]
distinguished_name = dn
[dn]
"""


def openssl(*args: str, cwd: Path | None = None) -> bytes:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("the openssl command line is required")
    out = subprocess.run([exe, *args], capture_output=True, cwd=cwd, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {out.stderr.decode()}")
    return out.stdout


def gen_key(path: Path, algorithm: str) -> Path:
    if algorithm == "sm2":
        openssl("genpkey", "-algorithm", "SM2", "-out", str(path))
    else:
        curve = {"p256": "prime256v1", "secp256k1": "secp256k1"}[algorithm]
        openssl(
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            f"ec_paramgen_curve:{curve}",
            "-out",
            str(path),
        )
    return path


def public_point(key: Path) -> bytes:
    """The uncompressed EC point of a key file (last 65 bytes of its SubjectPublicKeyInfo)."""
    return openssl("pkey", "-in", str(key), "-pubout", "-outform", "DER")[-65:]


def pem_to_der(path: Path) -> bytes:
    (der,) = pem_blocks(path.read_bytes(), "CERTIFICATE")
    return der


@dataclass
class OpenSSLCA:
    """One CA made by openssl: its directory (database, config), key and certificate."""

    dir: Path
    algorithm: str
    key: Path
    cert: Path

    @property
    def der(self) -> bytes:
        return pem_to_der(self.cert)

    def _sign_args(self) -> list[str]:
        if self.algorithm == "sm2":
            return ["-md", "sm3", "-sigopt", DISTID]
        return ["-md", "sha256"]

    def issue(
        self,
        name: str,
        key: Path,
        *,
        extensions: str,
        start: str = "20240101000000Z",
        end: str = "20340101000000Z",
        algorithm_of_key: str = "p256",
    ) -> Path:
        """A certificate for ``key``, subject ``name`` (``/CN=.../OU=...``), signed by this CA."""
        stem = name.strip("/").replace("/", "_").replace("=", "-").replace(" ", "")
        csr = self.dir / f"{stem}.csr"
        req = [
            "req",
            "-new",
            "-key",
            str(key),
            "-subj",
            name,
            "-out",
            str(csr),
            "-config",
            str(self.dir / "ca.cnf"),
        ]
        if algorithm_of_key == "sm2":
            req += ["-sm3", "-sigopt", DISTID]
        openssl(*req)
        out = self.dir / f"{stem}.pem"
        args = [
            "ca",
            "-batch",
            "-config",
            str(self.dir / "ca.cnf"),
            "-cert",
            str(self.cert),
            "-keyfile",
            str(self.key),
            "-in",
            str(csr),
            "-out",
            str(out),
            "-notext",
            "-startdate",
            start,
            "-enddate",
            end,
            "-extfile",
            str(self.dir / "ext.cnf"),
            "-extensions",
            extensions,
            *self._sign_args(),
        ]
        if algorithm_of_key == "sm2":
            args += ["-vfyopt", DISTID]
        openssl(*args)
        return out

    def sub_ca(
        self,
        name: str,
        algorithm: str,
        *,
        extensions: str = "v3_ca",
        start: str = "20200101000000Z",
        end: str = "20400101000000Z",
    ) -> OpenSSLCA:
        stem = name.strip("/").replace("/", "_").replace("=", "-").replace(" ", "")
        child_dir = _ca_dir(self.dir.parent / stem)
        key = gen_key(child_dir / "ca.key", algorithm)
        cert = self.issue(
            name, key, extensions=extensions, start=start, end=end, algorithm_of_key=algorithm
        )
        shutil.copy(cert, child_dir / "ca.pem")
        return OpenSSLCA(child_dir, algorithm, key, child_dir / "ca.pem")

    def revoke(self, cert: Path, reason: str = "keyCompromise") -> None:
        openssl(
            "ca",
            "-batch",
            "-config",
            str(self.dir / "ca.cnf"),
            "-cert",
            str(self.cert),
            "-keyfile",
            str(self.key),
            "-revoke",
            str(cert),
            "-crl_reason",
            reason,
        )

    def crl(self) -> bytes:
        out = self.dir / "crl.pem"
        openssl(
            "ca",
            "-batch",
            "-config",
            str(self.dir / "ca.cnf"),
            "-cert",
            str(self.cert),
            "-keyfile",
            str(self.key),
            "-gencrl",
            "-out",
            str(out),
            *self._sign_args(),
        )
        return out.read_bytes()


def _ca_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "issued").mkdir()
    (path / "index.txt").touch()
    (path / "serial").write_text("1000\n")
    (path / "crlnumber").write_text("1000\n")
    (path / "ca.cnf").write_text(CA_CONFIG.format(dir=path))
    (path / "ext.cnf").write_text(EXTENSIONS)
    return path


def make_root(base: Path, name: str, algorithm: str, *, extensions: str = "v3_ca") -> OpenSSLCA:
    """A self-signed root valid 2020-01-01 .. 2040-01-01."""
    stem = name.strip("/").replace("/", "_").replace("=", "-").replace(" ", "")
    ca_dir = _ca_dir(base / stem)
    key = gen_key(ca_dir / "ca.key", algorithm)
    csr = ca_dir / "ca.csr"
    req = [
        "req",
        "-new",
        "-key",
        str(key),
        "-subj",
        name,
        "-out",
        str(csr),
        "-config",
        str(ca_dir / "ca.cnf"),
    ]
    sign = ["-md", "sha256"]
    if algorithm == "sm2":
        req += ["-sm3", "-sigopt", DISTID]
        sign = ["-md", "sm3", "-sigopt", DISTID, "-vfyopt", DISTID]
    openssl(*req)
    openssl(
        "ca",
        "-batch",
        "-selfsign",
        "-config",
        str(ca_dir / "ca.cnf"),
        "-keyfile",
        str(key),
        "-in",
        str(csr),
        "-out",
        str(ca_dir / "ca.pem"),
        "-notext",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20400101000000Z",
        "-extfile",
        str(ca_dir / "ext.cnf"),
        "-extensions",
        extensions,
        *sign,
    )
    return OpenSSLCA(ca_dir, algorithm, key, ca_dir / "ca.pem")
