"""A small discoverer on the agent_registry package: finds a live instance with Discover, then
sees it in a WatchCache kept current by Watch."""
import argparse
import sys

from agent_registry import Client, WatchCache


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--namespace", default="default")
    p.add_argument("--expect", help="an instance id that must be live", required=True)
    args = p.parse_args()

    client = Client(args.server)
    live = client.discover(args.namespace, view="live", capabilities=["interop"], labels={"lang": "python"})
    found = [i for i in live if i.instance_id == args.expect]
    if not found or found[0].status != "ALIVE":
        print(f"{args.expect} is not live: {live}", file=sys.stderr)
        return 1
    print(f"discovered {found[0].logical_id} at {found[0].endpoint} (revision {found[0].revision})")
    with WatchCache(client, args.namespace) as cache:
        if not cache.wait_for(lambda c: c.synced and args.expect in c, timeout=30):
            print(f"{args.expect} missing from the watch cache {list(cache)}", file=sys.stderr)
            return 1
        print(f"watch cache holds {len(cache)} instance(s) at revision {cache.revision}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
