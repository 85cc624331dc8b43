"""Certificates made with the openssl CLI, for the servers tests start: a CA that issues
certificates for serving (with DNS and IP names) and client authentication, and the
service-account key pair a kube-apiserver signs tokens with."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed:\n{result.stderr}")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


class Authority:
    """A CA in `directory/<name>.crt|key` that issues certificates beside it."""

    def __init__(self, directory: Path, name: str, common_name: str) -> None:
        self.directory, self.name = directory, name
        self.pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={common_name}",
                 "-keyout", str(self.pair.key), "-out", str(self.pair.cert),
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=directory)

    @property
    def cert(self) -> Path:
        return self.pair.cert

    def issue(self, name: str, common_name: str, *, organization: str = "", dns: tuple[str, ...] = (),
              ips: tuple[str, ...] = ()) -> Pair:
        """A certificate for both serving (with these names) and client authentication."""
        pair = Pair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
        csr = self.directory / f"{name}.csr"
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(pair.key),
                 "-out", str(csr), cwd=self.directory)
        extensions = self.directory / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                 "extendedKeyUsage=serverAuth,clientAuth"]
        sans = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        extensions.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.pair.cert), "-CAkey", str(self.pair.key),
                 "-CAcreateserial", "-days", "2", "-extfile", str(extensions), "-out", str(pair.cert),
                 cwd=self.directory)
        return pair


def service_account_keys(directory: Path) -> Pair:
    """The key pair the API server signs service-account tokens with (`cert` is the public key)."""
    pair = Pair(directory / "sa.pub", directory / "sa.key")
    _openssl("genrsa", "-out", str(pair.key), "2048", cwd=directory)
    _openssl("rsa", "-in", str(pair.key), "-pubout", "-out", str(pair.cert), cwd=directory)
    return pair
