"""Generates the gRPC stubs from the repository's proto/ into the package before it is built."""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROTO = Path(os.environ.get("AGENT_REGISTRY_PROTO", HERE.parent.parent / "proto"))


def generate() -> None:
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    out = HERE
    files = sorted(str(p) for p in (PROTO / "agentregistry" / "v1").glob("*.proto"))
    if not files:
        sys.exit(f"no .proto files under {PROTO} (set AGENT_REGISTRY_PROTO)")
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        ["protoc", f"-I{PROTO}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
        + files
    )
    if code != 0:
        sys.exit(f"protoc failed ({code})")
    for pkg in (out / "agentregistry", out / "agentregistry" / "v1"):
        (pkg / "__init__.py").touch()


class BuildWithStubs(build_py):
    def run(self):
        generate()
        super().run()


# Every build step (metadata included) needs the generated packages to exist.
generate()
setup(cmdclass={"build_py": BuildWithStubs})
