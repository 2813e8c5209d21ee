"""One registry for the module: the release binary on SQLite, its HTTP API on a port of its
own, and helpers to publish cards and register instances over it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def binary() -> str:
    env = os.environ.get("AGENT_REGISTRY_BIN")
    if env:
        return env
    p = ROOT / "target" / "release" / "agent-registry"
    if p.exists():
        return str(p)
    pytest.fail("no server binary: build it (cargo build --release) or set AGENT_REGISTRY_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, work: Path):
        self.http = free_port()
        self.grpc = free_port()
        self.log = open(work / "registry.log", "ab")
        args = [
            binary(), "serve", "--listen", f"127.0.0.1:{self.grpc}",
            "--http-listen", f"127.0.0.1:{self.http}", "--metrics-listen", "127.0.0.1:0",
            "--database-url", f"sqlite://{work / 'registry.db'}",
        ]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.http), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"registry exited ({self.proc.returncode})")
                time.sleep(0.05)
        raise RuntimeError("registry did not listen within 30 s")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def publish(self, ns: str, logical_id: str, card: bytes, kind: str = "a2a") -> dict:
        status, body = self.call("PUT", f"/v1/namespaces/{ns}/agents/{logical_id}/card?kind={kind}", card)
        assert status == 200, body
        return body

    def register(self, ns: str, logical_id: str, **fields) -> dict:
        body = json.dumps({"logicalId": logical_id, "ready": True, **fields}).encode()
        status, reply = self.call("POST", f"/v1/namespaces/{ns}/instances", body)
        assert status == 200, reply
        return reply["instance"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def registry():
    with tempfile.TemporaryDirectory() as work:
        r = Registry(Path(work))
        try:
            yield r
        finally:
            r.stop()
