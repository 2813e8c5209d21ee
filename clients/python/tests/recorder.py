"""A recording gRPC proxy for the tests: it forwards every unary and bidirectional call to the
real server as raw bytes (it decodes nothing) and keeps, for each unary call, the method, the
request exactly as it crossed the wire, and the status the server answered. What a test reads
here is what the client sent, not what the client says it sent."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from typing import List

import grpc


@dataclass(frozen=True)
class Call:
    method: str  # e.g. "/agentregistry.v1.RegistryService/Register"
    request: bytes
    code: str  # "OK", "NOT_FOUND", …


class RecordingProxy(grpc.GenericRpcHandler):
    def __init__(self, upstream: str):
        self._lock = threading.Lock()
        self._calls: List[Call] = []
        self._upstream = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(16), handlers=[self])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def calls(self, method_suffix: str = "") -> List[Call]:
        with self._lock:
            return [c for c in self._calls if c.method.endswith(method_suffix)]

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def close(self) -> None:
        self._server.stop(0)
        self._upstream.close()

    @staticmethod
    def _metadata(context):
        return [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]

    def service(self, details):
        method = details.method

        def unary(request: bytes, context):
            try:
                reply = self._upstream.unary_unary(method)(request, metadata=self._metadata(context), timeout=30)
                code = "OK"
            except grpc.RpcError as e:
                reply, code = e, e.code().name
            with self._lock:
                self._calls.append(Call(method, request, code))
            if isinstance(reply, grpc.RpcError):
                context.abort(reply.code(), reply.details())
            return reply

        def bidi(requests, context):
            call = self._upstream.stream_stream(method)(requests, metadata=self._metadata(context))
            context.add_callback(call.cancel)
            try:
                yield from call
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.CANCELLED:
                    context.abort(e.code(), e.details())

        # Serializers left out: the bytes go through untouched. Server streams (Watch) are not
        # proxied; the tests that use this proxy make none.
        if method.endswith("/Heartbeat"):
            return grpc.stream_stream_rpc_method_handler(bidi)
        if method.endswith("/Watch"):
            return None
        return grpc.unary_unary_rpc_method_handler(unary)
