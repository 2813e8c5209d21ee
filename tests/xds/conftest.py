"""One registry (the release binary on SQLite) for the module, a bootstrap file pointing gRPC's
xDS client at it, and tiny gRPC services that answer with their own name.

gRPC reads GRPC_XDS_BOOTSTRAP once per process, so the registry keeps one port for the whole
run; a test that restarts it starts it again on the same port and database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest

ROOT = Path(__file__).resolve().parents[2]
METHOD = "/xdstest.Who/Name"


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
        self.port = free_port()
        self.work = work
        self.db = work / "registry.db"
        self.log = open(work / "registry.log", "ab")
        self.proc = None
        self.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            binary(), "serve", "--listen", self.target, "--metrics-listen", "127.0.0.1:0",
            "--http-listen", "", "--database-url", f"sqlite://{self.db}",
        ]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info,agent_registry::xds=debug"))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"registry exited ({self.proc.returncode}); see {self.log.name}")
                time.sleep(0.05)
        raise RuntimeError("registry did not listen within 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def bootstrap(self) -> dict:
        out = subprocess.run(
            [binary(), "ctl", "xds-bootstrap", "--server", self.target, "--node-id", "xds-e2e"],
            check=True, capture_output=True, text=True,
        ).stdout
        return json.loads(out)


class Backend:
    """A gRPC server on 127.0.0.1 answering METHOD with its name."""

    def __init__(self, name: str):
        self.name = name
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def who(request, context):
            self.calls += 1
            return name.encode()

        handler = grpc.method_handlers_generic_handler(
            "xdstest.Who", {"Name": grpc.unary_unary_rpc_method_handler(who)}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0)


@pytest.fixture(scope="session")
def registry():
    with tempfile.TemporaryDirectory() as d:
        r = Registry(Path(d))
        path = Path(d) / "bootstrap.json"
        path.write_text(json.dumps(r.bootstrap()))
        os.environ["GRPC_XDS_BOOTSTRAP"] = str(path)
        try:
            yield r
        finally:
            r.stop()
            r.log.close()
            if os.environ.get("XDS_E2E_SHOW_LOG"):
                print((Path(d) / "registry.log").read_text())


@pytest.fixture
def backends():
    started = []

    def start(name: str) -> Backend:
        b = Backend(name)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()
