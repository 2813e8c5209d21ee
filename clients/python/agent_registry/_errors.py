"""The library's one exception."""

from __future__ import annotations

import grpc


class RegistryError(Exception):
    """A call the registry refused or could not answer: ``code`` is the gRPC status code's name
    (``"INVALID_ARGUMENT"``, ``"UNAVAILABLE"``, …) and ``message`` the server's words (an
    invalid field is named in it)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def from_rpc(cls, e: grpc.RpcError) -> "RegistryError":
        code = e.code() if hasattr(e, "code") else None
        details = e.details() if hasattr(e, "details") else str(e)
        return cls(code.name if code is not None else "UNKNOWN", details or "")


# Worth another try, here or on another replica (the Rust keeper's rule).
RETRYABLE = {"UNAVAILABLE", "UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "RESOURCE_EXHAUSTED"}
