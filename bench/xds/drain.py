"""From DrainInstance to the last call reaching the drained instance, through a stock gRPC
client's xDS resolver (Python grpcio) fed by the registry. One registry (its release binary),
two steady backends and one that is registered, called, then drained, N times; each backend
stamps the calls it serves, so the figure is measured where the calls land.

Prints one JSON line: p50/p90/p99/max in ms, the client's call rate, the runs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from agent_registry import Client
from agentregistry.v1 import admin_pb2, admin_pb2_grpc

METHOD = "/xdstest.Who/Name"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    def __init__(self, name: str):
        self.name = name
        self.last = 0.0
        self.calls = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))

        def who(request, context):
            self.last = time.monotonic()
            self.calls += 1
            return name.encode()

        handler = grpc.method_handlers_generic_handler(
            "xdstest.Who", {"Name": grpc.unary_unary_rpc_method_handler(who)})
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    port = free_port()
    target = f"127.0.0.1:{port}"
    db = args.database_url or f"sqlite://{work / 'registry.db'}"
    log = open(work / "registry.log", "ab")
    proc = subprocess.Popen([args.binary, "serve", "--listen", target, "--metrics-listen",
                             "127.0.0.1:0", "--http-listen", "", "--database-url", db],
                            stdout=log, stderr=log)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        bootstrap = subprocess.run([args.binary, "ctl", "xds-bootstrap", "--server", target],
                                   check=True, capture_output=True, text=True).stdout
        (work / "bootstrap.json").write_text(bootstrap)
        os.environ["GRPC_XDS_BOOTSTRAP"] = str(work / "bootstrap.json")
        namespace, logical_id = "bench", "svc"
        client = Client(target)
        admin = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(target))
        steady = [Backend("a"), Backend("b")]
        victim = Backend("v")
        for b in steady:
            client.register(namespace, logical_id, endpoint=b.endpoint, lease_ttl=3600)
        channel = grpc.insecure_channel(f"xds:///{logical_id}.{namespace}")
        call = channel.unary_unary(METHOD)
        stop = threading.Event()
        made = [0]

        def load():
            while not stop.is_set():
                call(b"", timeout=5, wait_for_ready=True)
                made[0] += 1

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        latencies, started = [], time.monotonic()
        for _ in range(args.runs):
            inst = client.register(namespace, logical_id, endpoint=victim.endpoint, lease_ttl=3600)
            since = time.monotonic()
            while victim.last < since:
                time.sleep(0.005)
            time.sleep(0.2)
            t0 = time.monotonic()
            admin.DrainInstance(admin_pb2.DrainInstanceRequest(
                instance_id=inst.instance_id, reason="bench"), timeout=10)
            time.sleep(1.0)
            latencies.append(max(0.0, victim.last - t0) * 1000)
            client.deregister(inst.instance_id, "bench")
        elapsed = time.monotonic() - started
        stop.set()
        loader.join(10)
        print(json.dumps({
            "scenario": "xds-drain",
            "backend": "postgres" if args.database_url else "sqlite",
            "runs": len(latencies),
            "calls_per_s": round(made[0] / elapsed),
            "drain_to_last_call_ms": {
                "p50": round(percentile(latencies, 50), 2),
                "p90": round(percentile(latencies, 90), 2),
                "p99": round(percentile(latencies, 99), 2),
                "max": round(max(latencies), 2),
            },
            "grpcio": grpc.__version__,
        }))
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


if __name__ == "__main__":
    sys.exit(main())
