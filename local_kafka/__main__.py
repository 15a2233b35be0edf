"""Command line: python -m local_kafka {fetch,start,stop,status,kill,restart,leader,destroy}."""

import argparse
import sys

from local_kafka.cluster import Cluster, ClusterError, fetch_jars


def main(argv=None) -> int:
    """Run one local-cluster command and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m local_kafka", description=__doc__)
    parser.add_argument("command", choices=["fetch", "start", "stop", "status", "kill", "restart", "leader", "destroy"])
    parser.add_argument("--name", default="dev", help="cluster name: its data lives in .kafka/NAME")
    parser.add_argument("--nodes", type=int, default=1, help="number of combined broker+controller nodes")
    parser.add_argument("--port", type=int, default=9092, help="client port of node 1; node i uses port+2(i-1)")
    parser.add_argument("--heap", default="512m", help="JVM heap of each node")
    parser.add_argument("--no-auto-create", action="store_true", help="broker refuses to auto-create topics")
    parser.add_argument("--node", type=int, help="node id, for kill and restart")
    parser.add_argument("--topic", help="topic, for leader")
    parser.add_argument("--partition", type=int, default=0, help="partition, for leader")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)
    cluster = Cluster(args.name, args.nodes, args.port, args.heap, not args.no_auto_create)
    try:
        if args.command == "fetch":
            print(fetch_jars())
        elif args.command == "start":
            started = cluster.start(args.timeout)
            state = f"started node(s) {started}" if started else "already running"
            print(f"local Kafka '{cluster.name}' ready at {cluster.bootstrap_servers} ({state})")
        elif args.command == "stop":
            cluster.stop()
            print(f"local Kafka '{cluster.name}' stopped")
        elif args.command == "status":
            running = cluster.running()
            print(f"local Kafka '{cluster.name}': running nodes {running} of {len(cluster.nodes)}")
            return 0 if len(running) == len(cluster.nodes) else 1
        elif args.command == "kill":
            cluster.kill_node(cluster.node(args.node))
        elif args.command == "restart":
            node = cluster.node(args.node)
            cluster.start_node(node)
            cluster.wait_ready(args.timeout)
        elif args.command == "leader":
            print(cluster.leader(args.topic, args.partition))
        elif args.command == "destroy":
            cluster.destroy()
    except ClusterError as error:
        print(f"local_kafka: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
