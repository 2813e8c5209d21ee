"""Starts the real server binary (``AGENT_REGISTRY_BIN``, else the workspace's release build) on
a free port and a throwaway SQLite file; a test may kill it with SIGKILL and start it again on
the same port and database."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from agentregistry.v1 import admin_pb2, admin_pb2_grpc
from recorder import RecordingProxy

ROOT = Path(__file__).resolve().parents[3]


def binary() -> str:
    env = os.environ.get("AGENT_REGISTRY_BIN")
    if env:
        return env
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "agent-registry"
        if p.exists():
            return str(p)
    pytest.fail("no server binary: build it (cargo build --release) or set AGENT_REGISTRY_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, work: Path, extra=()):
        self.port = free_port()
        self.db = work / "registry.db"
        self.log = open(work / "server.log", "ab")
        self.extra = list(extra)
        self.proc = None
        self.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            binary(), "serve", "--listen", self.target, "--metrics-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
            "--database-url", f"sqlite://{self.db}", *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited ({self.proc.returncode}); see {self.log.name}")
                time.sleep(0.05)
        raise RuntimeError("server did not listen within 30 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final flush."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def admin(self, method: str, **fields):
        """An admin call (no token) by name, e.g. ``admin("EvictInstance", instance_id=…)``."""
        with grpc.insecure_channel(self.target) as channel:
            request = getattr(admin_pb2, f"{method}Request")(**fields)
            return getattr(admin_pb2_grpc.AdminServiceStub(channel), method)(request)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def wire(server):
    """A recording proxy in front of ``server``: connect a client to ``wire.target`` and read
    what went over the wire in ``wire.calls(...)`` (recorder.py)."""
    p = RecordingProxy(server.target)
    yield p
    p.close()


def token_entry(name: str, role: str, secret: str) -> str:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return f'[[tokens]]\nname = "{name}"\nrole = "{role}"\nnamespaces = ["*"]\nsha256 = "{digest}"\n'


@pytest.fixture
def secured(tmp_path):
    """A server that requires tokens: ``admin-secret`` (admin), ``reader-secret`` (reader)."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(token_entry("admin", "admin", "admin-secret") + token_entry("reader", "reader", "reader-secret"))
    s = Server(tmp_path, ["--auth-tokens-file", str(tokens)])
    yield s
    s.stop()


def reachable(client, timeout: float = 30.0) -> None:
    """Waits until the client's connection to a restarted server is up again. A call made while
    gRPC is still backing off from the refused reconnects fails fast with UNAVAILABLE without being
    sent, so a test that writes right after a restart first reads until the channel answers."""
    from agent_registry import RegistryError

    def answers():
        try:
            client.discover("reachable", view="all")
            return True
        except RegistryError as e:
            if e.code != "UNAVAILABLE":
                raise
            return False

    eventually(answers, timeout, "the restarted server answers")


def eventually(cond, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not hold within {timeout} s")


def make_certs(d: Path) -> dict:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""

    def sh(*args):
        subprocess.run(args, check=True, capture_output=True)

    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
       "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")):
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
           "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        (d / f"{name}.ext").write_text(ext + "\n")
        sh("openssl", "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
           "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
           "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    return {k: str(d / v) for k, v in {
        "ca": "ca.pem", "server_cert": "server.pem", "server_key": "server.key",
        "client_cert": "client.pem", "client_key": "client.key"}.items()}


@pytest.fixture
def mtls(tmp_path):
    """A server that requires TLS with a client certificate and a token (``admin-secret``)."""
    certs = make_certs(tmp_path)
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(token_entry("admin", "admin", "admin-secret"))
    s = Server(tmp_path, [
        "--tls-cert", certs["server_cert"], "--tls-key", certs["server_key"],
        "--tls-client-ca", certs["ca"], "--auth-tokens-file", str(tokens),
    ])
    s.certs = certs
    yield s
    s.stop()
