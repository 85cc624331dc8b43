"""A real S3-compatible server for tests: s3proxy (`make s3-server` installs it into the tools
cache) on a free port, with its own data directory and credentials, optionally over HTTPS with
a certificate from a private CA."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

import httpx

from offload_core.payloads.sigv4 import Signer

from .processes import _die_with_parent, free_port, wait_for

GO_TOOLS = Path(os.environ.get("OFFLOAD_GO_TOOLS", Path.home() / ".cache" / "offload" / "go-tools"))
LAUNCHER = GO_TOOLS / "bin" / "s3proxy"
REGION = "us-east-1"


def unavailable_reason() -> str | None:
    """Why no S3 server can run here, or None."""
    if not LAUNCHER.exists():
        return f"no S3 server at {LAUNCHER}: `make s3-server` installs s3proxy (it needs Java 17+)"
    if shutil.which("java") is None:
        return "no `java` on PATH: s3proxy needs Java 17+ (`make s3-server` installs Debian's JRE)"
    return None


def _private_ca(directory: Path) -> tuple[Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (the CA's PEM, a PKCS#12 keystore)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=offload-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "ext.cnf", "-out", "server.pem")
    run("pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-name", "s3proxy",
        "-passout", "pass:changeit", "-out", "keystore.p12")
    return directory / "ca.pem", directory / "keystore.p12"


class S3Server:
    def __init__(self, *, https: bool = False) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="offload-s3-"))
        self.https = https
        self.access_key_id = "offload-test-" + secrets.token_hex(6)
        self.secret_access_key = secrets.token_urlsafe(30)
        self.ca_file: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "s3proxy.log"

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    @property
    def endpoint_url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> "S3Server":
        data = self.dir / "data"
        data.mkdir()
        props = {
            "s3proxy.authorization": "aws-v4",
            "s3proxy.identity": self.access_key_id,
            "s3proxy.credential": self.secret_access_key,
            "jclouds.provider": "filesystem-nio2",
            "jclouds.filesystem.basedir": str(data),
        }
        if self.https:
            self.ca_file, keystore = _private_ca(self.dir)
            props |= {"s3proxy.secure-endpoint": f"https://127.0.0.1:{self.port}",
                      "s3proxy.keystore-path": str(keystore), "s3proxy.keystore-password": "changeit"}
        else:
            props["s3proxy.endpoint"] = f"http://127.0.0.1:{self.port}"
        conf = self.dir / "s3proxy.conf"
        conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        with self.log_path.open("wb") as log:
            # One small JVM: the tests move tens of MiB, not gigabytes.
            env = {**os.environ, "JAVA_TOOL_OPTIONS": "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"}
            self.proc = subprocess.Popen([str(LAUNCHER), "--properties", str(conf)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"s3proxy exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                httpx.get(self.endpoint_url + "/", timeout=1, verify=self._verify())
                return True
            except httpx.TransportError:
                return False

        wait_for(answers, timeout, "s3proxy to answer", interval=0.2)
        return self

    def request(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        """A signed request of our own, for what the payload store does not do (make a bucket)."""
        host = f"127.0.0.1:{self.port}"
        headers = Signer(self.access_key_id, self.secret_access_key, REGION).sign(
            method, host, path, {}, {}, hashlib.sha256(body).hexdigest())
        return httpx.request(method, self.endpoint_url + path, headers=headers, content=body, timeout=30,
                             verify=self._verify())

    def create_bucket(self, name: str) -> str:
        r = self.request("PUT", f"/{name}")
        assert r.status_code == 200, r.text
        return name

    def env(self, bucket: str, **overrides: str) -> dict[str, str]:
        """OFFLOAD_* variables that point a service at this server and bucket."""
        env = {"OFFLOAD_PAYLOAD_STORE": "s3", "OFFLOAD_S3_ENDPOINT_URL": self.endpoint_url,
               "OFFLOAD_S3_BUCKET": bucket, "OFFLOAD_S3_REGION": REGION,
               "OFFLOAD_S3_ACCESS_KEY_ID": self.access_key_id, "OFFLOAD_S3_SECRET_ACCESS_KEY": self.secret_access_key}
        if self.ca_file:
            env["OFFLOAD_S3_CA_FILE"] = str(self.ca_file)
        return env | overrides

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
