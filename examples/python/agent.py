"""A small agent: registers, sends a few heartbeats on one stream, prints its instance id.

Uses stubs generated from ../../proto with grpcio-tools (see README.md).
"""
import argparse
import sys
import time

import grpc

from agentregistry.v1 import registry_pb2, registry_pb2_grpc


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--namespace", default="default")
    p.add_argument("--logical-id", default="python-agent")
    p.add_argument("--beats", type=int, default=3)
    args = p.parse_args()

    stub = registry_pb2_grpc.RegistryServiceStub(grpc.insecure_channel(args.server))
    reply = stub.Register(
        registry_pb2.RegisterRequest(
            namespace=args.namespace,
            logical_id=args.logical_id,
            agent_type="python-example",
            endpoint="127.0.0.1:8080",
            capabilities=["interop"],
            labels={"lang": "python"},
            ready=True,
        )
    )
    instance_id = reply.instance.instance_id
    every = reply.heartbeat_interval.seconds + reply.heartbeat_interval.nanos / 1e9
    print(f"registered {instance_id}; heartbeat every {every:.1f}s", file=sys.stderr)

    def beats():
        for seq in range(1, args.beats + 1):
            yield registry_pb2.HeartbeatRequest(instance_id=instance_id, sequence=seq)
            time.sleep(0.2)  # a demo: real agents beat every heartbeat_interval

    acked = 0
    for ack in stub.Heartbeat(beats()):
        if ack.directive == registry_pb2.DIRECTIVE_REREGISTER:
            print(f"told to register again: {ack.reason}", file=sys.stderr)
            return 1
        acked += 1
        print(f"ack {ack.sequence}, lease until {ack.lease_expires_at.ToJsonString()}", file=sys.stderr)
    if acked != args.beats:
        print(f"expected {args.beats} acks, got {acked}", file=sys.stderr)
        return 1
    print(instance_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
