"""A small agent on the agent_registry package: keeps itself registered until told to stop,
waits for a few acknowledged heartbeats, prints its instance id and deregisters."""
import argparse
import sys

from agent_registry import Client, Keeper


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--namespace", default="default")
    p.add_argument("--logical-id", default="python-agent")
    p.add_argument("--beats", type=int, default=3)
    p.add_argument("--keep", action="store_true", help="stay registered (exit without deregistering)")
    args = p.parse_args()

    client = Client(args.server)
    keeper = Keeper(client, namespace=args.namespace, logical_id=args.logical_id,
                    agent_type="python-example", endpoint="127.0.0.1:8080",
                    capabilities=["interop"], labels={"lang": "python"}).start()
    if not keeper.wait(lambda k: k.connected and k.acks >= args.beats, timeout=60):
        print(f"expected {args.beats} acknowledged beats", file=sys.stderr)
        return 1
    print(keeper.instance_id)
    if not args.keep:
        keeper.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
