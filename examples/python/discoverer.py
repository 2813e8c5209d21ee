"""A small discoverer: finds an instance with Discover (LIVE), then sees it in a Watch snapshot."""
import argparse
import sys

import grpc

from agentregistry.v1 import discovery_pb2, discovery_pb2_grpc, types_pb2


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--namespace", default="default")
    p.add_argument("--expect", help="an instance id that must be live", required=True)
    args = p.parse_args()

    stub = discovery_pb2_grpc.DiscoveryServiceStub(grpc.insecure_channel(args.server))
    page = stub.Discover(
        discovery_pb2.DiscoverRequest(
            namespace=args.namespace,
            capabilities=["interop"],
            label_selector={"lang": "python"},
            view=discovery_pb2.DISCOVER_VIEW_LIVE,
        )
    )
    found = [i for i in page.instances if i.instance_id == args.expect]
    if not found or found[0].status != types_pb2.INSTANCE_STATUS_ALIVE:
        print(f"{args.expect} is not live: {page.instances}", file=sys.stderr)
        return 1
    print(f"discovered {found[0].logical_id} at {found[0].endpoint} (revision {page.revision})")

    # Watch from 0: the current set as PUT events, then a bookmark at the snapshot's revision.
    stream = stub.Watch(discovery_pb2.WatchRequest(namespace=args.namespace))
    seen = set()
    for message in stream:
        for event in message.events:
            if event.type == discovery_pb2.WatchEvent.TYPE_PUT:
                seen.add(event.instance.instance_id)
        if not message.events:
            print(f"watch snapshot complete at revision {message.bookmark_revision}")
            break
    stream.cancel()
    if args.expect not in seen:
        print(f"{args.expect} missing from the watch snapshot {seen}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
